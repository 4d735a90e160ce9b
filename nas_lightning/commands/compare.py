"""``search.py compare``: every strategy side by side on a target, fresh oracles, honestly scored."""

from __future__ import annotations

from pathlib import Path

from nas_lightning.commands.common import device as pick_device, pretrained_for, seen_note, target_and_source
from nas_lightning.commands.training import run_training_comparison, training_target
from nas_lightning.evaluation.oracle import is_training_spec
from nas_lightning.evaluation.parallel import RaySettings, check_address
from nas_lightning.evaluation.recipe import PRESETS, Recipe
from nas_lightning.errors import UserError
from nas_lightning.models.checkpoint import load_predictor
from nas_lightning.models.scoring import PredictorScorer
from nas_lightning.search import make_strategy
from nas_lightning.search.runner import format_table, run_comparison, write_results


def compare(task: str, strategy: str = "meta,rea,random", budget: int = 100, seeds: int = 10,
            ckpt: str | None = None, source: str | None = None, noisy: bool = False, out: str | None = None,
            meta_batch: int = 1, meta_members: int = 8, meta_beta: float = 0.5, pretrained: str | None = None,
            finetune_steps: int = 20, finetune_lr: float = 0.03, recipe: Recipe = PRESETS["cpu"],
            store: str | None = None, official_path: str | None = None, device: str = "auto",
            workers: int | None = None, ray_address: str | None = None, trial_cpus: float = 1.0,
            trial_gpus: float = 0.0, max_retries: int = 2, ray_allow_unauthenticated: bool = False) -> int:
    """Search TASK with each strategy, once per seed with a fresh oracle; print the table and
    write results.json and regret.png (best_so_far.png for a train: task).

    Args:
        task: the target task spec.
        strategy: comma-separated, from meta, rea, random, local, reinforce, transfer, pretrain.
        budget: oracle queries per run.
        seeds: runs per strategy (seeds 0..N-1).
        ckpt: predictor checkpoint from train.py (needed by meta).
        source: source task spec for the transfer baseline.
        noisy: the oracle returns one sampled training seed, not the mean.
        out: folder for results.json and the plot (train: tasks: also trainings.csv, the store, the curves).
        meta_batch: meta: architectures queried per scoring step.
        meta_members: meta: bootstrap members (exploration).
        meta_beta: meta: exploration weight.
        pretrained: a checkpoint of configs/pretrain.yaml (needed by pretrain: meta's search over it, fine-tuned).
        finetune_steps: pretrain: SGD steps on what the oracle answered.
        finetune_lr: pretrain: SGD learning rate.
        recipe: train:... tasks: how each candidate is trained (the cpu preset; nb201 for GPUs, see README).
        store: train:... tasks: the SQLite file of finished trainings (default OUT/trainings.sqlite); a rerun
            of a killed search reuses it, and strategies share it.
        official_path: the official NB201 file for nb201-official/... specs (else NB201_PATH).
        device: auto, cpu or cuda: where the predictor runs.
        workers: train:... tasks: trainings at once on Ray (a local instance started and stopped by this
            command, or the cluster at --ray-address); the strategies propose asynchronously with a fixed
            lag (same seed and workers, same result). Unset: one at a time in this process.
        ray_address: train:... tasks: host:port of a Ray cluster started with `ray start --head` to join.
        trial_cpus: CPUs per training on Ray.
        trial_gpus: GPUs per training on Ray (a fraction such as 0.25 lets several trainings share a card).
        max_retries: retries of a training whose Ray worker or node was lost (then it counts as failed).
        ray_allow_unauthenticated: run Ray even with RAY_AUTH_MODE=disabled in the environment (refused
            otherwise). This exposes your account: anyone who can reach the Ray ports (every user of this
            machine for the local instance, the whole network for a cluster) can run code as you and read
            your data.
    """
    training = is_training_spec(task)
    ray = None
    if workers is not None or ray_address is not None:
        if not training:
            raise UserError("--workers and --ray-address train candidates on Ray: use them with a train:... task")
        if workers is None:
            raise UserError("--ray-address needs --workers N (how many trainings run at once)")
        ray = RaySettings(workers, ray_address, trial_cpus, trial_gpus, max_retries, ray_allow_unauthenticated)
        if ray_address is not None:
            check_address(ray_address)  # nothing listening: one line now, before any data is loaded
    if training:
        target, fixed_source = training_target(task, recipe, source, seeds, out, official_path)
    else:
        target, fixed_source = target_and_source(task, source, seeds, out, official_path)
    dev = pick_device(device)
    if budget < 1:
        raise UserError(f"--budget must be at least 1 query, got {budget}")
    if budget > target.size:
        raise UserError(f"--budget {budget} exceeds the task's {target.size} architectures; lower it")
    names = [n.strip() for n in strategy.split(",") if n.strip()]
    module = load_predictor(ckpt, dev, target.space) if ckpt and "meta" in names else None
    baseline = pretrained_for(pretrained, target, device, finetune_steps, finetune_lr) if "pretrain" in names else None
    predictors = {"meta": module, "pretrain": baseline}
    factories = {}
    for name in names:
        given = predictors.get(name)
        make_strategy(name, source=fixed_source, scorer=(lambda *a: None) if given is not None else None)  # validate early
        if name in predictors:
            scorer = PredictorScorer(given, target.direction == "max", meta_members)
            factories[name] = lambda s=scorer, n=name: make_strategy(n, scorer=s, batch=meta_batch, beta=meta_beta)
        else:
            factories[name] = lambda n=name: make_strategy(n, source=fixed_source)
    if training:  # the store opens only now: bad input never leaves a database behind
        results = run_training_comparison(target, factories, budget, seeds, store, out, ray)
    else:
        results = run_comparison(target, factories, budget, seeds, noisy=noisy)
    if module is not None:
        results.update(seen_note(module, target))
    print(format_table(results))
    for name, r in results["strategies"].items():
        print(f"{name}: best found {r.get('best_arch')}" + (
            f" (val {r['best_val_acc']:.2f} %, test {r['best_test_acc']:.2f} %)" if r.get("best_test_acc") is not None else ""))
    if out:
        write_results(results, Path(out))
    return 0
