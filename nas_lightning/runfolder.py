"""One name places a ``train.py`` run: ``runs/<name>/`` holds its logs (``version_N/``), its
checkpoints (``checkpoints/``) and, for a ``train:`` target, its trainings.

The name is ``--run NAME`` or else the config's TensorBoard logger name (``default`` for
``configs/default.yaml``). A new run never writes into a folder that already holds another run's
checkpoints: it continues that run (``--ckpt_path last``) or is refused.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from nas_lightning.errors import UserError

log = logging.getLogger(__name__)
RUNS = "runs"
DEFAULT_NAME = "default"


def _get(ns: Any, key: str, default: Any = None) -> Any:
    """``ns[key]`` for a jsonargparse Namespace or a dict, ``default`` when absent."""
    try:
        value = ns[key] if isinstance(ns, dict) else getattr(ns, key)
    except (KeyError, AttributeError):
        return default
    return default if value is None else value


def place_run(config: Any) -> str:
    """Give the parsed ``config`` one run folder; returns the run's name.

    ``--run NAME`` renames the TensorBoard logger's run; ``checkpoint.dirpath``, unless set, becomes
    ``<save_dir>/<name>/checkpoints`` beside the logger's ``version_N`` folders.
    """
    logger = config.trainer.logger
    init_args = _get(logger, "init_args") if logger not in (None, True, False) and not isinstance(logger, list) else None
    name = config.get("run") or (_get(init_args, "name", DEFAULT_NAME) if init_args is not None else None)
    if name is None:  # no logger: a given checkpoint folder names the run (runs/NAME/checkpoints)
        dirpath = config.checkpoint.dirpath
        name = Path(dirpath).parent.name if dirpath and Path(dirpath).name == "checkpoints" else DEFAULT_NAME
    if init_args is not None and config.get("run"):
        init_args["name"] = name
    if config.checkpoint.dirpath is None:
        save_dir = _get(init_args, "save_dir", RUNS) if init_args is not None else RUNS
        config.checkpoint.dirpath = str(Path(save_dir) / name / "checkpoints")
    return name


def check_run_folder(name: str, dirpath: str, ckpt: str | None) -> None:
    """Refuse to start a run in a checkpoint folder that already holds checkpoints of another run.

    Starting afresh (no ``ckpt``), or resuming a checkpoint from elsewhere, in a folder with
    checkpoints would overwrite them: the user continues that run or names a new one.

    Raises:
        UserError: when ``dirpath`` holds ``.ckpt`` files and ``ckpt`` is not one of them.
    """
    folder = Path(dirpath)
    held = sorted(p.name for p in folder.glob("*.ckpt")) if folder.is_dir() else []
    if not held:
        return
    if ckpt is None:
        raise UserError(f"run {name!r} already has checkpoints in {folder} ({', '.join(held)}): continue it with "
                        f"--ckpt_path last, or start a new run with --run NEW_NAME")
    if Path(ckpt).resolve().parent != folder.resolve():
        raise UserError(f"--ckpt_path {ckpt} is not a checkpoint of run {name!r}, whose checkpoints in {folder} "
                        f"it would overwrite: continue that run with --run NAME --ckpt_path last, or start from it "
                        f"with --run NEW_NAME")


def describe(cli: Any, name: str) -> str | None:
    """One line that says where the run's files go (``None`` on every process but global rank 0)."""
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank != 0:
        return None
    logger = cli.trainer.logger
    logs = f"logs in {logger.log_dir}, " if logger is not None and logger.log_dir else ""  # no broadcast before fit
    return f"run {name!r}: {logs}checkpoints in {cli.config.checkpoint.dirpath}"
