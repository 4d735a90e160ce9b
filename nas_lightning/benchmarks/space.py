"""The NAS-Bench-201 cell search space: the one vocabulary of ops, edges and architectures.

Inside the project an architecture is an integer index in ``[0, NUM_ARCHS)``; its base-5 digits,
most significant first, are the op indices of the six edges in NB201 order. Strings exist only
at the edges (files, CLIs, logs).
"""

from __future__ import annotations

import functools

import torch

from nas_lightning.errors import UserError

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NUM_OPS = len(OPS)
NUM_EDGES = len(EDGES)
NUM_NODES = 4
NUM_ARCHS = NUM_OPS**NUM_EDGES  # 15,625
SPACE_NAME = "nb201"
_POW = torch.tensor([NUM_OPS ** (NUM_EDGES - 1 - e) for e in range(NUM_EDGES)])


def ops_to_index(ops: torch.Tensor) -> torch.Tensor:
    """Op indices ``[..., 6]`` to architecture indices ``[...]``."""
    return (ops.long() * _POW).sum(-1)


def index_to_ops(index: torch.Tensor | int) -> torch.Tensor:
    """Architecture indices ``[...]`` to op indices ``[..., 6]``."""
    index = torch.as_tensor(index, dtype=torch.long)
    if index.numel() and (index.min() < 0 or index.max() >= NUM_ARCHS):
        raise ValueError(f"architecture indices must lie in [0, {NUM_ARCHS})")
    return (index.unsqueeze(-1) // _POW) % NUM_OPS


def all_indices() -> torch.Tensor:
    """Every architecture of the space, ``[NUM_ARCHS]``."""
    return torch.arange(NUM_ARCHS)


def _ops_of(index: int) -> list[int]:
    if not 0 <= index < NUM_ARCHS:
        raise ValueError(f"architecture index {index} is outside the space [0, {NUM_ARCHS})")
    return [(index // NUM_OPS ** (NUM_EDGES - 1 - e)) % NUM_OPS for e in range(NUM_EDGES)]


def to_string(index: int) -> str:
    """Official NB201 string of an architecture index."""
    ops = _ops_of(int(index))
    nodes = []
    for dst in range(1, NUM_NODES):
        parts = [f"{OPS[ops[e]]}~{src}" for e, (src, d) in enumerate(EDGES) if d == dst]
        nodes.append("|" + "|".join(parts) + "|")
    return "+".join(nodes)


def from_string(arch: str) -> int:
    """Parse an official NB201 string into an architecture index.

    Raises:
        UserError: if the string is not an NB201 cell (unknown op, wrong node or edge count).
    """
    text = str(arch).strip()
    known = _string_index().get(text)
    if known is not None:
        return known
    nodes = text.split("+")
    hint = f"expected an NB201 cell like {to_string(0)!r} with ops {', '.join(OPS)}"
    if len(nodes) != NUM_NODES - 1:
        raise UserError(f"architecture {text!r}: {len(nodes)} nodes, {hint}")
    ops = [0] * NUM_EDGES
    for dst, node in enumerate(nodes, start=1):
        if not (node.startswith("|") and node.endswith("|")):
            raise UserError(f"architecture {text!r}: node {node!r} is not enclosed in '|', {hint}")
        parts = node[1:-1].split("|")
        if len(parts) != dst:
            raise UserError(f"architecture {text!r}: node {dst} has {len(parts)} edges, needs {dst}; {hint}")
        for src, part in enumerate(parts):
            op, sep, node_in = part.rpartition("~")
            if not sep or op not in OPS:
                raise UserError(f"architecture {text!r}: unknown op {op or part!r}, {hint}")
            if node_in != str(src):
                raise UserError(f"architecture {text!r}: edge {part!r} must come from node {src}, {hint}")
            ops[EDGES.index((src, dst))] = OPS.index(op)
    return int(ops_to_index(torch.tensor(ops)))


@functools.lru_cache(maxsize=1)
def _string_index() -> dict[str, int]:
    return {to_string(i): i for i in range(NUM_ARCHS)}


def sample(n: int, generator: torch.Generator, replace: bool = False) -> torch.Tensor:
    """Draw ``n`` architecture indices uniformly (without repetition unless ``replace``)."""
    if replace:
        return torch.randint(NUM_ARCHS, (n,), generator=generator)
    return torch.randperm(NUM_ARCHS, generator=generator)[:n]


def neighbours(index: int) -> torch.Tensor:
    """All 24 architectures that differ from ``index`` on exactly one edge, ``[24]``."""
    ops = index_to_ops(int(index))
    out = ops.repeat(NUM_EDGES * (NUM_OPS - 1), 1)
    row = 0
    for e in range(NUM_EDGES):
        for op in range(NUM_OPS):
            if op != int(ops[e]):
                out[row, e] = op
                row += 1
    return ops_to_index(out)


def mutate(index: int, generator: torch.Generator) -> int:
    """One uniformly drawn neighbour of ``index`` (one edge changed to another op)."""
    nb = neighbours(index)
    return int(nb[torch.randint(len(nb), (1,), generator=generator)])


def encode_onehot(indices: torch.Tensor) -> torch.Tensor:
    """Flat one-hot encoding ``[B, 6 * 5]`` (edge-major) of architecture indices ``[B]``."""
    ops = index_to_ops(indices)
    return torch.nn.functional.one_hot(ops, NUM_OPS).flatten(-2).float()


# the four input-to-output paths of the cell, as edge positions (BANANAS-style path encoding)
PATHS: tuple[tuple[int, ...], ...] = ((3,), (0, 4), (1, 5), (0, 2, 5))


def encode_path(indices: torch.Tensor) -> torch.Tensor:
    """Path encoding ``[B, 180]``: for each input-to-output path, a one-hot of its op sequence.

    Complements the one-hot encoding with the op interactions along each path, which makes
    accuracy far easier to fit for an MLP.
    """
    ops = index_to_ops(indices)
    blocks = []
    for path in PATHS:
        code = torch.zeros_like(ops[..., 0])
        for e in path:
            code = code * NUM_OPS + ops[..., e]
        blocks.append(torch.nn.functional.one_hot(code, NUM_OPS ** len(path)))
    return torch.cat(blocks, -1).float()


def encode_graph(indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Graph form of the cells: ops as nodes (input, 6 edge-ops, output).

    Node 0 is the cell input, nodes 1..6 the edges' ops, node 7 the output; an op node is
    connected from the op nodes entering its source node (or the input) and to the ops leaving
    its target node (or the output). The adjacency is the same for every cell; the ``none`` op
    keeps its node but carries the ``none`` feature so networks can learn to cut it.

    Returns:
        ``(adjacency [B, 8, 8], features [B, 8, NUM_OPS + 2])`` with self-loops left out.
    """
    ops = index_to_ops(indices)
    batch = ops.shape[:-1]
    n = NUM_EDGES + 2
    feats = torch.zeros(*batch, n, NUM_OPS + 2)
    feats[..., 0, NUM_OPS] = 1.0
    feats[..., -1, NUM_OPS + 1] = 1.0
    feats[..., 1:-1, :NUM_OPS] = torch.nn.functional.one_hot(ops, NUM_OPS).float()
    return _GRAPH_ADJ.expand(*batch, n, n).clone(), feats


def _graph_adjacency() -> torch.Tensor:
    n = NUM_EDGES + 2
    adj = torch.zeros(n, n)
    for e, (src, dst) in enumerate(EDGES):
        if src == 0:
            adj[0, e + 1] = 1.0
        for f, (src2, _) in enumerate(EDGES):
            if src2 == dst:
                adj[e + 1, f + 1] = 1.0
        if dst == NUM_NODES - 1:
            adj[e + 1, n - 1] = 1.0
    return adj


_GRAPH_ADJ = _graph_adjacency()
