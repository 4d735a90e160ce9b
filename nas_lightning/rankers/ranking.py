"""Few-shot ranking: fit rankers on K evaluated architectures, rank the whole task, score them.

The rankers (:mod:`~nas_lightning.rankers.baselines`) run side by side on the same support
draws; :func:`predict_all` adapts the predictor on every measured row of a user's table.
"""

from __future__ import annotations

import logging
import os
import statistics
from pathlib import Path

import torch
from torchmetrics.functional import spearman_corrcoef

from nas_lightning.models.module import MetaPredictor
from nas_lightning.rankers.base import Ranker
from nas_lightning.rankers.baselines import baselines
from nas_lightning.rankers.bounded import bounded_score
from nas_lightning.rankers.calibration import coverage, nlpd
from nas_lightning.tasks.csvtable import load_csv
from nas_lightning.oracles import TableOracle
from nas_lightning.tasks.spec import TaskSpec
from nas_lightning.tasks.task import Task

log = logging.getLogger(__name__)


def _tie_pairs(ranks: torch.Tensor) -> int:
    """Pairs that share a value: sum of t (t - 1) / 2 over groups of equal ``ranks``."""
    t = torch.unique(ranks, return_counts=True)[1].long()
    return int((t * (t - 1) // 2).sum())


def _discordant(r: torch.Tensor) -> int:
    """Pairs ``i < j`` with ``r[i] > r[j]`` (``r``: integers in ``[0, n)``), by a bottom-up merge
    sort in which each level is two ``searchsorted`` calls and one sort over the whole array."""
    n, total, width = len(r), 0, 1
    pos = torch.arange(n)
    v = r.long().clone()
    while width < n:
        pair = pos // (2 * width)
        key = pair * n + v  # blocks of ``width`` are sorted; keys of different pairs never mix
        left = (pos % (2 * width)) < width
        lk, rk, rp = key[left], key[~left], pair[~left]
        total += int((torch.searchsorted(lk, rp * n + n) - torch.searchsorted(lk, rk, right=True)).sum())
        v = torch.sort(key).values - pair * n  # merge each pair of blocks
        width *= 2
    return total


def kendall_tau_b(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """Kendall's tau-b with ties (as ``torchmetrics``' default), in O(n log n) time and O(n)
    memory: the whole space (15,625 values) takes milliseconds instead of seconds."""
    n = len(pred)
    xr = torch.unique(pred.cpu(), return_inverse=True)[1]
    yr = torch.unique(truth.cpu(), return_inverse=True)[1]
    order = torch.argsort(xr * n + yr)  # by prediction, ties by truth: no discordance inside ties
    pairs, tx, ty, txy = n * (n - 1) // 2, _tie_pairs(xr), _tie_pairs(yr), _tie_pairs(xr * n + yr)
    disc = _discordant(yr[order])
    conc = pairs - tx - ty + txy - disc
    denom = ((pairs - tx) * (pairs - ty)) ** 0.5
    return (conc - disc) / denom if denom > 0 else float("nan")


def _corr(pred: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    pred, truth = pred.double().cpu(), truth.double().cpu()
    return float(spearman_corrcoef(pred, truth)), kendall_tau_b(pred, truth)


def csv_sources(names: list[str], exclude: str | None = None,
                exclude_path: str | None = None) -> tuple[list[Task], list[str]]:
    """The csv tables among task ``names`` (a checkpoint's training tasks) that exist here.

    A ``csv:<path>#<column>`` name is read back from its path (relative paths from the current
    folder, as train.py resolved them); other specs are not device tables and are left out.
    The task named ``exclude`` and any table in the file ``exclude_path`` (the task being ranked,
    however its path is spelt) are never sources.

    Returns:
        The tables found and the paths of those missing.
    """
    found, missing = [], []
    for name in names:
        spec = TaskSpec.parse(name)
        if not spec.is_csv or name == exclude:
            continue
        path, column = spec.path, spec.column
        if not Path(path).is_file():
            missing.append(path)
            continue
        if exclude_path and Path(exclude_path).is_file() and os.path.samefile(path, exclude_path):
            continue
        found += load_csv(path, column, spec.direction)
    return found, missing


def support_draw(task: Task, k: int, seed: int) -> torch.Tensor:
    """Draw ``seed``'s ``k`` support architectures of ``task`` (every method of a draw ranks from them)."""
    return task.archs[torch.randperm(task.size, generator=torch.Generator().manual_seed(seed))[:k]]


def rank_with(task: Task, rankers: list[Ranker], support: int, seeds: int,
              support_archs: torch.Tensor | None = None, first_seed: int = 0) -> dict:
    """Fit every ranker on ``support`` measured architectures per draw and score its ranking of
    all of ``task``.

    The support values come through a :class:`TableOracle` (budget ``support``); the whole table is
    read only through its evaluation-only path to score the rankings.

    Args:
        task: the task to rank.
        rankers: the methods, side by side on the same draws (see :mod:`~nas_lightning.rankers.baselines`).
        support: K, architectures evaluated per draw.
        seeds: number of support draws (seed ``first_seed + i`` for draw ``i``).
        support_archs: a fixed support set instead of random draws (then one draw).
        first_seed: the seed of the first draw (fresh draws for a confirmation run).

    Returns:
        Per method: ``spearman_mean``, ``spearman_std``, ``kendall_mean``, ``kendall_std``, the
        per-draw values and the ranker's notes (``transfer``: its ``sources``, ``blend``: its
        ``meta_weights``); for a ranker with a posterior (a ``predictive`` method giving location,
        scale and degrees of freedom) also ``coverage80_mean`` (share of held-out values inside the central
        80 % interval) and ``nlpd_mean`` (negative log predictive density in units of the task's
        standard deviation), with their per-draw values; plus the task, K, draws.
    """
    scores: dict[str, list[tuple[float, float]]] = {}
    calibration: dict[str, list[tuple[float, float]]] = {}
    draws = 1 if support_archs is not None else seeds
    for seed in range(first_seed, first_seed + draws):
        oracle = TableOracle(task, budget=support, seed=seed)
        chosen = support_draw(task, support, seed) if support_archs is None else support_archs
        targets = (oracle.query(chosen) * oracle.sign).float()
        view = oracle.evaluation_only()  # evaluation only: the truth the rankings are scored on
        archs, truth = view.archs, view.values() * oracle.sign
        for ranker in rankers:
            ranker.fit(chosen, targets, seed)
            predictive = getattr(ranker, "predictive", None)  # rankers with a posterior
            if predictive is not None:
                pred, scale, df = predictive(archs)
                calibration.setdefault(ranker.name, []).append((coverage(pred, scale, truth, df=df),
                                                                nlpd(pred, scale, truth, df=df)))
            else:
                pred = ranker.score(archs)
            if pred is not None:
                scores.setdefault(ranker.name, []).append(_corr(pred, truth))
    out: dict = {"task": task.name, "support": support, "draws": draws}
    for ranker in rankers:
        vals = scores.get(ranker.name)
        if not vals:
            continue
        sp, kt = [v[0] for v in vals], [v[1] for v in vals]
        out[ranker.name] = {
            "spearman_mean": statistics.fmean(sp), "spearman_std": statistics.pstdev(sp),
            "kendall_mean": statistics.fmean(kt), "kendall_std": statistics.pstdev(kt),
            "spearman": sp, "kendall": kt, **ranker.notes,
        }
        if ranker.name in calibration:
            cov, nl = [c[0] for c in calibration[ranker.name]], [c[1] for c in calibration[ranker.name]]
            out[ranker.name].update({"coverage80_mean": statistics.fmean(cov), "nlpd_mean": statistics.fmean(nl),
                                     "coverage80": cov, "nlpd": nl})
    return out


def rank_only(task: Task, module: MetaPredictor | None, support: int, seeds: int,
              source: Task | None = None, support_archs: torch.Tensor | None = None,
              sources: list[Task] | None = None, params_table: Task | None = None,
              pretrained: MetaPredictor | None = None, first_seed: int = 0) -> dict:
    """:func:`rank_with` the :func:`~nas_lightning.rankers.baselines.baselines` that apply (see there
    for what each argument adds)."""
    return rank_with(task, baselines(task, module, source, sources, params_table, pretrained), support, seeds,
                     support_archs, first_seed)


def predict_all(task: Task, module: MetaPredictor) -> tuple[torch.Tensor, torch.Tensor, dict[int, float]]:
    """Adapt on every architecture ``task`` holds (the user's own measurements) and score the space.

    A table of more than :data:`~nas_lightning.rankers.bounded.SUPPORT_BOUND` rows is adapted on in
    chunks of that many (bounded memory, every row counted; see :func:`bounded_score`).

    Returns:
        All architecture indices, their scores (higher is better) and the measured values.
    """
    oracle = TableOracle(task, budget=task.size)
    values = oracle.query(task.archs)
    archs = module.space.all_indices()
    scores = bounded_score(module, task.archs, (values * oracle.sign).float(), archs, oracle.direction == "max")
    return archs, scores, dict(zip(task.archs.tolist(), values.tolist()))
