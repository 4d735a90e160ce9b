"""The rankers ``search.py rank`` compares side by side on the same support draws.

``meta`` (the meta-learned predictor adapted on the support), ``scratch`` (the same network
trained on the support only), ``pretrain`` (a pretrained predictor fine-tuned on the support),
``params`` (parameter count, oriented by the support), ``transfer`` (a source table as the
ranking: a fixed one or, per draw, the candidate table agreeing best with the support, see
:func:`~nas_lightning.rankers.blend.best_source`) and ``blend`` (meta and transfer mixed by a
weight chosen on the support alone, see :mod:`~nas_lightning.rankers.blend`).
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics.functional import spearman_corrcoef

from nas_lightning.models import maml
from nas_lightning.models.module import MetaPredictor
from nas_lightning.models.predictors import PREDICTORS
from nas_lightning.models.scoring import score, standardise
from nas_lightning.rankers.blend import best_source, blended
from nas_lightning.tasks.task import Task


class _Fitted:
    """Keeps the support of the last :meth:`fit`."""

    name = "ranker"

    def __init__(self) -> None:
        self.notes: dict[str, list[Any]] = {}
        self.support = self.targets = torch.empty(0)
        self.seed = 0

    def fit(self, support: torch.Tensor, targets: torch.Tensor, seed: int) -> None:
        self.support, self.targets, self.seed = support, targets, seed


class MetaRanker(_Fitted):
    """A meta-learned predictor adapted on the support (``name``: ``meta``, or ``pretrain`` for a
    fine-tuned pretrained one)."""

    def __init__(self, module: MetaPredictor, maximise: bool, name: str = "meta") -> None:
        super().__init__()
        self.module, self.maximise, self.name = module, maximise, name
        self.last: torch.Tensor | None = None  # the last scores (the blend reuses them)

    def score(self, candidates: torch.Tensor) -> torch.Tensor:
        self.last = score(self.module, self.support, self.targets, candidates, self.maximise)[0].cpu()
        return self.last


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


class ScratchRanker(_Fitted):
    """The predictor's network, freshly initialised (seeded by the draw) and trained on the support."""

    name = "scratch"

    def __init__(self, module: MetaPredictor) -> None:
        super().__init__()
        self.module = module

    def score(self, candidates: torch.Tensor) -> torch.Tensor:
        return scratch_scores(self.module, self.support, self.targets, candidates, self.seed)


def orient(ranking: torch.Tensor, support_pos: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Flip a fixed ranking so it agrees with the support (uses the support only)."""
    r = float(spearman_corrcoef(ranking[support_pos].double(), targets.double()))
    return ranking if r >= 0 or r != r else -ranking


class ParamsRanker(_Fitted):
    """Parameter count as the ranking, its sign chosen by the support."""

    name = "params"

    def __init__(self, params: Task) -> None:
        super().__init__()
        self.params = params

    def score(self, candidates: torch.Tensor) -> torch.Tensor:
        pos = torch.searchsorted(candidates, self.support)
        return orient(self.params.lookup(candidates).float(), pos, self.targets)


def as_ranking(source: Task, archs: torch.Tensor) -> torch.Tensor:
    """A source table as a ranking of ``archs`` (higher is better); absent ones rank last."""
    inside = source.contains(archs)
    ranked = torch.full((len(archs),), float("nan"))
    ranked[inside] = (source.lookup(archs[inside]) * source.sign).float()
    return torch.nan_to_num(ranked, nan=float(ranked[inside].min()) if inside.any() else 0.0)


class TransferRanker(_Fitted):
    """A source table as the ranking: ``source``, or per draw the best-matching of ``sources``."""

    name = "transfer"

    def __init__(self, source: Task | None = None, sources: list[Task] | None = None) -> None:
        super().__init__()
        self.source, self.sources = source, sources or []
        self.notes = {"sources": []}
        self.picked: Task | None = None

    def fit(self, support: torch.Tensor, targets: torch.Tensor, seed: int) -> None:
        super().fit(support, targets, seed)
        self.picked = self.source if self.source is not None else best_source(self.sources, support, targets)[0]
        if self.picked is not None:
            self.notes["sources"].append(self.picked.name)

    def score(self, candidates: torch.Tensor) -> torch.Tensor | None:
        return None if self.picked is None else as_ranking(self.picked, candidates)


class BlendRanker(_Fitted):
    """Meta and transfer mixed by a weight chosen on the support (needs K >= 3); reuses the
    scores ``meta`` computed on the same draw."""

    name = "blend"

    def __init__(self, meta: MetaRanker, sources: list[Task]) -> None:
        super().__init__()
        self.meta, self.sources = meta, sources
        self.notes = {"meta_weights": []}

    def score(self, candidates: torch.Tensor) -> torch.Tensor | None:
        if len(self.support) < 3:
            return None
        scores, w, _ = blended(self.meta.module, self.sources, self.support, self.targets, candidates,
                               self.meta.maximise, self.meta.last)
        self.notes["meta_weights"].append(w)
        return scores


def baselines(task: Task, module: MetaPredictor | None = None, source: Task | None = None,
              sources: list[Task] | None = None, params_table: Task | None = None,
              pretrained: MetaPredictor | None = None) -> list[Any]:
    """The rankers that apply, in report order: meta and scratch (with ``module``), pretrain (with
    ``pretrained``), params (with ``params_table``), blend (with ``module`` and a transfer table),
    transfer (with ``source`` or ``sources``)."""
    maximise = task.direction == "max"
    meta = MetaRanker(module, maximise) if module is not None else None
    pool = [source] if source is not None else (sources or [])
    candidates = [
        meta,
        ScratchRanker(module) if module is not None else None,
        MetaRanker(pretrained, maximise, "pretrain") if pretrained is not None else None,
        ParamsRanker(params_table) if params_table is not None else None,
        BlendRanker(meta, pool) if meta is not None and pool else None,
        TransferRanker(source, sources) if source is not None or sources else None,
    ]
    return [r for r in candidates if r is not None]
