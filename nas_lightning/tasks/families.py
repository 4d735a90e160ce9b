"""Table families: each benchmark's search space, tables and task names, registered in one place.

A family is what the first part of a spec ``<family>/<dataset>/<metric>`` names: its search
space, how one of its tables loads, which specs ``search.py tasks`` lists, and the table of
parameter counts behind ``rank``'s ``params`` baseline. Registering a family registers its space
too, so a new benchmark is one module plus one :func:`register` line::

    register(TableFamily("toy", TOY_SPACE, load_toy_table, specs=toy_specs))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from nas_lightning.errors import UserError
from nas_lightning.spaces import NB201, NBG, SearchSpace, register_space
from nas_lightning.tasks.embedded import embedded_specs, load_embedded
from nas_lightning.tasks.nbg import load_nbg, nbg_specs
from nas_lightning.tasks.official import load_official
from nas_lightning.tasks.spec import FAMILY_NAMES, forms
from nas_lightning.tasks.task import Task


def _none(*_: object) -> list:
    return []


def _no_params(dataset: str | None) -> Task | None:
    return None


@dataclass(frozen=True)
class TableFamily:
    """One benchmark's tables.

    Args:
        name: the spec's first part (``nb201`` in ``nb201/cifar10/val_acc``).
        space: the search space of every table.
        load: ``(dataset, metric) -> Task``; raises :class:`UserError` for unknown names.
        specs: the specs ``search.py tasks`` lists (none: the family is listed only on request).
        params: ``dataset -> Task | None``: parameter counts for ``rank``'s ``params`` baseline
            (``dataset`` is ``None`` for a user's csv table of this family's space).
    """

    name: str
    space: SearchSpace
    load: Callable[[str, str], Task]
    specs: Callable[[], list[str]] = _none
    params: Callable[[str | None], Task | None] = _no_params


FAMILIES: dict[str, TableFamily] = {}


def register(family: TableFamily) -> TableFamily:
    """Add ``family`` (and its search space) to the registry; a name is registered once."""
    if family.name in FAMILIES and FAMILIES[family.name] != family:
        raise ValueError(f"a table family called {family.name!r} is registered already")
    register_space(family.space)
    FAMILIES[family.name] = family
    if family.name not in FAMILY_NAMES:
        FAMILY_NAMES.append(family.name)
    return family


def get_family(name: str) -> TableFamily:
    """The family called ``name``.

    Raises:
        UserError: for a name no family has.
    """
    if name not in FAMILIES:
        raise UserError(f"unknown table family {name!r}; use {forms()}")
    return FAMILIES[name]


def family_of_space(space: SearchSpace) -> TableFamily | None:
    """The first registered family over ``space`` (``None``: none)."""
    return next((f for f in FAMILIES.values() if f.space == space), None)


def _nb201_params(dataset: str | None) -> Task:
    return load_embedded("cifar10", "params")  # one parameter count per cell, whatever the dataset


def _nbg_params(dataset: str | None) -> Task | None:
    return None if dataset is None else load_nbg(dataset, "params")


register(TableFamily("nb201", NB201, load_embedded, embedded_specs, _nb201_params))
register(TableFamily("nb201-official", NB201, load_official, params=_nb201_params))
register(TableFamily("nbg", NBG, load_nbg, nbg_specs, _nbg_params))
