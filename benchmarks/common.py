"""What the benchmarks share: the machine's description, timing, peak memory, output files."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from nas_lightning.files import write_json as _write_json

ROOT = Path(__file__).resolve().parents[1]  # the repository
DEVICE_DATA = ROOT / "data" / "nb201-device-latency"  # the measured device tables shipped with the project


def shown(path: str | Path) -> str:
    """A path as a report shows it: relative to the repository when inside it, else its last part
    (a report names no machine's folders)."""
    p = Path(path)
    if not p.is_absolute():
        return str(p)
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return p.name


def shown_args(args: list[str]) -> list[str]:
    """Command-line words with every absolute path (alone or after ``=``) as :func:`shown` prints it."""
    out = []
    for a in args:
        key, eq, value = a.partition("=") if a.startswith("--") else ("", "", a)
        out.append(key + eq + shown(value) if value.startswith("/") else a)
    return out


def machine() -> dict[str, Any]:
    """The machine and the conditions a benchmark ran under (load average included)."""
    info: dict[str, Any] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = re.search(r"^Model name:\s*(.+)$", out, re.M)
        info["cpu"] = model.group(1).strip() if model else info["cpu"]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        info["load_avg_1m"] = None
    info.update({"torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
                 "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                 "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                 "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds")})
    return info


def machine_line(info: dict[str, Any]) -> str:
    """One line for a report: CPU, cores, threads, GPU, load average and date."""
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    return (f"{info['cpu']}, {info['cores']} cores, torch {info['torch']} with {info['threads']} threads "
            f"(OMP_WAIT_POLICY={info.get('omp_wait_policy')}){gpu}; "
            f"1-min load average {info.get('load_avg_1m')} at the start; {info['date']}")


def sync(device: torch.device | str) -> None:
    """Wait for queued GPU work (a no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_fn(fn: Callable[[], Any], reps: int, min_seconds: float = 0.05, device: str = "cpu") -> dict[str, float]:
    """Median, min and max seconds per call of ``fn`` over ``reps`` repetitions (after one warm-up).

    Each repetition runs ``fn`` enough times to last ``min_seconds`` (judged from the warm-up),
    so short calls are not dominated by the timer.
    """
    start = time.perf_counter()
    fn()
    sync(device)
    inner = max(1, math.ceil(min_seconds / max(time.perf_counter() - start, 1e-6)))
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        sync(device)
        samples.append((time.perf_counter() - start) / inner)
    return {"median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples), "reps": reps, "calls_per_rep": inner}


def rss_now_kb() -> int:
    """The process's resident set size now, in KiB (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError):
        return 0


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (``/proc/self/clear_refs``, Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_kb() -> int:
    """Peak resident set size of this process in KiB: ``VmHWM`` (honours :func:`reset_peak_rss`),
    else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_probe(module: str, args: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    """Run ``python -m module '<json args>'`` in a fresh interpreter; it prints one JSON line last.

    glibc's malloc is told to serve every block of 64 KiB or more by ``mmap`` (a fixed threshold),
    so freed tensors leave the resident set and a later peak is not hidden by reused heap.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               MALLOC_MMAP_THRESHOLD_="65536")
    proc = subprocess.run([sys.executable, "-m", module, json.dumps(args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{module} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_json(obj: dict[str, Any], path: Path) -> Path:
    """Write ``obj`` as JSON (NaN and infinities as ``null``), atomically."""
    return _write_json(obj, path)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table (also readable as plain text)."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"] + [line(r) for r in cells[1:]])


def f3(x: float | None) -> str:
    """A figure with three decimals, or ``-`` when there is none."""
    return "-" if x is None else f"{x:.3f}"


def verdict(ok: bool | None) -> str:
    """How a target came out: met, MISSED, or not judged (a tiny run)."""
    return "not judged (tiny configuration)" if ok is None else ("met" if ok else "MISSED")
