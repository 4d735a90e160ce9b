"""The ``graph`` benchmark's targets (the figures it is judged by) and its BENCHMARKS.md section."""

from __future__ import annotations

import math
import statistics
from typing import Any

from benchmarks import common

TARGET_GAIN, TARGET_WINS, TARGET_QUERIES = 0.05, 5, 100
BLOCK = 20  # seeds per comparison block: with more seeds the regret target is also judged per 20-seed block
RANK_LABELS = {"meta": "meta", "gp": "meta, GP head", "pretrain": "pretrain", "scratch": "scratch", "transfer_mean": "mean of others",
               "transfer_best": "best other (any table)", "transfer_best_acc": "best other (val_acc)",
               "ridge": "ridge mix"}


def regret_gap(strategies: dict[str, Any], name: str = "meta") -> dict[str, Any] | None:
    """``name``'s (meta's) minus rea's mean validation regret at the budget, the standard error of that
    difference (independent runs), z, and per block of :data:`BLOCK` seeds whether its mean was below rea's."""
    if name not in strategies:
        return None
    m, r = strategies[name].get("val_regret_per_seed"), strategies["rea"].get("val_regret_per_seed")
    if not m or not r or min(len(m), len(r)) < 2:
        return None
    diff = statistics.fmean(m) - statistics.fmean(r)
    se = math.sqrt(statistics.variance(m) / len(m) + statistics.variance(r) / len(r))
    blocks = [statistics.fmean(m[i:i + BLOCK]) < statistics.fmean(r[i:i + BLOCK])
              for i in range(0, min(len(m), len(r)) - BLOCK + 1, BLOCK)]
    return {"diff": diff, "se": se, "z": diff / se if se > 0 else None, "blocks_below": blocks}


def targets(res: dict[str, Any]) -> dict[str, Any]:
    """The targets, each with the measured figures and whether it was met."""
    folds = res["folds"]
    k = "10" if all("10" in f["rank"] for f in folds.values()) else str(res["ks"][0])
    meta = {d: f["rank"][k]["meta"]["spearman_mean"] for d, f in folds.items()}
    mean = {d: f["rank"][k]["transfer_mean"]["spearman_mean"] for d, f in folds.items()}
    gain = statistics.fmean(meta.values()) - statistics.fmean(mean.values())
    wins = sum(meta[d] > mean[d] for d in folds)
    q = {d: f["compare"]["strategies"]["meta"]["queries_to_top_median"] for d, f in folds.items()}
    reached = sum(v is not None and v <= TARGET_QUERIES for v in q.values())
    below = {d: f["compare"]["strategies"]["meta"]["val_regret"] < f["compare"]["strategies"]["rea"]["val_regret"]
             for d, f in folds.items()}
    gaps = {d: regret_gap(f["compare"]["strategies"]) for d, f in folds.items()}
    gp_gaps = {d: regret_gap(f["compare"]["strategies"], "meta_gp") for d, f in folds.items()}
    return {"rank_gain": {"k": int(k), "gain": gain, "met": gain >= TARGET_GAIN},
            "rank_wins": {"k": int(k), "wins": wins, "of": len(folds), "met": wins >= TARGET_WINS},
            "top_queries": {"reached": reached, "of": len(folds), "met": reached >= TARGET_WINS},
            "regret_below_rea": {"datasets": below, "met": all(below.values()), "gaps": gaps, "gp_gaps": gp_gaps}}


def missed(res: dict[str, Any]) -> list[str]:
    """The targets the run missed, in words with the measured figure (none for a tiny run)."""
    t = res.get("targets")
    if not t:
        return []
    out = []
    if not t["rank_gain"]["met"]:
        out.append(f"meta's mean Spearman at K={t['rank_gain']['k']} is {t['rank_gain']['gain']:+.3f} from the "
                   f"mean-of-others transfer's (target +{TARGET_GAIN})")
    if not t["rank_wins"]["met"]:
        out.append(f"meta above the mean-of-others transfer on {t['rank_wins']['wins']} of {t['rank_wins']['of']} "
                   f"datasets (target {TARGET_WINS})")
    if not t["top_queries"]["met"]:
        out.append(f"meta's median queries to a top-0.1% architecture at most {TARGET_QUERIES} on "
                   f"{t['top_queries']['reached']} of {t['top_queries']['of']} datasets (target {TARGET_WINS})")
    if not t["regret_below_rea"]["met"]:
        worse = [d for d, ok in t["regret_below_rea"]["datasets"].items() if not ok]
        out.append(f"meta's mean validation regret not below rea's on {', '.join(worse)}")
    return out


def _rank_table(folds: dict[str, Any], k: str) -> str:
    methods = [m for m in RANK_LABELS if all(m in f["rank"][k] for f in folds.values())]
    rows = [[d, *[common.f3(f["rank"][k][m]["spearman_mean"]) for m in methods]] for d, f in folds.items()]
    rows.append(["**mean**", *[f"**{common.f3(statistics.fmean(f['rank'][k][m]['spearman_mean'] for f in folds.values()))}**"
                               for m in methods]])
    return common.table(["held out", *[RANK_LABELS[m] for m in methods]], rows)


def _compare_table(folds: dict[str, Any], field: str, fmt: str) -> str:
    names = list(next(iter(folds.values()))["compare"]["strategies"])
    rows = []
    for d, f in folds.items():
        s = f["compare"]["strategies"]
        rows.append([d, *[("-" if s[n][field] is None else format(s[n][field], fmt)) for n in names]])
    if fmt != "d":
        rows.append(["**mean**", *[f"**{statistics.fmean(f['compare']['strategies'][n][field] for f in folds.values()):{fmt}}**"
                                   for n in names]])
    return common.table(["held out", *names], rows)


def _gap_table(res: dict[str, Any]) -> list[str]:
    """Meta against rea per dataset with the uncertainty of the difference (nothing without per-seed figures)."""
    t = res.get("targets") or {}
    gaps = t.get("regret_below_rea", {}).get("gaps") or {}
    if not gaps or not all(gaps.values()):
        return []
    nblocks = len(next(iter(gaps.values()))["blocks_below"])
    rows = [[d, f"{g['diff']:+.5f}", f"{g['se']:.5f}", "-" if g["z"] is None else f"{g['z']:+.2f}",
             *([f"{sum(g['blocks_below'])} of {nblocks}"] if nblocks > 1 else [])] for d, g in gaps.items()]
    head = ["held out", "meta - rea", "standard error", "z", *([f"{BLOCK}-seed blocks with meta below"] if nblocks > 1 else [])]
    return ["", f"Meta's minus rea's mean validation regret at {res['budget']} (negative: meta lower), the standard "
            "error of that difference over the independent runs, and z = difference / standard error (a z between "
            "-2 and 2 does not order the two at about 95 % confidence)" + (f"; per block of {BLOCK} consecutive seeds, "
            "whether meta's mean was below rea's" if nblocks > 1 else "") + ":", "", common.table(head, rows)]


def _gp_gap_table(res: dict[str, Any]) -> list[str]:
    """meta_gp against rea per dataset, as :func:`_gap_table` does for meta (nothing without meta_gp)."""
    gaps = (res.get("targets") or {}).get("regret_below_rea", {}).get("gp_gaps") or {}
    if not gaps or not all(gaps.values()):
        return []
    rows = [[d, f"{g['diff']:+.5f}", f"{g['se']:.5f}", "-" if g["z"] is None else f"{g['z']:+.2f}"] for d, g in gaps.items()]
    return ["", "The same for meta_gp (the GP head's upper confidence bound) against rea:", "",
            common.table(["held out", "meta_gp - rea", "standard error", "z"], rows)]


def _calibration_table(folds: dict[str, Any], k: str) -> list[str]:
    """The GP head's interval coverage and NLPD per held-out dataset (nothing without it)."""
    if not all("coverage80_mean" in f["rank"][k].get("gp", {}) for f in folds.values()):
        return []
    rows = [[d, common.f3(f["rank"][k]["meta"]["spearman_mean"]), common.f3(f["rank"][k]["gp"]["spearman_mean"]),
             f"{f['rank'][k]['gp']['coverage80_mean']:.3f}", f"{f['rank'][k]['gp']['nlpd_mean']:.2f}"] for d, f in folds.items()]
    return ["", f"The GP head at K = {k}: Spearman beside meta's, the share of the held-out values inside its central "
            "80 % predictive interval (calibrated: 0.80) and its negative log predictive density (in units of the "
            "table's standard deviation; lower is better), mean over the draws:", "",
            common.table(["held out", "meta", "meta, GP head", "80 % coverage", "NLPD"], rows)]


def _block_words(t: dict[str, Any]) -> str:
    """How many 20-seed blocks had meta below rea on every dataset (nothing for a single block)."""
    gaps = t["regret_below_rea"].get("gaps") or {}
    blocks = [all(col) for col in zip(*(g["blocks_below"] for g in gaps.values()))] if all(gaps.values()) else []
    if len(blocks) < 2:
        return ""
    return (f" (over all seeds; in {sum(blocks)} of {len(blocks)} blocks of {BLOCK} seeds below rea on every dataset, "
            f"first block: {'yes' if blocks[0] else 'no'})")


def _meta_words(s: dict[str, Any] | None) -> str:
    """What meta's search did on this space, from the settings the run recorded (nothing if none)."""
    if not s:
        return ""
    if not s["large_space"]:
        return f"meta scores every unqueried architecture (UCB, beta {s['beta']}). "
    first, g, e = s["init_random"], s["init_global"], s["global_every"]
    parts = [f"queries 1-{first} at random; "] if first else []
    picked = [f"queries {first + 1}-{g}"] if g > first else []
    picked += [f"queries {g + e}, {g + 2 * e}, {g + 3 * e}, ..."] if e else []
    if picked:
        parts.append(f"{' and '.join(picked)} picked among the mutations of the {s['num_parents']} best measured "
                     f"plus up to {s['max_candidates']:,} random architectures; ")
    best = "best measured architecture" if s["local_parents"] == 1 else f"{s['local_parents']} best measured"
    parts.append(f"all other queries picked among the unqueried mutations of the {best} (the next best once none "
                 "are left). ")
    return f"meta (UCB over the predictor's bootstrap members, beta {s['beta']}): " + "".join(parts)


def markdown(res: dict[str, Any]) -> str:
    """The section for BENCHMARKS.md: ranking and search tables per held-out dataset, then the targets."""
    folds = res["folds"]
    out = [f"Leave-one-dataset-out over NAS-Bench-Graph's {len(res['datasets'])} full datasets: per held-out "
           "dataset, `configs/graph.yaml` + `configs/held_out.yaml` trained on the other datasets' val_acc, "
           "latency and params tables only (no target; model selection on `nbg/proteins/val_acc`), and the same "
           "with `configs/pretrain.yaml` for the pretrain + fine-tune baseline (20 steps, lr 0.03)."]
    for k in (str(k) for k in res["ks"]):
        out += ["", f"### Few-shot ranking, K = {k}", "",
                f"Spearman over all 26,206 architectures of the held-out val_acc, mean over {res['draws']} support "
                "draws (the same draws for every method). mean of others = the fold's training datasets' "
                "standardised val_acc averaged (ignores the support); best other = the training table agreeing "
                "best with the support (any metric, or val_acc tables only); ridge mix = ridge (alpha 1) over "
                "the others' standardised val_acc fitted on the support.", "", _rank_table(folds, k),
                *_calibration_table(folds, k)]
    b = res["budget"]
    first = res.get("first_seed", 0)
    out += ["", f"### Search, budget {b}, {res['seeds']} seeds ({first}-{first + res['seeds'] - 1})", "",
            "Searching val_acc; transfer queries in the order of the mean of the other datasets. "
            + _meta_words(next(iter(folds.values()))["compare"].get("meta_schedule")) + f"Validation regret "
            f"at {b} queries (accuracy as a fraction, mean over seeds):", "", _compare_table(folds, "val_regret", ".4f"),
            *_gap_table(res), *_gp_gap_table(res),
            "", "Test regret of the architecture each run picked on validation, against the test optimum (test_acc "
            "read after the search only):", "", _compare_table(folds, "test_regret", ".4f"),
            "", "Median queries to the first top-0.1% architecture by validation accuracy (- : fewer than half the "
            f"seeds found one within {b}):", "", _compare_table(folds, "queries_to_top_median", "d")]
    t = res.get("targets")
    if t:
        below = t["regret_below_rea"]["datasets"]
        out += ["", "Targets:", "",
                f"- meta's mean Spearman at K={t['rank_gain']['k']} at least {TARGET_GAIN} above the mean-of-others "
                f"transfer: {t['rank_gain']['gain']:+.3f}, {common.verdict(t['rank_gain']['met'])}",
                f"- meta above it on at least {TARGET_WINS} of the datasets: {t['rank_wins']['wins']} of "
                f"{t['rank_wins']['of']}, {common.verdict(t['rank_wins']['met'])}",
                f"- meta's median queries to a top-0.1% architecture at most {TARGET_QUERIES} on at least {TARGET_WINS}: "
                f"{t['top_queries']['reached']} of {t['top_queries']['of']}, {common.verdict(t['top_queries']['met'])}",
                f"- meta's mean validation regret at {b} below rea's on every dataset: {sum(below.values())} of "
                f"{len(below)}, {common.verdict(t['regret_below_rea']['met'])}" + _block_words(t)]
    trained = [f[k] for f in folds.values() for k in ("training", "pretrain_training") if f.get(k)]
    out += ["", f"{len(trained)} trainings this run" + (f", {sum(t['wall_s'] for t in trained) / 60:.1f} min in all"
                                                       if trained else " (checkpoints reused)")
            + f"; whole benchmark {res['seconds'] / 60:.1f} min."]
    return "\n".join(out)
