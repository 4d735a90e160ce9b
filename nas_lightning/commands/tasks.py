"""``search.py tasks``: every task spec at hand, with its direction and size."""

from __future__ import annotations

import logging

from nas_lightning.errors import UserError
from nas_lightning.spaces import NB201
from nas_lightning.candidates.sources import load_spec_data
from nas_lightning.tasks.families import FAMILIES
from nas_lightning.tasks.load import load_tasks
from nas_lightning.tasks.spec import TrainingSpec, is_training_spec

log = logging.getLogger(__name__)
HEADER = "task\tdirection\tarchitectures\tnote"  # tab-separated, as the rows


def tasks(task: str | None = None) -> int:
    """List task specs with direction and size (every registered benchmark's tables, or the tasks
    one spec gives), tab-separated under a header line.

    Args:
        task: a spec to resolve instead (e.g. a csv glob: one line per file and column; train:... describes its data).
    """
    if task and is_training_spec(task):
        spec = TrainingSpec.parse(task)
        line = f"{spec}\tmax\t{NB201.size}\t{load_spec_data(spec).describe()}"
        print(HEADER, line, sep="\n")
        return 0
    if task:  # resolved before anything is printed: a bad spec prints only its error
        lines = [f"{t.name}\t{t.direction}\t{t.size}" for t in load_tasks(task)]
        print(HEADER, *lines, sep="\n")
        return 0
    print(HEADER)
    for family in FAMILIES.values():
        try:  # a family whose package is missing: list the rest
            for t in (t for s in family.specs() for t in load_tasks(s)):
                print(f"{t.name}\t{t.direction}\t{t.size}" + ("\treport only" if t.report_only else ""))
        except UserError as err:
            log.warning("%s tasks not listed: %s", family.name, err)
    # the tasks that train each queried cell for real (no table)
    print(f"train:digits\tmax\t{NB201.size}\ttrains each queried cell (also train:imagefolder=PATH, "
          "train:cifar10=ROOT, train:cifar100=ROOT, train:fashion-mnist=ROOT)")
    return 0
