"""``search.py tabulate``: train a set of random cells with full validation curves into a store,
and write them as a curve table (the data of a replay benchmark, or a task of its own)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from nas_lightning.candidates.curves import read_table, table_rows, write_table
from nas_lightning.candidates.ray_pool import check_address
from nas_lightning.candidates.store_guard import check_store
from nas_lightning.errors import UserError
from nas_lightning.files import atomic, check_writable, print_written
from nas_lightning.oracles import OracleFactory, OracleSettings
from nas_lightning.search import make_strategy
from nas_lightning.search.driver import run_parallel
from nas_lightning.tasks.spec import is_training_spec

log = logging.getLogger(__name__)
RUNGS = (1, 2, 3, 5, 10, 15)  # epochs whose rank agreement with the final accuracy the summary reports


def tabulate(task: str, cells: int = 500, seed: int = 0, out: str = "runs/tabulate",
             oracle: OracleSettings = OracleSettings()) -> int:
    """Train CELLS random NB201 cells of a train: task with full validation curves; write
    cells.csv (the curve table) and summary.json into OUT.

    Args:
        task: a train:<dataset> spec (see python search.py tasks).
        cells: how many distinct random cells to train (drawn with seed; the first ones of a larger
            run are the same cells).
        seed: seed of the draw.
        out: folder for cells.csv, summary.json and, unless --oracle.store names another, the store.
        oracle: the recipe, the store of finished trainings and Ray workers (--oracle.ray.workers N
            trains N at once).
    """
    if not is_training_spec(task):
        raise UserError(f"tabulate trains candidates: give a train:<dataset> task, not {task!r}")
    if cells < 2:
        raise UserError(f"--cells must be at least 2, got {cells}")
    if oracle.ray.address is not None:
        check_address(oracle.ray.address)
    check_writable(out, "--out", folder=True)
    factory = OracleFactory(oracle, None, default_store=Path(out) / "trainings.sqlite", log_dir=None)
    check_store(factory.store_path, "--oracle.store")
    target = factory.resolve(task)
    if cells > target.size:
        raise UserError(f"--cells {cells} exceeds the space's {target.size} cells; lower it")
    start = time.perf_counter()
    try:
        factory.start_pool()
        trainer = factory.oracle(target, seed, progress="tabulate")
        run_parallel(make_strategy("random"), trainer, cells, torch.Generator().manual_seed(seed), oracle.ray.workers or 1)
        rows = [trainer.record(i) for i in trainer.history()[0].tolist()]
    finally:
        factory.close()
    wall = time.perf_counter() - start
    table = table_rows(rows)
    Path(out).mkdir(parents=True, exist_ok=True)
    with atomic(Path(out) / "cells.csv") as (tmp,):
        write_table(table, tmp)
    curves = read_table(Path(out) / "cells.csv")
    final = curves.final
    summary = {
        "task": target.name, "recipe": target.recipe.description | {"key": target.recipe.key}, "cells": len(table),
        "failed": len(rows) - len(table), "seed": seed, "trained_now": trainer.trained, "wall_seconds": wall,
        "training_seconds": float(curves.total_seconds.sum()), "seconds_per_cell": float(curves.total_seconds.mean()),
        "val_acc": {"min": float(final.min()), "median": float(final.median()), "max": float(final.max()),
                    "std": float(final.std())},
        "rung_spearman": {str(e): v for e, v in curves.rung_spearman([e for e in RUNGS if e < curves.epochs]).items()},
        "store": str(factory.store_path.resolve()),
    }
    with atomic(Path(out) / "summary.json") as (tmp,):
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")
    factory.store.close()
    print(f"{len(table)} cells of {target.name} ({trainer.trained} trained now) in {wall:.0f} s; "
          f"{summary['seconds_per_cell']:.1f} s of training per cell")
    print(f"final val_acc: min {final.min():.2f}, median {final.median():.2f}, max {final.max():.2f} %")
    print("Spearman of the accuracy after epoch e with the final one: "
          + ", ".join(f"e{e} {v:.2f}" for e, v in summary["rung_spearman"].items()))
    print_written([(Path(out) / "cells.csv", f"the curve table (csv:{Path(out) / 'cells.csv'}#val_acc is a task)"),
                   (Path(out) / "summary.json", "time, spread, rank agreement of each epoch with the last"),
                   (factory.store_path, "the store; a rerun of the same command reuses it")])
    return 0
