"""Print measured facts of NAS-Bench-Graph: the space, cross-dataset and val/test rank agreement.

Run from the repository root: ``python -m scripts.nbg_facts``. Spearman uses average ranks for
ties. "Mean of others" orders the architectures by the mean of the other seven datasets'
standardised val_acc (best first, ties by index); "top-0.1%" is the ceil(0.1% * n) best of the
held-out dataset's val_acc (ties included); ranks are 1-based query counts.
"""

from __future__ import annotations

import itertools
import math
import time

import torch


from nas_lightning.spaces import nbg
from nas_lightning.spaces.nbg import NBGSpace
from nas_lightning.spaces.nbg_tables import DATASETS, SUBSET_DATASETS, load_table


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks of ``x`` (ascending), ties sharing their mean rank."""
    _, inverse, counts = torch.unique(x, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    return (ends - (counts.double() - 1) / 2)[inverse]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two equally long vectors."""
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def first_rank(order: torch.Tensor, hits: torch.Tensor) -> int:
    """1-based position in ``order`` of the first index with ``hits`` true."""
    return int(torch.nonzero(hits[order])[0]) + 1


def main() -> None:
    """Print every fact."""
    space = NBGSpace()
    start = time.perf_counter()
    nbg._index()
    built = time.perf_counter() - start
    counts = space.neighbour_counts().double()
    print(f"space nbg: {space.size} architectures, decisions {space.decisions}, encodings {space.encodings}")
    print(f"index built in {built:.2f} s; neighbours per architecture min {counts.min():.0f} "
          f"mean {counts.mean():.2f} max {counts.max():.0f}")
    for d in SUBSET_DATASETS:
        print(f"{d}: a partial table of {len(load_table(d, 'val_acc')[0])} architectures")

    val = {d: load_table(d, "val_acc")[1] for d in DATASETS}
    test = {d: load_table(d, "test_acc")[1] for d in DATASETS}

    print("\npairwise Spearman of val_acc")
    pairs = {(a, b): spearman(val[a], val[b]) for a, b in itertools.combinations(DATASETS, 2)}
    print("        " + " ".join(f"{d[:7]:>7}" for d in DATASETS))
    for a in DATASETS:
        row = [1.0 if a == b else pairs.get((a, b), pairs.get((b, a))) for b in DATASETS]
        print(f"{a[:7]:>7} " + " ".join(f"{r:7.2f}" for r in row))
    lo, hi = min(pairs, key=pairs.get), max(pairs, key=pairs.get)
    print(f"min {pairs[lo]:.3f} ({lo[0]} vs {lo[1]}), max {pairs[hi]:.3f} ({hi[0]} vs {hi[1]})")

    print("\nheld-out dataset: Spearman of mean-of-others standardised val_acc; ranks reaching "
          "first top-0.1% / optimum; val vs test Spearman")
    z = {d: (v - v.mean()) / v.std() for d, v in val.items()}
    rhos = []
    for d in DATASETS:
        score = torch.stack([z[o] for o in DATASETS if o != d]).mean(0)
        order = torch.sort(-score, stable=True).indices
        k = math.ceil(0.001 * len(val[d]))
        top = val[d] >= torch.topk(val[d], k).values[-1]
        rho = spearman(score, val[d])
        rhos.append(rho)
        print(f"{d:>10}: rho {rho:.3f}  first top-0.1% ({int(top.sum())} archs) at {first_rank(order, top):>5}  "
              f"optimum at {first_rank(order, val[d] == val[d].max()):>5}  val-test {spearman(val[d], test[d]):.3f}")
    print(f"mean-of-others rho: mean {sum(rhos) / len(rhos):.3f}")


if __name__ == "__main__":
    main()
