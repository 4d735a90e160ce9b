"""``maml``: meta-training throughput of the batched meta-step against a per-task Python loop.

All three compute the meta-gradient of the default predictor (MLP, width 128, one-hot + path
encoding, context 32, Meta-SGD inner learning rates, rank loss) on the same episodes: the
batched step is what ``MetaPredictor.training_step`` runs (``query_losses`` + backward), eager
(the default) and through ``torch.compile`` (``--model.compile true``; its compile time is
reported apart and not in the step time); the loop is ``maml.meta_loss_loop`` (learn2learn
style). Their gradients are checked equal in float64 on every configuration before anything is
timed.

Peak memory: on CPU, the rise of the resident set size (``VmHWM`` after a reset through
``/proc/self/clear_refs``) over two meta-steps, above the steady state after a warm-up step,
each configuration and method in a fresh interpreter whose large blocks are ``mmap``-ed (so
freed memory leaves the resident set); on GPU, ``torch.cuda.max_memory_allocated`` above the
memory allocated before the steps.
"""

from __future__ import annotations

import copy
import gc
import itertools
import json
import sys
import time
from typing import Any, Callable

import torch
from torch.testing import assert_close

from benchmarks import common
from nas_lightning.models.batch import EpisodeBatch
from nas_lightning.spaces import NB201
from nas_lightning.models import maml
from nas_lightning.models.module import MetaPredictor

Batch = EpisodeBatch


def grid(tiny: bool) -> list[dict[str, Any]]:
    """The configurations: meta-batch x inner steps x order (K = 10, Q = 100, width 128)."""
    if tiny:
        return [{"meta_batch": 2, "steps": s, "order": o, "support": 3, "query": 5, "hidden": 16}
                for s, o in ((1, "second"), (2, "first"))]
    return [{"meta_batch": t, "steps": s, "order": o, "support": 10, "query": 100, "hidden": 128}
            for t, s, o in itertools.product((8, 32, 128), (1, 5), ("first", "second"))]


def setup(cfg: dict[str, Any], device: str, seed: int = 0) -> tuple[MetaPredictor, Batch]:
    """The default predictor (seeded) and one meta-batch of random episodes (standard-normal targets)."""
    torch.manual_seed(seed)
    module = MetaPredictor(hidden=cfg["hidden"], inner_steps=cfg["steps"], first_order=cfg["order"] == "first").to(device)
    g = torch.Generator().manual_seed(seed)
    t, k, q = cfg["meta_batch"], cfg["support"], cfg["query"]
    idx = torch.randint(NB201.size, (t, k + q), generator=g)
    batch = EpisodeBatch(pool=torch.zeros(t, dtype=torch.long), support_archs=idx[:, :k], query_archs=idx[:, k:],
                         ys=torch.randn(t, k, generator=g), yq=torch.randn(t, q, generator=g),
                         query_mask=torch.ones(t, q, dtype=torch.bool), maximise=torch.rand(t, generator=g) < 0.5)
    return module, batch.to(device)


def batched_step(module: MetaPredictor, b: Batch, compiled: bool = False) -> torch.Tensor:
    """The project's meta-step: what ``training_step`` computes before the optimizer (eager, or
    compiled as with ``--model.compile true``)."""
    loss = module.query_losses(b, compiled).mean()
    module.zero_grad(set_to_none=True)
    loss.backward()
    return loss


def compiled_step(module: MetaPredictor, b: Batch) -> torch.Tensor:
    """:func:`batched_step` through ``torch.compile``."""
    return batched_step(module, b, compiled=True)


def loop_step(module: MetaPredictor, b: Batch) -> torch.Tensor:
    """The same meta-gradient by the per-task loop (the context is the same batched encoder)."""
    hp = module.hparams
    xs, xq = module.encode(b.support_archs), module.encode(b.query_archs)
    z = module.context(xs, b.ys, torch.ones_like(b.ys, dtype=torch.bool), b.maximise)
    loss = maml.meta_loss_loop(module.net, module.params(), module.lrs(), xs, b.ys, xq, b.yq,
                               hp.inner_steps, hp.first_order, hp.loss, z)
    module.zero_grad(set_to_none=True)
    loss.backward()
    return loss


METHODS: dict[str, Callable[[MetaPredictor, Batch], torch.Tensor]] = {
    "loop": loop_step, "batched": batched_step, "compiled": compiled_step}


def check_gradients(module: MetaPredictor, b: Batch) -> float:
    """Assert both methods give the same loss and meta-gradient (float64); the largest difference."""
    m64 = copy.deepcopy(module).double()
    b64 = b.to(dtype=torch.float64)
    out = {}
    for name, fn in METHODS.items():
        loss = fn(m64, b64)
        out[name] = [loss.detach()] + [p.grad.clone() for p in m64.parameters() if p.requires_grad]
    worst = 0.0
    for name in ("batched", "compiled"):
        for a, c in zip(out[name], out["loop"]):
            assert_close(a, c, rtol=1e-7, atol=1e-9)
            worst = max(worst, float((a - c).abs().max()))
    return worst


def probe(args: dict[str, Any]) -> dict[str, Any]:
    """Peak memory of two meta-steps of one method, measured in this (fresh) interpreter."""
    module, b = setup(args["cfg"], args["device"])
    fn = METHODS[args["method"]]
    fn(module, b)  # warm-up: lazy allocations, thread pools
    gc.collect()
    if args["device"] == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn(module, b), fn(module, b)
        torch.cuda.synchronize()
        return {"peak_mb": (torch.cuda.max_memory_allocated() - base) / 2**20, "how": "torch.cuda.max_memory_allocated"}
    base = common.rss_now_kb()
    how = "VmHWM after clear_refs" if common.reset_peak_rss() else "ru_maxrss (not reset: a lower bound)"
    fn(module, b), fn(module, b)
    return {"peak_mb": max(0, common.peak_rss_kb() - base) / 1024, "how": how}


def measure(cfg: dict[str, Any], device: str, reps: int, memory: bool = True) -> dict[str, Any]:
    """Time every method on one configuration (interleaved repetitions), check, probe memory."""
    torch._dynamo.reset()  # each configuration compiles afresh (and never meets dynamo's recompile limit)
    module, b = setup(cfg, device)
    row: dict[str, Any] = {**cfg, "device": device, "grad_max_abs_diff": check_gradients(module, b)}
    calls, samples = {}, {n: [] for n in METHODS}
    for name, fn in METHODS.items():  # warm-up (compiles), then how many calls make one repetition
        start = time.perf_counter()
        fn(module, b)
        common.sync(device)
        if name == "compiled":
            row["compile_s"] = time.perf_counter() - start
        start = time.perf_counter()
        fn(module, b)
        common.sync(device)
        calls[name] = max(1, round(0.2 / max(time.perf_counter() - start, 1e-6)))
    for _ in range(reps):  # interleaved, so a change of load hits every method alike
        for name, fn in METHODS.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn(module, b)
            common.sync(device)
            samples[name].append((time.perf_counter() - start) / calls[name])
    for name in METHODS:
        s = sorted(samples[name])
        sec = s[len(s) // 2]
        row[name] = {"seconds_per_step": sec, "episodes_per_s": cfg["meta_batch"] / sec, "min_s": s[0], "max_s": s[-1]}
    row["speedup"] = row["loop"]["seconds_per_step"] / row["batched"]["seconds_per_step"]
    row["speedup_compiled"] = row["loop"]["seconds_per_step"] / row["compiled"]["seconds_per_step"]
    if memory:
        for name in METHODS:
            row[name].update(common.run_probe("benchmarks.maml", {"cfg": cfg, "device": device, "method": name}))
    return row


def run(tiny: bool = False, devices: list[str] | None = None, reps: int | None = None) -> dict[str, Any]:
    """The whole benchmark; returns the JSON-ready result."""
    devices = devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    reps = reps or (3 if tiny else 7)
    rows = [measure(cfg, dev, reps) for dev in devices for cfg in grid(tiny)]
    return {"benchmark": "maml", "machine": common.machine(), "reps": reps, "loss": "rank",
            "predictor": "mlp, one-hot + path encoding, context 32, Meta-SGD inner learning rates",
            "results": rows, "targets": targets(rows)}


STEPS = {"default": "speedup", "compiled": "speedup_compiled"}  # a step's name -> its speedup in a row


def targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The targets on CPU, configuration by configuration: >= 5x the loop at meta-batch 32,
    and a larger speedup at 128 than at 32. A target is judged on the project's meta-step as
    ``python train.py`` runs it (eager, the default); the opt-in compiled step
    (``--model.compile true``) is judged beside it and its misses are reported too."""
    cpu = [r for r in rows if r["device"] == "cpu"]
    at = {(r["meta_batch"], r["steps"], r["order"]): r for r in cpu}
    out: dict[str, Any] = {"speedup_ge_5_at_32": {}, "more_at_128_than_32": {}}
    for k in [k for k in at if k[0] == 32]:
        r, big = at[k], at.get((128,) + k[1:])
        name = f"steps={k[1]} {k[2]}"
        out["speedup_ge_5_at_32"][name] = {s: {"speedup": r[key], "met": r[key] >= 5} for s, key in STEPS.items()}
        out["more_at_128_than_32"][name] = {
            s: {"speedup": None if big is None else big[key], "at_32": r[key],
                "met": big is not None and big[key] > r[key]} for s, key in STEPS.items()}
    return out


def figures(check: dict[str, Any]) -> str:
    """One step's result on a target check in words (``-`` when the configuration was not measured)."""
    if check["speedup"] is None:
        return "-"
    return f"{check['speedup']:.2f}x" + (f" vs {check['at_32']:.2f}x at 32" if "at_32" in check else "")


def verdicts(checks: dict[str, Any]) -> str:
    """Both steps' verdicts on one target check."""
    words = {"default": "default step", "compiled": "compiled step (opt-in)"}
    return "; ".join(f"{words[s]} {common.verdict(c['met'])} ({figures(c)})" for s, c in checks.items())


def markdown(res: dict[str, Any]) -> str:
    """The section for BENCHMARKS.md."""
    rows = []
    for r in res["results"]:
        rows.append([r["device"], r["meta_batch"], r["steps"], r["order"], f"{r['loop']['episodes_per_s']:.0f}",
                     f"{r['batched']['episodes_per_s']:.0f}", f"**{r['speedup']:.2f}x**",
                     f"{r['compiled']['episodes_per_s']:.0f}", f"{r['speedup_compiled']:.2f}x",
                     f"{r['compile_s']:.0f}", _mb(r["loop"].get("peak_mb")), _mb(r["batched"].get("peak_mb")),
                     _mb(r["compiled"].get("peak_mb")), f"{r['grad_max_abs_diff']:.1e}"])
    t = common.table(["device", "meta-batch", "inner steps", "order", "loop ep/s", "eager ep/s", "eager speedup",
                      "compiled ep/s", "compiled speedup", "compile s", "loop peak MB", "eager peak MB",
                      "compiled peak MB", "max |grad diff| (f64)"], rows)
    lines = [t, "", "Targets are judged on the default step (eager, what `python train.py` runs; its speedup in bold); "
             "the opt-in compiled step (`--model.compile true`) is judged beside it.", ""]
    labels = {"speedup_ge_5_at_32": "batched >= 5x the loop at meta-batch 32",
              "more_at_128_than_32": "a larger speedup at meta-batch 128 than at 32"}
    for name, checks in targets(res["results"]).items():  # judged afresh from the rows (old JSON too)
        for cfg, c in checks.items():
            lines.append(f"- target {labels[name]} ({cfg}): {verdicts(c)}")
    return "\n".join(lines)


def _mb(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


if __name__ == "__main__":  # the memory probe: one configuration and method, in a fresh interpreter
    print(json.dumps(probe(json.loads(sys.argv[1]))))
