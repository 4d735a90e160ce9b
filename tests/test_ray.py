"""Trainings on Ray: two workers on a local instance give the sequential results, a worker killed
mid-training costs a retry and not the search, a two-node cluster joined by its address trains on
both nodes (each training recorded with its host's name), and a bad address or a cluster too small
for one training is a one-line error."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nas_lightning.commands.compare import compare
from nas_lightning.errors import UserError
from nas_lightning.candidates.ray_pool import RaySettings
from nas_lightning.candidates.recipe import get_recipe
from nas_lightning.metatrain import build_cli, fit
from nas_lightning.oracles import OracleSettings
from tests.conftest import descendants, tiny_run
from tests.test_training_oracle import TINY, TINY_FLAGS

# Ray reads this once, when imported: this process imports it before any command starts a local
# instance, so it asks here for what the commands ask for (a node on loopback only)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # starts Ray and trains

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")


def _env(home: Path) -> dict[str, str]:
    """A fresh shell's environment (no Ray settings) with its own home (its own ``~/.ray/auth_token``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HOME": str(home)}


def _comparable(results: dict) -> dict:
    for s in results["strategies"].values():
        s.pop("seconds_mean"), s.pop("cost_mean")
        for seed in s["per_seed"]:
            seed.pop("seconds"), seed.pop("cost"), seed.pop("cost_so_far")
    return results["strategies"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _training_worker(root: int) -> int | None:
    for pid in descendants(root):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::train_on_worker"):
                return pid
        except OSError:
            continue
    return None


def _kill_one_training(killed: list[int], stop: threading.Event) -> None:
    """Kill -9 the first Ray worker of this process seen training a candidate."""
    while not stop.is_set() and not killed:
        victim = _training_worker(os.getpid())
        if victim is not None:
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
        time.sleep(0.02)


def test_two_local_workers_survive_a_killed_worker_and_give_the_sequential_results(tmp_path: Path, monkeypatch) -> None:
    """One local instance for both checks (starting Ray costs seconds): a worker killed mid-training
    costs that candidate a retry, never the search, and the results equal one-at-a-time training here."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    args = dict(task="train:digits", strategy="random", budget=4, seeds=1)
    recipe = get_recipe("cpu", **TINY)
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_one_training, args=(killed, stop))
    killer.start()
    try:
        assert compare(**args, out=str(tmp_path / "ray"), oracle=OracleSettings(recipe=recipe, ray=RaySettings(2))) == 0
    finally:
        stop.set()
        killer.join()
    assert killed and not ray.is_initialized()  # a worker died mid-training; the command stopped its instance
    with sqlite3.connect(tmp_path / "ray" / "trainings.sqlite") as conn:
        rows = conn.execute("SELECT arch, dataset, recipe, seed, status FROM results").fetchall()
    on_ray = json.loads((tmp_path / "ray" / "results.json").read_text())
    assert len(rows) == len({r[:4] for r in rows}) == on_ray["distinct_candidates"] == on_ray["trainings_run"] == 4
    assert all(r[4] == "ok" for r in rows)  # the killed training was retried, not charged as failed
    assert compare(**args, out=str(tmp_path / "here"), oracle=OracleSettings(recipe=recipe)) == 0  # one at a time here, a new store
    here = json.loads((tmp_path / "here" / "results.json").read_text())
    assert on_ray["ray"]["workers"] == 2 and on_ray["ray"]["nodes"] == [socket.gethostname()] and here["ray"] is None
    assert _comparable(on_ray) == _comparable(here)  # a deterministic recipe: the same values, wherever trained


def _node(home: Path, *args: str) -> subprocess.Popen:
    """``ray start ... --block`` in its own process group; returns once the node runs."""
    proc = subprocess.Popen([RAY, "start", *args, "--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats", "--block"],
                            env={**_env(home), "RAY_AUTH_MODE": "token"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Ray runtime started" in line:
            return proc
    raise AssertionError("ray start failed: " + "".join(lines[-20:]))


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _watch_trainings(nodes: list[subprocess.Popen], seen: set[int], stop: threading.Event) -> None:
    """Add to ``seen`` the index of each node seen running a training in one of its workers."""
    while not stop.is_set():
        for i, node in enumerate(nodes):
            if i not in seen and _training_worker(node.pid) is not None:
                seen.add(i)
        time.sleep(0.05)


def test_a_two_node_cluster_joined_by_address_trains_on_both_nodes(tmp_path: Path) -> None:
    """The command joins as a user would (its own process, the token found in ~/.ray by itself); both
    nodes run trainings, and the store names the host they ran on."""
    port = _free_port()
    home = tmp_path / "home"
    home.mkdir()
    subprocess.run([RAY, "get-auth-token", "--generate"], env=_env(home), check=True, capture_output=True, timeout=120)
    address = f"127.0.0.1:{port}"
    command = [sys.executable, str(REPO / "search.py"), "compare", "--task", "train:digits", "--strategy", "random",
               "--budget", "4", "--seeds", "1", "--oracle.ray.address", address, *TINY_FLAGS]
    nodes: list[subprocess.Popen] = []
    seen: set[int] = set()
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_trainings, args=(nodes, seen, stop))
    try:
        nodes.append(_node(home, "--head", f"--port={port}", "--include-dashboard=false"))
        nodes.append(_node(home, f"--address={address}"))
        small = subprocess.run(command + ["--out", str(tmp_path / "small"), "--oracle.ray.workers", "1", "--oracle.ray.trial_cpus", "2"],
                               env=_env(home), capture_output=True, text=True, timeout=900)  # 2 CPUs, but 1 per node
        assert small.returncode == 2 and "has the resources of one training" in small.stderr, small.stderr[-3000:]
        assert len(small.stderr.strip().splitlines()) == 1
        watcher.start()
        both = subprocess.run(command + ["--out", str(tmp_path / "both"), "--oracle.ray.workers", "3"], env=_env(home),
                              capture_output=True, text=True, timeout=900)
    finally:
        stop.set()
        if watcher.is_alive():
            watcher.join()
        for proc in reversed(nodes):
            _stop(proc)
    assert both.returncode == 0, both.stderr[-3000:]
    assert "asks for 3 CPUs but the cluster at 127.0.0.1" in both.stderr  # more workers than the cluster's CPUs: a warning
    assert seen == {0, 1}  # trainings ran on both nodes
    results = json.loads((tmp_path / "both" / "results.json").read_text())
    with sqlite3.connect(tmp_path / "both" / "trainings.sqlite") as conn:
        placed = {r[0] for r in conn.execute("SELECT node FROM results")}
    assert placed == {socket.gethostname()} and results["ray"]["nodes"] == [socket.gethostname()]


def test_a_bad_address_is_one_line(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(UserError, match=r"^no Ray cluster answers at 127\.0\.0\.1:\d+ .*ray start --head") as err:
        compare(task="train:digits", strategy="random", budget=2, seeds=1, out=str(tmp_path / "out"),
                oracle=OracleSettings(ray=RaySettings(2, f"127.0.0.1:{_free_port()}")))
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists() and not ray.is_initialized()
    assert time.monotonic() - start < 30  # a socket check, not Ray's connection retries (a generous bound)
    with pytest.raises(UserError, match="not host:port"):
        compare(task="train:digits", strategy="random", budget=2, seeds=1, oracle=OracleSettings(ray=RaySettings(1, "nowhere")))
    with pytest.raises(UserError, match="train:"):
        compare(task="nb201/cifar10/val_acc", strategy="random", budget=2, seeds=1, oracle=OracleSettings(ray=RaySettings(2)))


def test_the_epoch_end_search_trains_on_ray_and_logs_running_trainings(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.chdir(tmp_path)
    args = tiny_run({"data.target_tasks": "[train:digits]", "search.feedback": True, "search.per_round": 2,
                     "data.oracle.ray.workers": 2, "trainer.logger": "CSVLogger", "trainer.logger.save_dir": str(tmp_path),
                     **{f"data.oracle.recipe.{k}": v for k, v in TINY.items()}})
    cli = build_cli(args + ["--trainer.max_epochs", "1"])
    fit(cli)
    assert not ray.is_initialized()  # the DataModule stopped its instance at the end of training
    oracle = cli.datamodule.oracles["train:digits"]
    with sqlite3.connect(cli.datamodule.factory.store_path) as conn:  # beside the run's checkpoints
        rows = conn.execute("SELECT arch, node FROM results").fetchall()
    assert oracle.num_queries == 2 and len(rows) == 2 and all(node for _, node in rows)
    logged = (next(tmp_path.glob("**/metrics.csv"))).read_text().splitlines()
    header = logged[0].split(",")
    running = [float(r.split(",")[header.index("search/running")]) for r in logged[1:] if r.split(",")[header.index("search/running")]]
    assert max(running) == 2 and running[-1] == 0  # both trainings ran at once, then none
