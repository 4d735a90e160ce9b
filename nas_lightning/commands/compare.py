"""``search.py compare``: every strategy side by side on a target, fresh oracles, honestly scored."""

from __future__ import annotations

from pathlib import Path

from nas_lightning.commands.common import check_runs, device as pick_device, pretrained_for, seen_note, source_for
from nas_lightning.commands.fidelity_compare import MULTI_FIDELITY, format_fidelity, run_fidelity_comparison, write_fidelity
from nas_lightning.commands.trained_compare import run_training_comparison
from nas_lightning.candidates.ray_pool import check_address
from nas_lightning.candidates.store_guard import check_store
from nas_lightning.commands.written import compare_outputs
from nas_lightning.files import print_written
from nas_lightning.errors import UserError
from nas_lightning.models.checkpoint import load_predictor
from nas_lightning.models.gp_fit import GPOptions
from nas_lightning.rankers.posterior import gp_hyper
from nas_lightning.models.scoring import FineTuneOptions, PredictorScorer
from nas_lightning.oracles import OracleFactory, OracleSettings
from nas_lightning.search import make_strategy
from nas_lightning.search.asha import AshaOptions
from nas_lightning.search.meta import MetaOptions
from nas_lightning.search.posterior import GPScorer, PosteriorSearch
from nas_lightning.search.runner import format_table, run_comparison, write_results
from nas_lightning.tasks.spec import is_training_spec


def compare(task: str, strategy: str = "meta,rea,random", budget: int = 100, seeds: int = 10,
            ckpt: str | None = None, source: str | None = None, out: str | None = None, device: str = "auto",
            meta: MetaOptions = MetaOptions(), pretrain: FineTuneOptions = FineTuneOptions(),
            oracle: OracleSettings = OracleSettings(), gp: GPOptions = GPOptions(), budget_epochs: int | None = None,
            asha: AshaOptions = AshaOptions()) -> int:
    """Search TASK with each strategy, once per seed with a fresh oracle; print the table and
    write results.json and regret.png (best_so_far.png for a train: task; best_vs_compute.png
    with --budget_epochs).

    Args:
        task: the target task spec (a table, or train:<dataset> to train each candidate for real).
        strategy: comma-separated, from meta, rea, random, local, reinforce, transfer, pretrain; with
            --budget_epochs also asha, asha-meta (ASHA, the predictor choosing who enters) and tune-asha
            (Ray Tune's ASHA).
        budget: oracle queries per run.
        seeds: runs per strategy (seeds 0..N-1).
        ckpt: predictor checkpoint from train.py (needed by meta).
        source: source task spec for the transfer baseline.
        out: folder for results.json and the plot (train: tasks: also trainings.csv, the store, the curves).
        device: auto, cpu or cuda: where the predictor runs.
        meta: how meta (and pretrain) search with the predictor.
        pretrain: the pretrain baseline's checkpoint and fine-tuning.
        gp: with --meta.head gp, how the GP head's hyperparameters are meta-learned on the
            checkpoint's training tables.
        oracle: how the target answers (noisy tables; for train: tasks the recipe, store and Ray workers).
        budget_epochs: train: tasks: a budget in epochs of training instead of queries (full-training
            strategies spend the recipe's epochs per candidate; asha, asha-meta and tune-asha what they use).
        asha: the rungs of asha, asha-meta and tune-asha (with --budget_epochs).
    """
    training = is_training_spec(task)
    ray = oracle.ray
    if ray.enabled and not training:
        raise UserError("--oracle.ray trains candidates on Ray: use it with a train:... task")
    if ray.address is not None:
        check_address(ray.address)  # nothing listening: one line now, before any data is loaded
    check_runs(seeds, out)
    factory = OracleFactory(oracle, budget, default_store=Path(out or "runs") / "trainings.sqlite",
                            log_dir=Path(out) / "candidates" if out and training else None)
    if training:
        check_store(factory.store_path, "--oracle.store")  # writable, ours and intact: before any work
    target = factory.resolve(task)
    fixed_source = source_for(target, source)
    dev = pick_device(device)
    if budget < 1:
        raise UserError(f"--budget must be at least 1 query, got {budget}")
    if budget > target.size:
        raise UserError(f"--budget {budget} exceeds the task's {target.size} architectures; lower it")
    names = [n.strip() for n in strategy.split(",") if n.strip()]
    staged = [n for n in names if n in MULTI_FIDELITY]
    if budget_epochs is not None and not training:
        raise UserError("--budget_epochs is a budget in training epochs: use it with a train:... task")
    if staged and budget_epochs is None:
        raise UserError(f"{staged[0]} stops and continues trainings: give a budget in epochs with --budget_epochs N")
    if budget_epochs is not None and budget_epochs < target.recipe.epochs:
        raise UserError(f"--budget_epochs {budget_epochs} is below one full training ({target.recipe.epochs} epochs); raise it")
    if "asha-meta" in names and not ckpt:
        raise UserError("asha-meta needs --ckpt (a predictor checkpoint from train.py)")
    if "asha-meta" in names and meta.head != "maml":
        raise UserError(f"asha-meta enters candidates with the MAML head's acquisition; drop --meta.head {meta.head}")
    module = load_predictor(ckpt, dev, target.space) if ckpt and ("meta" in names or "asha-meta" in names) else None
    baseline = pretrained_for(pretrain, target, device) if "pretrain" in names else None
    predictors = {"meta": module, "pretrain": baseline}
    factories = {}
    for name in [n for n in names if n not in MULTI_FIDELITY] + (["meta"] if "asha-meta" in names and "meta" not in names else []):
        given = predictors.get(name)
        make_strategy(name, source=fixed_source, scorer=(lambda *a: None) if given is not None else None)  # validate early
        if name in predictors and meta.head == "gp":
            head = GPScorer(given, target.direction == "max", gp_hyper(given, target, gp))
            factories[name] = lambda s=head, n=name: PosteriorSearch(s, batch=meta.batch, acquisition=meta.acquisition,
                                                                     beta=meta.beta, name=n)
        elif name in predictors:
            scorer = PredictorScorer(given, target.direction == "max", meta.members)
            factories[name] = lambda s=scorer, n=name: make_strategy(n, scorer=s, batch=meta.batch, beta=meta.beta)
        else:
            factories[name] = lambda n=name: make_strategy(n, source=fixed_source)
    if budget_epochs is not None:  # the store opens only now: bad input never leaves a database behind
        results = run_fidelity_comparison(target, names, lambda n: factories[n](), budget_epochs, seeds, factory, asha)
        print(format_fidelity(results))
        if out:
            write_fidelity(results, Path(out))
        written = [(Path(out) / "results.json", "every run's answers and best pick"),
                   (Path(out) / "best_vs_compute.png", "best found against epochs and seconds spent")] if out else []
        print_written(written + [(factory.store_path, "finished and stopped trainings; a rerun reuses them")])
        return 0
    if training:  # the store opens only now: bad input never leaves a database behind
        results = run_training_comparison(target, factories, budget, seeds, factory, out)
    else:
        results = run_comparison(lambda seed, _: factory.oracle(target, seed), factories, budget, seeds, noisy=oracle.noisy)
    if module is not None:
        results.update(seen_note(module, target))
    print(format_table(results))
    for name, r in results["strategies"].items():
        print(f"{name}: best found {r.get('best_arch')}" + (
            f" (val {r['best_val_acc']:.2f} %, test {r['best_test_acc']:.2f} %)" if r.get("best_test_acc") is not None else ""))
    if out:
        write_results(results, Path(out))
    print_written(compare_outputs(results, out, training))
    if training and not out:
        print("no --out: results.json, the plot and trainings.csv were not written; give --out DIR for them")
    return 0
