"""The NAS-Bench-Graph space (Qin et al., NeurIPS 2022): 26,206 GNN macro architectures.

An architecture has four computing layers; each reads one earlier node (``0`` is the graph
input, ``k`` the output of layer ``k``) and applies one op of :data:`OPS`; every layer no other
layer reads (a leaf) feeds the output. The package ``nas-bench-graph`` merges isomorphic and
skip-equivalent variants into one canonical form; its tables hold exactly those 26,206 forms
(all-``skip`` is excluded).

**String form**: the four layers in order, each ``op~input``, joined by ``|``, e.g.
``gcn~0|gin~1|cheb~1|fc~2`` (layer 1 applies gcn to the input, layers 2 and 3 read layer 1,
layer 4 reads layer 2). :meth:`NBGSpace.to_string` writes the canonical form;
:meth:`NBGSpace.from_string` also accepts any equivalent form and maps it, with the package's own
``Arch.valid_hash``, to the canonical architecture.

**Index order**: indices ``0..26205`` follow the package's hash ascending, which is the same as
the decision tuple ascending (links, then ops, op values are positions in :data:`OPS`).
:meth:`NBGSpace.to_hash` / :meth:`NBGSpace.from_hash` map indices to package hashes and back.

**Decisions**: ``(1, 2, 3, 4, 9, 9, 9, 9)``: the input of each layer (layer ``i`` reads one of
nodes ``0..i-1``; the first always reads the input), then the op of each layer.
:meth:`NBGSpace.from_choices` is strict: a non-canonical combination gives ``-1``.

**Neighbours**: every canonical architecture that differs in exactly one decision (symmetric).

**Encodings**: ``onehot`` (46: one-hot of every decision), ``adjacency`` (51: the upper triangle
of the 6-node DAG input, 4 layers, output, plus the ops' one-hots) and ``layers`` (112: per layer
the one-hots of its op, input link, the kind of node it reads (input or an op) and its depth, and
a leaf flag; the default: a small MLP ranks held-out val_acc best with it on cora, pubmed, arxiv
and photo, from 100 or 1,000 training architectures). :meth:`NBGSpace.graph`
gives the 6-node DAG with node features one-hot over ``input, *OPS, output`` (11).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import time
from dataclasses import dataclass
from types import ModuleType

import torch

from nas_lightning.errors import UserError
from nas_lightning.spaces.base import SearchSpace

log = logging.getLogger(__name__)

OPS: tuple[str, ...] = ("gat", "gcn", "gin", "cheb", "sage", "arma", "graph", "fc", "skip")
NUM_LAYERS = 4
NUM_NODES = NUM_LAYERS + 2  # input, four layers, output
DECISIONS: tuple[int, ...] = (1, 2, 3, 4) + (len(OPS),) * NUM_LAYERS
NUM_ARCHS = 26_206
EXAMPLE = "gcn~0|gin~1|cheb~1|fc~2"
_STRIDES: tuple[int, ...] = tuple(
    int(torch.tensor(DECISIONS[d + 1 :], dtype=torch.long).prod()) for d in range(len(DECISIONS))
)
_NUM_COMBOS = int(torch.tensor(DECISIONS).prod())  # 157,464 decision tuples
_FORM = f"expected four layers 'op~input' joined by '|' (layer i reads node 0..i-1, ops {', '.join(OPS)}), e.g. {EXAMPLE!r}"


def package() -> ModuleType:
    """The ``nas_bench_graph`` package.

    Raises:
        UserError: if it is not installed.
    """
    try:
        import nas_bench_graph
    except ModuleNotFoundError as err:
        raise UserError("NAS-Bench-Graph needs its package; run: pip install nas-bench-graph==1.4.0") from err
    return nas_bench_graph


@dataclass(frozen=True)
class _Index:
    """The canonical architectures in index order and their lookups."""

    hashes: torch.Tensor  # [n] package hash, ascending
    choices: torch.Tensor  # [n, 8] links then ops
    dense: torch.Tensor  # [157464] decision-tuple code -> index or -1


def _code(choices: torch.Tensor) -> torch.Tensor:
    return (choices.long() * torch.tensor(_STRIDES)).sum(-1)


@functools.lru_cache(maxsize=1)
def _index() -> _Index:
    """Enumerate the space with the package's own ``all_archs`` and ``Arch.hash_arch`` (once)."""
    architecture = package().architecture
    if tuple(architecture.gnn_list) != OPS:
        raise RuntimeError(f"nas_bench_graph ops {architecture.gnn_list} differ from {OPS}; pin nas-bench-graph==1.4.0")
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # all_archs prints its count
        archs = architecture.all_archs()
    op_id = {name: i for i, name in enumerate(OPS)}
    rows = sorted((a.hash_arch(), *a.link, *(op_id[o] for o in a.ops)) for a in archs)
    table = torch.tensor(rows, dtype=torch.long)
    hashes, choices = table[:, 0].contiguous(), table[:, 1:].contiguous()
    if len(hashes) != NUM_ARCHS or len(torch.unique(hashes)) != NUM_ARCHS:
        raise RuntimeError(f"nas_bench_graph enumerates {len(hashes)} architectures, expected {NUM_ARCHS}")
    dense = torch.full((_NUM_COMBOS,), -1, dtype=torch.long)
    dense[_code(choices)] = torch.arange(NUM_ARCHS)
    log.debug("NAS-Bench-Graph index built in %.2f s", time.perf_counter() - start)
    return _Index(hashes, choices, dense)


@functools.lru_cache(maxsize=1)
def _neighbour_csr() -> tuple[torch.Tensor, torch.Tensor]:
    """``(offsets [n + 1], flat neighbour indices)``: one-decision moves, decision then value order."""
    idx = _index()
    codes = _code(idx.choices)
    cands = []
    for d, card in enumerate(DECISIONS):
        for v in range(card):
            moved = codes + (v - idx.choices[:, d]) * _STRIDES[d]
            cands.append(torch.where(idx.choices[:, d] == v, -1, idx.dense[moved]))
    cand = torch.stack(cands, 1)
    keep = cand >= 0
    offsets = torch.zeros(NUM_ARCHS + 1, dtype=torch.long)
    offsets[1:] = keep.sum(1).cumsum(0)
    return offsets, cand[keep]


def _links_ops(indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    c = _index().choices[indices]
    return c[..., :NUM_LAYERS], c[..., NUM_LAYERS:]


def _graph(indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    links, ops = _links_ops(indices)
    batch = indices.shape
    adj = torch.zeros(*batch, NUM_NODES, NUM_NODES)
    adj[..., :, 1 : NUM_LAYERS + 1].scatter_(-2, links.unsqueeze(-2), 1.0)
    read = adj[..., 1 : NUM_LAYERS + 1, 1 : NUM_LAYERS + 1].sum(-1)  # how many layers read each layer
    adj[..., 1 : NUM_LAYERS + 1, NUM_NODES - 1] = (read == 0).float()
    kinds = torch.cat([torch.zeros(*batch, 1, dtype=torch.long), ops + 1, torch.full((*batch, 1), len(OPS) + 1)], -1)
    return adj, torch.nn.functional.one_hot(kinds, len(OPS) + 2).float()


def _onehot(indices: torch.Tensor) -> torch.Tensor:
    c = _index().choices[indices]
    return torch.cat([torch.nn.functional.one_hot(c[..., d], k) for d, k in enumerate(DECISIONS)], -1).float()


def _adjacency(indices: torch.Tensor) -> torch.Tensor:
    adj, _ = _graph(indices)
    rows, cols = torch.triu_indices(NUM_NODES, NUM_NODES, 1)
    _, ops = _links_ops(indices)
    return torch.cat([adj[..., rows, cols], torch.nn.functional.one_hot(ops, len(OPS)).flatten(-2).float()], -1)


def _depths(links: torch.Tensor) -> torch.Tensor:
    """Distance of each layer from the input (1..4), ``[..., 4]``."""
    depth = torch.zeros_like(links)
    for i in range(NUM_LAYERS):
        parent = torch.gather(depth, -1, (links[..., i : i + 1] - 1).clamp(min=0)).squeeze(-1)
        depth[..., i] = torch.where(links[..., i] == 0, 1, parent + 1)
    return depth


def _layers(indices: torch.Tensor) -> torch.Tensor:
    """Per layer: op, input link, kind of the input node, depth, leaf; flattened layer-major."""
    adj, feats = _graph(indices)
    links, ops = _links_ops(indices)
    parent = torch.gather(feats.argmax(-1), -1, links)  # 0 input, 1..9 op of the layer read
    one_hot = torch.nn.functional.one_hot
    parts = [one_hot(ops, len(OPS)), one_hot(links, NUM_LAYERS), one_hot(parent, len(OPS) + 1),
             one_hot(_depths(links) - 1, NUM_LAYERS), adj[..., 1 : NUM_LAYERS + 1, NUM_NODES - 1].long().unsqueeze(-1)]
    return torch.cat(parts, -1).flatten(-2).float()


_ENCODERS = {"onehot": _onehot, "adjacency": _adjacency, "layers": _layers}


@functools.lru_cache(maxsize=None)
def _encoding_table(name: str) -> torch.Tensor:
    return _ENCODERS[name](torch.arange(NUM_ARCHS))


class NBGSpace(SearchSpace):
    """NAS-Bench-Graph's 26,206 canonical architectures (see the module docstring)."""

    name = "nbg"
    size = NUM_ARCHS
    decisions = DECISIONS
    encodings = {"onehot": 46, "adjacency": 51, "layers": 112}
    default_encoding = "layers"
    example = EXAMPLE

    # -- strings ----------------------------------------------------------------------------
    def to_string(self, index: int) -> str:
        """Canonical ``op~input|...`` string of an index."""
        row = _index().choices[int(self.check(int(index)))].tolist()
        return "|".join(f"{OPS[o]}~{k}" for k, o in zip(row[:NUM_LAYERS], row[NUM_LAYERS:]))

    def from_string(self, text: str) -> int:
        """Parse ``op~input|...`` (canonical or any equivalent form).

        Raises:
            UserError: for a malformed string, an unknown op, an input not before its layer, or
                the all-``skip`` architecture (not in the benchmark).
        """
        text = str(text).strip()
        parts = text.split("|")
        if len(parts) != NUM_LAYERS:
            raise UserError(f"architecture {text!r} has {len(parts)} layers, needs {NUM_LAYERS}; {_FORM}")
        links, ops = [], []
        for layer, part in enumerate(parts, start=1):
            op, sep, node = part.strip().partition("~")
            if not sep or op not in OPS:
                raise UserError(f"architecture {text!r}: layer {layer} {part!r} is not a known 'op~input'; {_FORM}")
            if not (node.isascii() and node.isdigit()) or int(node) >= layer:
                raise UserError(f"architecture {text!r}: layer {layer} must read node 0..{layer - 1}, got {node!r}; {_FORM}")
            links.append(int(node))
            ops.append(OPS.index(op))
        found = int(_index().dense[_code(torch.tensor(links + ops))])
        if found >= 0:
            return found
        if all(OPS[o] == "skip" for o in ops):
            raise UserError(f"architecture {text!r} is all skip, which NAS-Bench-Graph excludes; {_FORM}")
        found = int(self.from_hash(torch.tensor([package().Arch(links, [OPS[o] for o in ops]).valid_hash()]))[0])
        log.debug("architecture %r is equivalent to canonical %r", text, self.to_string(found))
        return found

    # -- package hashes ---------------------------------------------------------------------
    def to_hash(self, indices: torch.Tensor | int) -> torch.Tensor:
        """The package's ``Arch.hash_arch`` of indices (its table keys), ``[...]``."""
        return _index().hashes[self.check(indices)]

    def from_hash(self, hashes: torch.Tensor) -> torch.Tensor:
        """Indices of package hashes ``[...]``.

        Raises:
            UserError: if a hash is not one of the 26,206 canonical architectures.
        """
        hashes = torch.as_tensor(hashes, dtype=torch.long)
        table = _index().hashes
        pos = torch.searchsorted(table, hashes).clamp(max=NUM_ARCHS - 1)
        bad = table[pos] != hashes
        if bad.any():
            raise UserError(f"hashes {hashes[bad][:5].tolist()} are not NAS-Bench-Graph architectures; use Arch(...).valid_hash()")
        return pos

    # -- decisions --------------------------------------------------------------------------
    def choices(self, indices: torch.Tensor | int) -> torch.Tensor:
        """Links then ops, ``[..., 8]``."""
        return _index().choices[self.check(indices)]

    def from_choices(self, choices: torch.Tensor) -> torch.Tensor:
        """Indices of decision tuples; ``-1`` for non-canonical or out-of-range tuples."""
        c = torch.as_tensor(choices, dtype=torch.long)
        ok = ((c >= 0) & (c < torch.tensor(DECISIONS))).all(-1)
        return torch.where(ok, _index().dense[_code(torch.where(ok.unsqueeze(-1), c, 0))], -1)

    # -- moves ------------------------------------------------------------------------------
    def neighbours(self, index: int) -> torch.Tensor:
        """Canonical architectures one decision away (decision, then value order)."""
        i = int(self.check(int(index)))
        offsets, flat = _neighbour_csr()
        return flat[offsets[i] : offsets[i + 1]].clone()

    def neighbour_counts(self) -> torch.Tensor:
        """How many neighbours each architecture has, ``[size]``."""
        offsets, _ = _neighbour_csr()
        return offsets.diff()

    # -- encodings --------------------------------------------------------------------------
    def encode(self, indices: torch.Tensor, encoding: str) -> torch.Tensor:
        """Flat encoding ``[..., encodings[encoding]]`` (``onehot``, ``adjacency`` or ``layers``)."""
        if encoding not in self.encodings:
            raise ValueError(f"unknown encoding {encoding!r} for space nbg; choose one of {', '.join(self.encodings)}")
        return _encoding_table(encoding)[self.check(indices)]

    def graph(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(adjacency [..., 6, 6], node features [..., 6, 11])`` of the layer DAG."""
        return _graph(self.check(indices))


NBG = NBGSpace()  # cheap: the package is read on the first lookup, not here
