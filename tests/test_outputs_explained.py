"""Output that explains itself: no placeholder where a value is unknown, figures rounded to what
they mean, tasks spelt as typed, a header on ``tasks``, every "measure next" row marked, and every
file a command wrote named at its end."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
import torch

from nas_lightning.commands import main as search_main
from nas_lightning.commands.tasks import HEADER
from nas_lightning.tasks.spec import TrainingSpec, canonical_name
from nas_lightning.search import make_strategy
from nas_lightning.search.runner import format_table, run_comparison
from nas_lightning.tasks.embedded import load_embedded
from nas_lightning.oracles import TableOracle

TINY_RECIPE = ["--oracle.recipe.C", "2", "--oracle.recipe.N", "1", "--oracle.recipe.epochs", "1", "--oracle.recipe.batch_size", "16",
               "--oracle.recipe.max_train_images", "40"]


class NoTable(TableOracle):
    """A table searched as if it had no evaluation-only view (the optimum unknown, as for train:)."""

    def evaluation_only(self):
        return None


def test_no_placeholders_where_the_optimum_is_unknown(caplog: pytest.LogCaptureFixture) -> None:
    task = load_embedded("cifar10", "val_acc")
    with caplog.at_level(logging.INFO):
        res = run_comparison(lambda seed, _: NoTable(task, 5, seed=seed), {"random": lambda: make_strategy("random")}, 5, 2)
    r = res["strategies"]["random"]
    assert r["hit_optimum_rate"] is None and r["hit_rate_at"] is None and r["regret_at"] is None
    row = format_table(res).splitlines()[-1].split()
    assert row[0] == "random" and row[2:] == ["-", "-", "-", "-"]  # regret, hit rate, queries to optimum, regret@10
    assert "None" not in caplog.text and "mean best found" in caplog.text


def test_a_known_optimum_keeps_its_figures() -> None:
    task = load_embedded("cifar10", "val_acc")
    res = run_comparison(task, {"random": lambda: make_strategy("random")}, 5, 2)
    assert isinstance(res["strategies"]["random"]["hit_optimum_rate"], float)
    assert "10" not in res["strategies"]["random"]["regret_at"] and "5" in res["strategies"]["random"]["regret_at"]


def test_an_image_folder_task_is_spelt_as_typed() -> None:
    assert str(TrainingSpec.parse("train:imagefolder=/data/mine")) == "train:imagefolder=/data/mine"
    assert str(TrainingSpec.parse("train:image-folder=/data/mine")) == "train:imagefolder=/data/mine"
    assert canonical_name("train:folder=/data/mine") == "train:imagefolder=/data/mine"  # older checkpoints' keys
    assert canonical_name("nb201/cifar10/val_acc") == "nb201/cifar10/val_acc"


def test_tasks_has_a_header(capsys: pytest.CaptureFixture) -> None:
    assert search_main(["tasks", "--task", "nb201/cifar10/val_acc"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == HEADER == "task\tdirection\tarchitectures\tnote"
    assert lines[1].split("\t") == ["nb201/cifar10/val_acc", "max", "15625"]


def test_every_architecture_to_measure_next_is_marked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    device = load_embedded("cifar100", "latency")
    archs = device.archs[torch.randperm(device.size, generator=torch.Generator().manual_seed(3))[:10]]
    mine = tmp_path / "mine.csv"
    mine.write_text("arch,latency_ms\n" + "".join(f"{device.space.to_string(int(a))},{1000 * float(v):.4f}\n"
                                                   for a, v in zip(archs, device.lookup(archs))))
    out = tmp_path / "plan.csv"
    limit = f"{1000 * float(device.lookup(archs).median()):.3f}"
    assert search_main(["constrained", "--accuracy", "nb201/cifar100/val_acc", "--latency", f"csv:{mine}",
                        "--limit", limit, "--predictor", "params", "--ask", "5", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    nxt = text.split("measure these next (5)")[1].strip().splitlines()[1:6]
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    marked = sorted((int(r["measure_next"]), r["arch"]) for r in rows if r["measure_next"])
    assert [a for _, a in marked] == nxt and [i for i, _ in marked] == [1, 2, 3, 4, 5]
    assert text.strip().splitlines()[-1].startswith(f"wrote {out}")


def test_compare_on_a_training_task_says_where_its_results_went(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "t.sqlite"
    with caplog.at_level(logging.INFO):
        assert search_main(["compare", "--task", "train:digits", "--strategy", "random", "--budget", "1", "--seeds", "1",
                            "--oracle.store", str(store), "--device", "cpu", *TINY_RECIPE]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2] == f"wrote {store.resolve()}  (finished trainings; a rerun of the same command reuses them)"
    assert "no --out" in lines[-1] and "give --out DIR" in lines[-1]
    trained = [r.getMessage() for r in caplog.records if " seed 0: " in r.getMessage()]
    assert trained and all(m.split("val ")[1].split(" ")[0].count(".") <= 1 and
                           len(m.split("val ")[1].split(" ")[0].split(".")[-1]) == 2 for m in trained), trained
    assert "None" not in caplog.text


def test_compare_with_out_lists_every_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert search_main(["compare", "--task", "nb201/cifar10/val_acc", "--strategy", "random", "--budget", "3",
                        "--seeds", "1", "--out", str(out)]) == 0
    written = [ln.split()[1] for ln in capsys.readouterr().out.splitlines() if ln.startswith("wrote ")]
    assert written == [str(out / "results.json"), str(out / "regret.png")]
    assert all(Path(p).is_file() for p in written)


def test_tasks_prints_nothing_but_the_error_for_a_bad_spec(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from nas_lightning.errors import UserError

    with pytest.raises(UserError, match="does not exist"):
        search_main(["tasks", "--task", f"csv:{tmp_path / 'nowhere.csv'}"])
    assert capsys.readouterr().out == ""
