"""Live multi-fidelity: a curve oracle whose answers come from trainings run for real.

A job takes a candidate from the epochs this search trained it to, to more: it continues the
store's snapshot of the candidate where there is one (the same learning-rate schedule as a straight
full-length run, so the same curve), trains in this process or on Ray, and writes what it reached
at once: a stopped training to the store's ``progress`` table (curve and snapshot), a finished one
to its results (curve included, the snapshot dropped). What the store already covers is answered
from it, charged the epochs and the seconds it took when it was trained, so a search killed at any
moment and run again makes the same decisions, retrains nothing finished, and loses at most the
epochs of the jobs that were running.
"""

from __future__ import annotations

import logging
from typing import Any

from nas_lightning.candidates.datasets import ImageData
from nas_lightning.candidates.ray_pool import RayPool
from nas_lightning.candidates.recipe import Recipe
from nas_lightning.candidates.store import ResultStore
from nas_lightning.candidates.train import train_candidate
from nas_lightning.oracles.fidelity import CurveOracle
from nas_lightning.oracles.training import FAILED_VALUE
from nas_lightning.spaces import NB201
from nas_lightning.tasks.spec import TRAIN_PREFIX

log = logging.getLogger(__name__)


class TrainingCurves(CurveOracle):
    """Validation curves of cells trained for real, with a budget in epochs.

    Args:
        data: the dataset.
        recipe: how each candidate is trained (its ``epochs`` are the full length; its ``seed`` the training seed).
        store: finished and stopped trainings (shared by every search on the same file).
        budget: the most epochs a search may spend (``None``: unlimited).
        workers: jobs at once (on ``pool``; without one, one at a time in this process).
        pool: a :class:`~nas_lightning.candidates.ray_pool.RayPool` (``None``: in this process).
        name: the task's name (default ``train:<dataset>``).
        accelerator: Lightning's accelerator for the trainings.
    """

    def __init__(self, data: ImageData, recipe: Recipe, store: ResultStore, budget: int | None = None, workers: int = 1,
                 pool: RayPool | None = None, name: str | None = None, accelerator: str = "auto") -> None:
        super().__init__(name or f"{TRAIN_PREFIX}{data.name}", NB201, NB201.all_indices(), recipe.epochs, budget,
                         workers if pool is not None else 1)
        self.data, self.recipe, self.store, self.pool, self.accelerator = data, recipe, store, pool, accelerator
        self.trained_epochs = 0  # epochs this oracle actually trained (the rest came from the store)
        self._jobs: dict[int, Any] = {}

    def _key(self, index: int) -> tuple[str, str, str, int]:
        return NB201.to_string(index), self.data.fingerprint, self.recipe.key, self.recipe.seed

    def _known(self, index: int, stop: int) -> list[list[float]] | None:
        """The stored curve up to ``stop`` at least ([] for a failed training), or None."""
        row = self.store.get(*self._key(index))
        if row is not None and (row["status"] != "ok" or row["curve"]):
            return row["curve"] if row["status"] == "ok" else []
        stopped = self.store.progress(*self._key(index))
        return stopped["curve"] if stopped is not None and stopped["epochs"] >= stop else None

    def _launch(self, index: int, start: int, stop: int) -> None:
        curve = self._known(index, stop)
        if curve is not None:
            self._jobs[index] = curve
            return
        stopped = self.store.progress(*self._key(index))
        resume = stopped["snapshot"] if stopped is not None else None
        done = stopped["epochs"] if stopped is not None else 0
        self.trained_epochs += stop - done
        if self.pool is None:
            self._jobs[index] = self._keep(index, train_candidate(NB201.ops(index), self.data, self.recipe, None, self.accelerator,
                                                                  epochs=stop, resume=resume))
        else:
            self._jobs[index] = self.pool.submit(NB201.ops(index), self.data, self.recipe, None, self.accelerator, epochs=stop, resume=resume)

    def _keep(self, index: int, result: dict[str, Any]) -> list[list[float]]:
        """Write a job's result to the store; its curve ([] when the training failed)."""
        if result.get("status") != "ok":
            if result.get("curve") is not None:  # a failed training, not a lost worker: recorded
                self.store.put(*self._key(index), result)
            log.warning("training of %s failed (%s): charged as %.1f %%", NB201.to_string(index), result.get("reason"), FAILED_VALUE)
            return []
        if result["epochs"] == self.recipe.epochs:
            self.store.put(*self._key(index), result)
        else:
            self.store.save_progress(*self._key(index), result)
        return result["curve"]

    def _result(self, index: int, start: int, stop: int) -> tuple[float, float]:
        job = self._jobs.pop(index)
        curve = job if isinstance(job, list) else self._keep(index, self.pool.result(job, NB201.to_string(index)))
        if len(curve) < stop:  # failed (or recorded without a curve)
            return FAILED_VALUE, 0.0
        return float(curve[stop - 1][0]), float(curve[stop - 1][1]) - (float(curve[start - 1][1]) if start else 0.0)

    def cancel(self) -> None:
        refs = [job for job in self._jobs.values() if not isinstance(job, list)]
        if refs and self.pool is not None:
            self.pool.cancel(refs)
        self._jobs.clear()
        super().cancel()

    def final_test(self, index: int) -> float | None:
        row = self.store.get(*self._key(index))
        return None if row is None else row.get("test_acc")
