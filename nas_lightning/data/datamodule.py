"""The LightningDataModule: tasks in three roles, episodes, and the target task set refresh."""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path
from typing import Any, Iterable, Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from nas_lightning.data.episodes import EpisodeSource, sample_episodes
from nas_lightning.errors import UserError
from nas_lightning.tasks.spec import canonical_name
from nas_lightning.models.batch import EpisodeBatch
from nas_lightning.oracles import Oracle, OracleFactory, OracleSettings
from nas_lightning.spaces import SearchSpace
from nas_lightning.tasks.load import load_tasks
from nas_lightning.tasks.spec import is_training_spec
from nas_lightning.tasks.task import Task

log = logging.getLogger(__name__)


class _Episodes(IterableDataset):
    """``steps`` meta-batches per pass, drawn from the DataModule's current pools and generator."""

    def __init__(self, dm: "NASTaskDataModule") -> None:
        self.dm = dm

    def __len__(self) -> int:
        return self.dm.hparams.steps_per_epoch

    def __iter__(self) -> Iterator[EpisodeBatch]:
        dm = self.dm
        dm._rewind()
        for _ in range(len(self)):
            pools = dm.train_pools()
            batch = sample_episodes(pools, dm.hparams.meta_batch, dm.hparams.support, dm.hparams.query, dm.generator)
            dm._drawn.append(dm.generator.get_state())
            yield dm.shard(batch)


class _EpisodeLoader(DataLoader):
    """The meta-train loader. Its position lives in the DataModule's state (the generator after the
    last batch training used), so a mid-epoch checkpoint resumes with the very next meta-batch:
    the loader itself has nothing more to save (and says so, being ``Stateful`` for Lightning)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class NASTaskDataModule(L.LightningDataModule):
    """Meta-train, meta-val and target tasks, and the episodes drawn from them.

    Args:
        train_tasks: task specs to meta-train on.
        val_tasks: task specs for model selection (fixed episodes, the same every epoch).
        target_tasks: held-out task specs, reachable only through their oracles.
        csv_dir: base folder for relative ``csv:`` paths (one override moves a whole table set).
        support: K, architectures with values an episode adapts on.
        query: Q, architectures an episode is scored on after adaptation.
        meta_batch: episodes per meta-step.
        steps_per_epoch: meta-steps per training epoch.
        val_episodes: fixed episodes per meta-val task.
        val_query: query size of a validation episode.
        target_budget: oracle budget of each target task over the whole run.
        oracle: how the targets answer: noisy tables; for a ``train:<dataset>`` target the recipe
            each queried cell trains with, the store of finished trainings (default: beside the
            run's checkpoints; resuming reuses it) and Ray workers.
        seed: seeds the DataModule's own generator (episodes) and the fixed validation draws.
    """

    def __init__(self, train_tasks: list[str] = ["nb201/cifar10/val_acc"], val_tasks: list[str] = [],
                 target_tasks: list[str] = [], csv_dir: str | None = None,
                 support: int = 10, query: int = 200, meta_batch: int = 16, steps_per_epoch: int = 200,
                 val_episodes: int = 10, val_query: int = 1000, target_budget: int = 100,
                 oracle: OracleSettings = OracleSettings(), seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        if support < 2 or query < 1:
            raise UserError(f"data.support must be >= 2 and data.query >= 1, got support={support}, query={query}")
        for name, value in (("meta_batch", meta_batch), ("steps_per_epoch", steps_per_epoch),
                            ("val_episodes", val_episodes), ("val_query", val_query), ("target_budget", target_budget)):
            if value < 1:
                raise UserError(f"data.{name} must be at least 1, got {value}")
        self.settings = oracle if isinstance(oracle, OracleSettings) else OracleSettings(**oracle)  # a dict from a saved config
        self.factory: OracleFactory | None = None
        self.generator = torch.Generator().manual_seed(seed)
        self.train: list[Task] = []
        self.val: list[Task] = []
        self.oracles: dict[str, Oracle] = {}
        self.fed_back: dict[str, list[int]] = {}
        self.val_batches: list[EpisodeBatch] = []
        self.rank, self.world = 0, 1
        self.space: SearchSpace | None = None  # of every task, known after resolve()
        # where a train: target keeps its trainings and each candidate's curves (train.py sets both
        # beside the run's checkpoints)
        self.default_store, self.candidate_logs = Path("runs") / "trainings.sqlite", None
        # generator states after each drawn meta-batch not yet used by training (the loader
        # prefetches), and the state after the last one used: what a checkpoint must hold
        self._drawn: deque[torch.Tensor] = deque()
        self._consumed: torch.Tensor | None = None

    # -- tasks -----------------------------------------------------------------------------
    def _resolve(self, specs: list[str]) -> list[Task]:
        return [t for s in specs for t in load_tasks(s, self.hparams.csv_dir)]

    def setup(self, stage: str | None = None) -> None:
        """Resolve the tasks (once) and learn this process's rank for sharding meta-batches."""
        self.resolve()
        if self.trainer is not None:
            self.rank, self.world = self.trainer.global_rank, self.trainer.world_size
            self.check_world(self.world)

    def check_world(self, world: int) -> None:
        """Raise :class:`UserError` when the meta-batch cannot give every one of ``world`` processes an episode."""
        if self.hparams.meta_batch < world:
            raise UserError(f"data.meta_batch={self.hparams.meta_batch} is smaller than the {world} training processes "
                            f"(devices x nodes); each needs at least one episode: raise data.meta_batch to {world} or more")

    def resolve(self) -> None:
        """Resolve the task specs, check roles, build oracles and the fixed validation episodes.

        Safe to call early (train.py does, so bad input fails before anything is written).

        Raises:
            UserError: for a task in two roles, a report-only training task, or a task smaller
                than an episode.
        """
        if self.train:
            return
        hp = self.hparams
        self.train, self.val = self._resolve(hp.train_tasks), self._resolve(hp.val_tasks)
        self.factory = OracleFactory(self.settings, hp.target_budget, csv_dir=hp.csv_dir,
                                     default_store=self.default_store, log_dir=self.candidate_logs)
        targets = self._resolve([s for s in hp.target_tasks if not is_training_spec(s)])
        trained = [self.factory.resolve(s) for s in hp.target_tasks if is_training_spec(s)]  # bad data fails here
        if not self.train:
            raise UserError("no meta-train task given; set data.train_tasks to one or more task specs")
        roles = [("meta-train", self.train), ("meta-val", self.val), ("target", targets)]
        seen: dict[str, str] = {}
        tables: dict[str, tuple[str, str]] = {}  # content fingerprint -> (name, role): the same table under two names
        for role, tasks in roles:
            for t in tasks:
                if t.name in seen:
                    raise UserError(f"task {t.name} is listed as {seen[t.name]} and as {role}; a task takes one role")
                seen[t.name] = role
                other = tables.get(t.fingerprint)
                if other is not None and other[1] != role:
                    raise UserError(f"{role} task {t.name} holds the same table as {other[1]} task {other[0]}; "
                                    f"a table takes one role (whatever its name)")
                tables.setdefault(t.fingerprint, (t.name, role))
                if t.report_only and role != "target":
                    raise UserError(f"task {t.name} is report-only (test accuracy) and cannot be a {role} task; use val_acc")
        spaces = {t.space.name for t in self.train + self.val + targets + trained}
        if len(spaces) > 1:
            raise UserError(f"the tasks span search spaces {', '.join(sorted(spaces))}; a run trains on one space")
        self.space = self.train[0].space
        for t in self.train + self.val:
            if t.size < hp.support + 1:
                raise UserError(f"task {t.name} has {t.size} architectures, fewer than support+1={hp.support + 1}; lower data.support")
        for t in self.train:
            if t.size < hp.support + hp.query:
                raise UserError(f"meta-train task {t.name} has {t.size} architectures, fewer than data.support + data.query = "
                                f"{hp.support} + {hp.query}; lower data.query to at most {t.size - hp.support}")
        self.oracles: dict[str, Oracle] = {t.name: self.factory.oracle(t, hp.seed) for t in targets + trained}
        self.fed_back = {name: [] for name in self.oracles}
        self._base_pools = [EpisodeSource.from_task(t) for t in self.train]
        self._target_pools: dict[str, EpisodeSource] = {}
        gen = torch.Generator().manual_seed(hp.seed + 7919)
        self.val_batches = [
            sample_episodes([EpisodeSource.from_task(t)], hp.val_episodes, hp.support, min(hp.val_query, t.size - hp.support), gen)
            for t in self.val
        ]
        log.info("meta-train %d tasks, meta-val %d, targets %s", len(self.train), len(self.val), list(self.oracles))

    def teardown(self, stage: str | None = None) -> None:
        """Stop (or leave) the Ray instance the targets' trainings ran on, if one was started."""
        if self.factory is not None:
            self.factory.close()

    def train_pools(self) -> list[EpisodeSource]:
        """Pools of the meta-train tasks, plus each target restricted to what was fed back."""
        return self._base_pools + list(self._target_pools.values())

    def _rebuild_target_pools(self) -> None:
        self._target_pools = {}
        for name, idx in self.fed_back.items():
            if len(idx) >= self.hparams.support + 2:
                oracle = self.oracles[name]
                archs = torch.tensor(idx)
                vals = (oracle.query(archs) * oracle.sign).float()  # already paid: repeated queries are free
                self._target_pools[name] = EpisodeSource(name, archs, vals, oracle.direction == "max")

    def refresh(self, name: str, indices: torch.Tensor) -> None:
        """Hand newly evaluated architectures of target ``name`` to training (the task set refresh).

        Raises:
            KeyError: if the architectures were never asked of that target's oracle.
        """
        oracle = self.oracles[name]
        if not bool(oracle.seen(indices).all()):
            raise KeyError(f"refresh of {name} with architectures its oracle was never asked for")
        known = set(self.fed_back[name])
        self.fed_back[name] += [int(i) for i in indices.tolist() if int(i) not in known]
        self._rebuild_target_pools()

    def shard(self, batch: EpisodeBatch) -> EpisodeBatch:
        """This rank's share of a meta-batch (every rank draws the same batch, then slices).

        Under several processes each episode also gets a ``weight`` (world size / meta-batch):
        the ranks' weighted sums, averaged by DDP, are the whole meta-batch's mean loss even when
        the meta-batch does not split evenly.
        """
        if self.world == 1:
            return batch
        out = batch.select(slice(self.rank, None, self.world))
        out.weight = torch.full((len(out),), self.world / len(batch))
        return out

    # -- loaders ---------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        return _EpisodeLoader(_Episodes(self), batch_size=None)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """A meta-batch reaches training: the generator position after it is the one to save."""
        if self.trainer is not None and self.trainer.training and self._drawn:
            self._consumed = self._drawn.popleft()
        return batch

    def _rewind(self) -> None:
        """Start a pass right after the last meta-batch training used (drops prefetched draws)."""
        if self._consumed is not None:
            self.generator.set_state(self._consumed)
        self._drawn.clear()

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_batches:
            return []
        return DataLoader(self.val_batches, batch_size=None)

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state() if self._consumed is None else self._consumed.clone(),
            "seen_tasks": [t.name for t in self.train + self.val],  # whose tables entered training or selection
            "seen_fingerprints": [t.fingerprint for t in self.train + self.val],  # the same, by content
            "target_fingerprints": {k: o.fingerprint for k, o in self.oracles.items()},
            "fed_back": {k: list(v) for k, v in self.fed_back.items()},
            "oracles": {k: o.state_dict() for k, o in self.oracles.items()},
        }

    def check_targets(self, names: Iterable[str]) -> None:
        """Raise :class:`UserError` if a checkpoint's target ``names`` are not all targets of this run."""
        foreign = sorted({canonical_name(n) for n in names} - set(self.oracles))
        if foreign:
            raise UserError(f"checkpoint holds target {foreign[0]}, which this run does not have; use the same data.target_tasks")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        oracles = {canonical_name(k): v for k, v in state["oracles"].items()}
        self.check_targets(oracles)
        self.generator.set_state(state["generator"])
        self._consumed, self._drawn = None, deque()
        for name, st in oracles.items():
            self.oracles[name].load_state_dict(st)
        self.fed_back = {canonical_name(k): list(v) for k, v in state["fed_back"].items()}
        self._rebuild_target_pools()
