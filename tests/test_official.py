"""The official NB201 reader, on a tiny file built with the API's own record classes."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from nas_201_api import ArchResults, ResultsCount

from nas_lightning.spaces import NB201
from nas_lightning.tasks import official
from nas_lightning.tasks.official import OFFICIAL_METRICS, load_official
from nas_lightning.oracles import TableOracle
from nas_lightning.tasks.embedded import DATASETS
from nas_lightning.tasks.load import load_tasks
from nas_lightning.errors import UserError

EPOCHS = 3
# API order deliberately unsorted in our index space; 4321 lacks ImageNet16-120 entirely
ARCHS = [9000, 17, 15624, 0, 4321]
API_DATASETS = {"cifar10-valid": ("x-valid", "ori-test"), "cifar10": ("ori-test",),
                "cifar100": ("x-valid", "x-test", "ori-test"), "ImageNet16-120": ("x-valid", "x-test", "ori-test")}


def _seeds(arch: int, dataset: str) -> list[int]:
    if arch == 4321 and dataset == "ImageNet16-120":
        return []
    if arch == 17:
        return [777]
    return [777, 888] if arch in (0, 9000) else [777, 888, 999]


def _fake(arch: int, dataset: str, seed: int) -> dict[str, float]:
    """Made-up final-epoch numbers, distinct per architecture, dataset and seed."""
    d = list(API_DATASETS).index(dataset)
    s = (seed - 777) / 111
    return {"x-valid": 40 + arch / 1000 + 3 * d + 0.5 * s, "x-test": 30 + arch / 1000 + 3 * d - 0.25 * s,
            "ori-test": 60 + arch / 1000 + 3 * d + 0.125 * s, "epoch_time": 1 + arch / 100 + d + s,
            "flops": 10 + arch / 10 + d, "params": 0.1 + arch / 1e5 + d, "latency": 0.01 + arch / 1e6 + d / 100 + s / 1000}


def _record(arch: int, dataset: str, seed: int, scale: float) -> ResultsCount:
    f = _fake(arch, dataset, seed)
    config = {"name": "infer.tiny", "channel": 16, "num_cells": 5, "arch_str": NB201.to_string(arch), "class_num": 10}
    # flop as a numpy scalar, as the real file has: the weights-only loader refuses it
    rc = ResultsCount(dataset, None, {e: 1.0 for e in range(EPOCHS)}, {e: 2.0 for e in range(EPOCHS)},
                      f["params"], np.float64(f["flops"]), config, seed, EPOCHS, [f["latency"]])
    rc.update_train_info({e: 1.0 for e in range(EPOCHS)}, None, {e: 2.0 for e in range(EPOCHS)},
                         {e: f["epoch_time"] * scale for e in range(EPOCHS)})
    accs, losses, times = {}, {}, {}
    for name in API_DATASETS[dataset]:
        for e in range(EPOCHS):
            key = f"{name}@{e}"
            accs[key] = f[name] * scale if e == EPOCHS - 1 else 5.0  # only the last epoch is right
            losses[key], times[key] = 1.0, 0.5
    rc.update_eval(accs, losses, times)
    return rc


def _arch_results(api_index: int, arch: int, scale: float) -> dict:
    res = ArchResults(api_index, NB201.to_string(arch))
    for dataset in API_DATASETS:
        for seed in _seeds(arch, dataset):
            res.update(dataset, seed, _record(arch, dataset, seed, scale))
    return res.state_dict()


def official_dict() -> dict:
    """A five-architecture file in the official format; the 12-epoch ('less') numbers are decoys."""
    return {"meta_archs": [NB201.to_string(a) for a in ARCHS],
            "arch2infos": {i: {"less": _arch_results(i, a, 0.5), "full": _arch_results(i, a, 1.0)} for i, a in enumerate(ARCHS)},
            "evaluated_indexes": list(range(len(ARCHS)))}


def expected(dataset: str, metric: str) -> dict[int, float]:
    """What the task must hold, straight from the fabricated numbers (mean over seeds)."""
    val_set = "cifar10-valid" if dataset == "cifar10" else dataset
    src = dataset if metric == "test_acc" else val_set
    key = {"val_acc": "x-valid", "test_acc": "ori-test" if dataset == "cifar10" else "x-test",
           "flops": "flops", "params": "params", "latency": "latency"}.get(metric)
    out = {}
    for arch in ARCHS:
        seeds = _seeds(arch, src)
        if seeds:
            vals = [_fake(arch, src, s)["epoch_time"] * EPOCHS if key is None else _fake(arch, src, s)[key] for s in seeds]
            out[arch] = sum(vals) / len(vals)
    return out


@pytest.fixture(scope="module")
def data() -> dict:
    return official_dict()


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_LIGHTNING_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(official.ENV_VAR, raising=False)


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("metric", list(OFFICIAL_METRICS))
def test_values_match_the_fabricated_numbers(data, dataset, metric):
    task = load_official(dataset, metric, data)
    want = expected(dataset, metric)
    assert task.name == f"nb201-official/{dataset}/{metric}"
    assert task.direction == OFFICIAL_METRICS[metric]
    assert task.archs.tolist() == sorted(want)
    assert torch.allclose(task.values(), torch.tensor([want[a] for a in sorted(want)], dtype=torch.float64), atol=1e-9)
    cost = expected(dataset, "train_time")
    assert torch.allclose(task.lookup_cost(task.archs), torch.tensor([cost[a] for a in sorted(want)], dtype=torch.float64))


def test_cifar10_validation_and_test_come_from_different_runs(data):
    val = load_official("cifar10", "val_acc", data)
    test = load_official("cifar10", "test_acc", data)
    a = torch.tensor([15624])
    assert float(val.lookup(a)) == pytest.approx(_fake(15624, "cifar10-valid", 888)["x-valid"])
    assert float(test.lookup(a)) == pytest.approx(_fake(15624, "cifar10", 888)["ori-test"])


def test_seed_table_holds_each_seed_and_averages_to_the_table(data):
    task = load_official("cifar100", "val_acc", data)
    assert task.seed_table is not None and task.seed_table.shape == (5, 3)
    assert torch.allclose(task.seed_table.nanmean(1), task.values())
    row = task.seed_table[int(torch.nonzero(task.archs == 17))]
    assert row[0] == pytest.approx(_fake(17, "cifar100", 777)["x-valid"]) and torch.isnan(row[1:]).all()
    assert load_official("cifar100", "flops", data).seed_table is None


def test_test_accuracy_is_report_only_and_refused_by_the_oracle(data):
    test = load_official("cifar100", "test_acc", data)
    assert test.report_only
    with pytest.raises(UserError, match="report-only"):
        TableOracle(test)
    val = load_official("cifar100", "val_acc", data)
    assert not val.report_only
    assert float(TableOracle(val).query(9000)[0]) == pytest.approx(expected("cifar100", "val_acc")[9000])


def test_partial_table(data):
    task = load_official("ImageNet16-120", "val_acc", data)
    assert task.size == 4
    mask = task.contains(torch.tensor([4321, 0, 9000, 1]))
    assert mask.tolist() == [False, True, True, False]
    with pytest.raises(KeyError):
        task.lookup(torch.tensor([4321]))
    assert load_official("cifar10", "val_acc", data).size == 5


@pytest.mark.parametrize("dataset, metric, word", [("cifar1000", "val_acc", "cifar100"), ("cifar10", "top5", "test_acc")])
def test_unknown_names_list_the_choices(data, dataset, metric, word):
    with pytest.raises(UserError, match=word):
        load_official(dataset, metric, data)


def test_missing_source_and_missing_file(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="NB201_PATH"):
        load_official("cifar10", "val_acc")
    missing = tmp_path / "nope.pth"
    monkeypatch.setenv(official.ENV_VAR, str(missing))
    with pytest.raises(UserError, match="nope.pth"):
        load_official("cifar10", "val_acc")
    with pytest.raises(UserError, match="nope.pth"):
        load_tasks("nb201-official/cifar10/val_acc")  # the spec reads the file NB201_PATH names


def test_unreadable_file_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a benchmark")
    with pytest.raises(UserError, match="bad.pth"):
        load_official("cifar10", "val_acc", bad)


def test_file_is_read_once_then_cached_until_it_changes(data, tmp_path, monkeypatch):
    path = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    torch.save(data, path)
    monkeypatch.setenv(official.ENV_VAR, str(path))
    (task,) = load_tasks("nb201-official/cifar100/params")
    want = expected("cifar100", "params")
    assert torch.allclose(task.values(), torch.tensor([want[a] for a in sorted(want)], dtype=torch.float64))
    assert len(list((tmp_path / "cache").glob("nb201_official_*.pt"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("the file was read again")

    monkeypatch.setattr(official, "_open_api", refuse)
    again = load_official("ImageNet16-120", "test_acc", path)  # another task, same cache
    assert again.report_only and again.size == 4
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="read again"):
        load_official("cifar100", "params", path)


def test_environment_is_restored_after_the_weights_only_load(data, tmp_path):
    path = tmp_path / "nb201.pth"
    torch.save(data, path)
    assert not math.isnan(float(load_official("cifar10", "latency", path).values()[0]))
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ and "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ
