"""The figures of a search on real trainings, from what ``search.py compare`` wrote.

    python -m scripts.digits_report out/digits [out/digits_random30]

Reads each folder's ``results.json`` and the SQLite store it names, and prints: trainings run and
distinct candidates; each strategy's final pick per seed with its validation and test accuracy
(test: the final pick only); the spread of validation accuracy over every trained candidate; the
Spearman correlation between the digits accuracy of the cells random search trained and the
NB201 CIFAR-10 table; and each strategy's best-so-far after 10, 20, 30 trainings (mean over seeds).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch
from torchmetrics.functional import spearman_corrcoef


from nas_lightning.candidates.store import ResultStore
from nas_lightning.spaces import NB201
from nas_lightning.tasks.embedded import load_embedded


def main(folders: list[str]) -> None:
    runs = [json.loads((Path(f) / "results.json").read_text()) for f in folders]
    first = runs[0]
    with ResultStore(first["store"]) as store:
        rows = {r["arch"]: r for r in store.rows()
                if r["dataset"] == first["dataset_fingerprint"] and r["recipe"] == first["recipe"]["key"]}
    print(f"dataset: {first['dataset']}; recipe {first['recipe']}")
    for folder, r in zip(folders, runs):
        print(f"{folder}: {r['distinct_candidates']} distinct candidates, {r['trainings_run']} trained by that run")
    ok = [r["val_acc"] for r in rows.values() if r["status"] == "ok"]
    print(f"validation accuracy over all {len(ok)} trained candidates: min {min(ok):.2f}, median "
          f"{statistics.median(ok):.2f}, max {max(ok):.2f}, std {statistics.pstdev(ok):.2f}; "
          f"10-90 % range {sorted(ok)[len(ok) // 10]:.2f}-{sorted(ok)[(9 * len(ok)) // 10]:.2f}; "
          f"failed {sum(r['status'] != 'ok' for r in rows.values())}; mean training {statistics.fmean(r['seconds'] for r in rows.values()):.1f} s")
    for name, s in first["strategies"].items():
        val = [rows[p["best_arch"]]["val_acc"] for p in s["per_seed"]]
        test = [rows[p["best_arch"]]["test_acc"] for p in s["per_seed"]]
        print(f"{name}: final picks val " + ", ".join(f"{v:.2f}" for v in val) + f" (mean {statistics.fmean(val):.2f}); "
              "their test " + ", ".join(f"{t:.2f}" for t in test) + f" (mean {statistics.fmean(test):.2f})")
    cifar = load_embedded("cifar10", "val_acc")
    curves: dict[str, list[list[float]]] = {}
    for r in runs:
        for name, s in r["strategies"].items():
            curves.setdefault(name, [])
            for p in s["per_seed"]:
                curves[name].append(p["best_so_far"])
    random_cells = {a for r in runs for p in r["strategies"].get("random", {}).get("per_seed", []) for a in p["archs"]}
    random_cells = [a for a in random_cells if rows.get(a, {}).get("status") == "ok"]
    if len(random_cells) >= 3:
        idx = torch.tensor([NB201.from_string(a) for a in random_cells])
        digits = torch.tensor([rows[a]["val_acc"] for a in random_cells], dtype=torch.float64)
        rho = float(spearman_corrcoef(digits, cifar.lookup(idx).double()))
        print(f"Spearman(digits val acc, NB201 cifar10 val acc) over the {len(random_cells)} cells random search trained: {rho:.3f}")
    for name, cs in curves.items():
        longest = max(len(c) for c in cs)
        marks = [m for m in (10, 20, 30) if m <= longest]
        means = {m: statistics.fmean(c[m - 1] for c in cs if len(c) >= m) for m in marks}
        print(f"{name}: best so far " + ", ".join(f"after {m}: {v:.2f} ({sum(len(c) >= m for c in cs)} runs)" for m, v in means.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
