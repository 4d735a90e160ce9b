"""NAS-Bench-Graph tables as tasks: ``nbg/<dataset>/<metric>`` over the space ``nbg``.

The tables are those of :mod:`nas_lightning.spaces.nbg_tables` (the package's bundled ``light``
tables, parsed once per process): eight datasets over all 26,206 architectures and ``proteins``
over 2,021 of them. ``test_acc`` is report-only (never a search or training target).
"""

from __future__ import annotations

from nas_lightning.spaces import NBG
from nas_lightning.spaces.nbg_tables import DATASETS, METRICS, SUBSET_DATASETS, load_table
from nas_lightning.tasks.task import Task

REPORT_ONLY_METRICS: tuple[str, ...] = ("test_acc",)


def load_nbg(dataset: str, metric: str) -> Task:
    """The task ``nbg/<dataset>/<metric>``.

    Raises:
        UserError: for an unknown dataset or metric (the message lists the choices), or a
            missing ``nas-bench-graph`` package.
    """
    archs, values = load_table(dataset, metric)
    return Task(name=f"nbg/{dataset}/{metric}", direction=METRICS[metric], archs=archs, table=values,
                report_only=metric in REPORT_ONLY_METRICS, space=NBG)


def nbg_specs() -> list[str]:
    """Every ``nbg/...`` task spec: the eight full datasets, then ``proteins``, each metric."""
    return [f"nbg/{d}/{m}" for d in DATASETS + SUBSET_DATASETS for m in METRICS]
