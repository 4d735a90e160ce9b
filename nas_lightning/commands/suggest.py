"""``search.py suggest``: which architectures to measure first on a new task."""

from __future__ import annotations

from nas_lightning.commands.common import one_task, predictor_for
from nas_lightning.rankers.ranking import csv_sources
from nas_lightning.rankers.suggest import suggest_support


def suggest(ckpt: str, k: int = 10, task: str | None = None, method: str = "kcenter",
            device: str = "auto") -> int:
    """Print the K architectures to measure first on a new task, one string a line. Suggestions
    matter most for small K; BENCHMARKS.md compares them with random draws.

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
