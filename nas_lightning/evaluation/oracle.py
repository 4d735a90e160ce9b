"""The training-backed oracle: a query trains the NB201 network of the cell on the user's data.

It keeps the :class:`~nas_lightning.tasks.oracle.Oracle` contract (budget, charge-once,
history, state in checkpoints) and adds a :class:`ResultStore`: every finished training is
written there at once, keyed by (arch, dataset fingerprint, recipe, training seed). A query whose
key is already in the store reuses it: a search killed and started again retrains nothing that
finished, and strategies compared side by side share trainings. The training seed is the
recipe's, not the search's, so every strategy and search seed sees the same answer for a cell.

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

import torch

from nas_lightning.errors import UserError
from nas_lightning.evaluation.datasets import ImageData
from nas_lightning.evaluation.sources import DATASET_NAMES, load_dataset
from nas_lightning.evaluation.parallel import LOST
from nas_lightning.evaluation.recipe import Recipe, train_candidate
from nas_lightning.evaluation.store import ResultStore
from nas_lightning.spaces import NB201
from nas_lightning.tasks.oracle import BudgetExhausted, Oracle

log = logging.getLogger(__name__)
FAILED_VALUE = 0.0  # a failed training's charged answer: the worst accuracy
PREFIX = "train:"
DATA_DIR = Path(__file__).resolve().parents[2] / "data"  # where a user's datasets go by default
ALIASES = {"imagefolder": "folder", "image-folder": "folder", "fashionmnist": "fashion-mnist"}


@dataclass(frozen=True)
class TrainingSpec:
    """``train:<dataset>[=<root>]``: a dataset to train candidates on (``digits`` needs no root)."""

    dataset: str
    root: str | None = None

    @classmethod
    def parse(cls, text: str) -> "TrainingSpec":
        """Parse ``train:digits``, ``train:imagefolder=PATH``, ``train:cifar10=ROOT``...

        Raises:
            UserError: for another form or an unknown dataset name.
        """
        text = str(text).strip()
        if not text.startswith(PREFIX):
            raise UserError(f"{text!r} is not a training task; write train:<dataset>[=<root>]")
        name, _, root = text[len(PREFIX):].partition("=")
        name = ALIASES.get(name.strip().lower(), name.strip().lower())
        if name not in DATASET_NAMES:
            raise UserError(f"unknown dataset {name!r} in {text!r}; choose one of digits, imagefolder, "
                            f"{', '.join(d for d in DATASET_NAMES if d not in ('digits', 'folder'))}")
        return cls(name, root.strip() or None)

    def __str__(self) -> str:  # as a user types it: train:imagefolder=PATH, never the internal "folder"
        name = "imagefolder" if self.dataset == "folder" else self.dataset
        return PREFIX + name + (f"={self.root}" if self.root else "")

    def load(self, image_size: int | None = None) -> ImageData:
        """The dataset (one-line :class:`UserError` for missing or bad files). Without a root, a
        dataset's files are looked for in the project's ``data/<dataset>`` folder."""
        root = self.root
        if root is None and self.dataset != "digits":
            root = str(DATA_DIR / ("images" if self.dataset == "folder" else self.dataset))
            if not Path(root).exists():
                raise UserError(f"{self} needs its files: put them under {root} (see data/README.md) "
                                f"or give {self}=PATH")
        return load_dataset(self.dataset, root, image_size=image_size)


def experiment_fingerprint(data: ImageData, recipe: Recipe) -> str:
    """The identity of a training task: dataset content, recipe and training seed."""
    return hashlib.sha256(f"{data.fingerprint}|{recipe.key}|{recipe.seed}".encode()).hexdigest()[:16]


def is_training_spec(text: str) -> bool:
    """Whether a task spec names a training task rather than a table."""
    return str(text).strip().startswith(PREFIX)


def canonical_name(name: str) -> str:
    """A target's name as this version spells it (``train:folder=X``, an older spelling, becomes
    ``train:imagefolder=X``); other names unchanged."""
    if not is_training_spec(name):
        return name
    try:
        return str(TrainingSpec.parse(name))
    except UserError:
        return name


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
        pool: a :class:`~nas_lightning.evaluation.parallel.RayPool` to train on (``None``: in this process).
    """

    def __init__(self, data: ImageData, recipe: Recipe, store: ResultStore, budget: int | None = None,
                 name: str | None = None, log_dir: str | Path | None = None, accelerator: str = "auto",
                 progress: str | None = None, pool: Any = None) -> None:
        super().__init__(name or f"{PREFIX}{data.name}", NB201, "max", NB201.all_indices(), budget)
        self.data, self.recipe, self.store = data, recipe, store
        self.log_dir, self.accelerator, self.pool = log_dir, accelerator, pool
        self.trained = 0  # trainings this oracle ran (the rest came from the store)
        self._pending: dict[int, Any] = {}  # submitted, in order: a Ray reference, or the finished row
        self._progress_label, self._bar = progress, None

    @property
    def fingerprint(self) -> str:
        """The experiment's identity: dataset content, recipe and training seed."""
        return experiment_fingerprint(self.data, self.recipe)

    @property
    def remaining(self) -> int | None:
        """Queries left: the budget less what was submitted (finished or running)."""
        return None if self.budget is None else self.budget - self.num_queries - len(self._pending)

    @property
    def running(self) -> int:
        """Trainings submitted and not finished."""
        return sum(not isinstance(v, dict) for v in self._pending.values())

    def _stored(self, index: int) -> dict[str, Any] | None:
        return self.store.get(self.space.to_string(index), self.data.fingerprint, self.recipe.key, self.recipe.seed)

    def _ops(self, index: int) -> tuple[str, ...]:
        return tuple(self.space.OPS[o] for o in self.space.choices(index).tolist())

    def record(self, index: int) -> dict[str, Any]:
        """The stored training of a cell, training it first (in this process) if the store lacks it."""
        row = self._stored(index)
        if row is None:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # these small networks train several times faster on one CPU thread
            try:
                result = train_candidate(self._ops(index), self.data, self.recipe, self.log_dir, self.accelerator)
            finally:
                torch.set_num_threads(threads)
            row = self._keep(index, result)
        return row

    def _keep(self, index: int, result: dict[str, Any]) -> dict[str, Any]:
        """Write a finished training to the store (the driver alone writes) and return its row."""
        if str(result.get("reason", "")).startswith(LOST):  # not a finished training: not stored
            return {**result, "arch": self.space.to_string(index)}
        self.store.put(self.space.to_string(index), self.data.fingerprint, self.recipe.key, self.recipe.seed, result)
        self.trained += 1
        return self._stored(index)

    def submit(self, index: int) -> None:
        """Charge a new architecture and start its training (a stored one is reused, not trained).

        Raises:
            ValueError: for an architecture already queried or running (charged once).
            KeyError: for an architecture the task does not hold (nothing charged).
            BudgetExhausted: when the budget is spent by what finished and what runs.
        """
        index = int(index)
        if index in self._cache or index in self._pending:
            raise ValueError(f"architecture {index} was already submitted to {self.name}")
        if not (0 <= index < self.space.size and bool(self._allowed[index])):
            raise KeyError(f"task {self.name} has no value for architecture {index}")
        if self.remaining is not None and self.remaining < 1:
            raise BudgetExhausted(f"oracle for {self.name}: budget of {self.budget} queries is spent")
        self._start(index)
        self._show()

    def _start(self, index: int) -> None:
        row = self._stored(index)
        if row is None and self.pool is not None:
            self._pending[index] = self.pool.submit(self._ops(index), self.data, self.recipe, self.log_dir, self.accelerator)
        else:
            self._pending[index] = row if row is not None else self.record(index)

    def _finish(self, index: int) -> float:
        """Wait for a submitted architecture (storing whatever finishes meanwhile); its value."""
        while not isinstance(self._pending[index], dict):
            running = {ref: i for i, ref in self._pending.items() if not isinstance(ref, dict)}
            for ref in self.pool.finished(list(running)):
                i = running[ref]
                self._pending[i] = self._keep(i, self.pool.result(ref, self.space.to_string(i)))
        row = self._pending.pop(index)
        if row["status"] != "ok":
            log.warning("training of %s failed (%s): charged as %.1f %%", row["arch"], row["reason"], FAILED_VALUE)
        return float(row["val_acc"]) if row["status"] == "ok" else FAILED_VALUE

    def collect(self, index: int) -> float:
        """The value of a submitted architecture, waiting for its training; recorded in the history
        (collect in submission order to keep the history in proposal order)."""
        value = self._finish(int(index))
        self._cache[int(index)] = value
        self._order.append(int(index))
        self._show(done=1, value=value)
        return value

    def cancel_pending(self) -> None:
        """Drop every running training (uncharged); finished ones are already in the store."""
        refs = [ref for ref in self._pending.values() if not isinstance(ref, dict)]
        if refs and self.pool is not None:
            self.pool.cancel(refs)
        self._pending.clear()

    def _evaluate(self, indices: list[int]) -> list[float]:
        out = []
        for i in indices:
            self._show(training=self.space.to_string(i))
            self._start(i)
            out.append(self._finish(i))
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
