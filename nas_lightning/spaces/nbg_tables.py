"""NAS-Bench-Graph tables (the ``light`` tables bundled in ``nas-bench-graph==1.4.0``) as tensors.

The eight :data:`DATASETS` each hold all 26,206 architectures of
:class:`~nas_lightning.spaces.nbg.NBGSpace`. ``proteins`` (:data:`SUBSET_DATASETS`) holds 2,021 of
them: its keys are the same package hashes, restricted to the ops gcn, sage, arma, fc and skip,
so it loads as a partial table in the same space (a task over part of the space).

Metrics: ``val_acc`` and ``test_acc`` (accuracy in [0, 1], the package's ``valid_perf`` and
``perf``), ``latency`` (seconds) and ``params`` (millions, the package's ``para``). For proteins
the two scores are presumably ROC-AUC (OGB's metric for ogbn-proteins); the package does not say.
"""

from __future__ import annotations

import functools
import logging

import torch

from nas_lightning.errors import UserError
from nas_lightning.spaces.nbg import NBGSpace, package

log = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv")
SUBSET_DATASETS: tuple[str, ...] = ("proteins",)
METRICS: dict[str, str] = {"val_acc": "max", "test_acc": "max", "latency": "min", "params": "min"}
_FIELDS: dict[str, str] = {"val_acc": "valid_perf", "test_acc": "perf", "latency": "latency", "params": "para"}


@functools.lru_cache(maxsize=None)
def _parse(dataset: str) -> dict[str, torch.Tensor]:
    """All metrics of one dataset in index order (``archs`` sorted), parsed once."""
    raw = package().light_read(dataset)
    hashes = torch.tensor(sorted(raw), dtype=torch.long)
    out = {"archs": NBGSpace().from_hash(hashes)}  # ascending: index order is hash order
    for metric, key in _FIELDS.items():
        out[metric] = torch.tensor([float(raw[h][key]) for h in hashes.tolist()], dtype=torch.float64)
        if not torch.isfinite(out[metric]).all():
            raise RuntimeError(f"NAS-Bench-Graph {dataset} {metric} has non-finite values")
    log.debug("parsed NAS-Bench-Graph %s: %d architectures", dataset, len(hashes))
    return out


def load_table(dataset: str, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(architecture indices [n] ascending, float64 values [n])`` of one dataset and metric.

    Raises:
        UserError: for an unknown dataset or metric.
    """
    if dataset not in DATASETS + SUBSET_DATASETS:
        raise UserError(f"unknown NAS-Bench-Graph dataset {dataset!r}; choose one of {', '.join(DATASETS + SUBSET_DATASETS)}")
    if metric not in METRICS:
        raise UserError(f"unknown NAS-Bench-Graph metric {metric!r}; choose one of {', '.join(METRICS)}")
    table = _parse(dataset)
    return table["archs"].clone(), table[metric].clone()
