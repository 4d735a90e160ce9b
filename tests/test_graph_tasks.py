"""NAS-Bench-Graph wired in everywhere NB201 is: specs, tasks, predictors, train.py, search.py.

One tiny ``train.py`` run on graph tasks (module fixture) gives the checkpoint the ``search.py``
cases use; checkpoints of the wrong space are built directly (no training).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning
import pytest
import torch

pytest.importorskip("nas_bench_graph")

from nas_lightning.commands import main  # noqa: E402
from nas_lightning.tasks.load import params_table  # noqa: E402
from nas_lightning.data.datamodule import NASTaskDataModule  # noqa: E402
from nas_lightning.errors import UserError  # noqa: E402
from nas_lightning.models.batch import EpisodeBatch  # noqa: E402
from nas_lightning.models.module import MetaPredictor  # noqa: E402
from nas_lightning.search.strategies import LocalSearch, RegularizedEvolution, Reinforce  # noqa: E402
from nas_lightning.spaces import NBG, get_space  # noqa: E402
from nas_lightning.spaces.nbg_tables import DATASETS, METRICS  # noqa: E402
from nas_lightning.tasks.load import load_task  # noqa: E402
from nas_lightning.oracles import TableOracle  # noqa: E402
from nas_lightning.tasks.spec import TaskSpec  # noqa: E402
from nas_lightning.metatrain import build_cli, fit  # noqa: E402
from tests.conftest import tiny_run  # noqa: E402

TRAIN = ["nbg/cora/val_acc", "nbg/cora/latency"]
TARGET = "nbg/arxiv/val_acc"
TASK = "nbg/pubmed/val_acc"  # what search.py is run on (not seen by the tiny checkpoint)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _one_line_error(fn, *args, match: str) -> str:
    with pytest.raises(UserError, match=match) as err:
        fn(*args)
    assert "\n" not in str(err.value)
    return str(err.value)


# ---------------------------------------------------------------- specs and tasks


def test_space_registered_by_name() -> None:
    assert get_space("nbg") is NBG and NBG.size == 26_206


def test_spec_parsing() -> None:
    spec = TaskSpec.parse(" nbg/arxiv/val_acc ")
    assert (spec.kind, spec.dataset, spec.metric) == ("nbg", "arxiv", "val_acc") and str(spec) == TARGET
    assert "nbg/<dataset>/<metric>" in _one_line_error(TaskSpec.parse, "nbg/arxiv", match="unknown task spec")


@pytest.mark.parametrize("spec, word", [("nbg/mnist/val_acc", "arxiv, proteins"), ("nbg/cora/top1", "val_acc, test_acc")])
def test_unknown_dataset_or_metric_lists_the_choices(spec: str, word: str) -> None:
    _one_line_error(load_task, spec, match=word)


def test_tables_as_tasks() -> None:
    for d in DATASETS:
        t = load_task(f"nbg/{d}/val_acc")
        assert t.size == 26_206 and t.space == NBG and t.direction == "max" and torch.equal(t.archs, NBG.all_indices())
    proteins = load_task("nbg/proteins/val_acc")
    assert proteins.size == 2_021 and (proteins.archs.diff() > 0).all()
    assert {m: load_task(f"nbg/cora/{m}").direction for m in METRICS} == METRICS


def test_fingerprints_differ_across_datasets_and_metrics() -> None:
    specs = [f"nbg/{d}/val_acc" for d in DATASETS + ("proteins",)] + [f"nbg/cora/{m}" for m in METRICS]
    assert len({load_task(s).fingerprint for s in set(specs)}) == len(set(specs))


def test_test_acc_is_report_only() -> None:
    task = load_task("nbg/arxiv/test_acc")
    assert task.report_only and not load_task(TARGET).report_only
    _one_line_error(TableOracle, task, match="report-only")
    for role in ("train_tasks", "val_tasks", "target_tasks"):  # refused in every role of a run
        dm = NASTaskDataModule(**{"train_tasks": ["nbg/cora/val_acc"], role: ["nbg/arxiv/test_acc"]})
        _one_line_error(dm.resolve, match="report-only")


def test_tasks_lists_the_graph_tables(capsys: pytest.CaptureFixture) -> None:
    assert main(["tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    graph = [ln.split("\t") for ln in lines if ln.startswith("nbg/")]
    assert len(graph) == 36 and lines.index("\t".join(graph[0])) > max(i for i, ln in enumerate(lines) if ln.startswith("nb201/"))
    assert ["nbg/arxiv/test_acc", "max", "26206", "report only"] in graph
    assert ["nbg/proteins/latency", "min", "2021"] in graph


def test_mixed_spaces_are_refused() -> None:
    dm = NASTaskDataModule(train_tasks=["nbg/cora/val_acc", "nb201/cifar10/val_acc"])
    _one_line_error(dm.resolve, match="span search spaces")


# ---------------------------------------------------------------- predictors


def test_nb201_default_encoding_is_refused_on_nbg() -> None:
    _one_line_error(lambda: MetaPredictor(space="nbg"), match="set model.encoding to one of onehot, adjacency, layers")


@pytest.mark.parametrize("predictor, encoding, width", [("mlp", "layers", 112), ("mlp", "onehot", 46), ("gcn", "graph", 102)])
def test_predictors_train_on_nbg(predictor: str, encoding: str, width: int) -> None:
    """The gcn reads each architecture's own adjacency (it varies in NBG), the mlp a flat encoding."""
    torch.manual_seed(0)
    m = MetaPredictor(predictor=predictor, encoding=encoding, hidden=8, context=4, space="nbg")
    assert m.net.input_dim == width and m.codes.shape == (NBG.size, width)
    support, query = NBG.sample(12, _gen()).view(2, 6), NBG.sample(20, _gen(1)).view(2, 10)
    batch = EpisodeBatch(torch.arange(2), support, query, torch.randn(2, 6), torch.randn(2, 10),
                         torch.ones(2, 10, dtype=torch.bool), torch.tensor([True, False]))
    losses = m.query_losses(batch)
    losses.sum().backward()
    assert losses.shape == (2,) and torch.isfinite(losses).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.net.parameters())
    if predictor == "gcn":  # two architectures with the same ops, wired differently, score differently
        a, b = NBG.from_string("gcn~0|gin~1|cheb~1|fc~2"), NBG.from_string("gcn~0|gin~1|cheb~2|fc~3")
        scores = m.net(m.encode(torch.tensor([a, b])))
        assert not m.net.fixed and scores[0] != scores[1]


# ---------------------------------------------------------------- strategies on NBG's moves and decisions


def test_reinforce_local_and_rea_search_nbg() -> None:
    task = load_task(TASK)
    oracle = TableOracle(task, budget=30)
    Reinforce().run(oracle, 30, _gen())  # 83% of decision tuples are not architectures (from_choices: -1)
    assert oracle.num_queries == 30
    oracle = TableOracle(task, budget=8)
    LocalSearch().run(oracle, 8, _gen())
    first, second = oracle.history()[0][:2].tolist()
    assert second in NBG.neighbours(first).tolist()
    oracle = TableOracle(task, budget=8)
    RegularizedEvolution(population=3, sample_size=2).run(oracle, 8, _gen())
    archs = oracle.history()[0].tolist()
    assert len(set(archs)) == 8 and all(any(a in NBG.neighbours(p).tolist() for p in archs[:i]) for i, a in
                                        enumerate(archs) if i >= 3)


# ---------------------------------------------------------------- train.py and search.py on graph tasks


def _ckpt(path: Path, space: str, encoding: str) -> str:
    """A checkpoint shaped like train.py's, of a fresh predictor of ``space``."""
    module = MetaPredictor(hidden=8, context=4, encoding=encoding, space=space)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "loops": {}, "epoch": 0,
                "pytorch-lightning_version": lightning.__version__, "global_step": 0,
                "NASTaskDataModule": {"oracles": {}, "fed_back": {}, "seen_tasks": []}}, path)
    return str(path)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny train.py run on graph tasks, in-process; returns its folder."""
    root = tmp_path_factory.mktemp("graph_run")
    args = tiny_run({"data.train_tasks": f"[{','.join(TRAIN)}]", "data.val_tasks": "[nbg/proteins/val_acc]",
                     "data.target_tasks": f"[{TARGET}]", "model.space": "nbg", "model.encoding": "layers",
                     "trainer.max_epochs": 2, "search.per_round": 2})
    cwd = os.getcwd()
    os.chdir(root)
    try:
        cli = build_cli(["--config", str(Path(__file__).resolve().parents[1] / "configs" / "graph.yaml"), *args])
        fit(cli)
    finally:
        os.chdir(cwd)
    assert cli.datamodule.oracles[TARGET].num_queries == 4 and cli.model.space == NBG
    return root


def test_train_on_graph_tasks(run: Path) -> None:
    ckpt = torch.load(run / "runs/graph/checkpoints/last.ckpt", weights_only=False)
    assert ckpt["hyper_parameters"]["space"] == "nbg" and ckpt["hyper_parameters"]["encoding"] == "layers"
    assert ckpt["NASTaskDataModule"]["seen_tasks"] == TRAIN + ["nbg/proteins/val_acc"]
    assert (run / "runs/graph/version_0").is_dir()


def test_compare_and_rank_on_a_graph_task(run: Path, tmp_path: Path) -> None:
    ckpt = str(run / "runs/graph/checkpoints/last.ckpt")
    assert main(["compare", "--task", TASK, "--strategy", "random,rea,local,reinforce,meta", "--budget", "5",
                 "--seeds", "1", "--ckpt", ckpt, "--out", str(tmp_path / "cmp")]) == 0
    results = json.loads((tmp_path / "cmp" / "results.json").read_text())
    for name, r in results["strategies"].items():
        assert len(r["per_seed"][0]["archs"]) == 5, name
        assert NBG.to_string(NBG.from_string(r["best_arch"])) == r["best_arch"]
    assert results["checkpoint_trained_on_task"] is False
    assert main(["rank", "--task", TASK, "--ckpt", ckpt, "--support", "5", "--seeds", "1",
                 "--out", str(tmp_path / "rank")]) == 0
    ranked = json.loads((tmp_path / "rank" / "results.json").read_text())
    assert {"meta", "scratch", "params"} <= set(ranked) and ranked["draws"] == 1


def test_params_baseline_is_the_datasets_own() -> None:
    assert params_table(load_task("nbg/photo/val_acc")).name == "nbg/photo/params"
    assert params_table(load_task("nbg/proteins/val_acc")).size == 2_021
    assert params_table(load_task("nb201/cifar100/val_acc")).name == "nb201/cifar10/params"


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A checkpoint of each space, and the other space's task for it."""
    d = tmp_path_factory.mktemp("ckpts")
    return {"nb201": _ckpt(d / "nb201.ckpt", "nb201", "onehot"), "nbg": _ckpt(d / "nbg.ckpt", "nbg", "onehot")}


@pytest.mark.parametrize("ckpt_space, task", [("nb201", "nbg/cora/val_acc"), ("nbg", "nb201/cifar10/val_acc")])
@pytest.mark.parametrize("command", ["compare-meta", "compare-pretrain", "rank", "rank-pretrained", "suggest", "predict"])
def test_checkpoint_of_another_space_is_refused(command: str, ckpt_space: str, task: str, foreign: dict[str, str],
                                                tmp_path: Path) -> None:
    ckpt, other = foreign[ckpt_space], foreign["nbg" if ckpt_space == "nb201" else "nb201"]
    out = str(tmp_path / "out")
    argv = {
        "compare-meta": ["compare", "--task", task, "--strategy", "meta", "--budget", "3", "--ckpt", ckpt, "--out", out],
        "compare-pretrain": ["compare", "--task", task, "--strategy", "pretrain", "--budget", "3", "--pretrain.ckpt", ckpt],
        "rank": ["rank", "--task", task, "--ckpt", ckpt, "--support", "5"],
        "rank-pretrained": ["rank", "--task", task, "--ckpt", other, "--pretrain.ckpt", ckpt, "--support", "5"],
        "suggest": ["suggest", "--task", task, "--ckpt", ckpt],
        "predict": ["predict", "--task", task, "--ckpt", ckpt, "--out", str(tmp_path / "ranked.csv")],
    }[command]
    msg = _one_line_error(main, argv, match=f"search space '{ckpt_space}', not '{get_space(task.split('/')[0]).name}'")
    assert ckpt in msg and not (tmp_path / "out").exists() and not (tmp_path / "ranked.csv").exists()


@pytest.mark.parametrize("task, source", [("nbg/cora/val_acc", "nb201/cifar10/val_acc"), ("nb201/cifar10/val_acc", "nbg/cora/val_acc")])
def test_source_of_another_space_is_refused(task: str, source: str) -> None:
    _one_line_error(main, ["compare", "--task", task, "--strategy", "transfer", "--source", source, "--budget", "3"],
                    match="--source .* is a task of search space")
