"""One factory from a task spec plus settings to an oracle, for every caller alike.

``search.py compare`` (table and training targets), the DataModule's targets and the epoch-end
search callback all build their oracles here: :class:`OracleFactory` resolves a spec to a target
(a table :class:`~nas_lightning.tasks.task.Task`, or a :class:`TrainingTarget` whose data is
loaded and checked at once, so bad input fails before anything is written) and makes fresh
oracles of it, one per search seed. The oracles of one factory share one store of finished
trainings (opened at the first training oracle) and one Ray pool (started at the first
training submitted to it, stopped by :meth:`OracleFactory.close`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

from nas_lightning.candidates.ray_pool import RayPool, RaySettings
from nas_lightning.candidates.recipe import PRESETS, Recipe
from nas_lightning.candidates.sources import load_spec_data
from nas_lightning.candidates.store import ResultStore
from nas_lightning.errors import UserError
from nas_lightning.oracles.base import Oracle
from nas_lightning.oracles.table import TableOracle
from nas_lightning.oracles.training import TrainingOracle, TrainingTarget, experiment_fingerprint
from nas_lightning.tasks.load import load_task
from nas_lightning.tasks.spec import TrainingSpec, is_training_spec
from nas_lightning.tasks.task import Task

log = logging.getLogger(__name__)
Target = Union[Task, TrainingTarget]


@dataclass(frozen=True)
class OracleSettings:
    """How a target task's oracle answers.

    Args:
        noisy: table targets: answer one sampled training seed instead of the mean over seeds.
        recipe: ``train:`` targets: how each candidate network is trained (the ``cpu`` preset; an image
            folder's default is the ``folder`` preset, used while no field of the recipe is changed;
            ``configs/nb201_recipe_search.yaml`` holds NAS-Bench-201's for GPUs).
        store: ``train:`` targets: the SQLite file of finished trainings (default: beside the
            command's output); a rerun of a killed search reuses it, and strategies share it.
        ray: ``train:`` targets: train several candidates at once on Ray (unset ``workers``: one at
            a time in this process).
    """

    noisy: bool = False
    recipe: Recipe = PRESETS["cpu"]
    store: str | None = None
    ray: RaySettings = field(default_factory=RaySettings)

    def __post_init__(self) -> None:
        if isinstance(self.recipe, dict):  # a saved config gives plain mappings
            object.__setattr__(self, "recipe", Recipe(**self.recipe))
        if isinstance(self.ray, dict):
            object.__setattr__(self, "ray", RaySettings(**self.ray))


class OracleFactory:
    """Resolves target specs and makes their oracles.

    Args:
        settings: how the oracles answer.
        budget: each oracle's budget of distinct queries (``None``: unlimited).
        csv_dir: base folder of relative ``csv:`` paths.
        default_store: the store's file when ``settings.store`` is unset.
        log_dir: TensorBoard folder for each trained candidate's curves (``None``: none).
    """

    def __init__(self, settings: OracleSettings | None = None, budget: int | None = None, *,
                 csv_dir: str | Path | None = None, default_store: str | Path = Path("runs") / "trainings.sqlite",
                 log_dir: str | Path | None = None) -> None:
        self.settings = settings or OracleSettings()
        self.budget, self.csv_dir, self.log_dir = budget, csv_dir, log_dir
        self.store_path = Path(self.settings.store or default_store)
        self._store: ResultStore | None = None
        self._pool: RayPool | None = None

    def resolve(self, spec: str) -> Target:
        """The target ``spec`` names: a table task, or a training target with its data loaded.

        Raises:
            UserError: for a bad spec, table or dataset.
        """
        if not is_training_spec(spec):
            return load_task(spec, csv_dir=self.csv_dir)
        parsed = TrainingSpec.parse(spec)
        recipe, ray = self.settings.recipe, self.settings.ray
        if parsed.dataset == "folder" and recipe == PRESETS["cpu"]:  # no field changed: the folder default
            recipe = PRESETS["folder"]
        if ray.enabled:  # part of the store's key: other thread counts give other accuracies
            if recipe.threads not in (1, ray.threads):
                raise UserError(f"recipe.threads {recipe.threads} disagrees with ray.trial_cpus {ray.trial_cpus:g}: on Ray a "
                                f"training runs one thread per CPU it asks for; drop recipe.threads or set "
                                f"ray.trial_cpus {recipe.threads}")
            recipe = recipe.replace(threads=ray.threads)
        data = load_spec_data(parsed, recipe.resolution if parsed.dataset == "folder" else None)
        return TrainingTarget(parsed, data, recipe, experiment_fingerprint(data, recipe))

    @property
    def store(self) -> ResultStore:
        """The store of finished trainings (opened on first use)."""
        if self._store is None:
            self._store = ResultStore(self.store_path)
        return self._store

    def _ray_pool(self) -> RayPool:
        if self._pool is None:
            self._pool = RayPool(self.settings.ray)
        return self._pool

    def start_pool(self) -> RayPool | None:
        """Start (or join) the Ray instance now, when the settings ask for Ray (else ``None``): a bad
        address or too few resources fail here, before any file is written."""
        return self._ray_pool() if self.settings.ray.enabled else None

    def oracle(self, target: Target, seed: int = 0, progress: str | None = None) -> Oracle:
        """A fresh oracle of ``target``.

        Args:
            target: from :meth:`resolve`.
            seed: the search seed (a table oracle's noisy mode draws with it).
            progress: a training oracle's progress-bar label (``None``: no bar).
        """
        if isinstance(target, Task):
            return TableOracle(target, self.budget, noisy=self.settings.noisy, seed=seed)
        ray = self.settings.ray
        return TrainingOracle(target.data, target.recipe, self.store, self.budget, name=target.name,
                              log_dir=self.log_dir, progress=progress, pool=_LazyPool(self._ray_pool, ray) if ray.enabled else None,
                              workers=ray.workers)

    def close(self) -> None:
        """Stop (or leave) the Ray instance, if one was started."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None


class _LazyPool:
    """The factory's Ray pool, started by the first training submitted to it."""

    def __init__(self, start: Callable[[], RayPool], settings: RaySettings) -> None:
        self._start, self.settings = start, settings

    def submit(self, *args: Any) -> Any:
        return self._start().submit(*args)

    def finished(self, refs: list[Any], timeout: float | None = None) -> list[Any]:
        return self._start().finished(refs, timeout)

    def result(self, ref: Any, arch: str) -> dict[str, Any]:
        return self._start().result(ref, arch)

    def cancel(self, refs: list[Any]) -> None:
        self._start().cancel(refs)
