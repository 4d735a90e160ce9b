"""``search.py tasks``: every task spec at hand, with its direction and size."""

from __future__ import annotations

from nas_lightning.tasks.embedded import embedded_specs
from nas_lightning.tasks.load import load_tasks


def tasks(task: str | None = None, official_path: str | None = None) -> int:
    """List task specs with direction and size (the embedded NB201 tables, or the tasks one spec gives).

    Args:
        task: a spec to resolve instead (e.g. a csv glob: one line per file and column).
        official_path: the official NB201 file for nb201-official/... specs (else NB201_PATH).
    """
    specs = [task] if task else embedded_specs()
    for t in (t for s in specs for t in load_tasks(s, official_path)):
        print(f"{t.name}\t{t.direction}\t{t.size}")
    return 0
