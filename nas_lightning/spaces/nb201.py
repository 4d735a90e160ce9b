"""The NAS-Bench-201 cell space: 6 edges of a 4-node cell, one of 5 ops each (15,625 cells).

An architecture index's base-5 digits, most significant first, are the op indices of the six
edges in NB201 order. The user-facing string is NB201's official one.
"""

from __future__ import annotations

import functools

import torch
from torch.nn import functional as F

from nas_lightning.errors import UserError
from nas_lightning.spaces.base import SearchSpace


OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
# the four input-to-output paths of the cell, as edge positions (BANANAS-style path encoding)
PATHS: tuple[tuple[int, ...], ...] = ((3,), (0, 4), (1, 5), (0, 2, 5))
_ONEHOT, _PATH = len(EDGES) * len(OPS), sum(len(OPS) ** len(p) for p in PATHS)


class NB201Space(SearchSpace):
    """NAS-Bench-201's cell space (use the instance :data:`NB201`)."""

    name = "nb201"
    OPS, EDGES, PATHS = OPS, EDGES, PATHS
    NUM_NODES = 4
    size = len(OPS) ** len(EDGES)  # 15,625
    decisions = (len(OPS),) * len(EDGES)
    encodings = {"onehot": _ONEHOT, "path": _PATH, "onehot+path": _ONEHOT + _PATH}
    default_encoding = "onehot+path"
    example = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"

    def __init__(self) -> None:
        n_ops, n_edges = len(self.OPS), len(self.EDGES)
        self._pow = torch.tensor([n_ops ** (n_edges - 1 - e) for e in range(n_edges)])
        self._adjacency = self._graph_adjacency()

    @property
    def num_ops(self) -> int:
        return len(self.OPS)

    @property
    def num_edges(self) -> int:
        return len(self.EDGES)

    # -- decisions (op per edge) ------------------------------------------------------------
    def choices(self, indices: torch.Tensor | int) -> torch.Tensor:
        """Op indices ``[..., 6]`` of architecture indices ``[...]``."""
        index = self.check(indices)
        return (index.unsqueeze(-1) // self._pow) % self.num_ops

    def ops(self, index: int) -> tuple[str, ...]:
        """The operation names of a cell's six edges, in edge order (what the network is built from)."""
        return tuple(self.OPS[o] for o in self.choices(int(index)).tolist())

    def from_choices(self, choices: torch.Tensor) -> torch.Tensor:
        """Architecture indices ``[...]`` of op indices ``[..., 6]`` (every combination is a cell)."""
        return (choices.long() * self._pow).sum(-1)

    # -- strings ----------------------------------------------------------------------------
    def to_string(self, index: int) -> str:
        ops = self.choices(int(index)).tolist()
        nodes = []
        for dst in range(1, self.NUM_NODES):
            parts = [f"{self.OPS[ops[e]]}~{src}" for e, (src, d) in enumerate(self.EDGES) if d == dst]
            nodes.append("|" + "|".join(parts) + "|")
        return "+".join(nodes)

    def from_string(self, text: str) -> int:
        """Parse an official NB201 string.

        Raises:
            UserError: if the string is not an NB201 cell (unknown op, wrong node or edge count).
        """
        text = str(text).strip()
        known = self._string_index().get(text)
        if known is not None:
            return known
        nodes = text.split("+")
        hint = f"expected an NB201 cell like {self.to_string(0)!r} with ops {', '.join(self.OPS)}"
        if len(nodes) != self.NUM_NODES - 1:
            raise UserError(f"architecture {text!r}: {len(nodes)} nodes, {hint}")
        ops = [0] * self.num_edges
        for dst, node in enumerate(nodes, start=1):
            if not (node.startswith("|") and node.endswith("|")):
                raise UserError(f"architecture {text!r}: node {node!r} is not enclosed in '|', {hint}")
            parts = node[1:-1].split("|")
            if len(parts) != dst:
                raise UserError(f"architecture {text!r}: node {dst} has {len(parts)} edges, needs {dst}; {hint}")
            for src, part in enumerate(parts):
                op, sep, node_in = part.rpartition("~")
                if not sep or op not in self.OPS:
                    raise UserError(f"architecture {text!r}: unknown op {op or part!r}, {hint}")
                if node_in != str(src):
                    raise UserError(f"architecture {text!r}: edge {part!r} must come from node {src}, {hint}")
                ops[self.EDGES.index((src, dst))] = self.OPS.index(op)
        return int(self.from_choices(torch.tensor(ops)))

    @functools.lru_cache(maxsize=1)
    def _string_index(self) -> dict[str, int]:
        return {self.to_string(i): i for i in range(self.size)}

    # -- moves ------------------------------------------------------------------------------
    def neighbours(self, index: int) -> torch.Tensor:
        """All 24 architectures that differ from ``index`` on exactly one edge, edge-major, ``[24]``."""
        ops = self.choices(int(index))
        out = ops.repeat(self.num_edges * (self.num_ops - 1), 1)
        row = 0
        for e in range(self.num_edges):
            for op in range(self.num_ops):
                if op != int(ops[e]):
                    out[row, e] = op
                    row += 1
        return self.from_choices(out)

    # -- encodings --------------------------------------------------------------------------
    def encode(self, indices: torch.Tensor, encoding: str) -> torch.Tensor:
        if encoding == "onehot":
            return self.encode_onehot(indices)
        if encoding == "path":
            return self.encode_path(indices)
        if encoding == "onehot+path":
            return torch.cat([self.encode_onehot(indices), self.encode_path(indices)], -1)
        raise ValueError(f"unknown encoding {encoding!r} for space {self.name}; choose one of {', '.join(self.encodings)}")

    def encode_onehot(self, indices: torch.Tensor) -> torch.Tensor:
        """Flat one-hot encoding ``[..., 6 * 5]`` (edge-major)."""
        return F.one_hot(self.choices(indices), self.num_ops).flatten(-2).float()

    def encode_path(self, indices: torch.Tensor) -> torch.Tensor:
        """Path encoding ``[..., 180]``: for each input-to-output path, a one-hot of its op sequence
        (the op interactions along each path, which makes accuracy far easier to fit)."""
        ops = self.choices(indices)
        blocks = []
        for path in self.PATHS:
            code = torch.zeros_like(ops[..., 0])
            for e in path:
                code = code * self.num_ops + ops[..., e]
            blocks.append(F.one_hot(code, self.num_ops ** len(path)))
        return torch.cat(blocks, -1).float()

    def graph(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Graph form of the cells: ops as nodes (input, 6 edge-ops, output).

        Node 0 is the cell input, nodes 1..6 the edges' ops, node 7 the output; an op node is
        connected from the op nodes entering its source node (or the input) and to the ops leaving
        its target node (or the output). The adjacency is the same for every cell; the ``none`` op
        keeps its node but carries the ``none`` feature so networks can learn to cut it.

        Returns:
            ``(adjacency [..., 8, 8], features [..., 8, 7])`` with self-loops left out.
        """
        ops = self.choices(indices)
        batch = ops.shape[:-1]
        n = self.num_edges + 2
        feats = torch.zeros(*batch, n, self.num_ops + 2)
        feats[..., 0, self.num_ops] = 1.0
        feats[..., -1, self.num_ops + 1] = 1.0
        feats[..., 1:-1, : self.num_ops] = F.one_hot(ops, self.num_ops).float()
        return self._adjacency.expand(*batch, n, n).clone(), feats

    def _graph_adjacency(self) -> torch.Tensor:
        n = self.num_edges + 2
        adj = torch.zeros(n, n)
        for e, (src, dst) in enumerate(self.EDGES):
            if src == 0:
                adj[0, e + 1] = 1.0
            for f, (src2, _) in enumerate(self.EDGES):
                if src2 == dst:
                    adj[e + 1, f + 1] = 1.0
            if dst == self.NUM_NODES - 1:
                adj[e + 1, n - 1] = 1.0
        return adj


NB201 = NB201Space()
