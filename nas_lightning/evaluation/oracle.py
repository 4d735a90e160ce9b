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
from nas_lightning.evaluation.recipe import Recipe, train_candidate
from nas_lightning.evaluation.store import ResultStore
from nas_lightning.spaces import NB201
from nas_lightning.tasks.oracle import Oracle

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

    def __str__(self) -> str:
        return PREFIX + self.dataset + (f"={self.root}" if self.root else "")

    def load(self, image_size: int | None = None) -> ImageData:
        """The dataset (one-line :class:`UserError` for missing or bad files). Without a root, a
        dataset's files are looked for in the project's ``data/<dataset>`` folder."""
        root = self.root
        if root is None and self.dataset != "digits":
            root = str(DATA_DIR / ("images" if self.dataset == "folder" else self.dataset))
            if not Path(root).exists():
                raise UserError(f"{self} needs its files: put them under {root} (see data/README.md) "
                                f"or give {PREFIX}{self.dataset}=PATH")
        return load_dataset(self.dataset, root, image_size=image_size)


def experiment_fingerprint(data: ImageData, recipe: Recipe) -> str:
    """The identity of a training task: dataset content, recipe and training seed."""
    return hashlib.sha256(f"{data.fingerprint}|{recipe.key}|{recipe.seed}".encode()).hexdigest()[:16]


def is_training_spec(text: str) -> bool:
    """Whether a task spec names a training task rather than a table."""
    return str(text).strip().startswith(PREFIX)


class TrainingOracle(Oracle):
    """Counted, budgeted access to the validation accuracy of cells trained for real.

    Args:
        data: the dataset (train / val / test splits; search reads val only).
        recipe: how each candidate is trained (its ``seed`` is the training seed).
        store: where finished trainings live (shared by every oracle on the same file).
        budget: the most distinct architectures that may be queried (``None``: unlimited).
        name: the task's name (default ``train:<dataset>``).
        log_dir: TensorBoard folder for each candidate's training curves (``None``: none).
        accelerator: Lightning's accelerator for the trainings (``auto``: a GPU when present).
    """

    def __init__(self, data: ImageData, recipe: Recipe, store: ResultStore, budget: int | None = None,
                 name: str | None = None, log_dir: str | Path | None = None, accelerator: str = "auto",
                 progress: str | None = None) -> None:
        super().__init__(name or f"{PREFIX}{data.name}", NB201, "max", NB201.all_indices(), budget)
        self.data, self.recipe, self.store = data, recipe, store
        self.log_dir, self.accelerator = log_dir, accelerator
        self.trained = 0  # trainings this oracle ran (the rest came from the store)
        self._progress_label, self._bar = progress, None

    @property
    def fingerprint(self) -> str:
        """The experiment's identity: dataset content, recipe and training seed."""
        return experiment_fingerprint(self.data, self.recipe)

    def record(self, index: int) -> dict[str, Any]:
        """The stored training of a cell, training it first if the store lacks it."""
        arch = self.space.to_string(index)
        row = self.store.get(arch, self.data.fingerprint, self.recipe.key, self.recipe.seed)
        if row is None:
            ops = tuple(self.space.OPS[o] for o in self.space.choices(index).tolist())
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # these small networks train several times faster on one CPU thread
            try:
                result = train_candidate(ops, self.data, self.recipe, self.log_dir, self.accelerator)
            finally:
                torch.set_num_threads(threads)
            self.store.put(arch, self.data.fingerprint, self.recipe.key, self.recipe.seed, result)
            self.trained += 1
            row = self.store.get(arch, self.data.fingerprint, self.recipe.key, self.recipe.seed)
        return row

    def _evaluate(self, indices: list[int]) -> list[float]:
        out = []
        for i in indices:
            self._show(running=self.space.to_string(i))
            row = self.record(i)
            if row["status"] != "ok":
                log.warning("training of %s failed (%s): charged as %.1f %%", row["arch"], row["reason"], FAILED_VALUE)
            out.append(float(row["val_acc"]) if row["status"] == "ok" else FAILED_VALUE)
            self._show(done=1, value=out[-1])
        return out

    def _show(self, done: int = 0, value: float | None = None, running: str | None = None) -> None:
        """The progress bar over candidates: done / budget, best so far, the one training now."""
        if self._progress_label is None:
            return
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.budget, desc=self._progress_label, unit="cand", leave=False)
            self._best = None
        if value is not None:
            self._best = value if self._best is None else max(self._best, value)
        self._bar.update(done)
        self._bar.set_postfix_str(f"best {self._best if self._best is not None else float('nan'):.2f}"
                                  + (f", training {running}" if running else ""), refresh=True)
        if self.budget is not None and self._bar.n >= self.budget:
            self._bar.close()

    def costs(self) -> list[float]:
        """Seconds of training of each query, in query order (as stored, also when reused)."""
        return [float(self.record(i)["seconds"] or 0.0) for i in self._order]

    @property
    def cost(self) -> float:
        """Seconds of training of everything queried (as stored, also when reused)."""
        return sum(self.costs())
