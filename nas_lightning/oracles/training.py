"""The training-backed oracle: a query trains the NB201 network of the cell on the user's data.

It keeps the :class:`~nas_lightning.oracles.base.Oracle` contract (budget, charge-once,
history, state in checkpoints) and adds a :class:`ResultStore`: every finished training is
written there at once, keyed by (arch, dataset fingerprint, recipe, training seed). The recipe's
key holds the CPU thread count a training runs on (the recipe's, one by default, in this process;
one per CPU a Ray training asks for) where it is not one, so trainings on other thread counts never
answer for each other; the store's ``descriptions`` table says what each dataset and recipe hash
stands for. A query whose key is already in the store reuses it: a search killed and started
again retrains nothing that finished, and strategies compared side by side share trainings. The
training seed is the recipe's, not the search's, so every strategy and search seed sees the same
answer for a cell.

A failed training (non-finite loss, out of memory) is recorded as failed with its reason and
charged at :data:`FAILED_VALUE` (0 % accuracy), and the search goes on. There is no
evaluation-only view: nothing knows the optimum of a dataset nobody has trained on.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas_lightning.candidates.datasets import ImageData
from nas_lightning.candidates.ray_pool import LOST, RayPool
from nas_lightning.candidates.recipe import Recipe
from nas_lightning.candidates.train import train_candidate
from nas_lightning.candidates.store import ResultStore
from nas_lightning.oracles.base import Oracle
from nas_lightning.spaces import NB201, SearchSpace
from nas_lightning.tasks.spec import TRAIN_PREFIX, TrainingSpec

log = logging.getLogger(__name__)
FAILED_VALUE = 0.0  # a failed training's charged answer: the worst accuracy


@dataclass
class TrainingTarget:
    """A training task before any training: its spec, data, recipe and identity."""

    spec: TrainingSpec
    data: ImageData
    recipe: Recipe
    fingerprint: str
    space: SearchSpace = NB201
    direction: str = "max"

    @property
    def name(self) -> str:
        return str(self.spec)

    @property
    def size(self) -> int:
        return self.space.size


def experiment_fingerprint(data: ImageData, recipe: Recipe) -> str:
    """The identity of a training task: dataset content, recipe and training seed."""
    return hashlib.sha256(f"{data.fingerprint}|{recipe.key}|{recipe.seed}".encode()).hexdigest()[:16]


class TrainingOracle(Oracle):
    """Counted, budgeted access to the validation accuracy of cells trained for real.

    Trainings run in this process one at a time, or on a Ray cluster (``pool``): then
    :meth:`submit` charges an architecture and starts its training at once, and :meth:`collect`
    waits for it (writing every other training that finishes meanwhile to the store at once), so
    several run together while the budget counts what was submitted, each charged once.

    Args:
        data: the dataset (train / val / test splits; search reads val only).
        recipe: how each candidate is trained (its ``seed`` is the training seed).
        store: where finished trainings live (shared by every oracle on the same file).
        budget: the most distinct architectures that may be queried (``None``: unlimited).
        name: the task's name (default ``train:<dataset>``).
        log_dir: TensorBoard folder for each candidate's training curves (``None``: none).
        accelerator: Lightning's accelerator for the trainings (``auto``: a GPU when present).
        progress: the progress bar's label (``None``: no bar).
        pool: where trainings run: a :class:`~nas_lightning.candidates.ray_pool.RayPool` or anything
            with its ``submit`` / ``finished`` / ``result`` / ``cancel`` (``None``: in this process).
        workers: trainings at once on the pool (``None``: one at a time, a sequential search).
    """

    def __init__(self, data: ImageData, recipe: Recipe, store: ResultStore, budget: int | None = None,
                 name: str | None = None, log_dir: str | Path | None = None, accelerator: str = "auto",
                 progress: str | None = None, pool: RayPool | None = None,
                 workers: int | None = None) -> None:
        super().__init__(name or f"{TRAIN_PREFIX}{data.name}", NB201, "max", NB201.all_indices(), budget)
        self.data, self.recipe, self.store = data, recipe, store
        self.log_dir, self.accelerator = log_dir, accelerator
        self.pool, self._workers = pool, workers
        self.trained = 0  # trainings this oracle ran (the rest came from the store)
        self._progress_label, self._bar = progress, None

    @property
    def trained_recipe(self) -> Recipe:
        """The recipe as trained: on Ray, with one CPU thread per CPU a training asks for."""
        threads = getattr(getattr(self.pool, "settings", None), "threads", self.recipe.threads)  # no pool: the recipe's
        return self.recipe if threads == self.recipe.threads else self.recipe.replace(threads=threads)

    @property
    def fingerprint(self) -> str:
        """The experiment's identity: dataset content, recipe (thread count included) and training seed."""
        return experiment_fingerprint(self.data, self.trained_recipe)

    def descriptions(self) -> dict[str, Any]:
        """What this oracle's dataset fingerprint and recipe key stand for, as the store keeps them."""
        data = self.data
        return {"dataset": {"task": self.name, "summary": data.describe(), "classes": list(data.classes)},
                "recipe": self.trained_recipe.description}

    @property
    def workers(self) -> int | None:
        return self._workers

    @property
    def running(self) -> int:
        """Trainings submitted and not finished."""
        return sum(not isinstance(v, dict) for v in self._pending.values())

    def _stored(self, index: int) -> dict[str, Any] | None:
        recipe = self.trained_recipe
        return self.store.get(self.space.to_string(index), self.data.fingerprint, recipe.key, recipe.seed)

    def record(self, index: int) -> dict[str, Any]:
        """The stored training of a cell, training it first (in this process) if the store lacks it."""
        row = self._stored(index)
        if row is None:  # on the recipe's threads: one by default, where these small networks train fastest
            result = train_candidate(self.space.ops(index), self.data, self.trained_recipe, self.log_dir, self.accelerator)
            row = self._keep(index, result)
        return row

    def _keep(self, index: int, result: dict[str, Any]) -> dict[str, Any]:
        """Write a finished training to the store (the driver alone writes) and return its row."""
        if str(result.get("reason", "")).startswith(LOST):  # not a finished training: not stored
            return {**result, "arch": self.space.to_string(index)}
        recipe = self.trained_recipe
        self.store.put(self.space.to_string(index), self.data.fingerprint, recipe.key, recipe.seed, result, self.descriptions())
        self.trained += 1
        return self._stored(index)

    def submit(self, index: int) -> None:
        super().submit(index)
        self._show()

    def collect(self, index: int) -> float:
        value = super().collect(index)
        self._show(done=1, value=value)
        return value

    def _start(self, index: int) -> Any:
        """A Ray reference of the started training, or the stored (or just trained) row."""
        row = self._stored(index)
        if row is None and self.pool is not None:
            return self.pool.submit(self.space.ops(index), self.data, self.trained_recipe, self.log_dir, self.accelerator)
        return row if row is not None else self.record(index)

    def _finish(self, index: int) -> float:
        """Wait for a submitted architecture (storing whatever finishes meanwhile); its value."""
        while not isinstance(self._pending[index], dict):
            running = {ref: i for i, ref in self._pending.items() if not isinstance(ref, dict)}
            for ref in self.pool.finished(list(running)):
                i = running[ref]
                self._pending[i] = self._keep(i, self.pool.result(ref, self.space.to_string(i)))
        row = self._pending[index]
        if row["status"] != "ok":
            log.warning("training of %s failed (%s): charged as %.1f %%", row["arch"], row["reason"], FAILED_VALUE)
        return float(row["val_acc"]) if row["status"] == "ok" else FAILED_VALUE

    def _cancel(self, handles: list[Any]) -> None:
        """Drop every running training (uncharged); finished ones are already in the store."""
        refs = [ref for ref in handles if not isinstance(ref, dict)]
        if refs and self.pool is not None:
            self.pool.cancel(refs)

    def _evaluate(self, indices: list[int]) -> list[float]:
        out = []
        for i in indices:
            self._show(training=self.space.to_string(i))
            self._pending[i] = self._start(i)
            out.append(self._finish(i))
            del self._pending[i]
            self._show(done=1, value=out[-1])
        return out

    def _show(self, done: int = 0, value: float | None = None, training: str | None = None) -> None:
        """The progress bar over candidates: finished / budget, best so far, what is training now."""
        if self._progress_label is None:
            return
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.budget, desc=self._progress_label, unit="cand", leave=False)
            self._best = None
        if value is not None:
            self._best = value if self._best is None else max(self._best, value)
        self._bar.update(done)
        now = f"training {training}" if training else f"running {self.running}"
        best = "-" if self._best is None else f"{self._best:.2f} %"  # no placeholder before a first result
        self._bar.set_postfix_str(f"best {best}, {now}", refresh=True)
        if self.budget is not None and self._bar.n >= self.budget:
            self._bar.close()

    def costs(self) -> list[float]:
        """Seconds of training of each query, in query order (as stored, also when reused; 0 if lost)."""
        rows = [self._stored(i) for i in self._order]
        return [float((r or {}).get("seconds") or 0.0) for r in rows]

    @property
    def cost(self) -> float:
        """Seconds of training of everything queried (as stored, also when reused)."""
        return sum(self.costs())
