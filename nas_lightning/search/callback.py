"""The epoch-end search round: one round of ``meta`` on each target, run from a Callback."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from torchmetrics.functional import spearman_corrcoef

from nas_lightning.models.scoring import PredictorScorer, score
from nas_lightning.search.meta import MetaSearch
from nas_lightning.tasks.oracle import Oracle

log = logging.getLogger(__name__)


class SearchCallback(L.Callback):
    """Runs one round of predictor-guided search on every target task at each training epoch end.

    Args:
        per_round: oracle queries per target per round.
        batch: architectures queried per scoring step within a round.
        members: bootstrap members of the scorer (1: pure exploitation).
        beta: exploration weight (mean + beta * spread).
        feedback: hand the newly evaluated architectures to the DataModule for training (the task
            set refresh); off keeps the target out of training entirely.
        seed: seeds the callback's own generator.
    """

    def __init__(self, per_round: int = 5, batch: int = 1, members: int = 8, beta: float = 0.5,
                 feedback: bool = True, seed: int = 0) -> None:
        self.per_round, self.batch, self.members, self.beta = per_round, batch, members, beta
        self.feedback = feedback
        self.generator = torch.Generator().manual_seed(seed)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        for name, oracle in dm.oracles.items():
            before = oracle.num_queries
            if trainer.is_global_zero and (oracle.remaining is None or oracle.remaining > 0):
                was_training = pl_module.training
                pl_module.eval()
                scorer = PredictorScorer(pl_module, oracle.direction == "max", self.members)
                MetaSearch(scorer, batch=self.batch, beta=self.beta).run(oracle, self.per_round, self.generator)
                pl_module.train(was_training)
            # every rank: the same history, and the generator rank 0 advanced (what a checkpoint holds)
            state = trainer.strategy.broadcast({"oracle": oracle.state_dict(), "generator": self.generator.get_state()}, src=0)
            oracle.load_state_dict(state["oracle"])
            self.generator.set_state(state["generator"])
            new = oracle.history()[0][before:]
            if self.feedback and len(new):
                dm.refresh(name, new)
            self._log(trainer, pl_module, name, oracle)

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule, name: str, oracle: Oracle) -> None:
        best = oracle.best()
        if best is None:
            return
        metrics = {"search/best": best[1], "search/queries": float(oracle.num_queries)}
        view = oracle.evaluation_only()  # evaluation only: scoring what the search did (None: no table)
        if view is not None:
            idx, values = oracle.history()
            scores = score(pl_module, idx, (values * oracle.sign).float(), view.archs, oracle.direction == "max")[0].cpu()
            metrics["search/regret"] = view.regret(float(view.lookup(torch.tensor([best[0]]))[0]))
            metrics["search/spearman"] = float(spearman_corrcoef(scores, (view.values() * oracle.sign).float()))
        if len(trainer.datamodule.oracles) > 1:
            metrics = {f"{k}/{name}": v for k, v in metrics.items()}
        pl_module.log_dict(metrics, sync_dist=True)  # the same on every rank (broadcast history, same weights)
        if trainer.is_global_zero:  # every rank holds the same history: say it once
            log.info("search on %s: best %s = %.4f after %d queries", name, oracle.space.to_string(best[0]), best[1], oracle.num_queries)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.generator.set_state(state_dict["generator"])
