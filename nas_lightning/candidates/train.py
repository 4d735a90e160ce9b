"""Train one candidate: :func:`train_candidate` trains a cell's NB201 network with a recipe.

A training can stop early and continue later (``epochs``, ``resume``): the learning-rate schedule
is always the recipe's full-length one, and a stopped training hands back a *snapshot* (network,
optimizer, schedule and both random generators, as plain tensors), so continuing it to the end gives
the same curve and accuracy as one training straight to the end with the same seed (as a trial of
Hyperband or ASHA is one full-length run, stopped early). Snapshots are our own small dict rather
than a Lightning checkpoint because they live in result stores a user may be handed: they load with
``torch.load(weights_only=True)``, which runs no code, and hold nothing but tensors and numbers.

Every training records its validation curve: accuracy and cumulative seconds after each epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch

from nas_lightning.errors import UserError
from nas_lightning.candidates.candidate import CandidateModule, NonFiniteLossError, channel_stats, make_loader, steps_per_epoch
from nas_lightning.candidates.datasets import ImageData
from nas_lightning.candidates.network import arch_label, arch_string, build_network, count_params, validate_ops
from nas_lightning.candidates.recipe import PRESETS, Recipe, balanced_subset

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet_and_deterministic(deterministic: bool, seed: int, threads: int = 1) -> Iterator[None]:
    """Seed torch's global RNG inside a forked RNG state; deterministic algorithms; ``threads`` CPU
    threads; Lightning's chatter off (everything restored on exit)."""
    names = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.seed")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    det, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    previous_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        if deterministic:
            if devices:
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
        with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*(does not have many workers|number of training batches|validation_step|deterministic|LeafSpec|tensorboardX).*")
            torch.manual_seed(seed)
            yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        torch.set_num_threads(previous_threads)


def _candidate_logger(ops: tuple[str, ...], data: ImageData, recipe: Recipe, log_dir: str | Path) -> Any:
    """The TensorBoard logger of one training, ``log_dir/<recipe key>/<arch label>/seed<seed>``, its
    hyperparameters (architecture, dataset, recipe, seed) already set, so ``hparams.yaml`` holds them."""
    from lightning.pytorch.loggers import TensorBoardLogger

    logger = TensorBoardLogger(str(log_dir), name=f"{recipe.key}/{arch_label(ops)}", version=f"seed{recipe.seed}",
                               default_hp_metric=False)
    recipe_fields = {f"recipe/{k}": v for k, v in dataclasses.asdict(recipe).items() if k != "seed"}
    logger.log_hyperparams({"arch": arch_string(ops), "dataset": data.describe(), "dataset_fingerprint": data.fingerprint[:16],
                            "seed": recipe.seed, "recipe/key": recipe.key, **recipe_fields})
    return logger


def _is_oom(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in text or "can't allocate memory" in text


def load_snapshot(blob: bytes) -> dict[str, Any]:
    """A snapshot's content (tensors and numbers only: loading it runs no code)."""
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)


def _snapshot(module: CandidateModule, trainer: Any, loader_gen: torch.Generator, arch: str, recipe: Recipe) -> bytes:
    state = {
        "arch": arch, "recipe": recipe.key, "seed": recipe.seed, "epochs": len(module.curve), "curve": module.curve,
        "net": module.net.state_dict(), "optimizer": trainer.optimizers[0].state_dict(),
        "scheduler": trainer.lr_scheduler_configs[0].scheduler.state_dict() if trainer.lr_scheduler_configs else None,
        "aug_gen": module.aug_gen.get_state(), "loader_gen": loader_gen.get_state(),
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def train_candidate(
    ops: tuple[str, ...],
    data: ImageData,
    recipe: Recipe | None = None,
    log_dir: str | Path | None = None,
    accelerator: str = "auto",
    callbacks: list[Any] | None = None,
    epochs: int | None = None,
    resume: bytes | None = None,
) -> dict[str, Any]:
    """Train the NB201 network of ``ops`` on ``data`` with ``recipe`` (default: the ``cpu`` preset).

    Args:
        ops: the cell's six operations.
        data: the dataset (trained on train, scored on val; test only at the full length).
        recipe: how it is trained (its ``seed`` is the training seed).
        log_dir: TensorBoard folder (``log_dir/<recipe key>/<arch label>/seed<seed>``; ``None``: none).
        accelerator: Lightning's accelerator.
        callbacks: passed to the Trainer.
        epochs: stop after this many epochs of the recipe's schedule (``None``: ``recipe.epochs``).
        resume: the ``snapshot`` of an earlier, stopped training of the same cell, data and recipe.

    Returns a dict: ``arch`` (NB201 string), ``seed``, ``recipe`` (its key), ``epochs`` (trained so
    far), ``curve`` (``[val_acc, seconds]`` after each epoch, seconds cumulative), ``val_acc`` (after
    the last epoch trained) and ``test_acc`` (percent; ``None`` before the full length or without a
    test split), ``params`` (millions), ``seconds`` (cumulative wall time), ``status`` (``ok`` or
    ``failed``), ``reason`` ("" when ok) and ``snapshot`` (bytes to continue from; ``None`` at the
    full length). A NaN/infinite loss or running out of memory gives ``status="failed"``.

    Raises:
        UserError: for a malformed cell, a training subset smaller than the number of classes, an
            ``epochs`` outside the recipe's, or a snapshot of another training.
    """
    import lightning as L

    recipe = recipe or PRESETS["cpu"]
    ops = validate_ops(ops)
    target = recipe.epochs if epochs is None else epochs
    if not isinstance(target, int) or not 1 <= target <= recipe.epochs:
        raise UserError(f"epochs={epochs!r} is out of range; give an integer in [1, {recipe.epochs}] (the recipe's length)")
    state = load_snapshot(resume) if resume is not None else None
    if state is not None and (state["arch"] != arch_string(ops) or state["recipe"] != recipe.key or state["seed"] != recipe.seed):
        raise UserError(f"the snapshot is of {state['arch']} (recipe {state['recipe']}, seed {state['seed']}); it cannot continue this training")
    done = 0 if state is None else int(state["epochs"])
    if target < done:
        raise UserError(f"the snapshot is at epoch {done}, past epochs={target}; ask for at least {done}")
    x, y = data.train
    if recipe.max_train_images is not None:
        if recipe.max_train_images < data.num_classes:
            raise UserError(f"recipe max_train_images={recipe.max_train_images} is below the {data.num_classes} classes; give at least one image per class")
        keep = balanced_subset(y, recipe.max_train_images, recipe.subset_seed)
        if len(keep) < len(y):  # a subset (all of them: no copy of images mapped from disk)
            x, y = x[keep], y[keep]
    result: dict[str, Any] = {"arch": arch_string(ops), "seed": recipe.seed, "recipe": recipe.key, "val_acc": None, "test_acc": None,
                              "epochs": done, "curve": [] if state is None else [list(p) for p in state["curve"]], "snapshot": None}
    with _quiet_and_deterministic(recipe.deterministic, recipe.seed, recipe.threads):
        mean, std = channel_stats(x)
        net = build_network(ops, C=recipe.C, N=recipe.N, num_classes=data.num_classes, in_channels=data.in_channels)
        result["params"] = count_params(net)
        module = CandidateModule(
            net, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, nesterov=recipe.nesterov,
            schedule=recipe.schedule, total_steps=recipe.epochs * steps_per_epoch(len(y), recipe.batch_size),
            mean=mean, std=std, resolution=recipe.resolution, augment=recipe.augment, crop_padding=recipe.crop_padding,
            seed=recipe.seed,
        )
        train_loader = make_loader(x, y, recipe.batch_size, recipe.seed)
        module.start_clock(result["curve"])
        if state is not None:
            module.resume_from(state)
            train_loader.generator.set_state(state["loader_gen"])
        logger: Any = False if log_dir is None else _candidate_logger(ops, data, recipe, log_dir)
        eval_batch = max(recipe.batch_size, 512)
        val_loader = make_loader(*data.val, eval_batch, None)
        trainer = L.Trainer(
            accelerator=accelerator, devices=1, max_epochs=target - done, logger=logger, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=callbacks,
            benchmark=not recipe.deterministic, log_every_n_steps=max(1, min(50, steps_per_epoch(len(y), recipe.batch_size))),
        )
        try:
            if target > done:
                trainer.fit(module, train_loader, val_loader)
            result["val_acc"] = float(module.curve[-1][0])
            result["epochs"] = len(module.curve)
            if target < recipe.epochs:
                result["snapshot"] = _snapshot(module, trainer, train_loader.generator, result["arch"], recipe)
            elif data.test is not None:
                result["test_acc"] = float(trainer.test(module, make_loader(*data.test, eval_batch, None), verbose=False)[0]["test_acc"])
            result.update(status="ok", reason="")
            if logger and target == recipe.epochs:  # the hyperparameters with their outcome, for TensorBoard's HPARAMS view
                logger.log_hyperparams(logger.hparams, metrics={"hp/val_acc": result["val_acc"]})
                logger.finalize("success")
        except NonFiniteLossError as err:
            result.update(status="failed", reason=str(err))
        except (RuntimeError, MemoryError) as err:
            if not _is_oom(err):
                raise
            result.update(status="failed", reason=f"out of memory: {str(err).splitlines()[0][:200]}")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        result["curve"] = [list(p) for p in module.curve]
    result["seconds"] = module.seconds()
    val = "-" if result["val_acc"] is None else f"{result['val_acc']:.2f} %"
    log.info("%s seed %d: %s at epoch %d, val %s (%.1f s)", result["arch"], recipe.seed, result["status"], result["epochs"], val, result["seconds"])
    return result
