"""The LightningCLI behind ``train.py``: sections model, data, trainer, search, checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from nas_lightning.data.datamodule import NASTaskDataModule
from nas_lightning.errors import UserError
from nas_lightning.models.module import MetaPredictor
from nas_lightning.search.callback import SearchCallback

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"


class MetaCLI(LightningCLI):
    """LightningCLI with the search round and the checkpointing as their own config sections."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(SearchCallback, "search")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/spearman_after", "checkpoint.mode": "max", "checkpoint.filename": "best",
            "checkpoint.save_last": True, "checkpoint.save_on_train_epoch_end": True,
            "checkpoint.dirpath": "runs/default/checkpoints",
            # one run directory, one last.ckpt: never 'last-v1.ckpt' that --ckpt_path last would miss
            "checkpoint.enable_version_counter": False,
        })
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="resume: 'last' (the run's last.ckpt) or a checkpoint path")


def build_cli(args: list[str] | None = None) -> MetaCLI:
    """Parse the command line (over configs/default.yaml) and instantiate everything."""
    return MetaCLI(
        MetaPredictor, NASTaskDataModule, run=False, args=args, seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"inference_mode": False},
        parser_kwargs={"default_config_files": [str(DEFAULT_CONFIG)]},
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
        if not Path(path).is_file():
            raise UserError(f"--ckpt_path last: no {path} yet; train without --ckpt_path first, or give a checkpoint path")
    elif not Path(path).is_file():
        raise UserError(f"--ckpt_path {path}: no such checkpoint file; give an existing .ckpt path or 'last'")
    return path


def fit(cli: MetaCLI) -> None:
    """Validate input, then train (resuming when asked)."""
    ckpt = resolve_ckpt(cli)
    cli.datamodule.resolve()  # bad task specs fail here, before anything is written
    if cli.trainer.fast_dev_run:  # Lightning still saves last.ckpt on train end; a smoke run must not
        for cb in cli.trainer.checkpoint_callbacks:
            cb.save_last = False
    elif ckpt is None and (Path(cli.config.checkpoint.dirpath) / "last.ckpt").exists():
        log.warning("starting afresh in %s: its checkpoints will be replaced (resume with --ckpt_path last)",
                    cli.config.checkpoint.dirpath)
    cli.trainer.fit(cli.model, cli.datamodule, ckpt_path=ckpt)
