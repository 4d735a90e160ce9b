"""Tasks of the official NAS-Bench-201 file (``NAS-Bench-201-v1_1-096897.pth``).

The file is read through ``nas_201_api.NASBench201API``, always with ``hp='200'`` (200-epoch
training) and ``is_random=False`` (the mean over training seeds). Loading the real file takes
minutes and tens of GB of memory, so every metric of every dataset is extracted in one pass into
compact tensors and cached under :func:`~nas_lightning.tasks.embedded.cache_dir`, keyed by the
file's path, size and modification time.

Conventions (those of NB201): for ``cifar10`` the validation accuracy and the search-side metrics
(``train_time``, ``flops``, ``params``, ``latency``, and the cost) come from ``cifar10-valid``
(trained on the train split), the test accuracy from ``cifar10`` (trained on train+valid, tested
on the original test set). Units: accuracies in %, train time in seconds (all 200 epochs),
flops in MFLOPs, params in MB, latency in seconds.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import torch

from nas_lightning.errors import UserError
from nas_lightning.files import save_torch
from nas_lightning.safe_load import nb201_globals, refused_global, weights_only_loads
from nas_lightning.spaces import NB201
from nas_lightning.tasks.embedded import DATASETS, cache_dir
from nas_lightning.tasks.task import Task

if TYPE_CHECKING:
    from nas_201_api import NASBench201API

log = logging.getLogger(__name__)

ENV_VAR = "NB201_PATH"
FILE_NAME = "NAS-Bench-201-v1_1-096897.pth"
DATA_FILE = Path(__file__).resolve().parents[2] / "data" / FILE_NAME  # found there without NB201_PATH
HP = "200"
OFFICIAL_METRICS: dict[str, str] = {
    "val_acc": "max",
    "test_acc": "max",
    "train_time": "min",
    "flops": "min",
    "params": "min",
    "latency": "min",
}
REPORT_ONLY_METRICS: tuple[str, ...] = ("test_acc",)
_VAL_DATASET = {"cifar10": "cifar10-valid", "cifar100": "cifar100", "ImageNet16-120": "ImageNet16-120"}
_CACHE_VERSION = 1
_HINT = f"set {ENV_VAR} to the path of {FILE_NAME}, or put the file in the project's data/ folder"

Source = Union[str, "os.PathLike[str]", dict, "NASBench201API", None]


def load_official(dataset: str, metric: str, source: Source = None) -> Task:
    """One task of the official NB201 file.

    Args:
        dataset: ``cifar10``, ``cifar100`` or ``ImageNet16-120``.
        metric: one of :data:`OFFICIAL_METRICS`; ``test_acc`` gives a report-only task.
        source: a path to the file, a dict in the official format, or a built
            ``NASBench201API``; ``None`` reads the path from ``NB201_PATH``. Only paths are cached.

    Returns:
        The task ``nb201-official/<dataset>/<metric>`` over the architectures that have the metric,
        with the train time as cost (when every one of them has it) and, for ``val_acc``, the
        per-seed validation accuracies as ``seed_table``.

    Raises:
        UserError: for an unknown dataset or metric, no source, a missing or unreadable file, or a
            file holding no value of the metric.
    """
    if dataset not in DATASETS:
        raise UserError(f"unknown NB201 dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if metric not in OFFICIAL_METRICS:
        raise UserError(f"unknown nb201-official metric {metric!r}; choose one of {', '.join(OFFICIAL_METRICS)}")
    tensors = _tensors(source)
    name = f"nb201-official/{dataset}/{metric}"
    values = tensors[f"{dataset}/{metric}"]
    keep = torch.isfinite(values)
    if not bool(keep.any()):
        raise UserError(f"task {name}: the NB201 file holds no {metric} value for {dataset}; choose another metric")
    seeds = tensors[f"{dataset}/val_acc_seeds"][keep] if metric == "val_acc" else None
    cost: torch.Tensor | None = tensors[f"{dataset}/train_time"][keep]
    if not bool(torch.isfinite(cost).all()):
        log.warning("task %s: some architectures lack a train time; the task has no cost", name)
        cost = None
    return Task(
        name=name,
        direction=OFFICIAL_METRICS[metric],
        archs=tensors["archs"][keep],
        table=values[keep],
        seed_table=seeds,
        cost=cost,
        report_only=metric in REPORT_ONLY_METRICS,
    )


def _tensors(source: Source) -> dict[str, torch.Tensor]:
    """The extracted tensors of a source: cached for a path, extracted in memory otherwise."""
    from nas_201_api import NASBench201API

    if isinstance(source, NASBench201API):
        return extract(source)
    if isinstance(source, dict):
        return extract(NASBench201API(source, verbose=False))
    if source is None:
        source = os.environ.get(ENV_VAR) or (DATA_FILE if DATA_FILE.is_file() else None)
        if source is None:
            raise UserError(f"no NB201 file given; {_HINT} (or put it at {DATA_FILE})")
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"NB201 source must be a path, a dict or a NASBench201API, got {type(source).__name__}")
    path = Path(source).expanduser()
    if not path.is_file():
        raise UserError(f"NB201 file {str(path)!r} does not exist; {_HINT}")
    return _cached_tensors(path)


def _cache_path(path: Path) -> Path:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return cache_dir() / f"nb201_official_v{_CACHE_VERSION}_{digest}.pt"


def _cached_tensors(path: Path) -> dict[str, torch.Tensor]:
    cached = _cache_path(path)
    if cached.exists():
        try:
            return torch.load(cached, weights_only=True)
        except Exception:  # a damaged cache is rebuilt, never trusted
            log.warning("cache %s is unreadable; rebuilding it", cached)
    log.info("reading the official NB201 file %s (this takes minutes and tens of GB of memory)", path)
    tensors = extract(_open_api(path))
    save_torch(tensors, cached)
    log.info("cached the official NB201 tables at %s", cached)
    return tensors


def _open_api(path: Path) -> NASBench201API:
    """Build the API from a file (the API loads it itself, so the records are never copied).

    The API's own ``torch.load`` runs weights-only, with only numpy scalars added to torch's
    allow-list (:func:`~nas_lightning.safe_load.nb201_globals`): the official file holds nothing
    else, and a file holding more is refused before any of it is built.

    Raises:
        UserError: if the file is not a readable NB201 benchmark file, or holds more than one does.
    """
    from nas_201_api import NASBench201API

    def bad(err: BaseException) -> UserError:
        return UserError(f"NB201 file {str(path)!r} is not a readable NAS-Bench-201 file ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}); {_HINT}")

    errors = (OSError, RuntimeError, EOFError, AssertionError, KeyError, TypeError, ValueError, pickle.UnpicklingError)
    try:
        with weights_only_loads(nb201_globals()):
            return NASBench201API(str(path), verbose=False)
    except errors as err:
        what = refused_global(err)
        if what is not None:
            raise UserError(f"NB201 file {str(path)!r} holds {what}, which the NAS-Bench-201 file does not; refused "
                            f"(reading it could run code); {_HINT}") from None
        raise bad(err) from None


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def _info(api: NASBench201API, index: int, dataset: str, is_random: bool | int = False) -> dict[str, Any]:
    """``get_more_info`` at 200 epochs, or ``{}`` when the architecture lacks the dataset."""
    try:
        return api.get_more_info(index, dataset, iepoch=None, hp=HP, is_random=is_random)
    except (KeyError, ValueError):
        return {}


def extract(api: NASBench201API) -> dict[str, torch.Tensor]:
    """Every metric of every dataset of an API instance, as compact tensors.

    Returns:
        ``archs`` (our indices, sorted, ``[n]``) and, per dataset ``d``, ``d/<metric>`` ``[n]``
        for each of :data:`OFFICIAL_METRICS` and ``d/val_acc_seeds`` ``[n, S]``; NaN marks a
        missing value.

    Raises:
        UserError: if an architecture string of the file is not an NB201 cell.
    """
    verbose, api.verbose = api.verbose, False
    try:
        indices = sorted(api.arch2infos_dict)
        ours = torch.tensor([NB201.from_string(api.meta_archs[i]) for i in indices], dtype=torch.long)
        cols: dict[str, list[float]] = {f"{d}/{m}": [] for d in DATASETS for m in OFFICIAL_METRICS}
        seeds: dict[str, list[list[float]]] = {d: [] for d in DATASETS}
        for i in indices:
            records = api.arch2infos_dict[i][HP]
            for d in DATASETS:
                val_set = _VAL_DATASET[d]
                info = _info(api, i, val_set)
                test = _info(api, i, d) if d != val_set else info
                cols[f"{d}/val_acc"].append(_num(info.get("valid-accuracy")))
                cols[f"{d}/test_acc"].append(_num(test.get("test-accuracy")))
                cols[f"{d}/train_time"].append(_num(info.get("train-all-time")))
                # ArchResults.get_compute_costs is what get_cost_info(hp='200') returns, without the
                # deep copy of the whole record that get_cost_info makes on every call
                costs = records.get_compute_costs(val_set) if val_set in records.get_dataset_names() else {}
                for m in ("flops", "params", "latency"):
                    cols[f"{d}/{m}"].append(_num(costs.get(m)))
                seed_ids = records.get_dataset_seeds(val_set) if info else []
                seeds[d].append([_num(_info(api, i, val_set, s).get("valid-accuracy")) for s in seed_ids])
    finally:
        api.verbose = verbose
    order = torch.argsort(ours)
    out = {"archs": ours[order]}
    for key, col in cols.items():
        out[key] = torch.tensor(col, dtype=torch.float64).reshape(-1)[order]
    for d, rows in seeds.items():
        width = max((len(r) for r in rows), default=0) or 1
        table = torch.full((len(rows), width), math.nan, dtype=torch.float64)
        for r, row in enumerate(rows):
            table[r, : len(row)] = torch.tensor(row, dtype=torch.float64)
        out[f"{d}/val_acc_seeds"] = table[order]
    return out
