"""The LightningCLI behind ``train.py``: sections model, data, trainer, search, checkpoint."""

from __future__ import annotations

import logging
import signal
import threading
import warnings
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from nas_lightning.cli_help import TrainParser, describe_parser
from nas_lightning.data.datamodule import NASTaskDataModule
from nas_lightning.errors import UserError
from nas_lightning.files import print_written
from nas_lightning.models.checkpoint import read_checkpoint, space_of
from nas_lightning.models.module import MetaPredictor
from nas_lightning.safe_load import CHECKPOINT_GLOBALS
from nas_lightning.runfolder import check_run_folder, describe, place_run
from nas_lightning.search.callback import SearchCallback

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"
# model settings that shape the parameters: a resumed run must keep them
STRUCTURAL = ("predictor", "hidden", "layers", "encoding", "context", "learn_inner_lr")


class FiniteModelCheckpoint(ModelCheckpoint):
    """A :class:`ModelCheckpoint` that never saves a non-finite score, or non-finite weights, as best,
    and that writes ``last.ckpt`` at every save point.

    Lightning's own keeps the first score it sees even when it is NaN (it stores it as -inf), so
    a diverged first epoch would become ``best.ckpt``. And since Lightning 2.6 its ``save_last``
    writes ``last.ckpt`` only when a best checkpoint was written at the same step, so an epoch
    that does not improve would leave a stale ``last.ckpt`` and ``--ckpt_path last`` would go back.
    """

    @property
    def state_key(self) -> str:
        # the plain ModelCheckpoint's key: checkpoints written before this subclass keep resuming
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_anyway(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_anyway(trainer)

    def _save_last_anyway(self, trainer: L.Trainer) -> None:
        # skipped when anything was saved at this step (the parent's last.ckpt included)
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def check_monitor_top_k(self, trainer: L.Trainer, current: torch.Tensor | None = None) -> bool:
        better = super().check_monitor_top_k(trainer, current)  # first: it may hold a collective
        if not better or current is None:
            return better
        finite = bool(torch.isfinite(current)) and all(
            bool(torch.isfinite(p).all()) for p in trainer.lightning_module.parameters())
        if not finite:
            log.warning("epoch %d: %s is %s or the weights are not finite; not saved as %s",
                        trainer.current_epoch, self.monitor, float(current), self.filename)
        return finite


class InterruptCheckpoint(L.Callback):
    """Saves the run's ``last.ckpt`` when training is stopped by SIGTERM or Ctrl-C, mid-epoch included.

    Lightning turns SIGTERM into a :class:`SIGTERMException` at the next safe point (after a
    whole meta-step) and calls ``on_exception``; a first Ctrl-C is routed the same way (a second
    one aborts at once, without saving). The DataModule saves its generator right after the last
    meta-batch used, so ``--ckpt_path last`` continues with the next one.
    """

    def __init__(self) -> None:
        self._previous: Any = None
        self._installed = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        connector = getattr(trainer, "_signal_connector", None)
        if connector is None or not hasattr(connector, "received_sigterm"):
            return  # Lightning changed: keep the default Ctrl-C

        def on_sigint(signum: int, frame: FrameType | None) -> None:
            log.warning("Ctrl-C: stopping after this meta-step and saving last.ckpt (Ctrl-C again aborts without saving)")
            signal.signal(signal.SIGINT, signal.default_int_handler)
            connector.received_sigterm = True  # Lightning stops at the next safe point, as for SIGTERM

        self._previous = signal.signal(signal.SIGINT, on_sigint)
        self._installed = True

    def _restore(self) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()
        if not isinstance(exception, SIGTERMException) or trainer.sanity_checking or trainer.fast_dev_run:
            return
        cb = trainer.checkpoint_callback
        if cb is None or cb.dirpath is None:
            return
        path = Path(cb.dirpath) / f"{cb.CHECKPOINT_NAME_LAST}{cb.FILE_EXTENSION}"
        connector = getattr(trainer, "_checkpoint_connector", None)
        if connector is not None:  # no barrier: a rank may already be gone; the strategy writes on rank 0 only
            trainer.strategy.save_checkpoint(connector.dump_checkpoint(), path)
        else:
            trainer.save_checkpoint(path)
        if trainer.is_global_zero:
            log.warning("interrupted at epoch %d, step %d: saved %s; resume with --ckpt_path last",
                        trainer.current_epoch, trainer.global_step, path)


class MetaCLI(LightningCLI):
    """LightningCLI with the search round and the checkpointing as their own config sections."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(SearchCallback, "search")
        parser.add_lightning_class_args(FiniteModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/spearman_after", "checkpoint.mode": "max", "checkpoint.filename": "best",
            "checkpoint.save_last": True, "checkpoint.save_on_train_epoch_end": True,
            # one run directory, one last.ckpt: never 'last-v1.ckpt' that --ckpt_path last would miss
            "checkpoint.enable_version_counter": False,
        })
        parser.add_argument("--run", type=str | None, default=None,
                            help="the run's name: logs in runs/NAME/version_N, checkpoints in runs/NAME/checkpoints "
                                 "(default: the config's trainer.logger name, 'default' for configs/default.yaml)")
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="resume: 'last' (the named run's last.ckpt) or a checkpoint path of the same run")
        describe_parser(parser)

    def before_instantiate_classes(self) -> None:
        """Place the run: ``--run`` names it, its checkpoints go under its own folder."""
        self.run_name = place_run(self.config)

    def instantiate_classes(self) -> None:
        """Instantiate model, data and trainer; a value they refuse is a :class:`UserError`.

        The parser checks names and types; the classes check values (an unknown predictor or
        encoding, a strategy Lightning does not know) and raise ``ValueError`` or Lightning's
        ``MisconfigurationException``: one line, not a traceback.
        """
        try:
            super().instantiate_classes()
        except UserError:
            raise
        except (ValueError, MisconfigurationException) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"invalid setting: {first}") from None


def build_cli(args: list[str] | None = None) -> MetaCLI:
    """Parse the command line (over configs/default.yaml) and instantiate everything."""
    return MetaCLI(
        MetaPredictor, NASTaskDataModule, run=False, args=args, seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        # the DataModule shards meta-batches itself; validation episodes are few and fixed, so
        # every rank validates them all (no DistributedSampler padding that would repeat some)
        trainer_defaults={"inference_mode": False, "use_distributed_sampler": False,
                          "callbacks": [InterruptCheckpoint()]},
        parser_kwargs={"default_config_files": [str(DEFAULT_CONFIG)]}, parser_class=TrainParser,
        auto_configure_optimizers=False,  # the model's own Adam and schedule (model.lr, model.lr_decay_steps)
    )


def resolve_ckpt(cli: MetaCLI) -> str | None:
    """The checkpoint to resume from, or ``None``.

    Raises:
        UserError: when the checkpoint does not exist (never a silent fresh start).
    """
    path = cli.config.get("ckpt_path")
    if path is None:
        return None
    if path == "last":
        dirpath = cli.config.checkpoint.dirpath
        path = str(Path(dirpath) / "last.ckpt")
        if not Path(path).is_file():  # Lightning's own 'last' would silently start afresh
            raise UserError(f"--ckpt_path last: no {path} yet, so nothing of run {cli.run_name!r} to continue; "
                            "train without --ckpt_path first, or name the run with --run NAME")
    elif not Path(path).is_file():
        raise UserError(f"--ckpt_path {path}: no such checkpoint file; give an existing .ckpt path or 'last'")
    return path


def check_resumable(path: str, model: MetaPredictor, datamodule: NASTaskDataModule,
                    max_epochs: int | None = None) -> None:
    """Check that the checkpoint at ``path`` can resume this run, before anything is written.

    Raises:
        UserError: for an unreadable file, a file not written by train.py, another search space,
            other model settings, other target tasks, or a ``max_epochs`` the checkpoint has
            already reached (resuming would train nothing).
    """
    try:
        ckpt = read_checkpoint(path)
    except UserError as err:
        raise UserError(f"--ckpt_path: {err}") from None
    if "loops" not in ckpt:
        raise UserError(f"--ckpt_path {path}: not a train.py checkpoint (no training state); give a .ckpt written by train.py")
    done = epochs_done(ckpt)
    if max_epochs is not None and max_epochs != -1 and max_epochs <= done:
        raise UserError(f"--ckpt_path {path} has already trained {done} epoch{'s' if done != 1 else ''} and --trainer.max_epochs is {max_epochs}; "
                        f"give --trainer.max_epochs above {done} to continue training")
    hp = ckpt["hyper_parameters"]
    if space_of(ckpt) != model.space.name:
        raise UserError(f"--ckpt_path {path}: checkpoint of search space {space_of(ckpt)!r}, not {model.space.name!r}")
    differ = [f"model.{k}={hp[k]!r} (this run: {model.hparams[k]!r})" for k in STRUCTURAL
              if k in hp and hp[k] != model.hparams[k]]
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items()}
    if differ or mine != theirs:
        what = ", ".join(differ) if differ else "its parameters differ in names or shapes"
        raise UserError(f"--ckpt_path {path}: checkpoint was trained with {what}; resume with the same model settings")
    try:
        datamodule.check_targets((ckpt.get("NASTaskDataModule") or {}).get("oracles", {}))
    except UserError as err:
        raise UserError(f"--ckpt_path {path}: {err}") from None


def epochs_done(ckpt: dict) -> int:
    """How many whole epochs a train.py checkpoint has trained (an interrupted epoch not counted)."""
    progress = ckpt.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    return int(progress.get("processed", ckpt.get("epoch", 0)))


def check_epochs(max_epochs: int | None, max_steps: int) -> None:
    """Refuse a run that would train nothing: ``--trainer.max_epochs`` 0 or below -1."""
    if max_epochs is not None and (max_epochs == 0 or max_epochs < -1):
        raise UserError(f"--trainer.max_epochs must be >= 1 (or -1 with --trainer.max_steps), got {max_epochs}")
    if max_steps == 0 or max_steps < -1:
        raise UserError(f"--trainer.max_steps must be >= 1 (or -1: no step limit), got {max_steps}")


def fit(cli: MetaCLI) -> None:
    """Validate input, then train (resuming when asked)."""
    check_epochs(cli.trainer.max_epochs, cli.trainer.max_steps)
    ckpt = resolve_ckpt(cli)
    if not cli.trainer.fast_dev_run:  # first: a name already taken is refused before any table is read
        check_run_folder(cli.run_name, cli.config.checkpoint.dirpath, ckpt)
    run_dir = Path(cli.config.checkpoint.dirpath).parent  # a train: target keeps its trainings here
    cli.datamodule.default_store, cli.datamodule.candidate_logs = run_dir / "trainings.sqlite", run_dir / "candidates"
    cli.datamodule.resolve()  # bad task specs fail here, before anything is written
    cli.datamodule.check_world(cli.trainer.world_size)
    monitor = cli.config.checkpoint.monitor or ""
    if monitor.startswith("search/"):
        raise UserError(f"--checkpoint.monitor {monitor} is computed from the whole target table (evaluation only); "
                        "select models on a val/ metric of a meta-val task, e.g. val/spearman_after")
    if cli.datamodule.space != cli.model.space:
        raise UserError(f"the tasks are of search space {cli.datamodule.space.name!r} but model.space is "
                        f"{cli.model.space.name!r}; set --model.space {cli.datamodule.space.name}")
    hp = cli.model.hparams
    if cli.trainer.world_size > 1 and hp.inner_steps == 0 and hp.learn_inner_lr:
        raise UserError("model.inner_steps=0 leaves the learned inner learning rates unused, which DDP cannot reduce; "
                        "set model.learn_inner_lr false (or model.inner_steps >= 1)")
    if ckpt is not None:
        check_resumable(ckpt, cli.model, cli.datamodule, cli.trainer.max_epochs)
    if cli.trainer.fast_dev_run:  # Lightning still saves last.ckpt on train end; a smoke run must not
        for cb in cli.trainer.checkpoint_callbacks:
            cb.save_last = False
    where = describe(cli, cli.run_name)
    if where:
        log.info("%s", where)
    # Lightning reads --ckpt_path again to restore: weights-only there too (check_resumable read it
    # the same way), so a file swapped in between is refused rather than run
    with torch.serialization.safe_globals(CHECKPOINT_GLOBALS), warnings.catch_warnings():
        if ckpt is not None:  # continuing a run in its own folder: that the folder holds checkpoints is the point
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        cli.trainer.fit(cli.model, cli.datamodule, ckpt_path=ckpt, weights_only=True)
    if where and not cli.trainer.fast_dev_run:
        log.info("%s; continue it with %s--ckpt_path last", where, f"--run {cli.run_name} " if cli.config.get("run") else "")
        print_written(run_outputs(cli))


def run_outputs(cli: MetaCLI) -> list[tuple[Path, str]]:
    """What a finished run wrote: its checkpoints, its log folder and the targets' store of trainings."""
    ckpts = Path(cli.config.checkpoint.dirpath)
    files = [(ckpts / "last.ckpt", "the latest state; --ckpt_path last continues from it"),
             (ckpts / "best.ckpt", f"the best {cli.config.checkpoint.monitor}")]
    logger = cli.trainer.logger
    if logger is not None and logger.log_dir:
        files.append((Path(logger.log_dir), "TensorBoard logs and the run's config"))
    factory = cli.datamodule.factory
    if factory is not None and factory.store_path.exists():
        files.append((factory.store_path, "the finished trainings of train: targets"))
    return [(path, what) for path, what in files if path.exists()]
