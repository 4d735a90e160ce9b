"""The NAS-Bench-Graph space and tables: index order, strings, decisions, moves, encodings, tables."""

from __future__ import annotations

import itertools
import sys

import pytest
import torch

nbg_pkg = pytest.importorskip("nas_bench_graph")

from nas_lightning.errors import UserError  # noqa: E402
from nas_lightning.spaces import nbg, nbg_tables  # noqa: E402
from nas_lightning.spaces.nbg import NBGSpace  # noqa: E402

SPACE = NBGSpace()
ALL = torch.arange(nbg.NUM_ARCHS)
PROTEINS_OPS = ("gcn", "sage", "arma", "fc", "skip")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _package_index(links: list[int], ops: list[str]) -> int:
    return int(SPACE.from_hash(torch.tensor([nbg_pkg.Arch(list(links), list(ops)).valid_hash()]))[0])


# ---------------------------------------------------------------- constants and index order


def test_constants():
    assert SPACE.name == "nbg" and SPACE.size == 26_206 == len(SPACE.all_indices())
    assert SPACE.decisions == (1, 2, 3, 4, 9, 9, 9, 9)
    assert nbg.OPS == tuple(nbg_pkg.architecture.gnn_list)
    assert SPACE.default_encoding in SPACE.encodings
    assert SPACE == NBGSpace() and hash(SPACE) == hash(NBGSpace())


def test_index_order_is_package_hash_and_decision_order():
    hashes = SPACE.to_hash(ALL)
    assert (hashes.diff() > 0).all()
    assert torch.equal(hashes, torch.tensor(sorted(nbg_pkg.light_read("cora"))))
    rows = [tuple(r) for r in SPACE.choices(ALL).tolist()]
    assert rows == sorted(rows)
    assert torch.equal(SPACE.from_hash(hashes), ALL)


def test_index_rebuild_is_identical():
    before = nbg._index()
    nbg._index.cache_clear()
    after = nbg._index()
    assert torch.equal(before.hashes, after.hashes) and torch.equal(before.choices, after.choices)


def test_from_hash_rejects_unknown_hash():
    with pytest.raises(UserError, match="valid_hash") as err:
        SPACE.from_hash(torch.tensor([88888]))  # all skip
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- strings


def test_string_round_trip_every_architecture():
    strings = [SPACE.to_string(i) for i in range(SPACE.size)]
    assert len(set(strings)) == SPACE.size
    assert [SPACE.from_string(s) for s in strings] == list(range(SPACE.size))
    assert SPACE.from_string(SPACE.example) >= 0 and SPACE.to_string(SPACE.from_string(SPACE.example)) == SPACE.example


def test_string_form():
    index = SPACE.from_string("gcn~0|gin~1|cheb~1|fc~2")
    assert SPACE.choices(index).tolist() == [0, 1, 1, 2, 1, 2, 3, 7]
    assert SPACE.to_hash(index).item() == 61237
    assert SPACE.from_string("  gcn~0 | gin~1 |cheb~1| fc~2 ") == index


def test_from_string_maps_equivalent_forms_to_the_package_canonical_one():
    # the package README's example, written in another layer order
    assert SPACE.from_string("gcn~0|gin~1|fc~2|cheb~1") == SPACE.from_string("gcn~0|gin~1|cheb~1|fc~2")
    gen = _gen(1)
    for _ in range(300):
        links = [int(torch.randint(k, (1,), generator=gen)) for k in (1, 2, 3, 4)]
        ops = [nbg.OPS[int(o)] for o in torch.randint(len(nbg.OPS), (4,), generator=gen)]
        if ops == ["skip"] * 4:
            continue
        text = "|".join(f"{o}~{k}" for k, o in zip(links, ops))
        assert SPACE.from_string(text) == _package_index(links, ops)


@pytest.mark.parametrize("text", [
    "", "gcn~0|gin~1|cheb~1", "gcn~0|gin~1|cheb~1|fc~2|fc~3", "gcn0|gin~1|cheb~1|fc~2", "conv~0|gin~1|cheb~1|fc~2",
    "gcn~1|gin~1|cheb~1|fc~2", "gcn~0|gin~2|cheb~1|fc~2", "gcn~0|gin~1|cheb~x|fc~2", "gcn~0|gin~1|cheb~-1|fc~2",
    "skip~0|skip~1|skip~2|skip~3", "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|",
])
def test_invalid_strings_are_one_line_user_errors(text: str):
    with pytest.raises(UserError) as err:
        SPACE.from_string(text)
    msg = str(err.value)
    assert "\n" not in msg and nbg.EXAMPLE in msg and "op~input" in msg


# ---------------------------------------------------------------- decisions


def test_choices_round_trip_and_shapes():
    c = SPACE.choices(ALL)
    assert c.shape == (SPACE.size, 8)
    assert torch.equal(SPACE.from_choices(c), ALL)
    assert SPACE.choices(torch.zeros(2, 3, dtype=torch.long)).shape == (2, 3, 8)
    assert SPACE.from_choices(c[:6].view(2, 3, 8)).shape == (2, 3)
    assert SPACE.choices(5).shape == (8,)


def test_from_choices_minus_one_outside_the_space():
    every = torch.tensor(list(itertools.product(*(range(k) for k in SPACE.decisions))))
    found = SPACE.from_choices(every)
    assert int((found >= 0).sum()) == SPACE.size and torch.equal(found[found >= 0].sort().values, ALL)
    bad = torch.tensor([[0, 0, 0, 0, 9, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0], [0, -1, 0, 0, 0, 0, 0, 0]])
    assert SPACE.from_choices(bad).tolist() == [-1, -1, -1]


def test_check_rejects_out_of_range():
    with pytest.raises(ValueError):
        SPACE.choices(SPACE.size)
    with pytest.raises(ValueError):
        SPACE.to_string(-1)


# ---------------------------------------------------------------- moves


def test_neighbours_are_valid_one_decision_moves_and_symmetric():
    counts = SPACE.neighbour_counts()
    assert int(counts.min()) >= 1
    offsets, dst = nbg._neighbour_csr()  # what neighbours() slices; checked against it on a sample
    assert torch.equal(offsets.diff(), counts) and len(dst) == int(counts.sum())
    for i in torch.randint(SPACE.size, (500,), generator=_gen(6)).tolist():
        assert torch.equal(SPACE.neighbours(i), dst[offsets[i] : offsets[i + 1]])
    src = torch.repeat_interleave(ALL, counts)
    assert (src != dst).all() and ((dst >= 0) & (dst < SPACE.size)).all()
    choices = SPACE.choices(ALL)
    assert ((choices[src] != choices[dst]).sum(-1) == 1).all()
    forward = (src * SPACE.size + dst).sort().values
    assert len(torch.unique(forward)) == len(forward)  # no repeats
    assert torch.equal(forward, (dst * SPACE.size + src).sort().values)  # symmetric


def test_neighbours_are_all_one_decision_moves_and_deterministic():
    for i in torch.randint(SPACE.size, (50,), generator=_gen(2)).tolist():
        c = SPACE.choices(i)
        moves = []
        for d, k in enumerate(SPACE.decisions):
            for v in range(k):
                if v != int(c[d]):
                    m = c.clone()
                    m[d] = v
                    moves.append(m)
        found = SPACE.from_choices(torch.stack(moves))
        assert SPACE.neighbours(i).tolist() == found[found >= 0].tolist()
        assert torch.equal(SPACE.neighbours(i), SPACE.neighbours(i))


def test_mutate_and_sample_stay_inside_and_are_seeded():
    for i in torch.randint(SPACE.size, (200,), generator=_gen(3)).tolist():
        assert SPACE.mutate(i, _gen(i)) in SPACE.neighbours(i).tolist()
    draws = SPACE.sample(500, _gen(4))
    assert len(set(draws.tolist())) == 500 and 0 <= int(draws.min()) and int(draws.max()) < SPACE.size
    assert torch.equal(draws, SPACE.sample(500, _gen(4)))
    assert int(SPACE.sample(100, _gen(5), replace=True).max()) < SPACE.size


# ---------------------------------------------------------------- encodings and graph


@pytest.mark.parametrize("name", list(SPACE.encodings))
def test_encodings_widths_shapes_and_uniqueness(name: str):
    x = SPACE.encode(ALL, name)
    assert x.shape == (SPACE.size, SPACE.encodings[name]) and x.dtype == torch.float32
    assert len(torch.unique(x, dim=0)) == SPACE.size
    assert SPACE.encode(torch.zeros(2, 3, dtype=torch.long), name).shape == (2, 3, SPACE.encodings[name])
    assert torch.equal(x[17], SPACE.encode(torch.tensor(17), name))


def test_onehot_has_one_hot_per_decision():
    assert (SPACE.encode(ALL, "onehot").sum(-1) == len(SPACE.decisions)).all()


def test_unknown_encoding():
    with pytest.raises(ValueError, match="onehot"):
        SPACE.encode(ALL[:2], "path")


def test_graph_is_the_layer_dag():
    adj, feats = SPACE.graph(ALL)
    assert adj.shape == (SPACE.size, 6, 6) and feats.shape == (SPACE.size, 6, 11)
    assert torch.equal(adj, adj.triu(1))
    assert (adj[:, :, 1:5].sum(1) == 1).all()  # every layer reads exactly one node
    assert (adj[:, 5, :].sum(-1) == 0).all() and (adj[:, :, 5].sum(-1) >= 1).all()
    assert (feats.sum(-1) == 1).all() and (feats[:, 0, 0] == 1).all() and (feats[:, 5, 10] == 1).all()
    a, f = SPACE.graph(SPACE.from_string("gcn~0|gin~1|cheb~1|fc~2"))
    assert torch.nonzero(a).tolist() == [[0, 1], [1, 2], [1, 3], [2, 4], [3, 5], [4, 5]]
    assert f.argmax(-1).tolist() == [0, 2, 3, 4, 8, 10]


# ---------------------------------------------------------------- tables


@pytest.mark.parametrize("dataset", nbg_tables.DATASETS)
def test_full_tables_cover_the_space(dataset: str):
    raw = nbg_pkg.light_read(dataset)
    for metric, key in (("val_acc", "valid_perf"), ("test_acc", "perf"), ("latency", "latency"), ("params", "para")):
        archs, values = nbg_tables.load_table(dataset, metric)
        assert torch.equal(archs, ALL) and values.dtype == torch.float64 and torch.isfinite(values).all()
        for i in (0, 1234, SPACE.size - 1):
            assert values[i].item() == float(raw[int(SPACE.to_hash(i))][key])


def test_proteins_is_the_partial_table_of_its_ops():
    archs, values = nbg_tables.load_table("proteins", "val_acc")
    ops = SPACE.choices(ALL)[:, 4:]
    allowed = torch.tensor([nbg.OPS.index(o) for o in PROTEINS_OPS])
    assert len(archs) == 2021 and torch.equal(archs, torch.nonzero(torch.isin(ops, allowed).all(-1)).flatten())
    assert len(values) == 2021 and "proteins" not in nbg_tables.DATASETS


def test_tables_are_cached_and_returned_as_copies():
    archs, values = nbg_tables.load_table("cora", "val_acc")
    values[:] = 0
    assert nbg_tables.load_table("cora", "val_acc")[1].max() > 0


@pytest.mark.parametrize("dataset, metric, word", [("cifar10", "val_acc", "arxiv"), ("cora", "accuracy", "test_acc")])
def test_unknown_dataset_or_metric(dataset: str, metric: str, word: str):
    with pytest.raises(UserError, match=word) as err:
        nbg_tables.load_table(dataset, metric)
    assert "\n" not in str(err.value)
    assert set(nbg_tables.METRICS) == {"val_acc", "test_acc", "latency", "params"}


def test_missing_package_is_a_one_line_user_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "nas_bench_graph", None)
    with pytest.raises(UserError, match="pip install nas-bench-graph==1.4.0") as err:
        nbg.package()
    assert "\n" not in str(err.value)
