"""Every benchmark in its tiny configuration, so that none can rot: JSON fields present, the
numbers finite and positive, the Markdown sections written and assembled."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import __main__ as bench
from benchmarks import maml as maml_bench
from benchmarks import devices as devices_bench
from nas_lightning.rankers.blend import WEIGHTS
from nas_lightning.spaces import NB201

pytestmark = pytest.mark.slow  # starts processes or trains


def _run(what: str, out: Path, *extra: str) -> dict:
    assert bench.main([what, "--tiny", "--out", str(out), "--device", "cpu", *extra]) == 0
    res = json.loads((out / f"{what}.json").read_text())
    md = (out / f"{what}.md").read_text()
    assert md.startswith("## ") and "Command: `python -m benchmarks" in md and "Machine:" in md
    assert res["machine"]["cores"] >= 1 and res["bench_seconds"] > 0
    return res


def _positive(*xs: float) -> bool:
    return all(x is not None and math.isfinite(x) and x > 0 for x in xs)


def test_maml(tmp_path: Path) -> None:
    res = _run("maml", tmp_path)
    assert res["results"] and {r["order"] for r in res["results"]} == {"first", "second"}
    for r in res["results"]:
        assert r["device"] == "cpu" and r["grad_max_abs_diff"] < 1e-9
        for m in ("loop", "batched", "compiled"):
            assert _positive(r[m]["seconds_per_step"], r[m]["episodes_per_s"])
            assert r[m]["peak_mb"] >= 0 and r[m]["how"]
        assert _positive(r["speedup"], r["speedup_compiled"], r["compile_s"])
    assert set(res["targets"]) == {"speedup_ge_5_at_32", "more_at_128_than_32"}


def test_maml_targets_judge_the_default_step_and_the_compiled_one_beside_it() -> None:
    rows = [{"device": "cpu", "meta_batch": mb, "steps": 1, "order": "first", "speedup": s, "speedup_compiled": c}
            for mb, s, c in ((8, 3.0, 4.0), (32, 5.5, 8.0), (128, 6.0, 7.9))]
    t = maml_bench.targets(rows)
    at32, more = t["speedup_ge_5_at_32"]["steps=1 first"], t["more_at_128_than_32"]["steps=1 first"]
    assert at32["default"]["met"] and at32["compiled"]["met"]
    assert more["default"]["met"] and not more["compiled"]["met"] and more["compiled"]["at_32"] == 8.0
    missed = bench.BENCHMARKS["maml"].missed({"results": rows})
    assert len(missed) == 1 and "compiled step: 7.90x vs 8.00x at 32" in missed[0]
    rows[1]["speedup"] = 4.9  # the default step under the line at 32 (and so above it at 128)
    t = maml_bench.targets(rows)
    assert not t["speedup_ge_5_at_32"]["steps=1 first"]["default"]["met"]
    assert t["more_at_128_than_32"]["steps=1 first"]["default"]["met"]
    rows.pop()  # no meta-batch 128 measured: that target cannot be met
    assert not maml_bench.targets(rows)["more_at_128_than_32"]["steps=1 first"]["default"]["met"]


def test_scoring(tmp_path: Path) -> None:
    res = _run("scoring", tmp_path)
    assert _positive(res["score_ms"]["1"], res["score_ms"]["8"], res["forward_only_ms"])
    assert _positive(res["search_round"]["median_s"]) and res["search_round"]["queries"] >= 1
    assert res["target"]["met"] is None  # a tiny run is not judged


def test_growth(tmp_path: Path) -> None:
    res = _run("growth", tmp_path)
    for knob in ("meta_batch", "support", "hidden"):
        assert len(res[knob]) >= 2 and all(_positive(r["seconds"], r["per_episode_ms"]) for r in res[knob])
        assert res[knob][0]["slope"] is None and math.isfinite(res[knob][1]["slope"])
    assert all(_positive(r["meta"], r["rea"]) for r in res["search_budget"])


def test_train(tmp_path: Path) -> None:
    res = _run("train", tmp_path)
    assert _positive(res["wall_s"], res["peak_rss_mb"]) and res["train_command"].startswith("python train.py")


def test_search_and_report(tmp_path: Path) -> None:
    res = _run("search", tmp_path, "--seeds", "1")
    (r,) = res["nb201"].values()
    assert set(r["strategies"]) == {"meta", "meta_gp", "pretrain", "rea", "random", "local", "reinforce", "transfer"}
    assert set(r["noisy"]["strategies"]) == set(r["strategies"]) - {"meta_gp"} and r["checkpoint_fed_back_queries"] == 0
    assert {"meta", "gp", "pretrain", "transfer", "params", "scratch"} <= set(r["rank"]["methods"])
    assert 0 <= r["rank"]["methods"]["gp"]["coverage80_mean"] <= 1 and "--meta.head gp" in r["gp_command"]
    assert r["rank"]["command"].startswith("python search.py rank ") and r["pretrain_training"]
    for s in r["strategies"].values():
        assert all(x is not None and x >= 0 for x in s["regret_at"].values())
        assert all(0 <= h <= 1 for h in s["hit_rate"].values()) and s["seconds_per_run"] >= 0
    assert r["training"] and _positive(r["training"]["wall_s"])
    assert "device_latency" not in res  # the device figures come from bench devices (cross-validation)
    target = tmp_path / "BENCHMARKS.md"
    assert bench.main(["report", "--out", str(tmp_path), "--markdown", str(target)]) == 0
    text = target.read_text()
    assert "# Benchmarks" in text and "Search results" in text and "_Not run yet" in text  # maml etc. ran elsewhere
    assert "Few-shot ranking of the NB201 targets" in text and "noisy oracle" in text and "80 % coverage" in text
    assert "# Notes on the benchmarks" in text and "docs/findings.md" in text


def test_devices_cross_validation(tmp_path: Path, device_data_dir: Path) -> None:
    assert (device_data_dir / "pixel3.csv.gz").is_file()  # shipped: the cross-validation always runs
    res = _run("devices", tmp_path)
    assert not res.get("skipped")
    (folds,) = res["variants"].values()
    assert len(folds) == 2 and res["validation"] == "titanx_32"
    held = [d for f in folds for d in f["held_out"]]
    assert len(held) == len(set(held)) == 4  # every device is held out once
    for f in folds:
        assert f["trained_on"] and not set(f["held_out"]) & set(f["trained_on"]) and f["validation"] == "titanx_32"
        assert f["validation"] not in f["trained_on"] and len(set(f["supports"]["greedy"])) == 3
        assert not set(f["supports"]["greedy"]) - {NB201.to_string(i) for i in range(NB201.size)}
        for dev in f["devices"].values():
            row = dev["3"]
            assert {"meta", "transfer", "params", "scratch", "blend", "meta_greedy", "blend_kcenter"} <= set(row)
            assert all(math.isfinite(v) for v in row.values()) and row["blend_meta_weight"] in WEIGHTS
    assert "greedy supports beat random draws" in devices_bench.markdown(res)
    # the constrained search on every device with its fold's checkpoint (kept in OUT/devices_runs)
    con = _run("constrained", tmp_path)
    assert sorted(con["devices"]) == sorted(held) and con["folds"] == res["folds"]
    for rows in con["devices"].values():
        assert {r["method"] for r in rows} == {"meta", "random", "params"} and len(rows) == 9
        assert all(0 <= r["satisfied"] <= 1 and r["measurements_mean"] <= 12 for r in rows)
    cached = json.loads((tmp_path / "devices_runs" / "runs" / "cv_shipped_0" / "constrained.json").read_text())
    assert cached["key"]["seeds"] == 1 and len(cached["key"]["ckpt_sha256"]) == 64


def test_fold_validation_moves_when_held_out(tmp_path: Path) -> None:
    tables = [tmp_path / f"{n}.csv.gz" for n in ("a", "b", "c", "val")]
    assert devices_bench._fold_val(tables[3], tables[:1], tables) == tables[3]
    assert devices_bench._fold_val(tables[3], [tables[3], tables[0]], tables) == tables[1]


def test_kept_sections_come_from_the_generated_part(tmp_path: Path) -> None:
    """The hand-written notes reuse the sections' titles: a kept section is never read from them."""
    target = tmp_path / "BENCHMARKS.md"
    target.write_text("# Benchmarks\n\n## Search results\n\nmeasured table\n\n## Closing note\n\n"
                      "# Notes on the benchmarks (hand-written)\n\n## Search results\n\nprose\n")
    sections, _ = bench._previous(target)
    assert sections["Search results"].startswith("## Search results\n\nmeasured table")


def test_a_section_kept_twice_is_marked_once(tmp_path: Path) -> None:
    target = tmp_path / "BENCHMARKS.md"
    target.write_text("# Benchmarks\n\n## Search results\n\nmeasured table\n\n## Closing note\n\n")
    for _ in range(2):
        bench.report(tmp_path / "empty", target)
    text = target.read_text()
    assert text.count(bench.KEPT) == 1 and "measured table" in text


def test_fidelity_replay(tmp_path: Path) -> None:
    res = _run("fidelity", tmp_path, "--seeds", "2", "--ckpt-dir", str(tmp_path / "ckpt"))
    assert set(res["strategies"]) == {"random", "rea", "meta", "tune-asha", "asha", "asha-meta"} and res["budget"] == 60
    assert res["cells"] == 500 and res["rungs"] == [2, 6, 18, 20]
    for s in res["strategies"].values():
        assert s["epochs_spent"] <= 60 and _positive(s["seconds_spent"])
        assert all(c["mean"] is None or 10 <= c["mean"] <= 100 for c in s["best_at"].values())
    assert {"compute_met", "at150_met"} <= set(res["targets"])


def test_fidelity_live_checks_the_order_against_the_replay(tmp_path: Path) -> None:
    res = _run("fidelity-live", tmp_path, "--ckpt-dir", str(tmp_path / "ckpt"), "--workers", "2")
    assert set(res["strategies"]) == {"tune-asha", "asha-meta"} and res["budget"] == 12 and res["seeds"] == 1
    for s in res["strategies"].values():
        assert s["epochs_mean"] <= 12 and _positive(s["wall_seconds_mean"])
    assert res["ordering_met"] is None and "no replay result" in res["ordering"]  # tiny, and no fidelity.json beside it
