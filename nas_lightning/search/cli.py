"""The ``search.py`` command: list tasks, compare strategies, or rank few-shot."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from pathlib import Path

import torch

from nas_lightning.benchmarks import space
from nas_lightning.benchmarks.tables import embedded_specs, parse_spec
from nas_lightning.benchmarks.task import Task
from nas_lightning.errors import UserError
from nas_lightning.models.checkpoint import load_predictor
from nas_lightning.search import STRATEGIES, make_strategy
from nas_lightning.search.callback import ModuleScorer
from nas_lightning.search.ranking import csv_sources, predict_all, rank_only
from nas_lightning.search.suggest import METHODS as SUGGEST_METHODS
from nas_lightning.search.suggest import suggest_support
from nas_lightning.search.runner import format_table, run_comparison, write_results

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: one line, status 2
        raise UserError(f"{message} (see python search.py --help)")


def parser() -> argparse.ArgumentParser:
    p = _Parser(description="Search a NAS-Bench-201 task side by side with every strategy, or rank it few-shot.")
    p.add_argument("--list-tasks", action="store_true", help="print every available task spec with direction and size")
    p.add_argument("--task", help="task spec: nb201/<dataset>/<metric>, nb201-official/..., csv:<path>[#col][@min|@max]")
    p.add_argument("--strategy", default="meta,rea,random", help=f"comma-separated, from {','.join(STRATEGIES)}")
    p.add_argument("--budget", type=int, default=100, help="oracle queries per run")
    p.add_argument("--seeds", type=int, default=10, help="runs (or support draws) per strategy, seeds 0..N-1")
    p.add_argument("--ckpt", help="predictor checkpoint from train.py (needed by meta and --rank-only)")
    p.add_argument("--source", help="source task spec for the transfer baseline")
    p.add_argument("--out", help="output folder for results.json (and regret.png)")
    p.add_argument("--noisy", action="store_true", help="oracle returns one sampled training seed, not the mean")
    p.add_argument("--rank-only", action="store_true", help="few-shot ranking of the whole task instead of a search")
    p.add_argument("--support", type=int, default=10, help="K: evaluated architectures to adapt on (--rank-only)")
    p.add_argument("--support-archs", help="file of NB201 strings, one per line: a fixed support set (--rank-only)")
    p.add_argument("--suggest-support", type=int, metavar="K",
                   help="print the K architectures to measure first on a new task, one NB201 string a line (needs --ckpt; "
                        "--task restricts them to that table's architectures)")
    p.add_argument("--suggest-method", default="kcenter", help=f"how --suggest-support picks: {', '.join(SUGGEST_METHODS)}")
    p.add_argument("--predict", metavar="OUT_CSV",
                   help="adapt on every measured row of --task (e.g. your 10 latencies) and write all 15,625 "
                        "architectures, best first, to OUT_CSV (needs --ckpt)")
    p.add_argument("--meta-batch", type=int, default=1, help="meta: architectures queried per scoring step")
    p.add_argument("--meta-members", type=int, default=8, help="meta: bootstrap members (exploration)")
    p.add_argument("--meta-beta", type=float, default=0.5, help="meta: exploration weight")
    p.add_argument("--official-path", help="official NB201 file for nb201-official/... specs (else NB201_PATH)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda: where the predictor runs")
    return p


def _one_task(spec: str, official: str | None) -> Task:
    tasks = parse_spec(spec, official)
    if len(tasks) != 1:
        raise UserError(f"task spec {spec!r} gives {len(tasks)} tasks; name one file and one column (csv:<file>#<column>)")
    return tasks[0]


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return name


def _read_support(path: str, task: Task) -> torch.Tensor:
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or type(err).__name__
        raise UserError(f"--support-archs {path!r} is unreadable ({reason}); give a text file of NB201 strings") from None
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


def _write_json(obj: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".results.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, out / "results.json")


def _seen_note(module, task: Task) -> dict:
    seen = task.name in module.trained_on["tasks"]
    fed = module.trained_on["fed_back"].get(task.name, 0)
    if seen or fed:
        log.warning("the checkpoint was trained on %s (%s): this is not a held-out evaluation",
                    task.name, "its table" if seen else f"{fed} oracle answers")
    return {"checkpoint_trained_on_task": seen, "checkpoint_fed_back_queries": fed}


def _transfer_sources(module, task: Task) -> list[Task]:
    """The checkpoint's csv training tables that exist here (best-matching ``transfer``)."""
    names = module.trained_on["tasks"]
    if not any(n.startswith("csv:") for n in names):
        return []
    sources, missing = csv_sources(names, exclude=task.name, exclude_path=task.name[len("csv:"):].rpartition("#")[0]
                                   if task.name.startswith("csv:") else None)
    if missing and not sources:
        log.warning("transfer skipped: none of the checkpoint's %d training tables is here (e.g. %s); "
                    "give one with --source csv:PATH", len(missing), missing[0])
    elif missing:
        log.warning("transfer: %d of the checkpoint's training tables are missing here (e.g. %s); choosing among the other %d",
                    len(missing), missing[0], len(sources))
    return sources


def _suggest(args: argparse.Namespace) -> int:
    if not args.ckpt:
        raise UserError("--suggest-support needs --ckpt (a predictor checkpoint from train.py)")
    task = _one_task(args.task, args.official_path) if args.task else None
    module = load_predictor(args.ckpt, _device(args.device))
    chosen = suggest_support(module, args.suggest_support, None if task is None else task.archs,
                             task is not None and task.direction == "max", args.suggest_method)
    for i in chosen.tolist():
        print(space.to_string(i))
    return 0


def _predict(args: argparse.Namespace) -> int:
    if not (args.ckpt and args.task):
        raise UserError("--predict needs --task csv:YOUR_MEASUREMENTS and --ckpt (a predictor checkpoint from train.py)")
    task = _one_task(args.task, args.official_path)
    if task.size < 2:
        raise UserError(f"--predict: task {task.name} holds {task.size} measured architecture; give at least 2")
    out = Path(args.predict)
    if out.is_dir():
        raise UserError(f"--predict {args.predict!r} is a folder; give a file name for the CSV")
    module = load_predictor(args.ckpt, _device(args.device))
    archs, scores, measured = predict_all(task, module)
    order = torch.argsort(scores, descending=True, stable=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rank", "arch", "score", f"measured_{task.name.rpartition('#')[2] or 'value'}"])
        for r, i in enumerate(order.tolist(), start=1):
            m = measured.get(int(archs[i]))
            w.writerow([r, space.to_string(int(archs[i])), f"{float(scores[i]):.6g}", "" if m is None else f"{m:.6g}"])
    os.replace(tmp, out)
    print(f"ranked {len(archs)} architectures from {task.size} measurements of {task.name} "
          f"(score: higher is better, direction {task.direction}) -> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.suggest_support is not None:
        return _suggest(args)
    if args.predict:
        return _predict(args)
    if args.list_tasks:
        specs = [args.task] if args.task else embedded_specs()
        for t in (t for s in specs for t in parse_spec(s, args.official_path)):
            print(f"{t.name}\t{t.direction}\t{t.size}")
        return 0
    if not args.task:
        raise UserError("--task SPEC is required (see python search.py --list-tasks)")
    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out!r} is a file; give a folder (it is created if missing)")
    task = _one_task(args.task, args.official_path)
    source = _one_task(args.source, args.official_path) if args.source else None
    device = _device(args.device)
    if args.rank_only:
        if args.support < 2 or args.support >= task.size:
            raise UserError(f"--support must be between 2 and {task.size - 1} (the task's size - 1), got {args.support}")
        fixed = _read_support(args.support_archs, task) if args.support_archs else None
        module = load_predictor(args.ckpt, device) if args.ckpt else None
        if module is None:
            raise UserError("--rank-only needs --ckpt (a predictor checkpoint from train.py)")
        sources = _transfer_sources(module, task) if source is None else None
        results = rank_only(task, module, len(fixed) if fixed is not None else args.support, args.seeds, source, fixed, sources)
        results.update(_seen_note(module, task))
        for name in ("meta", "transfer", "params", "scratch"):
            if name in results:
                r = results[name]
                print(f"{name:10s} spearman {r['spearman_mean']:.4f} ± {r['spearman_std']:.4f}   kendall {r['kendall_mean']:.4f} ± {r['kendall_std']:.4f}")
        if sources and "transfer" in results:
            picks = results["transfer"]["sources"]
            top = max(set(picks), key=picks.count)
            print(f"transfer: best-matching table of {len(sources)} training tables per draw (most picked: {top}, {picks.count(top)}/{len(picks)})")
        if args.out:
            _write_json(results, Path(args.out))
        return 0
    if args.budget < 1:
        raise UserError(f"--budget must be at least 1 query, got {args.budget}")
    if args.budget > task.size:
        raise UserError(f"--budget {args.budget} exceeds the task's {task.size} architectures; lower it")
    names = [n.strip() for n in args.strategy.split(",") if n.strip()]
    module = load_predictor(args.ckpt, device) if args.ckpt and "meta" in names else None
    factories = {}
    for name in names:
        make_strategy(name, source=source, scorer=(lambda *a: None) if module is not None else None)  # validate early
        if name == "meta":
            scorer = ModuleScorer(module, task.direction == "max", args.meta_members)
            factories[name] = lambda s=scorer: make_strategy("meta", scorer=s, batch=args.meta_batch, beta=args.meta_beta)
        else:
            factories[name] = lambda n=name: make_strategy(n, source=source)
    results = run_comparison(task, factories, args.budget, args.seeds, noisy=args.noisy)
    if module is not None:
        results.update(_seen_note(module, task))
    print(format_table(results))
    for name, r in results["strategies"].items() if "strategies" in results else []:
        print(f"{name}: best found {r.get('best_arch')}")
    if args.out:
        write_results(results, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
