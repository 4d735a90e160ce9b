"""``train``: wall time and peak memory of ``python train.py`` (through ``/usr/bin/time -v``).

Runs in a fresh working folder (a temporary one unless ``--workdir``), so it never replaces a
checkpoint of the repository's ``runs/``.
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import common

TIME = Path("/usr/bin/time")
WALL_LIMIT_S, PEAK_LIMIT_MB = 180.0, 2048.0
TINY_ARGS = ["--trainer.max_epochs", "1", "--data.steps_per_epoch", "2", "--data.meta_batch", "2", "--data.query", "10",
             "--data.val_query", "10", "--data.val_episodes", "1", "--model.hidden", "16", "--search.per_round", "1",
             "--trainer.enable_progress_bar", "false"]


def _clock(text: str) -> float:
    """``h:mm:ss`` or ``m:ss.ss`` as seconds."""
    secs = 0.0
    for part in text.split(":"):
        secs = secs * 60 + float(part)
    return secs


def timed_train(args: list[str], workdir: Path) -> dict[str, Any]:
    """Run ``python train.py ARGS`` in ``workdir``; its wall time and peak resident memory.

    Raises:
        RuntimeError: when training fails (with the tail of its output).
    """
    cmd = [sys.executable, str(common.ROOT / "train.py"), *args]
    use_time = TIME.is_file()
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.run([str(TIME), "-v", *cmd] if use_time else cmd, cwd=workdir, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"train.py {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-3000:]}")
    out = {"train_command": " ".join(["python train.py", *common.shown_args(args)]).strip(), "wall_s": wall, "workdir": str(workdir)}
    if use_time:
        wall_m = re.search(r"Elapsed \(wall clock\) time.*: ([\d:.]+)", proc.stderr)
        peak_m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        out.update({"wall_s": _clock(wall_m.group(1)) if wall_m else wall,
                    "peak_rss_mb": int(peak_m.group(1)) / 1024 if peak_m else None, "how": "/usr/bin/time -v"})
    else:
        out.update({"peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                    "how": "ru_maxrss of the children (no /usr/bin/time)"})
    return out


def run(tiny: bool = False, workdir: str | None = None) -> dict[str, Any]:
    """The benchmark: the default ``python train.py`` (``--tiny``: a few steps of a small model)."""
    info = common.machine()
    args = TINY_ARGS if tiny else []
    if workdir:
        res = timed_train(args, Path(workdir))
    else:
        with tempfile.TemporaryDirectory(prefix="nas_bench_train_") as tmp:
            res = timed_train(args, Path(tmp))
    met = res["wall_s"] < WALL_LIMIT_S and (res["peak_rss_mb"] or 0) < PEAK_LIMIT_MB
    return {"benchmark": "train", "machine": info, **res,
            "target": {"wall_limit_s": WALL_LIMIT_S, "peak_limit_mb": PEAK_LIMIT_MB, "met": None if tiny else met}}


def markdown(res: dict[str, Any]) -> str:
    """The section for BENCHMARKS.md."""
    t = res["target"]
    rows = [[f"`{res['train_command']}`", _mins(res["wall_s"]), f"{res['peak_rss_mb']:.0f} MB", res["how"]]]
    return (common.table(["command", "wall", "peak memory (max RSS)", "measured with"], rows)
            + f"\n\n- target: under {t['wall_limit_s'] / 60:.0f} minutes and under {t['peak_limit_mb'] / 1024:.0f} GB: "
              f"{common.verdict(t['met'])}")


def _mins(s: float) -> str:
    return f"{int(s // 60)} min {s % 60:.0f} s"
