"""The epoch-end search round: one round of ``meta`` on each target, run from a Callback."""

from __future__ import annotations

import logging
from typing import Any, Callable

import lightning as L
import torch
from torchmetrics.functional import spearman_corrcoef

from nas_lightning.errors import UserError
from nas_lightning.evaluation.oracle import TrainingOracle
from nas_lightning.evaluation.parallel import RayPool, RaySettings
from nas_lightning.models.scoring import PredictorScorer, score
from nas_lightning.search.parallel import run_parallel
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
        workers: ``train:`` targets: trainings at once on Ray (a local instance started at the first
            round and stopped when training ends, or the cluster at ``ray_address``); the search
            proposes with a fixed lag (same seed and workers, same result). ``None``: one at a time here.
        ray_address: host:port of a Ray cluster started with ``ray start --head`` to join.
        trial_cpus: CPUs per training on Ray.
        trial_gpus: GPUs per training on Ray (a fraction lets several trainings share a card).
        max_retries: retries of a training whose Ray worker or node was lost (then it counts as failed).
        ray_allow_unauthenticated: run Ray even with RAY_AUTH_MODE=disabled (refused otherwise); anyone
            who can reach the Ray ports can then run code as you and read your data.
    """

    def __init__(self, per_round: int = 5, batch: int = 1, members: int = 8, beta: float = 0.5,
                 feedback: bool = True, seed: int = 0, workers: int | None = None, ray_address: str | None = None,
                 trial_cpus: float = 1.0, trial_gpus: float = 0.0, max_retries: int = 2,
                 ray_allow_unauthenticated: bool = False) -> None:
        self.per_round, self.batch, self.members, self.beta = per_round, batch, members, beta
        self.feedback = feedback
        self.generator = torch.Generator().manual_seed(seed)
        if workers is None and ray_address is not None:
            raise UserError("search.ray_address needs search.workers N (how many trainings run at once)")
        self.ray = None if workers is None else RaySettings(workers, ray_address, trial_cpus, trial_gpus, max_retries,
                                                              ray_allow_unauthenticated)
        self._pool: RayPool | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        for name, oracle in dm.oracles.items():
            before = oracle.num_queries
            if trainer.is_global_zero and (oracle.remaining is None or oracle.remaining > 0):
                was_training = pl_module.training
                pl_module.eval()
                scorer = PredictorScorer(pl_module, oracle.direction == "max", self.members)
                search = MetaSearch(scorer, batch=self.batch, beta=self.beta)
                if self.ray is not None and isinstance(oracle, TrainingOracle):
                    if self._pool is None:
                        self._pool = RayPool(self.ray)
                    oracle.pool = self._pool
                    progress = self._progress(trainer, name, len(dm.oracles) > 1, oracle.num_queries)
                    run_parallel(search, oracle, self.per_round, self.generator, self.ray.workers, progress)
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

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Stop (or leave) the Ray instance of the search, if one was started."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

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
