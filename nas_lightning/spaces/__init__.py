"""Search spaces: the vocabulary every other layer speaks (architectures are integer indices).

Registering a space costs nothing: :data:`NBG` reads the ``nas-bench-graph`` package (and
enumerates its 26,206 architectures, about 1.5 s) only on its first lookup.
"""

from __future__ import annotations

from nas_lightning.errors import UserError
from nas_lightning.spaces.base import SearchSpace
from nas_lightning.spaces.nb201 import NB201, NB201Space
from nas_lightning.spaces.nbg import NBG, NBGSpace

SPACES: dict[str, SearchSpace] = {NB201.name: NB201, NBG.name: NBG}


def get_space(name: str) -> SearchSpace:
    """The search space called ``name``.

    Raises:
        UserError: for a name no space has.
    """
    if name not in SPACES:
        raise UserError(f"unknown search space {name!r}; choose one of {', '.join(SPACES)}")
    return SPACES[name]


__all__ = ["NB201", "NB201Space", "NBG", "NBGSpace", "SPACES", "SearchSpace", "get_space"]
