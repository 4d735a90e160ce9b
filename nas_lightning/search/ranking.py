"""Few-shot ranking: adapt on K evaluated architectures, rank the whole task, compare baselines.

Baselines, side by side on the same support draws:
``scratch`` (the same network trained on the support only), ``params`` (rank by parameter
count, oriented by the support), ``transfer`` (a source table as the ranking: a fixed one, or,
per draw, the candidate table that agrees best with the support, see :func:`best_source`);
``blend`` mixes meta and transfer with a weight chosen on the support alone (see
:mod:`~nas_lightning.search.blend`).
"""

from __future__ import annotations

import logging
import os
import statistics
from pathlib import Path

import torch
from torchmetrics.functional import spearman_corrcoef

from nas_lightning.models import maml
from nas_lightning.models.module import MetaPredictor
from nas_lightning.models.predictors import PREDICTORS
from nas_lightning.models.scoring import score, standardise
from nas_lightning.search.blend import best_source, blended
from nas_lightning.search.bounded import bounded_score
from nas_lightning.tasks.csvtable import load_csv
from nas_lightning.tasks.oracle import TableOracle
from nas_lightning.tasks.spec import TaskSpec
from nas_lightning.tasks.task import Task

log = logging.getLogger(__name__)


def scratch_scores(module: MetaPredictor, support_archs: torch.Tensor, targets: torch.Tensor, candidates: torch.Tensor,
                   seed: int, steps: int = 200, lr: float = 1e-2) -> torch.Tensor:
    """The same network, freshly initialised and trained on the support only (no meta-learning)."""
    hp = module.hparams
    torch.manual_seed(seed)  # the initialisation of a fresh network; seeded per draw
    net = PREDICTORS[hp.predictor](hp.hidden, hp.layers, hp.encoding, 0, space=module.space)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x = module.encode(support_archs).cpu()
    y, _ = standardise(targets.float()[None], targets.float()[None])
    with torch.enable_grad():
        for _ in range(steps):
            loss = maml.episode_loss(net(x)[None], y, hp.loss).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return net(module.encode(candidates).cpu())


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


def _orient(ranking: torch.Tensor, support_pos: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Flip a fixed ranking so it agrees with the support (uses the support only)."""
    r = float(spearman_corrcoef(ranking[support_pos].double(), targets.double()))
    return ranking if r >= 0 or r != r else -ranking


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


def _as_ranking(source: Task, archs: torch.Tensor) -> torch.Tensor:
    """A source table as a ranking of ``archs`` (higher is better); absent ones rank last."""
    inside = source.contains(archs)
    ranked = torch.full((len(archs),), float("nan"))
    ranked[inside] = (source.lookup(archs[inside]) * source.sign).float()
    return torch.nan_to_num(ranked, nan=float(ranked[inside].min()) if inside.any() else 0.0)


def support_draw(task: Task, k: int, seed: int) -> torch.Tensor:
    """Draw ``seed``'s ``k`` support architectures of ``task`` (every method of a draw ranks from them)."""
    return task.archs[torch.randperm(task.size, generator=torch.Generator().manual_seed(seed))[:k]]


def rank_only(task: Task, module: MetaPredictor | None, support: int, seeds: int,
              source: Task | None = None, support_archs: torch.Tensor | None = None,
              sources: list[Task] | None = None, params_table: Task | None = None,
              pretrained: MetaPredictor | None = None, first_seed: int = 0) -> dict:
    """Adapt on ``support`` architectures per seed and rank every architecture of ``task``.

    The support values come through a :class:`TableOracle` (budget ``support``); the whole table is
    read only through its evaluation-only path to score the rankings.

    Args:
        task: the task to rank.
        module: the meta-learned predictor (``None``: baselines only).
        support: K, architectures evaluated per draw.
        seeds: number of support draws (seed ``first_seed + i`` for draw ``i``).
        source: a fixed source task for the ``transfer`` baseline.
        support_archs: a fixed support set instead of random draws (then one draw).
        sources: candidate source tasks; without ``source``, each draw's ``transfer`` uses the
            one agreeing best with that draw's support (:func:`best_source`).
        params_table: the space's parameter counts, for the ``params`` baseline (``None``: none).
        pretrained: a pretrained predictor that adapts by fine-tuning (the ``pretrain`` baseline, see
            :func:`~nas_lightning.models.scoring.finetuned`; ``None``: none).
        first_seed: the seed of the first draw (fresh draws for a confirmation run).

    Returns:
        Per method: ``spearman_mean``, ``spearman_std``, ``kendall_mean``, ``kendall_std`` and
        the per-draw values (``transfer`` also lists its ``sources``, ``blend`` its ``meta_weights``);
        plus the task, K, draws.
    """
    scores: dict[str, list[tuple[float, float]]] = {}
    picked: list[str] = []
    weights: list[float] = []
    draws = 1 if support_archs is not None else seeds
    for seed in range(first_seed, first_seed + draws):
        oracle = TableOracle(task, budget=support, seed=seed)
        chosen = support_draw(task, support, seed) if support_archs is None else support_archs
        targets = (oracle.query(chosen) * oracle.sign).float()
        view = oracle.evaluation_only()  # evaluation only: the truth the rankings are scored on
        archs, truth = view.archs, view.values() * oracle.sign
        pos = torch.searchsorted(archs, chosen)
        methods: dict[str, torch.Tensor] = {}
        if module is not None:
            methods["meta"] = score(module, chosen, targets, archs, oracle.direction == "max")[0].cpu()
            methods["scratch"] = scratch_scores(module, chosen, targets, archs, seed)
        if pretrained is not None:
            methods["pretrain"] = score(pretrained, chosen, targets, archs, oracle.direction == "max")[0].cpu()
        if params_table is not None:
            methods["params"] = _orient(params_table.lookup(archs).float(), pos, targets)
        pool = [source] if source is not None else (sources or [])
        if module is not None and pool and len(chosen) >= 3:
            methods["blend"], w, _ = blended(module, pool, chosen, targets, archs, oracle.direction == "max",
                                             methods["meta"])
            weights.append(w)
        src = source if source is not None else best_source(sources or [], chosen, targets)[0]
        if src is not None:
            methods["transfer"] = _as_ranking(src, archs)
            picked.append(src.name)
        for name, pred in methods.items():
            scores.setdefault(name, []).append(_corr(pred, truth))
    out: dict = {"task": task.name, "support": support, "draws": draws}
    for name, vals in scores.items():
        sp, kt = [v[0] for v in vals], [v[1] for v in vals]
        out[name] = {
            "spearman_mean": statistics.fmean(sp), "spearman_std": statistics.pstdev(sp),
            "kendall_mean": statistics.fmean(kt), "kendall_std": statistics.pstdev(kt),
            "spearman": sp, "kendall": kt,
        }
    if "transfer" in out:
        out["transfer"]["sources"] = picked
    if "blend" in out:
        out["blend"]["meta_weights"] = weights
    return out


def predict_all(task: Task, module: MetaPredictor) -> tuple[torch.Tensor, torch.Tensor, dict[int, float]]:
    """Adapt on every architecture ``task`` holds (the user's own measurements) and score the space.

    A table of more than :data:`~nas_lightning.search.bounded.SUPPORT_BOUND` rows is adapted on in
    chunks of that many (bounded memory, every row counted; see :func:`bounded_score`).

    Returns:
        All architecture indices, their scores (higher is better) and the measured values.
    """
    oracle = TableOracle(task, budget=task.size)
    values = oracle.query(task.archs)
    archs = module.space.all_indices()
    scores = bounded_score(module, task.archs, (values * oracle.sign).float(), archs, oracle.direction == "max")
    return archs, scores, dict(zip(task.archs.tolist(), values.tolist()))
