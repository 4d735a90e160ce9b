"""Candidate trainings as Ray tasks: a local Ray instance, or a cluster joined by its address.

:class:`RayPool` starts a local instance (``ray.init(address="local")``, whatever ``RAY_ADDRESS``
says) or joins ``host:port`` of a cluster started with ``ray start --head``, and stops or leaves it
on :meth:`RayPool.close`. A local instance listens on loopback only, starts no dashboard and
authenticates with a token readable by its owner only (:mod:`~nas_lightning.evaluation.ray_access`);
``RAY_AUTH_MODE=disabled`` is refused unless allowed explicitly. Each training is a ``ray.remote``
task asking for ``trial_cpus`` CPUs and ``trial_gpus`` GPUs (a fraction lets several small
trainings share a card); a worker process or node lost mid-training is retried by Ray up to
``max_retries`` times, while a training that raises is not retried (``retry_exceptions=False``).
Workers never touch the SQLite store: results come back to the driver, which writes them. Ray
is imported only here, and only when a pool starts.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas_lightning.errors import UserError
from nas_lightning.interrupt import through_extensions
from nas_lightning.candidates.datasets import ImageData
from nas_lightning.candidates.ray_access import (check_authentication, cpu_count, ignore_ctrl_c, loopback_only,
                                                 private_token, speaks_grpc, use_token_for_cluster)
from nas_lightning.candidates.recipe import Recipe
from nas_lightning.candidates.train import train_candidate

log = logging.getLogger(__name__)
PROJECT = Path(__file__).resolve().parents[2]  # the folder holding the nas_lightning package
LOST = "worker lost"  # the reason of a training whose worker died more often than retried


@dataclass(frozen=True)
class RaySettings:
    """Where and how candidates train on Ray.

    Args:
        workers: trainings running at once on Ray (>= 1; ``None``: no Ray, one at a time in this process).
        address: ``host:port`` of a running cluster's head to join (``None``: a local instance
            started for this command and stopped at its end).
        trial_cpus: CPUs per training (> 0).
        trial_gpus: GPUs per training (>= 0; a fraction shares a card).
        max_retries: retries of a training whose worker process or node was lost (>= 0).
        allow_unauthenticated: run even with ``RAY_AUTH_MODE=disabled`` (anyone who reaches the
            Ray ports can then run code as the user).
    """

    workers: int | None = None
    address: str | None = None
    trial_cpus: float = 1.0
    trial_gpus: float = 0.0
    max_retries: int = 2
    allow_unauthenticated: bool = False

    def __post_init__(self) -> None:
        if self.workers is None:
            if self.address is not None:
                raise UserError("ray.address needs ray.workers N (how many trainings run at once)")
        elif not isinstance(self.workers, int) or self.workers < 1:
            raise UserError(f"ray.workers must be an integer >= 1, got {self.workers!r}")
        if not self.trial_cpus > 0 or not self.trial_gpus >= 0:
            raise UserError(f"ray.trial_cpus must be > 0 and ray.trial_gpus >= 0, got {self.trial_cpus}, {self.trial_gpus}")
        if self.max_retries < 0:
            raise UserError(f"ray.max_retries must be >= 0, got {self.max_retries}")
        if not self.enabled:
            return
        check_authentication(self.allow_unauthenticated)
        cores = cpu_count()
        if self.address is None and self.workers * self.trial_cpus > cores:
            fix = (f"ray.trial_cpus to {cores} or less" if self.trial_cpus > cores
                   else f"ray.workers to {int(cores // self.trial_cpus)} or less")
            raise UserError(f"ray.workers {self.workers} x ray.trial_cpus {self.trial_cpus:g} asks for "
                            f"{self.workers * self.trial_cpus:g} CPUs but this machine has {cores}; lower {fix}, "
                            f"or join a larger cluster with ray.address")

    @property
    def enabled(self) -> bool:
        """Whether candidates train on Ray (``workers`` is set)."""
        return self.workers is not None

    @property
    def threads(self) -> int:
        """CPU threads of one training: one per CPU it asks for (at least one)."""
        return max(1, int(self.trial_cpus))


def check_address(address: str, timeout: float = 2.0, handshake: float = 5.0) -> tuple[str, int]:
    """``(host, port)`` of ``address`` once something listens there and answers as Ray's gRPC
    server does within ``handshake`` seconds (not checked with ``RAY_USE_TLS`` set).

    Raises:
        UserError: for a malformed address, nothing listening within ``timeout`` seconds, or a
            listener that is not Ray.
    """
    host, _, port = str(address).strip().rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"ray.address {address!r} is not host:port; give the address `ray start --head` printed")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise UserError(f"no Ray cluster answers at {host}:{port} ({err.strerror or err}); start one with "
                        f"`ray start --head` or drop ray.address for a local instance") from None
    tls = os.environ.get("RAY_USE_TLS", "").strip().lower() in ("1", "true")
    if not tls and not speaks_grpc(host, int(port), handshake):
        raise UserError(f"{host}:{port} accepts connections but is not a Ray cluster (no gRPC answer in {handshake:g} s); "
                        f"give the address `ray start --head` printed")
    return host, int(port)


def train_on_worker(ops: tuple[str, ...], data: ImageData, recipe: Recipe, log_dir: str | None,
                    accelerator: str, threads: int, epochs: int | None = None, resume: bytes | None = None) -> dict[str, Any]:
    """Train one candidate in a Ray worker (to ``epochs``, from ``resume``: see
    :func:`~nas_lightning.candidates.train.train_candidate`); the result says on which host it ran (``node``)."""
    import torch

    torch.set_num_threads(threads)  # these small networks train fastest on one thread per CPU asked
    result = train_candidate(ops, data, recipe, log_dir, accelerator, epochs=epochs, resume=resume)
    result["node"] = socket.gethostname()
    return result


def _check_local(gcs_address: str) -> None:
    """Refuse a local instance that listens beyond loopback (Ray imported before :func:`loopback_only`)."""
    host = gcs_address.rpartition(":")[0].strip("[]")
    if not (host.startswith("127.") or host == "::1"):
        raise UserError(f"the local Ray instance would listen on {host}, not on loopback only: Ray was imported before "
                        f"this command set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0; set it in the environment and run again")


class RayPool:
    """A Ray instance for one command: start (or join) on creation, :meth:`close` at the end.

    Raises:
        UserError: for a bad address, or a cluster with fewer CPUs or GPUs than one training asks for.
    """

    def __init__(self, settings: RaySettings) -> None:
        self.settings = settings
        # the workers import this project from where the driver does, whatever their working folder
        path = os.pathsep.join(p for p in (str(PROJECT), os.environ.get("PYTHONPATH", "")) if p)
        runtime_env = {"env_vars": {"PYTHONPATH": path}}
        command_sigterm = signal.getsignal(signal.SIGTERM)  # ray.init replaces it with its own
        if settings.address is None:
            private_token()
            if "ray" not in sys.modules and "RAY_AUTH_MODE" not in os.environ:
                os.environ["RAY_AUTH_MODE"] = "token"  # what Ray does for a local instance, without its warning
            cpus = max(1, math.ceil(settings.workers * settings.trial_cpus))
            with loopback_only():
                import ray

                ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING, object_store_memory=256 * 1024**2, _node_ip_address="127.0.0.1",
                         runtime_env={**runtime_env, "worker_process_setup_hook": ignore_ctrl_c})
        else:
            host, _ = check_address(settings.address)
            use_token_for_cluster()
            import ray

            ray.init(address=settings.address, log_to_driver=False, logging_level=logging.WARNING, runtime_env=runtime_env,
                     _node_ip_address="127.0.0.1" if host in ("127.0.0.1", "localhost") else None)
        if callable(command_sigterm) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, command_sigterm)  # the command's own SIGTERM handling stays in charge
        try:
            if settings.address is None:
                _check_local(ray.get_runtime_context().gcs_address)
            have = ray.cluster_resources()
            nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
            if not any(n.get("CPU", 0) >= settings.trial_cpus and n.get("GPU", 0) >= settings.trial_gpus for n in nodes):
                most = max(nodes, key=lambda n: (n.get("CPU", 0), n.get("GPU", 0)), default={})
                where = settings.address or "the local Ray instance"
                raise UserError(f"no node of {where} has the resources of one training ({settings.trial_cpus:g} CPUs, "
                                f"{settings.trial_gpus:g} GPUs; the largest has {most.get('CPU', 0):g} CPUs, {most.get('GPU', 0):g} GPUs): "
                                f"lower ray.trial_cpus/ray.trial_gpus or add a larger node")
            asked, cpus = settings.workers * settings.trial_cpus, have.get("CPU", 0)
            if settings.address is not None and asked > cpus:
                log.warning("ray.workers %d x ray.trial_cpus %g asks for %g CPUs but the cluster at %s has %g: "
                            "the trainings beyond that wait for a free CPU", settings.workers, settings.trial_cpus,
                            asked, settings.address, cpus)
        except BaseException:
            ray.shutdown()
            raise
        self._remote = ray.remote(num_cpus=settings.trial_cpus, num_gpus=settings.trial_gpus,
                                  max_retries=settings.max_retries, retry_exceptions=False)(train_on_worker)
        self._data: dict[int, Any] = {}
        log.info("Ray: %s, %s", settings.address or "local instance", have)

    def submit(self, ops: tuple[str, ...], data: ImageData, recipe: Recipe, log_dir: str | Path | None,
               accelerator: str, epochs: int | None = None, resume: bytes | None = None) -> Any:
        """Start training ``ops`` (on ``recipe.threads`` CPU threads; to ``epochs``, from ``resume``);
        returns the task's reference."""
        import ray

        ref = self._data.get(id(data))
        if ref is None:
            ref = self._data[id(data)] = (data, ray.put(data))
        return self._remote.remote(ops, ref[1], recipe, None if log_dir is None else str(log_dir), accelerator, recipe.threads,
                                   epochs, resume)

    def finished(self, refs: list[Any], timeout: float | None = None) -> list[Any]:
        """Those of ``refs`` that are done (waits until at least one is, or ``timeout``)."""
        import ray

        with through_extensions():  # a signal during the wait: the command's own interruption
            done, _ = ray.wait(refs, num_returns=1, timeout=timeout)
            if done:  # whatever else finished meanwhile
                done = ray.wait(refs, num_returns=len(refs), timeout=0)[0]
        return done

    def result(self, ref: Any, arch: str) -> dict[str, Any]:
        """A finished task's result; a training lost more often than retried is a failed one
        (``reason`` starts with :data:`LOST`); a training that raised raises its error here."""
        import ray
        from ray.exceptions import RayTaskError, TaskCancelledError

        try:
            with through_extensions():
                return ray.get(ref)
        except RayTaskError as err:
            raise err.as_instanceof_cause() from None
        except (TaskCancelledError, ray.exceptions.RayError) as err:
            reason = f"{LOST} after {self.settings.max_retries} retries: {type(err).__name__}"
            log.warning("training of %s: %s", arch, reason)
            return {"arch": arch, "status": "failed", "reason": reason, "val_acc": None, "seconds": None}

    def cancel(self, refs: list[Any]) -> None:
        """Stop the trainings of ``refs`` (their results are dropped)."""
        import ray

        # Only those still running: force-cancelling a task whose reply is on its way can abort the
        # driver inside Ray (a failed RAY_CHECK in TaskManager::CompletePendingTask, exit status 1
        # instead of the interruption's); cancelling a finished task changes nothing anyway.
        done = set(ray.wait(refs, num_returns=len(refs), timeout=0)[0]) if refs else set()
        for ref in refs:
            if ref in done:
                continue
            try:
                ray.cancel(ref, force=True)
            except Exception:  # finished meanwhile or gone
                pass

    def close(self) -> None:
        """Stop the local instance, or leave the cluster."""
        import ray

        self._data.clear()
        ray.shutdown()

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

