"""Few-shot adaptation to a new device, on the measured latency tables shipped in ``data/nb201-device-latency``.

Every test works on small copies of the device tables (the same 400 architectures of each, whole
file names kept) in a temporary folder that ``--data.csv_dir`` points at, so the real config's
relative specs and globs are what is tested. The run leaves six devices out of training (as a
fold of the cross-validation does) and in that folder their files are corrupt: a run that read one
would fail.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest
import torch
import yaml

from nas_lightning.spaces import NB201
from nas_lightning.tasks.load import load_tasks
from nas_lightning.tasks.spec import TaskSpec
from nas_lightning.errors import UserError
from nas_lightning.models.checkpoint import load_predictor
from nas_lightning.models.scoring import score
from nas_lightning.commands import main as search_main
from nas_lightning.rankers.blend import best_source
from nas_lightning.rankers.ranking import _corr, rank_only
from nas_lightning.rankers.suggest import suggest_support
from nas_lightning.metatrain import build_cli, fit
from tests.conftest import tiny_run

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "nb201-device-latency"
CONFIG = REPO / "configs" / "device_latency.yaml"
HELD_OUT = ("titan_rtx_1", "2080ti_256", "gold_6240", "silver_4114", "pixel3", "samsung_s7")  # by these tests
PARAMS = "nb201/cifar10/params"
ROWS = 400
TINY = tiny_run({"trainer.max_epochs": 1, "data.meta_batch": 4, "data.support": 10, "data.query": 50, "data.val_query": 100},
                tasks=False)

pytestmark = pytest.mark.slow


def _keep() -> set[str]:
    """The architectures every small copy holds."""
    order = torch.randperm(NB201.size, generator=torch.Generator().manual_seed(0))
    return {NB201.to_string(i) for i in order[:ROWS].tolist()}


def _rows(src: Path, keep: set[str]) -> list[str]:
    """The header and the rows of ``keep`` of a gzipped table."""
    with gzip.open(src, "rt") as f:
        lines = f.read().splitlines()
    return [lines[0]] + [ln for ln in lines[1:] if ln.split(",", 1)[0] in keep]


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small copies of every device table; the held-out ones are not gzip (any read fails)."""
    out = tmp_path_factory.mktemp("device_tables")
    keep = _keep()
    for src in sorted(DATA.glob("*.csv.gz")):
        if src.name.removesuffix(".csv.gz") in HELD_OUT:
            (out / src.name).write_bytes(b"held out: never read me\n")
        else:
            with gzip.open(out / src.name, "wt") as f:
                f.write("\n".join(_rows(src, keep)) + "\n")
    return out


@pytest.fixture(scope="module")
def trained(tables: Path, tmp_path_factory: pytest.TempPathFactory):
    """A tiny run of configs/device_latency.yaml on the copies (relative csv_dir, tmp cwd)."""
    root = tmp_path_factory.mktemp("device_run")
    (root / "tables").symlink_to(tables)
    val = yaml.safe_load(CONFIG.read_text())["data"]["val_tasks"]
    train = [f"csv:{p.name}" for p in sorted(DATA.glob("*.csv.gz"))
             if p.name.removesuffix(".csv.gz") not in HELD_OUT and f"csv:{p.name}" not in val] + [PARAMS]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        cli = build_cli(["--config", str(CONFIG), "--data.csv_dir", "tables", "--data.train_tasks",
                         "[" + ",".join(train) + "]", *TINY])
        fit(cli)
    return root, cli, root / "runs" / "device_latency" / "checkpoints" / "last.ckpt"


def test_config_trains_on_every_shipped_table() -> None:
    """The shipped config: every shipped device table trains but the one it selects models on."""
    data = yaml.safe_load(CONFIG.read_text())["data"]
    train = [TaskSpec.parse(s) for s in data["train_tasks"]]
    (val,) = [TaskSpec.parse(s) for s in data["val_tasks"]]
    assert data["target_tasks"] == [] and PARAMS in data["train_tasks"]
    for table in sorted(DATA.glob("*.csv.gz")):
        trained = sum(s.matches_file(table.name) for s in train if s.is_csv)
        assert trained == (0 if val.matches_file(table.name) else 1), table.name
    assert val.matches_file("titanx_32.csv.gz")


def test_held_out_devices_never_reach_training(trained) -> None:
    root, cli, ckpt = trained
    dm = cli.datamodule
    names = [t.name for t in dm.train + dm.val]
    assert len(dm.train) == 15 and len(dm.val) == 1 and not dm.oracles and dm.hparams.support == 10
    for device in HELD_OUT:
        assert not any(f"/{device}.csv" in n for n in names), device
    seen = load_predictor(ckpt).trained_on["tasks"]
    assert sorted(seen) == sorted(names)
    assert cli.trainer.state.finished and (ckpt.parent / "best.ckpt").is_file()


def test_a_held_out_table_is_unreadable_here(tables: Path) -> None:
    """The leakage guard itself: reading a held-out copy fails, so the run above never did."""
    with pytest.raises(UserError, match="unreadable"):
        load_tasks(f"csv:{tables}/pixel3.csv.gz")


def test_csv_globs_give_one_task_per_file(tables: Path) -> None:
    tasks = load_tasks(f"csv:{tables}/titanxp_*.csv.gz")
    assert [Path(t.name.split("#")[0]).name for t in tasks] == ["titanxp_1.csv.gz", "titanxp_256.csv.gz", "titanxp_32.csv.gz"]
    assert all(t.direction == "min" and t.size == ROWS and t.name.endswith("#latency_ms") for t in tasks)


def test_rank_metrics_handle_ties() -> None:
    """Average ranks (Spearman) and tau-b (Kendall): a tied table against itself scores 1."""
    tied = torch.tensor([3.0, 3.0, 5.0, 1.0, 5.0, 5.0, 2.0, 3.0])
    assert _corr(tied, tied) == pytest.approx((1.0, 1.0))
    ranks = torch.tensor([4.0, 4.0, 7.0, 1.0, 7.0, 7.0, 2.0, 4.0])  # average ranks of the ties
    pred = torch.arange(8.0)
    expected = float(torch.corrcoef(torch.stack([pred, ranks]))[0, 1])
    assert _corr(pred, tied)[0] == pytest.approx(expected, abs=1e-6)


def test_tie_heavy_phone_table_ranks_correctly(tables: Path) -> None:
    task = load_tasks(f"csv:{tables}/essential_ph_1.csv.gz")[0]
    assert len(torch.unique(task.values())) < task.size // 4  # whole milliseconds: many ties
    out = rank_only(task, None, 10, 3, source=task)
    assert out["transfer"]["spearman_mean"] == pytest.approx(1.0)
    assert out["transfer"]["kendall_mean"] == pytest.approx(1.0)


def test_rank_only_first_seed_gives_later_draws(trained, tables: Path) -> None:
    module = load_predictor(trained[2])
    task = load_tasks(f"csv:{tables}/titanx_1.csv.gz")[0]
    both = rank_only(task, module, 10, 2)["meta"]["spearman"]
    later = rank_only(task, module, 10, 1, first_seed=1)["meta"]["spearman"]
    assert later == both[1:] and both[0] != both[1]  # draw 1 alone, not draw 0 again


def test_best_matching_source_follows_the_support(tables: Path) -> None:
    gpus = load_tasks(f"csv:{tables}/1080ti_*.csv.gz") + load_tasks(f"csv:{tables}/samsung_a50.csv.gz")
    target = gpus[1]  # 1080ti_256, as if it were new: itself must win
    support = target.archs[:10]
    best, r = best_source(gpus, support, (target.lookup(support) * target.sign).float())
    assert best is target and r == pytest.approx(1.0)


def _run_cli(args: list[str], capsys: pytest.CaptureFixture) -> str:
    assert search_main(args) == 0
    return capsys.readouterr().out


def test_rank_only_on_a_partial_table_with_best_matching_transfer(trained, tmp_path: Path, capsys, monkeypatch) -> None:
    root, _, ckpt = trained
    monkeypatch.chdir(root)  # the checkpoint names its tables relative to where it was trained
    partial = tmp_path / "mine.csv"  # 120 measured architectures of a device the run never saw
    partial.write_text("\n".join(_rows(DATA / "pixel3.csv.gz", _keep())[:121]) + "\n")
    out = _run_cli(["rank", "--task", f"csv:{partial}", "--ckpt", str(ckpt), "--support", "10", "--seeds", "3",
                    "--out", str(tmp_path / "res")], capsys)
    for name in ("meta", "transfer", "params", "scratch"):
        assert f"{name} " in out
    assert "best-matching table of 15 training tables" in out
    res = json.loads((tmp_path / "res" / "results.json").read_text())
    trained_on = load_predictor(ckpt).trained_on["tasks"]
    assert len(res["transfer"]["sources"]) == 3 and set(res["transfer"]["sources"]) <= set(trained_on)
    assert res["draws"] == 3 and not res["checkpoint_trained_on_task"]
    assert load_tasks(f"csv:{partial}")[0].size == 120


def test_transfer_is_skipped_when_the_training_tables_are_gone(trained, tmp_path: Path, capsys, monkeypatch, caplog) -> None:
    root, _, ckpt = trained
    monkeypatch.chdir(tmp_path)  # 'tables/...' does not resolve from here
    with caplog.at_level(logging.WARNING):
        out = _run_cli(["rank", "--task", f"csv:{root}/tables/titanx_1.csv.gz", "--ckpt", str(ckpt),
                        "--seeds", "2"], capsys)
    assert "transfer skipped" in caplog.text and "--source" in caplog.text
    assert "transfer " not in out and "meta " in out


def test_support_archs_with_csv_tasks(trained, tmp_path: Path, capsys, monkeypatch) -> None:
    root, _, ckpt = trained
    monkeypatch.chdir(root)
    task = f"csv:{root}/tables/samsung_a50.csv.gz"
    held = load_tasks(task)[0].archs
    good = tmp_path / "good.txt"
    good.write_text("\n".join(NB201.to_string(i) for i in held[:10].tolist()) + "\n")
    out = _run_cli(["rank", "--task", task, "--ckpt", str(ckpt), "--support-archs", str(good)], capsys)
    assert "meta " in out
    absent = next(i for i in range(NB201.size) if i not in set(held.tolist()))
    bad = tmp_path / "bad.txt"
    bad.write_text(good.read_text() + NB201.to_string(absent) + "\n")
    with pytest.raises(UserError, match="is not in task"):
        search_main(["rank", "--task", task, "--ckpt", str(ckpt), "--support-archs", str(bad)])


def test_suggest_support_prints_k_distinct_architectures(trained, capsys) -> None:
    _, _, ckpt = trained
    lines = _run_cli(["suggest", "--k", "10", "--ckpt", str(ckpt)], capsys).splitlines()
    assert len(lines) == 10 and len(set(lines)) == 10
    assert all(NB201.to_string(NB201.from_string(s)) == s for s in lines)
    module = load_predictor(ckpt)
    again = suggest_support(module, 10)
    assert [NB201.to_string(i) for i in again.tolist()] == lines  # deterministic
    kc = suggest_support(module, 7, method="kcenter")
    assert len(torch.unique(kc)) == 7


def test_suggest_support_within_a_table(trained, capsys) -> None:
    root, _, ckpt = trained
    task = load_tasks(f"csv:{root}/tables/silver_4210r.csv.gz")[0]
    lines = _run_cli(["suggest", "--k", "5", "--ckpt", str(ckpt), "--task", f"csv:{root}/tables/silver_4210r.csv.gz"],
                     capsys).splitlines()
    idx = torch.tensor([NB201.from_string(s) for s in lines])
    assert len(lines) == 5 and bool(task.contains(idx).all())
    with pytest.raises(UserError, match="suggestion method"):
        search_main(["suggest", "--k", "5", "--ckpt", str(ckpt), "--method", "magic"])
    with pytest.raises(UserError, match="ckpt"):
        search_main(["suggest", "--k", "5"])


def test_predict_writes_the_whole_space_ranked(trained, tmp_path: Path, capsys) -> None:
    _, _, ckpt = trained
    mine = tmp_path / "my_device.csv"  # ten measurements of a device the run never saw
    mine.write_text("\n".join(_rows(DATA / "samsung_s7.csv.gz", _keep())[:11]) + "\n")
    out = tmp_path / "ranking" / "all.csv"
    text = _run_cli(["predict", "--out", str(out), "--task", f"csv:{mine}", "--ckpt", str(ckpt)], capsys)
    assert "from 10 measurements" in text
    rows = out.read_text().splitlines()
    assert rows[0] == "rank,arch,score,predicted_latency_ms,measured_latency_ms" and len(rows) == NB201.size + 1
    body = [r.split(",") for r in rows[1:]]
    assert [int(r[0]) for r in body] == list(range(1, NB201.size + 1))
    assert len({r[1] for r in body}) == NB201.size
    scores = [float(r[2]) for r in body]
    assert scores == sorted(scores, reverse=True)
    assert sum(1 for r in body if r[4]) == 10 and all(float(r[3]) > 0 for r in body)  # predicted ms everywhere
    with pytest.raises(UserError, match="task"):
        search_main(["predict", "--out", str(out), "--ckpt", str(ckpt)])


def test_greedy_suggestion_is_nested_and_reads_only_training_tables(trained, capsys, monkeypatch) -> None:
    root, _, ckpt = trained
    monkeypatch.chdir(root)  # the checkpoint names its tables relative to where it was trained
    five = _run_cli(["suggest", "--k", "5", "--ckpt", str(ckpt), "--method", "greedy"], capsys).splitlines()
    three = _run_cli(["suggest", "--k", "3", "--ckpt", str(ckpt), "--method", "greedy"], capsys).splitlines()
    assert len(set(five)) == 5 and five[:3] == three  # greedy picks are nested
    assert set(five) <= _keep()  # cells every training table holds (the copies hold 400)
    monkeypatch.chdir(root.parent)  # the tables no longer resolve: one line that says what to do
    with pytest.raises(UserError, match="training tables"):
        search_main(["suggest", "--k", "3", "--ckpt", str(ckpt), "--method", "greedy"])


def test_blend_weight_is_chosen_on_the_support(trained, tables: Path) -> None:
    from nas_lightning.rankers import blend
    _, _, ckpt = trained
    module = load_predictor(ckpt)
    sources = load_tasks(f"csv:{tables}/1080ti_*.csv.gz")
    target = load_tasks(f"csv:{tables}/titanx_1.csv.gz")[0]
    support = target.archs[:10]
    y = (target.lookup(support) * target.sign).double()
    meta, transfer = blend.leave_one_out(module, sources, support, y, False)
    assert meta.shape == transfer.shape == (10,) and bool(torch.isfinite(meta).all())
    assert blend.choose_weight(meta, None, y) == 1.0
    shuffled = y[torch.randperm(10, generator=torch.Generator().manual_seed(0))]
    assert blend.choose_weight(shuffled, y, y) == 0.0  # transfer predicts the support exactly: transfer alone
    assert blend.choose_weight(y, shuffled, y) == 1.0  # meta does: meta alone
    assert blend.choose_weight(2 * y, y, y) == 1.0  # both fit alike (Pearson ignores scale): the larger meta weight
    meta = score(module, support, y.float(), target.archs, False)[0]
    scores, w, name = blend.blended(module, sources, support, y, target.archs, False, meta)
    assert w in blend.WEIGHTS and scores.shape == (target.size,) and (name is None) == (w == 1.0)
