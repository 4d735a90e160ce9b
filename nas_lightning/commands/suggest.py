"""``search.py suggest``: which architectures to measure first on a new task."""

from __future__ import annotations

from nas_lightning.commands.common import one_task, predictor_for
from nas_lightning.rankers.ranking import csv_sources
from nas_lightning.rankers.suggest import suggest_support


def suggest(ckpt: str, k: int = 10, task: str | None = None, method: str = "kcenter",
            device: str = "auto") -> int:
    """Print the K architectures to measure first on a new task, one string a line. In the device
    cross-validation (BENCHMARKS.md) greedy beat random draws at K = 3 and 5 (mean Spearman +0.067,
    +0.022) but not at K = 10 or 20 (-0.005, -0.003), kcenter by +0.018 at K = 5 and +0.001 at 10:
    from 10 measurements on, 10 random cells do as well as any suggestion.

    Args:
        ckpt: predictor checkpoint from train.py.
        k: how many architectures to suggest.
        task: restrict the suggestions to the architectures this table holds (its direction is used too).
        method: how to pick: kcenter, kmeans, dopt (the prior's features) or greedy (the best support for
            the checkpoint's own csv training tables; run from where train.py ran, so their paths resolve;
            the better choice for K <= 5).
        device: auto, cpu or cuda: where the predictor runs.
    """
    target = one_task(task) if task else None
    module = predictor_for(ckpt, target, device, "suggest")
    tables = csv_sources(module.trained_on["tasks"])[0] if method == "greedy" else None
    chosen = suggest_support(module, k, None if target is None else target.archs,
                             target is not None and target.direction == "max", method, tables)
    for i in chosen.tolist():
        print(module.space.to_string(i))
    return 0
