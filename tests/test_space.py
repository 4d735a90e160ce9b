"""The NB201 cell space: indices, strings, ops, neighbourhood, sampling and encodings."""

from __future__ import annotations

import re

import pytest
import torch

from nas_lightning.spaces import NB201
from nas_lightning.errors import UserError

EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
EXAMPLE_OPS = [3, 3, 4, 1, 3, 1]  # edges 0->1, 0->2, 1->2, 0->3, 1->3, 2->3


def _random_archs(n: int, seed: int = 0) -> list[int]:
    return torch.randint(NB201.size, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


# ---------------------------------------------------------------- constants and index <-> ops


def test_space_constants():
    assert NB201.OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert NB201.EDGES == ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    assert NB201.size == 15_625 == NB201.num_ops**NB201.num_edges


def test_index_ops_round_trip_all_archs():
    idx = NB201.all_indices()
    assert idx.shape == (NB201.size,)
    assert torch.equal(idx, torch.arange(NB201.size))
    ops = NB201.choices(idx)
    assert ops.shape == (NB201.size, NB201.num_edges)
    assert int(ops.min()) == 0 and int(ops.max()) == NB201.num_ops - 1
    assert torch.equal(NB201.from_choices(ops), idx)
    # a bijection: every op tuple appears exactly once
    assert len({tuple(r) for r in ops.tolist()}) == NB201.size


def test_index_is_base5_most_significant_edge_first():
    assert NB201.choices(0).tolist() == [0] * 6
    assert NB201.choices(1).tolist() == [0, 0, 0, 0, 0, 1]
    assert NB201.choices(5**5).tolist() == [1, 0, 0, 0, 0, 0]
    assert NB201.choices(NB201.size - 1).tolist() == [4] * 6
    # batched shapes are kept
    assert NB201.choices(torch.zeros(2, 3, dtype=torch.long)).shape == (2, 3, 6)


def _parse_reference(arch: str) -> list[int]:
    """An independent parser of the official string, giving ops in EDGES order."""
    ops = {}
    for dst, node in enumerate(arch.split("+"), start=1):
        for part in node.strip("|").split("|"):
            op, src = part.split("~")
            ops[(int(src), dst)] = NB201.OPS.index(op)
    return [ops[e] for e in NB201.EDGES]


def test_string_round_trip_all_archs():
    idx = NB201.all_indices().tolist()
    strings = [NB201.to_string(i) for i in idx]
    assert len(set(strings)) == NB201.size
    assert [NB201.from_string(s) for s in strings] == idx
    # the strings say the same ops as index_to_ops, edge by edge
    ops = NB201.choices(NB201.all_indices()).tolist()
    pattern = re.compile(r"^\|\w+~0\|\+\|\w+~0\|\w+~1\|\+\|\w+~0\|\w+~1\|\w+~2\|$")
    for i in range(0, NB201.size, 7):
        assert pattern.match(strings[i]), strings[i]
        assert _parse_reference(strings[i]) == ops[i]


def test_example_string_parses_in_edge_order():
    i = NB201.from_string(EXAMPLE)
    assert NB201.choices(i).tolist() == EXAMPLE_OPS
    assert NB201.to_string(i) == EXAMPLE
    assert NB201.from_string(f"  {EXAMPLE}\n") == i  # surrounding whitespace is tolerated


def test_from_string_parser_agrees_with_lookup(monkeypatch):
    # the string -> index table answers valid strings; the parser behind it must agree with it
    strings = {i: NB201.to_string(i) for i in _random_archs(200, seed=9) + [0, NB201.size - 1]}
    monkeypatch.setattr(NB201, "_string_index", lambda: {})
    for i, s in strings.items():
        assert NB201.from_string(s) == i
    assert NB201.choices(NB201.from_string(EXAMPLE)).tolist() == EXAMPLE_OPS


# ---------------------------------------------------------------- bad strings


@pytest.mark.parametrize(
    ("arch", "named"),
    [
        # unknown op
        ("|conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|", "conv_3x3"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|max_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|", "max_pool_3x3"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|sep_conv_5x5~1|skip_connect~2|", "sep_conv_5x5"),
        # wrong source node
        ("|nor_conv_3x3~1|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|", "nor_conv_3x3~1"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~2|skip_connect~2|", "nor_conv_3x3~2"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|", "avg_pool_3x3"),
        # wrong edge count in a node
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|", "node 2"),
        ("|nor_conv_3x3~0|none~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|", "node 1"),
        # wrong node count
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|", "2 nodes"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|+|none~0|", "4 nodes"),
        # strings of other spaces
        ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal_concat=[2, 3])", "Genotype"),
        ("input|conv3x3-bn-relu|conv1x1-bn-relu|maxpool3x3|output", "conv3x3-bn-relu"),
        ("0 1 2 3 4 5", "0 1 2 3 4 5"),
        # not enclosed in '|'
        ("nor_conv_3x3~0+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|", "nor_conv_3x3~0"),
    ],
)
def test_bad_strings_raise_user_error_naming_the_value(arch, named):
    with pytest.raises(UserError) as info:
        NB201.from_string(arch)
    msg = str(info.value)
    assert named in msg
    assert "nor_conv_3x3" in msg or "expected" in msg  # the message points at the valid vocabulary


def test_empty_string_raises_user_error():
    for text in ("", "   ", "+", "||"):
        with pytest.raises(UserError, match="architecture"):
            NB201.from_string(text)


def test_user_error_is_a_value_error():
    assert issubclass(UserError, ValueError)


# ---------------------------------------------------------------- neighbourhood and mutation


def test_neighbours_differ_on_exactly_one_edge():
    for a in _random_archs(300, seed=1) + [0, NB201.size - 1]:
        nb = NB201.neighbours(a)
        assert nb.shape == (24,)
        assert len(set(nb.tolist())) == 24
        assert a not in nb.tolist()
        assert bool(((nb >= 0) & (nb < NB201.size)).all())
        diff = NB201.choices(nb) != NB201.choices(a)
        assert diff.sum(1).tolist() == [1] * 24
        # 4 neighbours per edge: every other op on every edge
        assert diff.sum(0).tolist() == [4] * 6


def test_neighbour_relation_is_symmetric():
    for a in _random_archs(40, seed=2):
        for b in NB201.neighbours(a).tolist():
            assert a in NB201.neighbours(b).tolist()


def test_mutate_gives_neighbours_and_is_deterministic():
    archs = _random_archs(50, seed=3)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    out1 = [NB201.mutate(a, g1) for a in archs]
    out2 = [NB201.mutate(a, g2) for a in archs]
    assert out1 == out2
    for a, m in zip(archs, out1):
        assert isinstance(m, int)
        assert m in NB201.neighbours(a).tolist()
    g3 = torch.Generator().manual_seed(8)
    assert [NB201.mutate(a, g3) for a in archs] != out1


def test_mutate_reaches_every_neighbour():
    g = torch.Generator().manual_seed(0)
    a = NB201.from_string(EXAMPLE)
    drawn = {NB201.mutate(a, g) for _ in range(500)}
    assert drawn == set(NB201.neighbours(a).tolist())


# ---------------------------------------------------------------- sampling


def test_sample_without_replacement_is_unique_and_reproducible():
    s = NB201.sample(2000, torch.Generator().manual_seed(0))
    assert s.shape == (2000,)
    assert len(set(s.tolist())) == 2000
    assert bool(((s >= 0) & (s < NB201.size)).all())
    assert torch.equal(s, NB201.sample(2000, torch.Generator().manual_seed(0)))
    assert not torch.equal(s, NB201.sample(2000, torch.Generator().manual_seed(1)))
    full = NB201.sample(NB201.size, torch.Generator().manual_seed(0))
    assert torch.equal(full.sort().values, NB201.all_indices())


def test_sample_with_replacement_in_range():
    s = NB201.sample(30_000, torch.Generator().manual_seed(0), replace=True)
    assert s.shape == (30_000,)
    assert bool(((s >= 0) & (s < NB201.size)).all())
    assert len(set(s.tolist())) < 30_000  # more draws than archs: some repeat


# ---------------------------------------------------------------- encodings


def test_encode_onehot():
    idx = torch.tensor(_random_archs(64, seed=4) + [0, NB201.size - 1])
    x = NB201.encode_onehot(idx)
    assert x.shape == (len(idx), 30)
    assert x.dtype == torch.float32
    blocks = x.view(len(idx), 6, 5)
    assert torch.equal(blocks.sum(-1), torch.ones(len(idx), 6))
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(blocks.argmax(-1), NB201.choices(idx))
    # distinct archs get distinct codes
    assert len({tuple(r) for r in x.tolist()}) == len(set(idx.tolist()))


def test_encode_graph_shapes_and_features():
    idx = torch.tensor(_random_archs(32, seed=5) + [NB201.from_string(EXAMPLE)])
    adj, feats = NB201.graph(idx)
    b, n = len(idx), NB201.num_edges + 2
    assert adj.shape == (b, n, n)
    assert feats.shape == (b, n, NB201.num_ops + 2)
    assert torch.equal(feats.sum(-1), torch.ones(b, n))  # one feature a node
    assert bool((feats[:, 0, NB201.num_ops] == 1).all())  # input flag
    assert bool((feats[:, -1, NB201.num_ops + 1] == 1).all())  # output flag
    assert torch.equal(feats[:, 1:-1, : NB201.num_ops].argmax(-1), NB201.choices(idx))
    assert feats[-1, 1:-1].argmax(-1).tolist() == EXAMPLE_OPS
    assert float(feats[:, 1:-1, NB201.num_ops:].sum()) == 0.0


def test_encode_graph_adjacency_is_the_cell_dag():
    adj, _ = NB201.graph(torch.tensor([0, 123, NB201.size - 1]))
    assert torch.equal(adj[0], adj[1]) and torch.equal(adj[0], adj[2])
    a = adj[0]
    n = a.shape[0]
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a, torch.triu(a, diagonal=1))  # strictly upper triangular: a DAG, no self-loops
    assert float(torch.linalg.matrix_power(a, n).abs().sum()) == 0.0  # nilpotent
    out = n - 1
    for e, (src, dst) in enumerate(NB201.EDGES):
        assert a[0, e + 1] == (1.0 if src == 0 else 0.0), (e, "input")
        assert a[e + 1, out] == (1.0 if dst == NB201.NUM_NODES - 1 else 0.0), (e, "output")
        for f, (src2, _) in enumerate(NB201.EDGES):
            assert a[e + 1, f + 1] == (1.0 if src2 == dst else 0.0), (e, f)
    assert a[0, out] == 0.0
    assert float(a[:, 0].sum()) == 0.0 and float(a[out].sum()) == 0.0
    # every op node lies on a path input -> output
    reach = torch.linalg.matrix_power(a + torch.eye(n), n) > 0
    assert bool(reach[0, 1:].all()) and bool(reach[:-1, out].all())


def test_encode_graph_returns_fresh_adjacency():
    adj, _ = NB201.graph(torch.tensor([1, 2]))
    adj.zero_()
    again, _ = NB201.graph(torch.tensor([1, 2]))
    assert float(again.sum()) > 0


@pytest.mark.parametrize("index", [-1, NB201.size])
def test_to_string_rejects_out_of_range_index(index):
    with pytest.raises((ValueError, IndexError)):
        NB201.to_string(index)
