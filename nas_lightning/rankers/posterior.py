"""The GP head as a ranker: ``gp`` ranks by the posterior mean of :mod:`~nas_lightning.models.gp`.

Its predictive distribution lets :func:`~nas_lightning.rankers.ranking.rank_with` report,
beside the rank correlations, how well the intervals cover the held-out values
(:mod:`~nas_lightning.rankers.calibration`).
"""

from __future__ import annotations

import logging

import torch

from nas_lightning.errors import UserError
from nas_lightning.models import gp
from nas_lightning.models.gp_fit import GPOptions, fit_hyper
from nas_lightning.models.module import MetaPredictor
from nas_lightning.rankers.baselines import _Fitted
from nas_lightning.rankers.ranking import csv_sources
from nas_lightning.tasks.load import load_task
from nas_lightning.tasks.spec import TaskSpec
from nas_lightning.tasks.task import Task

log = logging.getLogger(__name__)


def training_tasks(module: MetaPredictor, exclude: Task | None = None) -> list[Task]:
    """The tables the checkpoint trained or was selected on that load here (csv tables read back
    as :func:`csv_sources` does), ``exclude`` (by name or content) left out."""
    names = list(getattr(module, "trained_on", {}).get("tasks", []))
    found, missing = csv_sources(names, exclude=None if exclude is None else exclude.name)
    if missing:
        log.warning("gp head: %d training tables not found here (%s)", len(missing), ", ".join(missing[:3]))
    for name in names:
        if not TaskSpec.parse(name).is_csv:
            try:
                found.append(load_task(name))
            except UserError as err:
                log.warning("gp head: training task %s not loaded (%s)", name, err)
    keep = [t for t in found if t.space.name == module.space.name and t.size > 1]
    if exclude is not None:
        keep = [t for t in keep if t.name != exclude.name and t.fingerprint != exclude.fingerprint]
    return keep


def gp_hyper(module: MetaPredictor, target: Task | None, options: GPOptions) -> gp.GPHyper:
    """The head's hyperparameters, meta-learned on the checkpoint's tables other than ``target``."""
    return fit_hyper(module, training_tasks(module, target), options)


class GPRanker(_Fitted):
    """The meta-learned predictor with the GP head (``name``: ``gp``): ranks by the posterior mean
    and reports its predictive distribution."""

    name = "gp"

    def __init__(self, module: MetaPredictor, maximise: bool, hyper: gp.GPHyper) -> None:
        super().__init__()
        self.module, self.maximise, self.hyper = module, maximise, hyper
        self.notes = {"hyper": [hyper.as_dict()]}

    def predictive(self, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Predictive location and scale ``[C]`` in the units of the support's values, and the
        degrees of freedom (``inf``: normal; see :func:`~nas_lightning.models.gp.gp_posterior`)."""
        return gp.gp_posterior(self.module, self.hyper, self.support, self.targets, candidates, self.maximise)

    def score(self, candidates: torch.Tensor) -> torch.Tensor:
        return self.predictive(candidates)[0]
