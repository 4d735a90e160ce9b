"""A search space as a value: its vocabulary, index <-> string, sampling, moves and encodings.

Inside the project an architecture is an integer index in ``[0, space.size)``; strings exist
only at the edges (files, command lines, logs). Every space is also a product of categorical
*decisions* (an op per edge, an input per layer, ...): :meth:`SearchSpace.choices` maps indices
to decision values and :meth:`SearchSpace.from_choices` back, ``-1`` where a combination is not
an architecture of the space (so policies over decisions work in any space).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class SearchSpace(ABC):
    """A finite architecture search space.

    Subclasses set :attr:`name`, :attr:`size`, :attr:`decisions`, :attr:`encodings` and
    :attr:`default_encoding`, and implement the abstract methods. Two spaces are equal when their
    names are: a space is a value, named in checkpoints and task specs.
    """

    name: str
    size: int
    decisions: tuple[int, ...]  # how many values each categorical decision takes
    encodings: dict[str, int]  # flat encoding name -> width
    default_encoding: str
    example: str  # one architecture string, for error messages

    # -- strings (edges only) ---------------------------------------------------------------
    @abstractmethod
    def to_string(self, index: int) -> str:
        """The user-facing string of an architecture index."""

    @abstractmethod
    def from_string(self, text: str) -> int:
        """Parse a user-facing string.

        Raises:
            UserError: when the string is not an architecture of this space.
        """

    # -- decisions --------------------------------------------------------------------------
    @abstractmethod
    def choices(self, indices: torch.Tensor | int) -> torch.Tensor:
        """Decision values ``[..., len(decisions)]`` of architecture indices ``[...]``."""

    @abstractmethod
    def from_choices(self, choices: torch.Tensor) -> torch.Tensor:
        """Architecture indices ``[...]`` of decision values ``[..., len(decisions)]`` (``-1``: not in the space)."""

    # -- moves ------------------------------------------------------------------------------
    @abstractmethod
    def neighbours(self, index: int) -> torch.Tensor:
        """Every architecture one move away from ``index`` (a fixed, deterministic order)."""

    def mutate(self, index: int, generator: torch.Generator) -> int:
        """One uniformly drawn neighbour of ``index``."""
        nb = self.neighbours(index)
        return int(nb[torch.randint(len(nb), (1,), generator=generator)])

    def sample(self, n: int, generator: torch.Generator, replace: bool = False) -> torch.Tensor:
        """Draw ``n`` architecture indices uniformly (without repetition unless ``replace``)."""
        if replace:
            return torch.randint(self.size, (n,), generator=generator)
        return torch.randperm(self.size, generator=generator)[:n]

    def all_indices(self) -> torch.Tensor:
        """Every architecture of the space, ``[size]``."""
        return torch.arange(self.size)

    def check(self, indices: torch.Tensor | int) -> torch.Tensor:
        """``indices`` as a long tensor.

        Raises:
            ValueError: if an index lies outside ``[0, size)``.
        """
        index = torch.as_tensor(indices, dtype=torch.long)
        if index.numel() and (index.min() < 0 or index.max() >= self.size):
            raise ValueError(f"architecture indices must lie in [0, {self.size}) for space {self.name}")
        return index

    # -- encodings --------------------------------------------------------------------------
    @abstractmethod
    def encode(self, indices: torch.Tensor, encoding: str) -> torch.Tensor:
        """Flat float encoding ``[..., encodings[encoding]]`` of indices ``[...]``.

        Raises:
            ValueError: for an encoding the space does not have.
        """

    def graph(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Graph form ``(adjacency [..., n, n], node features [..., n, F])`` for graph predictors."""
        raise NotImplementedError(f"search space {self.name} has no graph form")

    # -- value semantics --------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, size={self.size})"
