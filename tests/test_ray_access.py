"""Who can reach the Ray instance of ``--workers``, what an address must answer, how many CPUs a
local instance may ask for, and how SIGINT and SIGTERM stop a comparison.

A local instance listens on loopback only, with a token file only its owner can read, and refuses
a client without the token; ``RAY_AUTH_MODE=disabled`` and more CPUs than the machine has are
refused before any work; an address that accepts connections but is not Ray is one line, exit 2;
a signal stops ``compare`` with one line and 130 (SIGINT) or 143 (SIGTERM), and the same command
again finishes with the results of an uninterrupted run. Network traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nas_lightning.commands.compare import compare
from nas_lightning.errors import UserError
from nas_lightning.candidates.ray_pool import RaySettings
from nas_lightning.oracles import OracleSettings
from tests.conftest import descendants
from tests.test_training_oracle import TINY_FLAGS

REPO = Path(__file__).resolve().parents[1]
GUARD = 900  # seconds: only stops a hung process, never a measure of speed
INTERRUPTED = re.compile(r"^interrupted: \d+ trainings kept in \S+trainings\.sqlite; run the same command to continue$")
# a driver holding a two-worker local instance (what --workers 2 starts) until its stdin closes
DRIVER = """
import sys
from nas_lightning.candidates.ray_pool import RayPool, RaySettings
pool = RayPool(RaySettings(workers=2))
import ray
ray.get([ray.remote(num_cpus=1)(lambda: 1).remote() for _ in range(2)])  # both workers up
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.readline()
pool.close()
"""
CLIENT = "import ray, sys; ray.init(address=sys.argv[1]); print('answer', ray.get(ray.remote(lambda: 42).remote()))"


def _env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """This environment without Ray's settings (a fresh shell's), running this checkout on one thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **extra)
    if home is not None:
        env["HOME"] = str(home)
    return env


def _command(out: Path, *more: str) -> list[str]:
    return [sys.executable, str(REPO / "search.py"), "compare", "--task", "train:digits", "--strategy", "random",
            "--budget", "6", "--seeds", "1", "--out", str(out), *TINY_FLAGS, *more]


def _in_group(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` (a command started in a group of its own, and all it started)."""
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat_file.read_text().rsplit(")", 1)[1].split()[2]) == pgid:  # state ppid pgrp
                found.append(int(stat_file.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _listening(pids: list[int]) -> list[tuple[str, int]]:
    """``(address, port)`` of every listening TCP socket the processes ``pids`` hold."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            raw, port = fields[1].split(":")
            data = bytes.fromhex(raw)
            data = b"".join(data[i:i + 4][::-1] for i in range(0, len(data), 4))  # 32-bit words, host order
            found.append((str(ipaddress.ip_address(data)), int(port, 16)))
    return found


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def _rows(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.Error:
        return 0


def _signal_after(command: list[str], db: Path, rows: int, sig: int, group: bool = False) -> tuple[int, str, int, int]:
    """Run ``command``; once ``db`` holds ``rows`` trainings send ``sig`` (to the whole process group,
    as Ctrl-C does, with ``group``); returns its exit status, its stderr, its pid (its process group's id)
    and how many processes its group held when the signal was sent."""
    proc = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()))
    reader.start()
    deadline = time.monotonic() + GUARD
    try:
        while _rows(db) < rows:
            assert proc.poll() is None, "the run ended before the signal"
            assert time.monotonic() < deadline
            time.sleep(0.1)
        running = len(_in_group(proc.pid))
        os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        code = proc.wait(GUARD)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        reader.join()
    return code, err[0] if err else "", proc.pid, running


def _one_line(stderr: str) -> str:
    """The last line of ``stderr`` (progress bars end in carriage returns), checked to be the only
    word about the interruption, with no traceback and no option the command lacks."""
    lines = [ln.strip() for ln in re.split(r"[\r\n]", stderr) if ln.strip()]
    assert "Traceback" not in stderr and "--ckpt_path" not in stderr and "core dumped" not in stderr, stderr[-3000:]
    assert lines and sum("interrupted" in ln for ln in lines) == 1, stderr[-3000:]
    return lines[-1]


def test_disabled_authentication_is_refused_before_any_work_unless_allowed(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with pytest.raises(UserError, match=r"^RAY_AUTH_MODE=disabled .*run code as you.*--oracle.ray.allow_unauthenticated") as err:
        compare(task="train:digits", strategy="random", budget=2, seeds=1, out=str(tmp_path / "out"),
                oracle=OracleSettings(ray=RaySettings(1)))
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()
    with caplog.at_level(logging.WARNING):
        assert RaySettings(1, allow_unauthenticated=True).allow_unauthenticated  # said explicitly: allowed, with a warning
    assert "without authentication" in caplog.text
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    RaySettings(1)


def test_more_cpus_than_the_machine_has_are_refused_on_a_local_instance(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    for workers, cpus, fix in ((cores + 1, 1.0, "ray.workers"), (1, cores + 1.0, "ray.trial_cpus")):
        with pytest.raises(UserError, match=rf"this machine has {cores}; lower {fix}") as err:
            compare(task="train:digits", strategy="random", budget=2, seeds=1, out=str(tmp_path / "out"),
                    oracle=OracleSettings(ray=RaySettings(workers, trial_cpus=cpus)))
        assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_an_address_that_accepts_but_is_not_ray_is_one_line_and_exit_2(tmp_path: Path) -> None:
    held: list[socket.socket] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.2)
        stop = threading.Event()

        def accept_and_say_nothing() -> None:
            while not stop.is_set():
                try:
                    held.append(listener.accept()[0])
                except OSError:
                    continue

        thread = threading.Thread(target=accept_and_say_nothing)
        thread.start()
        try:
            address = "127.0.0.1:%d" % listener.getsockname()[1]
            done = subprocess.run(_command(tmp_path / "out", "--oracle.ray.workers", "1", "--oracle.ray.address", address), env=_env(),
                                  capture_output=True, text=True, timeout=GUARD)
        finally:
            stop.set()
            thread.join()
            for conn in held:
                conn.close()
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == [f"error: {address} accepts connections but is not a Ray cluster "
                                                f"(no gRPC answer in 5 s); give the address `ray start --head` printed"]
    assert held and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_local_instance_listens_on_loopback_only_and_refuses_a_client_without_the_token(tmp_path: Path) -> None:
    home, nobody = tmp_path / "home", tmp_path / "nobody"
    home.mkdir(), nobody.mkdir()
    with open(tmp_path / "driver.err", "w") as log:
        driver = subprocess.Popen([sys.executable, "-c", DRIVER], env=_env(home), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
    try:
        gcs = driver.stdout.readline().strip()
        assert gcs, (tmp_path / "driver.err").read_text()[-3000:]
        found = _listening([driver.pid, *descendants(driver.pid)])
        assert int(gcs.rpartition(":")[2]) in {port for _, port in found}  # the listing sees Ray's own servers
        assert len(found) >= 4 and all(_loopback(a) for a, _ in found), found  # GCS, raylet, workers, driver
        token = home / ".ray" / "auth_token"
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
        # two clients on this machine, on loopback: the same request, with and without the token
        local = _env(nobody, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
        clients = [subprocess.Popen([sys.executable, "-c", CLIENT, gcs], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
                   for env in (local, {**local, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token.read_text()})]
        (out_without, err_without), (out_with, err_with) = (c.communicate(timeout=GUARD) for c in clients)
        assert clients[1].returncode == 0 and "answer 42" in out_with, err_with[-3000:]
        assert clients[0].returncode != 0 and "answer" not in out_without
        assert "Unauthenticated" in err_without, err_without[-3000:]
    finally:
        driver.stdin.close()
        try:
            driver.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(driver.pid, signal.SIGKILL)


def _comparable(out: Path) -> tuple[dict, list[tuple]]:
    results = json.loads((out / "results.json").read_text())
    for s in results["strategies"].values():
        s.pop("seconds_mean"), s.pop("cost_mean")
        for seed in s["per_seed"]:
            seed.pop("seconds"), seed.pop("cost"), seed.pop("cost_so_far")
    lines = (out / "trainings.csv").read_text().splitlines()
    header = lines[0].split(",")
    keep = [header.index(c) for c in ("arch", "val_acc", "test_acc", "status")]
    return results["strategies"], sorted(tuple(ln.split(",")[i] for i in keep) for ln in lines[1:])


@pytest.mark.slow
def test_sigint_and_sigterm_stop_compare_in_one_line_and_the_rerun_gives_the_uninterrupted_results(tmp_path: Path) -> None:
    out = tmp_path / "stopped"
    db = out / "trainings.sqlite"
    code, err, *_ = _signal_after(_command(out), db, 1, signal.SIGINT, group=True)  # Ctrl-C
    assert code == 130 and INTERRUPTED.match(_one_line(err)), err[-3000:]
    kept = _rows(db)
    code, err, *_ = _signal_after(_command(out), db, kept + 1, signal.SIGTERM)
    assert code == 143 and INTERRUPTED.match(_one_line(err)), err[-3000:]
    assert _rows(db) > kept
    for folder in (out, tmp_path / "straight"):
        done = subprocess.run(_command(folder), env=_env(), capture_output=True, text=True, timeout=GUARD)
        assert done.returncode == 0, done.stderr[-3000:]
    assert _comparable(out) == _comparable(tmp_path / "straight")


@pytest.mark.slow
def test_ctrl_c_and_sigterm_during_compare_on_two_workers_exit_130_and_143_after_stopping_ray(tmp_path: Path) -> None:
    """Ctrl-C reaches every process of the command's group (Ray's workers too), SIGTERM the command alone."""
    out = tmp_path / "ray"
    db = out / "trainings.sqlite"
    kept = 0
    for sig, group in ((signal.SIGINT, True), (signal.SIGTERM, False)):
        code, err, pgid, running = _signal_after(_command(out, "--oracle.ray.workers", "2"), db, kept + 1, sig, group)
        assert running >= 4  # the driver, Ray's GCS and raylet, two workers: all in the command's process group
        assert code == 128 + sig and INTERRUPTED.match(_one_line(err)), err[-3000:]
        deadline = time.monotonic() + 60
        while _in_group(pgid) and time.monotonic() < deadline:  # Ray's processes are gone with it
            time.sleep(0.5)
        assert not _in_group(pgid)
        assert _rows(db) > kept
        kept = _rows(db)


# constrained with its search step held until a signal comes (everything before it runs as usual)
CONSTRAINED_HELD = """
import sys, time
from nas_lightning.cli import run_main
from nas_lightning.commands import main

command = sys.modules["nas_lightning.commands.constrained"]  # the module (the package's attribute is the function)

def held(*args, **kwargs):
    print("searching", flush=True)
    time.sleep(600)

command.propose = held
sys.argv = ["search.py", *sys.argv[1:]]
run_main(main)
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_constrained_in_one_line_with_the_conventional_status(sig: int, tmp_path: Path) -> None:
    from nas_lightning.tasks.embedded import load_embedded

    device = load_embedded("cifar100", "latency")
    rows = [f"{device.space.to_string(int(a))},{float(v)}" for a, v in zip(device.archs[:10], device.lookup(device.archs[:10]))]
    (tmp_path / "mine.csv").write_text("arch,latency_ms\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out.csv"
    proc = subprocess.Popen([sys.executable, "-c", CONSTRAINED_HELD, "constrained", "--accuracy", "nb201/cifar100/val_acc",
                             "--latency", f"csv:{tmp_path / 'mine.csv'}", "--limit", "0.01", "--predictor", "params",
                             "--out", str(out)], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "searching"
        os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)  # Ctrl-C reaches the group
        _, err = proc.communicate(timeout=GUARD)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + sig, err[-3000:]
    assert _one_line(err) == "interrupted: nothing was written; run the same command again"
    assert not out.exists()
