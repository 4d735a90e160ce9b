"""Hardware-aware search under a latency limit: the library, ``search.py constrained`` and its benchmark.

A tiny latency predictor is meta-trained on the embedded ``nb201/cifar10/latency`` table; the
"device" is ``nb201/cifar100/latency`` (another table, never trained on), written as a user's
``latency_ms`` CSV. Nothing here needs the shipped device tables.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import latency_limit as bench
from nas_lightning.commands import main as search_main
from nas_lightning.commands.constrained import parse_limit, table_unit
from nas_lightning.errors import UserError
from nas_lightning.models.checkpoint import load_predictor
from nas_lightning.rankers.latency_limit import SIGMA_PRIOR, MetaLatency, ParamsLatency, calibrate, constrained_search, propose
from nas_lightning.tasks.embedded import load_embedded
from nas_lightning.oracles import TableOracle
from nas_lightning.tasks.task import Task
from nas_lightning.metatrain import build_cli, fit
from tests.conftest import GuardedTask, only_from, tiny_run, torch_threads

REPO = Path(__file__).resolve().parents[1]
ACC = "nb201/cifar100/val_acc"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny latency predictor (trained on the CIFAR-10 latency table only)."""
    root = tmp_path_factory.mktemp("constrained_run")
    args = tiny_run({"data.train_tasks": "[nb201/cifar10/latency]", "data.val_tasks": "[]", "data.target_tasks": "[]",
                     "data.support": 10, "data.query": 40, "trainer.max_epochs": 1, "data.steps_per_epoch": 5,
                     "trainer.logger": False, "checkpoint.dirpath": str(root / "ckpt")})
    with pytest.MonkeyPatch.context() as mp, torch_threads(1):
        mp.chdir(root)
        fit(build_cli(args))
    return root / "ckpt" / "last.ckpt"


@pytest.fixture(scope="module")
def device() -> Task:
    """A device never trained on: the CIFAR-100 latency table."""
    return load_embedded("cifar100", "latency")


def _csv(path: Path, device: Task, n: int = 10, value=None) -> Path:
    archs = device.archs[torch.randperm(device.size, generator=torch.Generator().manual_seed(3))[:n]]
    lat = device.lookup(archs).tolist()
    rows = [f"{device.space.to_string(int(a))},{value(i, v) if value else v}" for i, (a, v) in enumerate(zip(archs, lat))]
    path.write_text("arch,latency_ms\n" + "\n".join(rows) + "\n")
    return path


def test_calibrate_is_decreasing_and_extrapolates() -> None:
    s = torch.tensor([0.0, 1.0, 2.0, 3.0])
    y = torch.tensor([3.0, 2.0, 2.5, 0.0])  # one violation of monotonicity, pooled
    out = calibrate(s, y, torch.tensor([-1.0, 0.5, 1.0, 2.0, 4.0]))
    assert torch.all(out[1:] <= out[:-1])
    assert out[0] > 3.0 and out[-1] < 0.0  # continued beyond the measured scores, never flat upward
    assert math.isclose(float(out[2]), 2.25) and math.isclose(float(out[3]), 2.25)


def test_a_table_measured_in_full_needs_no_prediction(device: Task) -> None:
    """Every architecture measured (a whole device table): the pick and 'sure', no prediction to make."""
    params = load_embedded("cifar10", "params")
    acc = load_embedded("cifar100", "val_acc")
    lat = device.lookup(device.archs)
    assert calibrate(torch.arange(3.0), torch.zeros(3), torch.zeros(0)).shape == (0,)
    prop = propose(ParamsLatency(params), device.archs, lat, acc.archs, acc.table * acc.sign, float(lat.median()))
    assert prop.pick is not None and prop.sure and prop.next == [] and prop.candidates == []


def test_the_meta_model_on_a_table_measured_in_full_stays_bounded(ckpt: Path, device: Task) -> None:
    """Every architecture measured: the ranking adapts in bounded chunks and the uncertainty comes
    from a fixed draw of the measurements (n x n leave-one-out adaptations would need ~200 GB)."""
    acc = load_embedded("cifar100", "val_acc")
    lat = device.lookup(device.archs)
    module = load_predictor(str(ckpt), "cpu", device.space)
    with torch_threads(1):
        prop = propose(MetaLatency(module), device.archs, lat, acc.archs, acc.table * acc.sign, float(lat.median()))
    assert prop.pick is not None and prop.sure and 0 < prop.sigma < SIGMA_PRIOR * 10


def test_limit_units() -> None:
    ms = Task("csv:x.csv#latency_ms", "min", torch.arange(2), torch.ones(2))
    assert table_unit(ms) == "ms" and table_unit(Task("csv:x.csv#latency", "min", torch.arange(2), torch.ones(2))) is None
    assert parse_limit("20", "ms", "latency_ms") == 20.0 == parse_limit("20ms", "ms", "latency_ms") == parse_limit(" 20 ms", "ms", "x")
    for bad, words in (("0.02s", "is in ms; give the limit in ms \\(here --limit 20ms\\)"), ("20us", "is in ms"), ("20min", "unknown unit"), ("fast", "not a number"), ("0", "positive")):
        with pytest.raises(UserError, match=words):
            parse_limit(bad, "ms", "latency_ms")


def test_params_search_is_measured_budgeted_and_repeatable(device: Task) -> None:
    """Latency equal to the parameter count: the params proxy is exact up to interpolation, so the
    search must find an architecture within 0.5 points of the true constrained optimum; the latency
    table is read only through the oracle, at most first + more times."""
    params = load_embedded("cifar10", "params")
    acc = load_embedded("cifar100", "val_acc")
    limit = float(torch.quantile(params.table.double(), 0.25))
    truth = acc.lookup(params.archs[params.table <= limit]).max()
    picks = []
    for _ in range(2):
        guarded = GuardedTask.wrap(Task("csv:params.csv#latency_ms", "min", params.archs, params.table.clone()),
                                   only_from("_evaluate", "oracles/table.py"))
        oracle = TableOracle(guarded, budget=20)
        res = constrained_search(ParamsLatency(params), TableOracle(acc), oracle, limit, 10, 10,
                                 torch.Generator().manual_seed(0))
        p = res.proposal
        assert p.pick in res.order and p.pick_latency == float(params.lookup(torch.tensor([p.pick]))[0]) <= limit
        assert guarded.reads == oracle.num_queries == len(res.order) <= 20
        assert float(truth) - p.pick_accuracy <= 0.5
        picks.append((p.pick, res.order))
    assert picks[0] == picks[1]


def test_command_on_ten_measured_rows(ckpt: Path, device: Task, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    mine = _csv(tmp_path / "my_device.csv", device)
    limit = float(torch.quantile(device.table.double(), 0.5))
    out = tmp_path / "picks.json"
    assert search_main(["constrained", "--accuracy", ACC, "--latency", f"csv:{mine}", "--limit", f"{limit:.4f}ms",
                        "--ckpt", str(ckpt), "--ask", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "predicted to meet" in text
    res = json.loads(out.read_text())
    measured = {line.split(",")[0]: float(line.split(",")[1]) for line in mine.read_text().splitlines()[1:]}
    picks = [r for r in res["rows"] if r["kind"] == "pick"]
    assert len(picks) == 1  # half the space meets the median: some measured row does
    assert measured[picks[0]["arch"]] == pytest.approx(picks[0]["latency"]) and picks[0]["latency"] <= limit
    assert picks[0]["arch"] in text  # the pick is a measured row under the limit, named with its measured latency
    assert res["unit"] == "ms" and (res["sure"] or len(res["next"]) == 3)
    assert not set(res["next"]) & set(measured)  # never asks for a latency it has
    if not res["sure"]:
        assert "measure these next" in text and all(a in text for a in res["next"])


@pytest.mark.parametrize("value, limit, accuracy, words", [
    (lambda i, v: -v if i == 4 else v, "20", ACC, "has latency -"),
    (lambda i, v: 0 if i == 2 else v, "20", ACC, "has latency 0; latencies must be positive"),
    (lambda i, v: "quick" if i == 1 else v, "20", ACC, "'quick' is not a number"),
    (None, "0.002", ACC, "no architecture meets --limit 0.002 ms: the fastest measured is"),
    (None, "1e-4", ACC, "more than 10x below the fastest measured latency"),
    (None, "-5", ACC, "is negative"),
    (None, "0.02s", ACC, "is in 's' but the table's column 'latency_ms' is in ms"),
    (None, "20", "train:digits", "not supported by constrained yet"),
])
def test_bad_input_is_one_line(ckpt: Path, device: Task, tmp_path: Path, value, limit, accuracy, words) -> None:
    mine = _csv(tmp_path / "my_device.csv", device, value=value)
    out = tmp_path / "out.csv"
    with pytest.raises(UserError, match=words) as err:
        search_main(["constrained", "--accuracy", accuracy, "--latency", f"csv:{mine}", "--limit", limit,
                     "--ckpt", str(ckpt), "--out", str(out)])
    assert "\n" not in str(err.value) and not out.exists()


@pytest.mark.slow  # starts a process
def test_bad_input_exits_2_with_one_line(device: Task, tmp_path: Path) -> None:
    mine = _csv(tmp_path / "my_device.csv", device, value=lambda i, v: -1 if i == 0 else v)
    proc = subprocess.run([sys.executable, str(REPO / "search.py"), "constrained", "--accuracy", ACC, "--latency",
                           f"csv:{mine}", "--limit", "20", "--predictor", "params"], capture_output=True, text=True, cwd=REPO)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "must be positive" in lines[0]


def test_benchmark_rows_and_report(ckpt: Path, device: Task) -> None:
    module = load_predictor(ckpt)
    with torch_threads(1):
        rows = bench.evaluate_device(module, device, load_embedded("cifar10", "params"), load_embedded("cifar100", "val_acc"),
                                     [0], first=5, more=3, quantiles=(0.25,))
    assert [r["method"] for r in rows] == list(bench.METHODS)
    for r in rows:
        assert r["measurements_mean"] <= 8 and 0 <= r["satisfied"] <= 1
        assert r["satisfied"] == (1.0 if r["no_pick"] == 0 else 0.0)  # a table oracle measures exactly
        assert all(g >= 0 for g in r["gaps"])
    res = {"accuracy": ACC, "first": 5, "more": 3, "seeds": [0], "quantiles": [0.25], "devices": {"cifar100_latency": rows}}
    text = bench.markdown(res)
    assert "cifar100_latency" in text and "meta sat" in text and "params gap" in text
