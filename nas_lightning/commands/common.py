"""What the ``search.py`` subcommands share: tasks, devices, checkpoints, a fixed support."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from nas_lightning.errors import UserError
from nas_lightning.files import check_writable
from nas_lightning.models.checkpoint import load_predictor
from nas_lightning.models.module import MetaPredictor
from nas_lightning.models.scoring import FineTuneOptions, finetuned
from nas_lightning.oracles.training import TrainingTarget
from nas_lightning.rankers.ranking import csv_sources
from nas_lightning.tasks.load import load_task
from nas_lightning.tasks.spec import TaskSpec
from nas_lightning.tasks.task import Task

log = logging.getLogger(__name__)


def device(name: str) -> str:
    """``auto`` (CUDA when present), ``cpu`` or ``cuda``."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return name


def one_task(spec: str | None, flag: str = "--task") -> Task:
    """The one task ``spec`` names (required)."""
    if not spec:
        raise UserError(f"{flag} SPEC is required (see python search.py tasks)")
    return load_task(spec)


def predictor_for(ckpt: str | None, task: Task | None, device_name: str, needed_by: str) -> MetaPredictor:
    """The checkpoint's predictor, checked to score ``task``'s search space."""
    if not ckpt:
        raise UserError(f"{needed_by} needs --ckpt (a predictor checkpoint from train.py)")
    return load_predictor(ckpt, device(device_name), None if task is None else task.space)


def pretrained_for(options: FineTuneOptions, task: Task, device_name: str) -> MetaPredictor | None:
    """The ``pretrain`` baseline's predictor: a checkpoint of ``configs/pretrain.yaml`` fine-tuned
    by ``options.steps`` SGD steps of rate ``options.lr`` on the support (``None`` without a checkpoint)."""
    ckpt, steps, lr = options.ckpt, options.steps, options.lr
    if not ckpt:
        return None
    if steps < 1 or lr <= 0:
        raise UserError(f"--pretrain.steps must be >= 1 and --pretrain.lr > 0, got {steps} and {lr}")
    module = load_predictor(ckpt, device(device_name), task.space)
    if module.hparams.inner_steps != 0 or module.hparams.context != 0:
        log.warning("--pretrain.ckpt %s was meta-trained (inner_steps=%d, context=%d), not pretrained with "
                    "configs/pretrain.yaml: the pretrain baseline then does not isolate MAML",
                    ckpt, module.hparams.inner_steps, module.hparams.context)
    return finetuned(module, steps, lr)


def check_runs(seeds: int, out: str | None) -> None:
    """Refuse fewer than one seed and an ``--out`` folder that cannot be written (a file, a path
    under a file, a read-only folder); a missing folder is created later."""
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    if out:
        check_writable(out, "--out", folder=True)


def target_and_source(task: str, source: str | None, seeds: int, out: str | None) -> tuple[Task, Task | None]:
    """The target task and the fixed transfer source of ``rank``, after :func:`check_runs`."""
    check_runs(seeds, out)
    target = one_task(task)
    return target, source_for(target, source)


def source_for(target: Task | TrainingTarget, source: str | None) -> Task | None:
    """The fixed transfer source ``--source`` names for ``target`` (``None`` without one): of the
    target's search space, and never the target's own table under another name."""
    fixed = source_task(source, target.space.name)
    if fixed is not None and fixed.fingerprint == target.fingerprint:
        raise UserError(f"--source {source} holds the same table as --task {target.name}; transfer from another table")
    return fixed


def source_task(source: str | None, space: str) -> Task | None:
    """The fixed transfer source ``--source`` names (``None`` without one), of the target's search ``space``."""
    if not source:
        return None
    fixed = one_task(source, "--source")
    if fixed.space.name != space:
        raise UserError(f"--source {source} is a task of search space {fixed.space.name!r}, not {space!r} (the --task's); "
                        f"transfer from a {space} task")
    return fixed


def seen_note(module: MetaPredictor, task: Task) -> dict:
    """Whether the checkpoint trained on ``task``'s table under any name (and a warning when it did),
    and how many answers of it were fed back into training."""
    seen = task.name in module.trained_on["tasks"] or task.fingerprint in module.trained_on["fingerprints"]
    fed = module.trained_on["fed_back"].get(task.name) or module.trained_on["fed_back_fingerprints"].get(task.fingerprint, 0)
    if seen or fed:
        log.warning("the checkpoint was trained on %s (%s): this is not a held-out evaluation",
                    task.name, "its table" if seen else f"{fed} oracle answers")
    return {"checkpoint_trained_on_task": seen, "checkpoint_fed_back_queries": fed}


def transfer_sources(module: MetaPredictor, task: Task) -> list[Task]:
    """The checkpoint's csv training tables that exist here (best-matching ``transfer``)."""
    names = module.trained_on["tasks"]
    if not any(TaskSpec.parse(n).is_csv for n in names):
        return []
    spec = TaskSpec.parse(task.name)
    sources, missing = csv_sources(names, exclude=task.name, exclude_path=spec.path if spec.is_csv else None)
    sources = [s for s in sources if s.fingerprint != task.fingerprint]  # the target itself, under any name
    if missing and not sources:
        log.warning("transfer skipped: none of the checkpoint's %d training tables is here (e.g. %s); "
                    "give one with --source csv:PATH", len(missing), missing[0])
    elif missing:
        log.warning("transfer: %d of the checkpoint's training tables are missing here (e.g. %s); choosing among the other %d",
                    len(missing), missing[0], len(sources))
    return sources


def read_support(path: str, task: Task) -> torch.Tensor:
    """A fixed support set: a text file of architecture strings, one a line, all in ``task``."""
    space = task.space
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or type(err).__name__
        raise UserError(f"--support-archs {path!r} is unreadable ({reason}); give a text file of {space.name} architecture strings") from None
    archs = []
    for n, ln in enumerate(lines, start=1):
        if ln.strip():
            try:
                archs.append(space.from_string(ln.strip()))
            except UserError as err:
                raise UserError(f"--support-archs {path!r}, line {n}: {err}") from None
    idx = torch.tensor(archs, dtype=torch.long)
    if len(idx) < 2:
        raise UserError(f"--support-archs {path!r} lists {len(idx)} architectures; give at least 2")
    missing = idx[~task.contains(idx)]
    if len(missing):
        raise UserError(f"--support-archs: {space.to_string(int(missing[0]))} is not in task {task.name}; list architectures the table holds")
    if len(torch.unique(idx)) != len(idx):
        raise UserError(f"--support-archs {path!r} lists an architecture twice; list each once")
    return idx
