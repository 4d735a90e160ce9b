"""``search.py rank``: few-shot ranking of a whole task from K evaluated architectures."""

from __future__ import annotations

from pathlib import Path

from nas_lightning.commands.common import (predictor_for, pretrained_for, read_support, seen_note, target_and_source,
                                           transfer_sources)
from nas_lightning.files import print_written
from nas_lightning.errors import UserError
from nas_lightning.files import write_json
from nas_lightning.models.gp_fit import GPOptions
from nas_lightning.models.scoring import FineTuneOptions
from nas_lightning.rankers.posterior import GPRanker, gp_hyper
from nas_lightning.rankers.baselines import baselines
from nas_lightning.rankers.ranking import rank_with
from nas_lightning.search.meta import HEADS
from nas_lightning.tasks.load import params_table


def rank(task: str, ckpt: str, support: int = 10, seeds: int = 10, source: str | None = None,
         support_archs: str | None = None, out: str | None = None, device: str = "auto",
         pretrain: FineTuneOptions = FineTuneOptions(), head: str = "maml", gp: GPOptions = GPOptions()) -> int:
    """Adapt on K architectures of TASK per draw and rank all of it; report Spearman and Kendall for
    the meta predictor beside scratch, params, transfer, blend (meta and transfer mixed by a weight
    chosen on the K measurements), (with --pretrain.ckpt) pretrain and (with --head gp) gp, the
    GP head on the same predictor, whose 80 % interval coverage and negative log predictive
    density on the task are reported too.

    Args:
        task: the task to rank (a complete table).
        ckpt: predictor checkpoint from train.py.
        support: K, evaluated architectures to adapt on.
        seeds: support draws (seeds 0..N-1).
        source: a fixed source task for transfer (default: the checkpoint's best-matching training table).
        support_archs: a file of architecture strings, one a line: a fixed support instead of random draws.
        out: folder for results.json.
        device: auto, cpu or cuda: where the predictor runs.
        pretrain: the pretrain baseline's checkpoint (of configs/pretrain.yaml) and fine-tuning on the support.
        head: maml (the meta predictor alone) or gp (also the GP head on it, ranker gp).
        gp: how the GP head's hyperparameters are meta-learned on the checkpoint's training tables.
    """
    if head not in HEADS:
        raise UserError(f"--head must be one of {', '.join(HEADS)}, got {head!r}")
    target, fixed_source = target_and_source(task, source, seeds, out)
    if support < 2 or support >= target.size:
        raise UserError(f"--support must be between 2 and {target.size - 1} (the task's size - 1), got {support}")
    fixed = read_support(support_archs, target) if support_archs else None
    module = predictor_for(ckpt, target, device, "rank")
    baseline = pretrained_for(pretrain, target, device)
    sources = transfer_sources(module, target) if fixed_source is None else None
    rankers = baselines(target, module, fixed_source, sources, params_table(target), baseline)
    if head == "gp":
        rankers.insert(1, GPRanker(module, target.direction == "max", gp_hyper(module, target, gp)))
    results = rank_with(target, rankers, len(fixed) if fixed is not None else support, seeds, fixed)
    results.update(seen_note(module, target))
    for ranker in rankers:
        if ranker.name in results:
            r = results[ranker.name]
            print(f"{ranker.name:10s} spearman {r['spearman_mean']:.4f} ± {r['spearman_std']:.4f}   "
                  f"kendall {r['kendall_mean']:.4f} ± {r['kendall_std']:.4f}"
                  + (f"   80% interval coverage {r['coverage80_mean']:.3f}   NLPD {r['nlpd_mean']:.3f}"
                     if "coverage80_mean" in r else ""))
    if sources and "transfer" in results:
        picks = results["transfer"]["sources"]
        top = max(set(picks), key=picks.count)
        print(f"transfer: best-matching table of {len(sources)} training tables per draw (most picked: {top}, {picks.count(top)}/{len(picks)})")
    if out:
        write_json(results, Path(out) / "results.json", indent=2)
        print_written([(Path(out) / "results.json", "per-method rank correlations, per draw")])
    return 0
