"""Performance predictors: plain ``nn.Module``s from encoded architectures to a score.

A predictor maps ``x [N, ...]`` and an optional task context ``z [C]`` to scores ``[N]``; the
context (see :class:`ContextEncoder`) modulates the hidden features (FiLM). ``encode`` turns
architecture indices into the predictor's input, so meta-learning code only passes indices.
"""

from __future__ import annotations

import torch
from torch import nn

from nas_lightning.spaces import NB201, SearchSpace


class _FiLM(nn.Module):
    """Scale and shift of hidden features from a context vector (identity at ``z = 0``)."""

    def __init__(self, context: int, hidden: int) -> None:
        super().__init__()
        self.proj = nn.Linear(context, 2 * hidden)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.proj(z).chunk(2, -1)
        return h * (1 + gamma) + beta


class MLPPredictor(nn.Module):
    """An MLP on a flat encoding of the space (NB201: one-hot of the 6 edges' ops, optionally with
    path features).

    Args:
        hidden: width of the hidden layers.
        layers: number of hidden layers.
        encoding: one of the space's flat encodings (``space.encodings``).
        context: size of the task context vector (0: no conditioning).
        space: the search space.

    Raises:
        ValueError: for an encoding the space does not have.
    """

    def __init__(self, hidden: int = 128, layers: int = 2, encoding: str = "onehot+path", context: int = 0,
                 space: SearchSpace = NB201) -> None:
        super().__init__()
        if encoding not in space.encodings:
            raise ValueError(f"unknown encoding {encoding!r} for space {space.name}; choose one of {', '.join(space.encodings)}")
        self.encoding, self.space = encoding, space
        self.input_dim = space.encodings[encoding]
        dims = [self.input_dim] + [hidden] * layers
        blocks: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            blocks += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*blocks)
        self.film = _FiLM(context, hidden) if context else None
        self.head = nn.Linear(dims[-1], 1)

    def encode(self, indices: torch.Tensor) -> torch.Tensor:
        """Architecture indices ``[...]`` to inputs ``[..., D]``."""
        return self.space.encode(indices, self.encoding)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``[N]`` of encoded architectures ``[N, D]`` under context ``z [C]``."""
        h = self.body(x)
        if self.film is not None and z is not None:
            h = self.film(h, z)
        return self.head(h).squeeze(-1)


class GraphPredictor(nn.Module):
    """A graph convolutional network on the space's graph form (``space.graph``).

    Where every architecture has the same adjacency (NB201: ops as nodes, the cell's wiring fixed)
    the input is the node features only; where it varies (NAS-Bench-Graph: which layer reads
    which) the input carries each architecture's adjacency too, and propagation uses it.

    Args:
        hidden: width of the node states.
        layers: number of graph convolution rounds.
        encoding: must be ``"graph"`` (kept for a uniform constructor).
        context: size of the task context vector (0: no conditioning).
        space: the search space.
    """

    def __init__(self, hidden: int = 64, layers: int = 3, encoding: str = "graph", context: int = 0,
                 space: SearchSpace = NB201) -> None:
        super().__init__()
        if encoding != "graph":
            raise ValueError(f"the gcn predictor takes encoding 'graph', got {encoding!r}")
        self.encoding, self.space = encoding, space
        adj, feats = space.graph(space.all_indices())
        n, f = feats.shape[-2:]
        self.fixed = bool((adj == adj[:1]).all())  # one adjacency for the whole space
        self.register_buffer("prop", _propagation(adj[0]), persistent=False)
        self.nodes, self.features = n, f
        self.input_dim = n * f + (0 if self.fixed else n * n)
        self.embed = nn.Linear(f, hidden)
        self.convs = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.film = _FiLM(context, hidden) if context else None
        self.head = nn.Linear(hidden, 1)

    def encode(self, indices: torch.Tensor) -> torch.Tensor:
        """Architecture indices ``[...]`` to flattened node features ``[..., nodes * features]``
        (then the flattened adjacency ``[..., nodes * nodes]`` where it varies)."""
        adj, feats = self.space.graph(indices)
        return feats.flatten(-2) if self.fixed else torch.cat([feats.flatten(-2), adj.flatten(-2)], -1)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``[N]`` of encoded architectures ``[N, input_dim]`` under context ``z [C]``."""
        split = self.nodes * self.features
        h = torch.relu(self.embed(x[..., :split].unflatten(-1, (self.nodes, self.features))))
        prop = self.prop if self.fixed else _propagation(x[..., split:].unflatten(-1, (self.nodes, self.nodes)))
        for conv in self.convs:
            h = torch.relu(conv(prop @ h)) + h
        h = h.mean(-2)
        if self.film is not None and z is not None:
            h = self.film(h, z)
        return self.head(h).squeeze(-1)


def _propagation(adj: torch.Tensor) -> torch.Tensor:
    """Row-normalised propagation ``[..., n, n]``: both ways along the DAG, with self loops."""
    both = adj + adj.transpose(-1, -2) + torch.eye(adj.shape[-1], device=adj.device)
    return both / both.sum(-1, keepdim=True)


class ContextEncoder(nn.Module):
    """Encodes a task from its support set (DeepSets over (architecture, value) pairs), as HELP
    conditions on a device's measured reference architectures, plus the task's direction.

    The direction (was the raw metric to be maximised or minimised?) is metadata of the task
    spec, not a value: it lets the prior tell accuracy-like from cost-like tasks before any
    query.

    Args:
        input_dim: size of an encoded architecture.
        hidden: width of the pair encoder.
        context: size of the context vector.
    """

    def __init__(self, input_dim: int, hidden: int = 64, context: int = 32) -> None:
        super().__init__()
        self.pair = nn.Sequential(nn.Linear(input_dim + 1, hidden), nn.ReLU(), nn.Linear(hidden, context))
        self.direction = nn.Embedding(2, context)
        self.out = nn.Sequential(nn.ReLU(), nn.Linear(context, context))

    def forward(self, xs: torch.Tensor, ys: torch.Tensor, mask: torch.Tensor, maximise: torch.Tensor) -> torch.Tensor:
        """Context ``[T, C]`` of support sets ``xs [T, K, D]``, standardised ``ys [T, K]``,
        valid entries ``mask [T, K]`` and directions ``maximise [T]`` (bool)."""
        w = mask.to(xs.dtype).unsqueeze(-1)
        pairs = self.pair(torch.cat([xs, ys.unsqueeze(-1)], -1))
        pooled = (pairs * w).sum(-2) / w.sum(-2).clamp_min(1.0)
        return self.out(pooled + self.direction(maximise.long()))


PREDICTORS: dict[str, type[nn.Module]] = {"mlp": MLPPredictor, "gcn": GraphPredictor}
