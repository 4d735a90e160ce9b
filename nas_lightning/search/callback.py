"""The epoch-end search round: one round of ``meta`` on each target, run from a Callback."""

from __future__ import annotations

import logging
from typing import Any, Callable

import lightning as L
import torch
from torchmetrics.functional import spearman_corrcoef

from nas_lightning.errors import UserError
from nas_lightning.models.scoring import PredictorScorer, score
from nas_lightning.oracles import Oracle
from nas_lightning.search.driver import run_parallel
from nas_lightning.models.gp_fit import fit_hyper
from nas_lightning.search.meta import MetaOptions, MetaSearch
from nas_lightning.search.posterior import GPScorer, PosteriorSearch

log = logging.getLogger(__name__)


class SearchCallback(L.Callback):
    """Runs one round of predictor-guided search on every target task at each training epoch end.

    A target whose oracle trains several candidates at once (``--data.oracle.ray.workers N``) is
    searched with a fixed lag (same seed and workers, same result); the others one query at a time.

    Args:
        per_round: oracle queries per target per round.
        meta: how the search uses the predictor (architectures per scoring step, bootstrap
            members, exploration weight).
        feedback: hand the newly evaluated architectures to the DataModule for training (the task
            set refresh); off keeps the target out of training entirely.
        seed: seeds the callback's own generator.
    """

    def __init__(self, per_round: int = 5, meta: MetaOptions = MetaOptions(), feedback: bool = True,
                 seed: int = 0) -> None:
        if not isinstance(per_round, int) or per_round < 0:
            raise UserError(f"--search.per_round must be an integer >= 0 (queries per target per epoch), got {per_round!r}")
        self.per_round, self.meta = per_round, meta if isinstance(meta, MetaOptions) else MetaOptions(**meta)
        self.feedback = feedback
        self.generator = torch.Generator().manual_seed(seed)

    def _search(self, module: L.LightningModule, maximise: bool, tasks: list) -> MetaSearch | PosteriorSearch:
        """Meta's search with the configured head (``gp``: hyperparameters fitted on the training tables)."""
        if self.meta.head == "gp":
            hyper = fit_hyper(module, [t for t in tasks if t.space.name == module.space.name])
            return PosteriorSearch(GPScorer(module, maximise, hyper), batch=self.meta.batch,
                                   acquisition=self.meta.acquisition, beta=self.meta.beta)
        return MetaSearch(PredictorScorer(module, maximise, self.meta.members), batch=self.meta.batch, beta=self.meta.beta)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        for name, oracle in dm.oracles.items():
            before = oracle.num_queries
            if trainer.is_global_zero and (oracle.remaining is None or oracle.remaining > 0):
                was_training = pl_module.training
                pl_module.eval()
                search = self._search(pl_module, oracle.direction == "max", dm.train)
                if oracle.workers is not None:
                    progress = self._progress(trainer, name, len(dm.oracles) > 1, oracle.num_queries)
                    run_parallel(search, oracle, self.per_round, self.generator, oracle.workers, progress)
                else:
                    search.run(oracle, self.per_round, self.generator)
                pl_module.train(was_training)
            # every rank: the same history, and the generator rank 0 advanced (what a checkpoint holds)
            state = trainer.strategy.broadcast({"oracle": oracle.state_dict(), "generator": self.generator.get_state()}, src=0)
            oracle.load_state_dict(state["oracle"])
            self.generator.set_state(state["generator"])
            new = oracle.history()[0][before:]
            if self.feedback and len(new):
                dm.refresh(name, new)
            self._log(trainer, pl_module, name, oracle)

    @staticmethod
    def _progress(trainer: L.Trainer, name: str, many: bool, before: int) -> Callable[[int, int], None]:
        """Log the trainings running and finished to the run's logger (TensorBoard) as they change;
        the step is the target's submitted queries."""
        suffix = f"/{name}" if many else ""

        def show(running: int, finished: int) -> None:
            if trainer.logger is not None and trainer.is_global_zero:
                trainer.logger.log_metrics({f"search/running{suffix}": float(running),
                                            f"search/finished{suffix}": float(before + finished)},
                                           step=before + finished + running)

        return show

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
