"""Task specs and tables: the embedded NB201 tables, user CSV tables, and their errors."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest
import torch

from nas_lightning.spaces import NB201
from nas_lightning.tasks import load
from nas_lightning.tasks import embedded as emb
from nas_lightning.tasks.task import Task
from nas_lightning.errors import UserError

CIFAR10_VAL_OPTIMUM = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
CHANCE = {"cifar10": 10.0, "cifar100": 1.0, "ImageNet16-120": 100.0 / 120}
DEVICE_DIR = Path(__file__).resolve().parents[1] / "data" / "nb201-device-latency"


@pytest.fixture(scope="module")
def embedded() -> dict[str, Task]:
    out = {}
    for spec in emb.embedded_specs():
        (task,) = load.load_tasks(spec)
        out[spec] = task
    return out


# ---------------------------------------------------------------- embedded tables


def test_embedded_specs_are_the_twelve():
    specs = emb.embedded_specs()
    assert len(specs) == 12 == len(set(specs))
    assert {s.split("/")[1] for s in specs} == {"cifar10", "cifar100", "ImageNet16-120"}
    assert {s.split("/")[2] for s in specs} == {"val_acc", "train_time", "latency", "params"}


def test_embedded_tasks_cover_the_space(embedded):
    for spec, task in embedded.items():
        assert task.name == spec
        assert task.size == NB201.size
        assert torch.equal(task.archs, NB201.all_indices())
        assert task.table.shape == (NB201.size,)
        assert bool(torch.isfinite(task.table).all()), spec
        assert task.direction == ("max" if spec.endswith("/val_acc") else "min"), spec
        assert task.sign == (1.0 if task.direction == "max" else -1.0)
        assert not task.report_only
        assert task.cost is not None and bool((task.cost > 0).all())


def test_cifar10_validation_optimum(embedded):
    task = embedded["nb201/cifar10/val_acc"]
    idx, value = task.best()
    assert NB201.to_string(idx) == CIFAR10_VAL_OPTIMUM
    assert value == pytest.approx(91.61, abs=0.01)
    assert float(task.lookup(torch.tensor([idx]))[0]) == pytest.approx(value)
    assert float(task.table.max()) == pytest.approx(value)


def test_val_acc_seed_table(embedded):
    for d in emb.DATASETS:
        task = embedded[f"nb201/{d}/val_acc"]
        seeds = task.seed_table
        assert seeds is not None and seeds.shape == (NB201.size, 3)
        present = (~torch.isnan(seeds)).sum(1)
        assert int(present.min()) >= 2 and int(present.max()) <= 3
        torch.testing.assert_close(seeds.nanmean(1), task.table.to(seeds.dtype))
        ok = seeds[~torch.isnan(seeds)]
        assert float(ok.min()) >= 0.0 and float(ok.max()) <= 100.0
    for spec, task in embedded.items():
        if not spec.endswith("/val_acc"):
            assert task.seed_table is None, spec


def test_cost_is_the_train_time_of_the_dataset(embedded):
    for d in emb.DATASETS:
        train = embedded[f"nb201/{d}/train_time"].table
        for m in emb.EMBEDDED_METRICS:
            torch.testing.assert_close(embedded[f"nb201/{d}/{m}"].cost.to(train.dtype), train)
    # a harder dataset costs more to train on, arch by arch on average
    assert float(embedded["nb201/ImageNet16-120/train_time"].table.mean()) > float(
        embedded["nb201/cifar10/train_time"].table.mean()
    )


def test_embedded_edge_order_matches_the_cell(embedded):
    """Cells whose output node is cut off (edges into node 3 all 'none') learn nothing: chance
    accuracy. This pins the edge order of the pickled keys to EDGES."""
    ops = NB201.choices(NB201.all_indices())
    dead = (ops[:, 3:] == 0).all(1)
    assert int(dead.sum()) == 125
    # the same pattern on the edges into nodes 1 and 2 leaves 0->3 alive
    alive = (ops[:, :3] == 0).all(1) & (ops[:, 3] == 3)
    for d, chance in CHANCE.items():
        acc = embedded[f"nb201/{d}/val_acc"].table
        assert float(acc[dead].max()) < chance + 0.5, d
        assert float(acc[alive].min()) > 2 * chance, d
        assert float(acc.max()) > 4 * chance, d


def test_params_grow_with_convolutions(embedded):
    ops = NB201.choices(NB201.all_indices())
    convs = ((ops == 2) | (ops == 3)).sum(1)
    for d in emb.DATASETS:
        params = embedded[f"nb201/{d}/params"].table
        best, _ = embedded[f"nb201/{d}/params"].best()  # min direction: smallest model
        assert int(convs[best]) == 0, d
        assert int(params.argmax()) == int(NB201.from_choices(torch.full((6,), 3))), d


def test_first_load_builds_the_cache_and_second_load_reads_it(nas_cache_dir, embedded, monkeypatch):
    assert emb.cache_dir() == nas_cache_dir
    assert len(list(nas_cache_dir.glob("*.pt"))) == 3  # one file a dataset

    def no_pickle(*args, **kwargs):
        raise AssertionError("the package's pickle was read again")

    monkeypatch.setattr(emb, "restricted_pickle_load", no_pickle)  # a second load comes from the cache alone
    again = [load.load_tasks(s)[0] for s in emb.embedded_specs()]
    for t in again:
        assert torch.equal(t.table, embedded[t.name].table)


def test_cache_is_built_in_a_fresh_dir_and_a_damaged_cache_rebuilt(tmp_path, monkeypatch, embedded):
    monkeypatch.setenv("NAS_LIGHTNING_CACHE", str(tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()
    task = emb.load_embedded("cifar100", "val_acc")
    files = list((tmp_path / "cache").glob("*.pt"))
    assert len(files) == 1
    ref = embedded["nb201/cifar100/val_acc"]
    assert torch.equal(task.table, ref.table)
    files[0].write_bytes(b"not a torch file")
    rebuilt = emb.load_embedded("cifar100", "val_acc")
    assert torch.equal(rebuilt.table, ref.table)
    torch.load(files[0], weights_only=True)  # the damaged file was replaced by a good one


@pytest.mark.parametrize(
    ("spec", "choices"),
    [
        ("nb201/cifar11/val_acc", emb.DATASETS),
        ("nb201/imagenet/val_acc", emb.DATASETS),
        ("nb201/cifar10/test_acc", tuple(emb.EMBEDDED_METRICS)),
        ("nb201/cifar10", ("nb201/<dataset>/<metric>", "csv:")),
        ("nb301/cifar10/val_acc", ("nb201/<dataset>/<metric>", "csv:")),
        ("", ("nb201/<dataset>/<metric>", "csv:")),
    ],
)
def test_unknown_spec_lists_the_choices(spec, choices):
    with pytest.raises(UserError) as info:
        load.load_tasks(spec)
    msg = str(info.value)
    for c in choices:
        assert c in msg
    bad = [p for p in spec.split("/") if p and p not in ("nb201",)]
    if bad:
        assert any(b in msg for b in bad)


def test_parse_specs_keeps_order(embedded):
    specs = ["nb201/cifar100/latency", "nb201/cifar10/val_acc"]
    assert [t.name for t in load.load_all(specs)] == specs


# ---------------------------------------------------------------- CSV tables

ARCHS = [0, 1, 777, NB201.from_string(CIFAR10_VAL_OPTIMUM), NB201.size - 1]


def _write(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    text = "\n".join(",".join(str(c) for c in r) for r in [header, *rows]) + "\n"
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def _table(path: Path, columns: dict[str, list[float]], archs: list[int] = ARCHS) -> Path:
    rows = [[NB201.to_string(a), *(columns[c][k] for c in columns)] for k, a in enumerate(archs)]
    return _write(path, ["arch", *columns], rows)


def test_csv_one_task_per_numeric_column(tmp_path):
    cols = {
        "accuracy": [50.0, 60.0, 70.0, 80.0, 40.0],
        "latency_ms": [1.0, 2.0, 3.0, 0.5, 4.0],
        "train_time": [9.0, 8.0, 7.0, 6.0, 5.0],
        "n_params": [3, 4, 5, 6, 7],
        "FLOPs": [0.1, 0.2, 0.3, 0.4, 0.5],
        "score": [1, 2, 3, 4, 5],
    }
    path = _table(tmp_path / "t.csv", cols)
    tasks = load.load_tasks(f"csv:{path}")
    assert [t.name for t in tasks] == [f"csv:{path}#{c}" for c in cols]
    expect_dir = {"accuracy": "max", "latency_ms": "min", "train_time": "min", "n_params": "min", "FLOPs": "min", "score": "max"}
    for t, (c, vals) in zip(tasks, cols.items()):
        assert t.direction == expect_dir[c], c
        assert t.size == len(ARCHS)
        # values follow their architectures whatever the row order
        got = t.lookup(torch.tensor(ARCHS))
        torch.testing.assert_close(got, torch.tensor(vals, dtype=got.dtype))
        assert bool((t.archs[1:] > t.archs[:-1]).all())  # sorted, unique
    # best() respects the direction
    assert tasks[0].best() == (ARCHS[3], 80.0)
    assert tasks[1].best() == (ARCHS[3], 0.5)


def test_csv_column_and_direction_overrides(tmp_path):
    path = _table(tmp_path / "t.csv", {"latency": [1.0, 2.0, 3.0, 0.5, 4.0], "acc": [5, 4, 3, 2, 1]})
    (only,) = load.load_tasks(f"csv:{path}#acc")
    assert only.name.endswith("#acc") and only.direction == "max"
    (t,) = load.load_tasks(f"csv:{path}#latency@max")
    assert t.direction == "max" and t.best() == (ARCHS[4], 4.0)
    (t,) = load.load_tasks(f"csv:{path}#acc@min")
    assert t.direction == "min" and t.best() == (ARCHS[4], 1.0)
    both = load.load_tasks(f"csv:{path}@max")
    assert [t.direction for t in both] == ["max", "max"]
    both = load.load_tasks(f"csv:{path}@min")
    assert [t.direction for t in both] == ["min", "min"]


def test_csv_gz_and_row_order(tmp_path):
    archs = list(reversed(ARCHS))
    vals = [float(a) / 10 for a in archs]
    path = _table(tmp_path / "t.csv.gz", {"speed": vals}, archs)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    (t,) = load.load_tasks(f"csv:{path}")
    assert t.direction == "max"
    torch.testing.assert_close(t.lookup(torch.tensor(archs)), torch.tensor(vals, dtype=torch.float64))


def test_csv_arch_column_anywhere_and_blank_lines(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(
        "val , arch\n"
        f"1.5,{NB201.to_string(3)}\n"
        "\n"
        f" 2.5 , {NB201.to_string(9)} \n"
    )
    (t,) = load.load_tasks(f"csv:{path}")
    assert t.archs.tolist() == [3, 9]
    assert t.table.tolist() == [1.5, 2.5]


def test_csv_glob_gives_one_task_per_file(tmp_path):
    for name, shift in (("b_dev.csv", 1.0), ("a_dev.csv", 2.0), ("c_dev.csv.gz", 3.0)):
        _table(tmp_path / name, {"latency_ms": [shift + k for k in range(len(ARCHS))]})
    _table(tmp_path / "other.txt", {"latency_ms": [0.0] * len(ARCHS)})
    tasks = load.load_tasks(f"csv:{tmp_path}/*dev.csv*")
    assert [Path(t.name[4:].split("#")[0]).name for t in tasks] == ["a_dev.csv", "b_dev.csv", "c_dev.csv.gz"]
    assert [float(t.lookup(torch.tensor([ARCHS[0]]))[0]) for t in tasks] == [2.0, 1.0, 3.0]
    assert all(t.direction == "min" for t in tasks)
    assert len({t.name for t in tasks}) == 3


def test_csv_partial_table(tmp_path):
    path = _table(tmp_path / "t.csv", {"acc": [1.0, 2.0, 3.0, 4.0, 5.0]})
    (t,) = load.load_tasks(f"csv:{path}")
    assert t.size == len(ARCHS)
    mask = t.contains(NB201.all_indices())
    assert int(mask.sum()) == len(ARCHS)
    assert sorted(torch.nonzero(mask).flatten().tolist()) == sorted(ARCHS)
    assert t.contains(torch.tensor([ARCHS[2], 2, ARCHS[0]])).tolist() == [True, False, True]
    with pytest.raises(KeyError):
        t.lookup(torch.tensor([2]))


def _err(spec: str) -> str:
    with pytest.raises(UserError) as info:
        load.load_tasks(spec)
    return str(info.value)


def test_csv_missing_empty_and_header_only(tmp_path):
    missing = tmp_path / "nope.csv"
    assert str(missing) in _err(f"csv:{missing}")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    msg = _err(f"csv:{empty}")
    assert str(empty) in msg and "empty" in msg
    blank = tmp_path / "blank.csv"
    blank.write_text("\n \n")
    assert "empty" in _err(f"csv:{blank}")
    header = _write(tmp_path / "header.csv", ["arch", "acc"], [])
    msg = _err(f"csv:{header}")
    assert str(header) in msg and "no rows" in msg
    fake_gz = tmp_path / "fake.csv.gz"
    fake_gz.write_text("arch,acc\n")
    assert str(fake_gz) in _err(f"csv:{fake_gz}")


def test_csv_structure_errors(tmp_path):
    no_arch = _write(tmp_path / "no_arch.csv", ["architecture", "acc"], [[NB201.to_string(0), 1.0]])
    msg = _err(f"csv:{no_arch}")
    assert str(no_arch) in msg and "'arch'" in msg and "architecture" in msg
    only_arch = _write(tmp_path / "only_arch.csv", ["arch"], [[NB201.to_string(0)]])
    assert str(only_arch) in _err(f"csv:{only_arch}")
    good = _table(tmp_path / "good.csv", {"acc": [1.0] * 5, "latency": [2.0] * 5})
    msg = _err(f"csv:{good}#accuracy")
    assert "accuracy" in msg and "acc" in msg and "latency" in msg
    msg = _err(f"csv:{tmp_path}/*.nothing")
    assert "*.nothing" in msg


@pytest.mark.parametrize("bad", ["abc", "", "nan", "NaN", "inf", "-inf", "1,2"])
def test_csv_bad_values(tmp_path, bad):
    rows = [[NB201.to_string(a), 1.0] for a in ARCHS]
    rows[2][1] = f'"{bad}"' if "," in bad else bad
    path = _write(tmp_path / "t.csv", ["arch", "acc"], rows)
    msg = _err(f"csv:{path}")
    assert str(path) in msg and "line 4" in msg
    if bad:
        assert repr(bad) in msg


@pytest.mark.parametrize(
    "arch",
    [
        "|conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
        "|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
        "input|conv3x3-bn-relu|maxpool3x3|output",
        "",
    ],
)
def test_csv_foreign_architecture(tmp_path, arch):
    rows = [[NB201.to_string(a), 1.0] for a in ARCHS[:3]] + [[arch, 2.0]]
    path = _write(tmp_path / "t.csv", ["arch", "acc"], rows)
    msg = _err(f"csv:{path}")
    assert str(path) in msg and "line 5" in msg
    if arch:
        assert arch in msg


def test_csv_duplicate_architecture(tmp_path):
    dup = NB201.to_string(ARCHS[1])
    rows = [[NB201.to_string(a), 1.0] for a in ARCHS] + [[dup, 3.0]]
    path = _write(tmp_path / "t.csv", ["arch", "acc"], rows)
    msg = _err(f"csv:{path}")
    assert str(path) in msg and dup in msg


# ---------------------------------------------------------------- device latency data


def test_device_latency_tables():
    tasks = load.load_tasks(f"csv:{DEVICE_DIR}/*.csv.gz")
    assert len(tasks) == 21
    assert len({t.name for t in tasks}) == 21
    for t in tasks:
        assert t.size == NB201.size, t.name
        assert t.direction == "min", t.name
        assert torch.equal(t.archs, NB201.all_indices())
        assert bool((t.table > 0).all()) and bool(torch.isfinite(t.table).all()), t.name
        assert t.seed_table is None and t.cost is None
    # devices disagree: the tables are not copies of one another
    assert len({round(float(t.table.sum()), 3) for t in tasks}) > 15
    assert not math.isnan(float(tasks[0].table.mean()))


def test_csv_with_utf8_bom(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(("\ufeffarch,acc\n" + f"{NB201.to_string(5)},1.0\n").encode("utf-8"))
    (t,) = load.load_tasks(f"csv:{path}")
    assert t.archs.tolist() == [5]
