"""Performance predictors: plain ``nn.Module``s mapping architecture indices to a score.

Each predictor owns its encoding (``encode``), so the meta-learning code only ever passes
architecture indices around; ``forward`` takes the encoded batch and returns ``[B]`` scores.
"""

from __future__ import annotations

import torch
from torch import nn

from nas_lightning.benchmarks import space


class MLPPredictor(nn.Module):
    """An MLP on the flat one-hot encoding (6 edges x 5 ops).

    Args:
        hidden: width of the hidden layers.
        layers: number of hidden layers.
    """

    encoding = "onehot"

    def __init__(self, hidden: int = 128, layers: int = 2) -> None:
        super().__init__()
        dims = [space.NUM_EDGES * space.NUM_OPS] + [hidden] * layers
        blocks: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            blocks += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(dims[-1], 1)

    @staticmethod
    def encode(indices: torch.Tensor) -> torch.Tensor:
        """Architecture indices ``[...]`` to inputs ``[..., 30]``."""
        return space.encode_onehot(indices)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``[...]`` of encoded architectures ``[..., 30]``."""
        return self.head(self.body(x)).squeeze(-1)


class GraphPredictor(nn.Module):
    """A graph convolutional network on the cell graph (ops as nodes, see ``space.encode_graph``).

    Args:
        hidden: width of the node states.
        layers: number of graph convolution rounds.
    """

    encoding = "graph"

    def __init__(self, hidden: int = 64, layers: int = 3) -> None:
        super().__init__()
        n = space.NUM_EDGES + 2
        adj = space.encode_graph(torch.zeros(1, dtype=torch.long))[0][0]
        # propagate both ways along the DAG, normalised by degree, with self loops
        both = adj + adj.T + torch.eye(n)
        self.register_buffer("prop", both / both.sum(1, keepdim=True), persistent=False)
        self.embed = nn.Linear(space.NUM_OPS + 2, hidden)
        self.convs = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.head = nn.Linear(hidden, 1)

    @staticmethod
    def encode(indices: torch.Tensor) -> torch.Tensor:
        """Architecture indices ``[...]`` to node features ``[..., 8, 7]`` (the adjacency is fixed)."""
        return space.encode_graph(indices)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``[...]`` of node features ``[..., 8, 7]``."""
        h = torch.relu(self.embed(x))
        for conv in self.convs:
            h = torch.relu(conv(self.prop @ h)) + h
        return self.head(h.mean(-2)).squeeze(-1)


PREDICTORS: dict[str, type[nn.Module]] = {"mlp": MLPPredictor, "gcn": GraphPredictor}
