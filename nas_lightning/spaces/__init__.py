"""Search spaces: the vocabulary every other layer speaks (architectures are integer indices).

Spaces are found by name (:func:`get_space`, e.g. for a checkpoint's space); a benchmark's table
family registers its space (:func:`register_space`). Registering a space costs nothing: :data:`NBG` reads the ``nas-bench-graph`` package (and
enumerates its 26,206 architectures, about 1.5 s) only on its first lookup.
"""

from __future__ import annotations

from nas_lightning.errors import UserError
from nas_lightning.spaces.base import SearchSpace
from nas_lightning.spaces.nb201 import NB201, NB201Space
from nas_lightning.spaces.nbg import NBG, NBGSpace

SPACES: dict[str, SearchSpace] = {NB201.name: NB201, NBG.name: NBG}


def register_space(space: SearchSpace) -> SearchSpace:
    """Make ``space`` known by its name (the same space twice is a no-op)."""
    if space.name in SPACES and SPACES[space.name] != space:
        raise ValueError(f"a search space called {space.name!r} is registered already")
    SPACES[space.name] = space
    return space


def get_space(name: str) -> SearchSpace:
    """The search space called ``name``.

    Raises:
        UserError: for a name no space has.
    """
    if name not in SPACES:
        raise UserError(f"unknown search space {name!r}; choose one of {', '.join(SPACES)}")
    return SPACES[name]


__all__ = ["NB201", "NB201Space", "NBG", "NBGSpace", "SPACES", "SearchSpace", "get_space", "register_space"]
