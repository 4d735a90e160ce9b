"""Ray Tune's ``ASHAScheduler`` with random sampling: the multi-fidelity baseline, run by the library.

A trial is one candidate's full-length training, reporting its validation accuracy after every
epoch; Tune's scheduler stops it at a milestone when it is below the top ``1/eta`` there. Trials
are drawn by Tune's random search (``BasicVariantGenerator``, seeded) over the task's cells. Two
trainables: a replay of a curve table (the tabulated training's accuracy and seconds per epoch, so
the baseline sees exactly what our searches see) and a live one that trains the cell with the same
recipe (:func:`~nas_lightning.candidates.train.train_candidate`). Compute is counted as ours is:
every reported epoch once, Tune stopping every trial when the epoch budget is spent.

Tune runs on a local Ray instance started as every Ray use here is (loopback only), in a temporary
folder for its own files, removed afterwards.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any, Callable

import torch

from nas_lightning.candidates.curves import CurveTable
from nas_lightning.candidates.ray_access import loopback_only
from nas_lightning.candidates.ray_pool import RayPool, RaySettings
from nas_lightning.oracles.fidelity import Answer

log = logging.getLogger(__name__)


def _replay_trial(config: dict[str, Any], curves: dict[int, list[tuple[float, float]]]) -> None:
    from ray import tune

    before = 0.0
    for value, seconds in curves[config["arch"]]:
        tune.report({"val_acc": value, "seconds": seconds - before})
        before = seconds


def _live_trial(config: dict[str, Any], data: Any, recipe: Any, accelerator: str) -> None:
    import lightning as L
    from ray import tune

    from nas_lightning.candidates.train import train_candidate
    from nas_lightning.spaces import NB201

    class Report(L.Callback):
        def on_validation_end(self, trainer: Any, module: Any) -> None:
            if trainer.state.fn == "fit" and module.curve:
                before = module.curve[-2][1] if len(module.curve) > 1 else 0.0
                tune.report({"val_acc": module.curve[-1][0], "seconds": module.curve[-1][1] - before})

    torch.set_num_threads(recipe.threads)
    train_candidate(NB201.ops(config["arch"]), data, recipe, accelerator=accelerator, callbacks=[Report()])


def run_tune_asha(trial: tuple[Callable[..., None], dict[str, Any]], archs: torch.Tensor, max_epochs: int, budget: int, grace: int, eta: int,
                  seed: int, workers: int = 1, pool: RayPool | None = None,
                  resources: dict[str, float] | None = None) -> list[Answer]:
    """Tune's ASHA with random search until ``budget`` epochs are reported; every report as an
    :class:`Answer` in the order Tune handed it over (``epochs`` = the trial's epoch).

    ``trial`` is a trial function and its fixed arguments (:func:`replay_trial`, :func:`live_trial`);
    Ray starts (loopback only) before Tune is imported, unless ``pool`` is a running instance.
    ``resources`` are what one trial asks for (default one CPU).
    """
    own = pool is None
    pool = pool or RayPool(RaySettings(workers=workers))
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no per-trial CSV/JSON/TensorBoard files
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    answers: list[Answer] = []

    class Budget(tune.Stopper):
        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

        def stop_all(self) -> bool:
            return len(answers) >= budget

    class Record(tune.Callback):
        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any) -> None:
            if len(answers) >= budget:
                return  # reported after the budget was spent: not counted, not used
            seconds = (answers[-1].seconds_done if answers else 0.0) + float(result["seconds"])
            answers.append(Answer(int(trial.config["arch"]), int(result["training_iteration"]), float(result["val_acc"]),
                                  len(answers) + 1, seconds))

    quiet = logging.getLogger("ray.tune")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # Tune warns about the per-trial files it was told not to write
    try:
        with tempfile.TemporaryDirectory(prefix="tune-asha-") as folder:
            scheduler = ASHAScheduler(time_attr="training_iteration", max_t=max_epochs, grace_period=grace, reduction_factor=eta)
            tuner = tune.Tuner(
                tune.with_resources(tune.with_parameters(trial[0], **trial[1]), resources or {"cpu": 1}),
                param_space={"arch": tune.choice(archs.tolist())},
                tune_config=tune.TuneConfig(metric="val_acc", mode="max", scheduler=scheduler, num_samples=budget // grace + 1,
                                            search_alg=BasicVariantGenerator(random_state=seed), max_concurrent_trials=workers,
                                            reuse_actors=True),
                run_config=tune.RunConfig(storage_path=folder, name="asha", stop=Budget(), callbacks=[Record()], verbose=0),
            )
            tuner.fit()
    finally:
        quiet.setLevel(level)
        if own:
            pool.close()
    return answers


def replay_tune_asha(table: CurveTable, budget: int, grace: int, eta: int, seed: int) -> list[Answer]:
    """Tune's ASHA on a curve table with one trial at a time, driving Tune's own scheduler and
    random sampling directly, without Tune's trial runner: for one worker the answers are those
    of :func:`run_tune_asha` with :func:`replay_trial` (a test checks it), in a fraction of the
    time (through the runner, 13 replayed trials took 60 s here, the start of Ray included, for
    trials that replay in microseconds). Twenty seeds of the replay benchmark then take seconds."""
    with loopback_only():  # a local Ray instance started later in this process stays on loopback
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler, TrialScheduler
        from ray.tune.search.sample import _BackwardsCompatibleNumpyRng

    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=table.epochs, grace_period=grace, reduction_factor=eta)
    scheduler.set_search_properties("val_acc", "max")
    domain, rng = tune.choice(table.archs.tolist()), _BackwardsCompatibleNumpyRng(seed)
    row = {int(a): r for r, a in enumerate(table.archs.tolist())}
    answers: list[Answer] = []
    for n in range(budget // grace + 1):
        arch = int(domain.sample(random_state=rng))
        trial = _Trial(f"{n:05d}")
        scheduler.on_trial_add(None, trial)
        result: dict[str, Any] = {}
        for epoch in range(1, table.epochs + 1):
            value, seconds = float(table.val[row[arch], epoch - 1]), float(table.seconds[row[arch], epoch - 1])
            took = seconds - (float(table.seconds[row[arch], epoch - 2]) if epoch > 1 else 0.0)
            answers.append(Answer(arch, epoch, value, len(answers) + 1, (answers[-1].seconds_done if answers else 0.0) + took))
            if len(answers) >= budget:
                return answers
            result = {"training_iteration": epoch, "val_acc": value}
            if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP:
                break
        scheduler.on_trial_complete(None, trial, result)
    return answers


class _Trial:
    """What Tune's ASHA scheduler reads of a trial: its id."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


def replay_trial(table: CurveTable) -> tuple[Callable[..., None], dict[str, Any]]:
    """The replay trial of ``table``'s cells."""
    curves = {int(a): list(zip(table.val[r].tolist(), table.seconds[r].tolist())) for r, a in enumerate(table.archs.tolist())}
    return _replay_trial, {"curves": curves}


def live_trial(data: Any, recipe: Any, accelerator: str = "auto") -> tuple[Callable[..., None], dict[str, Any]]:
    """The live trial: trains the cell with ``recipe`` on ``data`` (Lightning's ``accelerator``)."""
    return _live_trial, {"data": data, "recipe": recipe, "accelerator": accelerator}
