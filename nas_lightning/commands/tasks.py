"""``search.py tasks``: every task spec at hand, with its direction and size."""

from __future__ import annotations

import logging

from nas_lightning.errors import UserError
from nas_lightning.evaluation.oracle import TrainingSpec, is_training_spec
from nas_lightning.spaces import NB201
from nas_lightning.tasks.embedded import embedded_specs
from nas_lightning.tasks.load import load_tasks
from nas_lightning.tasks.nbg import nbg_specs

log = logging.getLogger(__name__)
HEADER = "task\tdirection\tarchitectures\tnote"  # tab-separated, as the rows


def tasks(task: str | None = None, official_path: str | None = None) -> int:
    """List task specs with direction and size (the embedded NB201 and the NAS-Bench-Graph tables,
    or the tasks one spec gives), tab-separated under a header line.

    Args:
        task: a spec to resolve instead (e.g. a csv glob: one line per file and column; train:... describes its data).
        official_path: the official NB201 file for nb201-official/... specs (else NB201_PATH).
    """
    if task and is_training_spec(task):
        spec = TrainingSpec.parse(task)
        line = f"{spec}\tmax\t{NB201.size}\t{spec.load().describe()}"
        print(HEADER, line, sep="\n")
        return 0
    if task:  # resolved before anything is printed: a bad spec prints only its error
        lines = [f"{t.name}\t{t.direction}\t{t.size}" for t in load_tasks(task, official_path)]
        print(HEADER, *lines, sep="\n")
        return 0
    print(HEADER)
    for t in (t for s in embedded_specs() for t in load_tasks(s, official_path)):
        print(f"{t.name}\t{t.direction}\t{t.size}")
    try:  # the graph tables (test_acc: report only)
        for t in (t for s in nbg_specs() for t in load_tasks(s)):
            print(f"{t.name}\t{t.direction}\t{t.size}" + ("\treport only" if t.report_only else ""))
    except UserError as err:  # the package is missing: list the rest
        log.warning("NAS-Bench-Graph tasks not listed: %s", err)
    # the tasks that train each queried cell for real (no table)
    print(f"train:digits\tmax\t{NB201.size}\ttrains each queried cell (also train:imagefolder=PATH, "
          "train:cifar10=ROOT, train:cifar100=ROOT, train:fashion-mnist=ROOT)")
    return 0
