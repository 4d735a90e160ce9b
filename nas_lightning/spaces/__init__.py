"""Search spaces: the vocabulary every other layer speaks (architectures are integer indices)."""

from __future__ import annotations

from nas_lightning.errors import UserError
from nas_lightning.spaces.base import SearchSpace
from nas_lightning.spaces.nb201 import NB201, NB201Space

SPACES: dict[str, SearchSpace] = {NB201.name: NB201}


def get_space(name: str) -> SearchSpace:
    """The search space called ``name``.

    Raises:
        UserError: for a name no space has.
    """
    if name not in SPACES:
        raise UserError(f"unknown search space {name!r}; choose one of {', '.join(SPACES)}")
    return SPACES[name]


__all__ = ["NB201", "NB201Space", "SPACES", "SearchSpace", "get_space"]
