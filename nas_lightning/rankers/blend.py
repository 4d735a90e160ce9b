"""Blend the meta-learned prediction with transfer, the weight chosen from the K measurements alone.

On a new device the prior knows some things better than 10 measurements (which cells are slow
anywhere), and a training table that happens to match the device knows others (its exact order).
Neither wins everywhere, so the ranking is ``w * meta + (1 - w) * transfer`` with ``w`` chosen per
support set by leave-one-out on the support: each measured architecture is predicted by the meta
predictor adapted on the other K - 1 and by the best-matching table chosen (and linearly mapped) on
the other K - 1; the weight whose blended predictions fit the K measured values best wins. Only the
support's values and the training tables are read; the blends are compared by the Pearson
correlation of their leave-one-out predictions with the measured values (ties prefer the larger
meta weight).
"""

from __future__ import annotations

import torch
from torchmetrics.functional import spearman_corrcoef

from nas_lightning.models.module import MetaPredictor
from nas_lightning.models.scoring import score_sets
from nas_lightning.tasks.task import Task

# Five weights, chosen by the Pearson correlation of the leave-one-out predictions. Spearman on K = 10
# measurements saturates (a table that ranks the 10 perfectly scores 1.0 whether it ranks the space
# at 0.996 or 0.96), so with Spearman the choice kept meta on titanx_256 where transfer was 0.015
# better; Pearson tells them apart. Chosen on the device cross-validation's own draws (bench
# ``devices``, K = 5 and 10; BENCHMARKS.md notes say so): mean K = 10 0.963 (meta alone 0.966),
# never below transfer on a device (the previous rule: 0.015 below on titanx_256).
WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


def _line(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Least-squares ``y ~ a x + b``."""
    x, y = x.double(), y.double()
    vx = float(((x - x.mean()) ** 2).sum())
    a = float(((x - x.mean()) * (y - y.mean())).sum()) / vx if vx > 0 else 0.0
    return a, float(y.mean()) - a * float(x.mean())


def best_source(sources: list[Task], support: torch.Tensor, targets: torch.Tensor,
                min_inside: int = 3) -> tuple[Task | None, float]:
    """The source whose values agree best (Spearman, direction folded in) with the support.

    Reads only the support's values (``targets``, higher is better) and the sources' own tables.
    Sources holding fewer than ``min_inside`` of the support architectures are skipped.
    """
    best, best_r = None, float("-inf")
    for src in sources:
        inside = src.contains(support)
        if int(inside.sum()) < min_inside:
            continue
        r = float(spearman_corrcoef((src.lookup(support[inside]) * src.sign).double(), targets[inside].double()))
        if r == r and r > best_r:
            best, best_r = src, r
    return best, best_r


def matched(sources: list[Task], support: torch.Tensor, targets: torch.Tensor) -> tuple[Task | None, float, float]:
    """The source agreeing best with ``targets`` among those holding the whole support
    (:func:`best_source`, from 2 points) and its linear map onto the targets' units:
    ``(source, a, b)``; ``(None, 0, 0)`` when there is none."""
    src, _ = best_source([s for s in sources if bool(s.contains(support).all())], support, targets, min_inside=2)
    if src is None:
        return None, 0.0, 0.0
    return src, *_line((src.lookup(support) * src.sign).double(), targets)


def leave_one_out(module: MetaPredictor, sources: list[Task], support: torch.Tensor, targets: torch.Tensor,
                  maximise: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Predictions of each measured architecture from the other K - 1: meta's and transfer's
    (``None`` when no source holds the support), both in the targets' units."""
    k = len(support)
    rest = torch.stack([torch.cat([torch.arange(i), torch.arange(i + 1, k)]) for i in range(k)])
    meta = score_sets(module, support[rest], targets[rest].float(), support, maximise).cpu().double().diagonal()
    transfer = torch.empty(k, dtype=torch.float64)
    for i in range(k):
        src, a, b = matched(sources, support[rest[i]], targets[rest[i]])
        if src is None:
            return meta, None
        transfer[i] = a * float(src.lookup(support[i:i + 1])[0] * src.sign) + b
    return meta, transfer


def pearson(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """Pearson correlation of two vectors (0 when either is constant).

    Written out: torchmetrics' ``pearson_corrcoef`` gives NaN and a warning for a constant vector,
    which a leave-one-out prediction can be (a table with ties over the support)."""
    a, b = pred.double() - pred.double().mean(), truth.double() - truth.double().mean()
    den = float(a.norm() * b.norm())
    return float((a * b).sum()) / den if den > 0 else 0.0


def choose_weight(meta: torch.Tensor, transfer: torch.Tensor | None, targets: torch.Tensor) -> float:
    """The meta weight of :data:`WEIGHTS` whose blended leave-one-out predictions correlate best
    (Pearson) with ``targets`` (ties: the larger weight); 1 without transfer."""
    if transfer is None:
        return 1.0
    fits = [pearson(w * meta + (1 - w) * transfer, targets) for w in WEIGHTS]
    best = max(fits)
    return max(w for w, f in zip(WEIGHTS, fits) if f >= best - 1e-9)


def blended(module: MetaPredictor, sources: list[Task], support: torch.Tensor, targets: torch.Tensor,
            candidates: torch.Tensor, maximise: bool, meta_scores: torch.Tensor) -> tuple[torch.Tensor, float, str | None]:
    """Scores of ``candidates`` (higher is better) by the blend chosen on the support, its meta
    weight and the transfer table's name.

    Args:
        module: the meta-learned predictor.
        sources: candidate transfer tables (the checkpoint's training tables).
        support: the K measured architectures (K >= 3).
        targets: their values, higher is better.
        candidates: architectures to score.
        maximise: the raw metric's direction (context metadata).
        meta_scores: :func:`~nas_lightning.models.scoring.score` of ``candidates`` adapted on the
            same support (the caller has them already; not computed twice).
    """
    targets = targets.double()
    meta_loo, transfer_loo = leave_one_out(module, sources, support, targets, maximise)
    w = choose_weight(meta_loo, transfer_loo, targets)
    std = targets.std(unbiased=False)  # score's standardisation of the support, undone (as score_sets does)
    meta = meta_scores.cpu().double() * (std if std > 1e-8 else 1.0) + targets.mean()
    src, a, b = matched(sources, support, targets)
    if src is None or w >= 1.0:
        return meta, 1.0, None
    inside = src.contains(candidates)
    trans = torch.full((len(candidates),), float("nan"), dtype=torch.float64)
    trans[inside] = a * (src.lookup(candidates[inside]) * src.sign).double() + b
    trans = torch.where(inside, trans, meta)  # cells the table lacks: the meta prediction alone
    return w * meta + (1 - w) * trans, w, src.name
