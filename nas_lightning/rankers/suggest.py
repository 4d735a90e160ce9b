"""Which architectures to measure first on a new device: a support set chosen under the prior.

Before any measurement the meta-learned predictor still knows something: its prior (the
meta-learned initialisation, under the context of an empty support and the task's direction)
maps every architecture to hidden features, and adaptation mostly re-weights the last layer on
them. Three designs over that feature space:

* ``kcenter`` (default): farthest-point (k-center greedy) in the standardised feature space;
  spreads the support over every kind of cell the prior tells apart.
* ``kmeans``: the cell nearest each of ``k`` k-means centres: representative of the bulk.
* ``dopt``: greedy D-optimal design on the last-layer features, each scaled by the square root
  of its meta-learned inner learning rate (the kernel an inner step uses); each pick maximises
  the posterior variance of a Bayesian linear head given the picks so far.
* ``greedy``: optimises what a support is for, the rank correlation after adaptation, on the
  checkpoint's own training tables (as HELP picks its reference architectures): each pick is the
  pool cell that, added to the picks so far, gives the best mean Spearman over the tables when the
  predictor adapts on them. The picks are nested (the first 5 of 10 are the 5 it picks for K = 5).

Designed supports are not reliably better than random ones: a single unusual cell (an outlier
latency on the device) weighs more in a small spread-out support. All three are deterministic
for a given checkpoint; nothing here reads the new task's values (``greedy`` reads the training
tables only).
"""

from __future__ import annotations

import logging

import torch

from nas_lightning.errors import UserError
from nas_lightning.models.module import MetaPredictor
from nas_lightning.models.scoring import score_sets
from nas_lightning.tasks.task import Task

log = logging.getLogger(__name__)
METHODS: tuple[str, ...] = ("kcenter", "kmeans", "dopt", "greedy")


@torch.no_grad()
def prior_features(module: MetaPredictor, candidates: torch.Tensor, maximise: bool = False) -> torch.Tensor:
    """Inputs of the predictor's last layer ``[C, H]`` for ``candidates`` under the prior.

    The context is the one of an empty support with the given direction (as ``score`` with
    ``k = 0``); the features are captured on the way into ``net.head``.
    """
    dev = module.codes.device
    flag = torch.tensor([bool(maximise)], device=dev)
    xs = torch.zeros(1, 0, module.codes.shape[1], device=dev)
    ys = torch.zeros(1, 0, device=dev)
    z = module.context(xs, ys, torch.ones_like(ys, dtype=torch.bool), flag)
    captured: list[torch.Tensor] = []
    handle = module.net.head.register_forward_hook(lambda mod, inp, out: captured.append(inp[0]))
    try:
        module.net(module.encode(candidates.to(dev).long()), None if z is None else z[0])
    finally:
        handle.remove()
    return captured[0].float().cpu()


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks along the last dimension (ties share their mean rank)."""
    order = x.argsort(-1)
    ranks = torch.empty_like(x, dtype=torch.float64)
    ranks.scatter_(-1, order, torch.arange(x.shape[-1], dtype=torch.float64).expand_as(x).contiguous())
    if x.dim() == 1:  # exact tie handling for the short vectors scored here
        for v in torch.unique(x):
            same = x == v
            if int(same.sum()) > 1:
                ranks[same] = ranks[same].mean()
    return ranks


def spearman(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Spearman correlation along the last dimension (rows of ``pred`` against ``truth``)."""
    a, b = _ranks(pred), _ranks(truth.expand_as(pred) if truth.dim() < pred.dim() else truth)
    a, b = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True)
    den = (a.pow(2).sum(-1) * b.pow(2).sum(-1)).sqrt()
    return torch.where(den > 0, (a * b).sum(-1) / den.clamp_min(1e-12), torch.zeros_like(den))



def _head_scale(module: MetaPredictor) -> torch.Tensor:
    """Square roots of the inner learning rates of the head's weights ``[H]`` (ones if absent)."""
    lrs = module.lrs().get("head.weight")
    if lrs is None:
        return torch.ones(module.net.head.in_features)
    return lrs.detach().abs().reshape(-1).float().cpu().sqrt()


def greedy_dopt(features: torch.Tensor, k: int, ridge: float = 1.0) -> torch.Tensor:
    """Greedy D-optimal design: ``k`` row indices of ``features [C, d]`` (a bias column is added).

    Keeps the posterior covariance ``S`` of a linear head with prior ``N(0, I)`` and noise
    ``ridge``; each pick is the row of largest posterior variance ``f^T S f``, then ``S`` takes a
    rank-one update. Features are scaled so their mean squared norm is 1.
    """
    f = torch.cat([features.double(), torch.ones(len(features), 1, dtype=torch.float64)], 1)
    f = f / f.pow(2).sum(1).mean().sqrt().clamp_min(1e-12)
    cov = torch.eye(f.shape[1], dtype=torch.float64)
    var = f.pow(2).sum(1)
    picked: list[int] = []
    for _ in range(k):
        j = int(torch.argmax(var))
        picked.append(j)
        g = cov @ f[j]
        denom = ridge + float(f[j] @ g)
        cov -= torch.outer(g, g) / denom
        var -= (f @ g).pow(2) / denom
        var[picked] = float("-inf")
    return torch.tensor(picked, dtype=torch.long)


def kcenter(features: torch.Tensor, k: int) -> torch.Tensor:
    """Farthest-point selection of ``k`` rows of standardised ``features``, from the row farthest
    from the mean."""
    f = features.double()
    f = (f - f.mean(0)) / f.std(0).clamp_min(1e-8)
    dist = f.pow(2).sum(1)
    picked: list[int] = []
    for _ in range(k):
        j = int(torch.argmax(dist))
        picked.append(j)
        dist = torch.minimum(dist, (f - f[j]).pow(2).sum(1))
        dist[picked] = float("-inf")
    return torch.tensor(picked, dtype=torch.long)


def kmeans(features: torch.Tensor, k: int, iters: int = 25, seed: int = 0) -> torch.Tensor:
    """``k`` representative rows: k-means (k-means++ start, seeded) on standardised ``features``,
    then the row nearest each centre (distinct rows)."""
    f = features.double()
    f = (f - f.mean(0)) / f.std(0).clamp_min(1e-8)
    gen = torch.Generator().manual_seed(seed)
    centres = [f[int(torch.randint(len(f), (1,), generator=gen))]]
    dist = (f - centres[0]).pow(2).sum(1)
    for _ in range(k - 1):
        j = int(torch.multinomial(dist.clamp_min(0) + 1e-12, 1, generator=gen))
        centres.append(f[j])
        dist = torch.minimum(dist, (f - f[j]).pow(2).sum(1))
    c = torch.stack(centres)
    for _ in range(iters):
        assign = torch.cdist(f, c).argmin(1)
        for i in range(k):
            members = f[assign == i]
            if len(members):
                c[i] = members.mean(0)
    d = torch.cdist(c, f)
    picked: list[int] = []
    for i in range(k):
        d[i, picked] = float("inf")
        picked.append(int(d[i].argmin()))
    return torch.tensor(picked, dtype=torch.long)


def greedy(module: MetaPredictor, k: int, tables: list[Task], candidates: torch.Tensor, pool: int = 96,
           evaluate: int = 400, seed: int = 0) -> torch.Tensor:
    """``k`` architectures picked one at a time, each the ``pool`` cell that maximises the mean
    Spearman (over ``tables``, on ``evaluate`` cells) of the predictor adapted on the picks so far
    plus it. Pool and evaluation cells are drawn (seeded) among ``candidates`` that every table holds.

    Raises:
        UserError: without tables, or when they share fewer than ``k`` candidates.
    """
    if not tables:
        raise UserError("the greedy suggestion needs the checkpoint's training tables; none was found here "
                        "(run from where train.py ran, or use --method kcenter)")
    common = candidates.long().cpu()
    for t in tables:
        common = common[t.contains(common)]
    if len(common) < max(k, 2):
        raise UserError(f"the training tables share {len(common)} candidate architectures, fewer than k = {k}")
    gen = torch.Generator().manual_seed(seed)
    cells = common[torch.randperm(len(common), generator=gen)]
    evals = common[torch.randperm(len(common), generator=gen)[:evaluate]]
    cells = cells[:pool] if len(cells) > pool else cells
    truth = [(t.lookup(evals) * t.sign).double() for t in tables]
    picked: list[int] = []
    for _ in range(k):
        fresh = cells[~torch.isin(cells, torch.tensor(picked, dtype=torch.long))]
        sets = torch.cat([torch.tensor(picked, dtype=torch.long).expand(len(fresh), len(picked)), fresh[:, None]], 1)
        fits = torch.zeros(len(tables), len(fresh), dtype=torch.float64)
        for i, (t, y) in enumerate(zip(tables, truth)):
            vals = (t.lookup(sets.reshape(-1)) * t.sign).reshape(sets.shape).float()
            pred = score_sets(module, sets, vals, evals, t.direction == "max").cpu().double()
            fits[i] = spearman(pred, y) if sets.shape[1] >= 2 else 0.0
        fit = fits.mean(0)
        picked.append(int(fresh[int(torch.argmax(fit))]) if sets.shape[1] >= 2 else int(fresh[0]))
        log.debug("greedy pick %d: Spearman %.4f", len(picked), float(fit.max()))
    return torch.tensor(picked, dtype=torch.long)


def suggest_support(module: MetaPredictor, k: int, candidates: torch.Tensor | None = None,
                    maximise: bool = False, method: str = "kcenter", tables: list[Task] | None = None) -> torch.Tensor:
    """The ``k`` architectures (indices, in pick order) to measure first on a new task.

    Args:
        module: the meta-learned predictor.
        k: how many to suggest.
        candidates: the architectures that may be measured (default: the whole space).
        maximise: the metric's direction (latency: ``False``).
        method: ``"kcenter"``, ``"kmeans"``, ``"dopt"`` or ``"greedy"``.
        tables: ``greedy``: the tables to optimise the support on (the checkpoint's training tables).

    Raises:
        UserError: for an unknown method or ``k`` outside ``[2, len(candidates)]``.
    """
    if method not in METHODS:
        raise UserError(f"unknown suggestion method {method!r}; choose one of {', '.join(METHODS)}")
    cands = module.space.all_indices() if candidates is None else candidates.long().cpu()
    if not 2 <= k <= len(cands):
        raise UserError(f"--suggest-support must be between 2 and {len(cands)} (the candidates), got {k}")
    if method == "greedy":
        return greedy(module, k, tables or [], cands)
    feats = prior_features(module, cands, maximise)
    if method == "dopt":
        chosen = greedy_dopt(feats * _head_scale(module), k)
    elif method == "kcenter":
        chosen = kcenter(feats, k)
    else:
        chosen = kmeans(feats, k)
    log.info("suggested %d of %d architectures by %s on the prior's last-layer features", k, len(cands), method)
    return cands[chosen]
