"""Candidate trainings as Ray tasks: a local Ray instance, or a cluster joined by its address.

:class:`RayPool` starts a local instance (``ray.init(address="local")``, whatever ``RAY_ADDRESS``
says) or joins ``host:port`` of a cluster started with ``ray start --head``, and stops or leaves it
on :meth:`RayPool.close`. Each training is a ``ray.remote`` task asking for ``trial_cpus`` CPUs and
``trial_gpus`` GPUs (a fraction lets several small trainings share a card); a worker process or
node lost mid-training is retried by Ray up to ``max_retries`` times, while a training that raises
is not retried (``retry_exceptions=False``). Workers never touch the SQLite store: results come
back to the driver, which writes them. Ray is imported only here, and only when a pool starts.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas_lightning.errors import UserError
from nas_lightning.candidates.datasets import ImageData
from nas_lightning.candidates.recipe import Recipe, train_candidate

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
    """

    workers: int | None = None
    address: str | None = None
    trial_cpus: float = 1.0
    trial_gpus: float = 0.0
    max_retries: int = 2

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

    @property
    def enabled(self) -> bool:
        """Whether candidates train on Ray (``workers`` is set)."""
        return self.workers is not None

    @property
    def threads(self) -> int:
        """CPU threads of one training: one per CPU it asks for (at least one)."""
        return max(1, int(self.trial_cpus))


def check_address(address: str, timeout: float = 2.0) -> tuple[str, int]:
    """``(host, port)`` of ``address`` once something listens there.

    Raises:
        UserError: for a malformed address or nothing listening within ``timeout`` seconds.
    """
    host, _, port = str(address).strip().rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--ray-address {address!r} is not host:port; give the address `ray start --head` printed")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise UserError(f"no Ray cluster answers at {host}:{port} ({err.strerror or err}); start one with "
                        f"`ray start --head` or drop --ray-address for a local instance") from None
    return host, int(port)


def train_on_worker(ops: tuple[str, ...], data: ImageData, recipe: Recipe, log_dir: str | None,
                    accelerator: str, threads: int) -> dict[str, Any]:
    """Train one candidate in a Ray worker; the result says on which node it ran."""
    import ray
    import torch

    torch.set_num_threads(threads)  # these small networks train fastest on one thread per CPU asked
    result = train_candidate(ops, data, recipe, log_dir, accelerator)
    context = ray.get_runtime_context()
    result["node"] = context.get_node_id()
    return result


def _use_token_if_available() -> None:
    """Authenticate to a cluster with the user's Ray token (``~/.ray/auth_token``, ``RAY_AUTH_TOKEN``...)
    when ``RAY_AUTH_MODE`` is unset, as ``ray start --address`` does (Ray's own helper; pinned Ray)."""
    try:
        from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available
    except ImportError:  # another Ray version: RAY_AUTH_MODE=token in the environment does the same
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


class RayPool:
    """A Ray instance for one command: start (or join) on creation, :meth:`close` at the end.

    Raises:
        UserError: for a bad address, or a cluster with fewer CPUs or GPUs than one training asks for.
    """

    def __init__(self, settings: RaySettings) -> None:
        import ray

        self.settings = settings
        # the workers import this project from where the driver does, whatever their working folder
        path = os.pathsep.join(p for p in (str(PROJECT), os.environ.get("PYTHONPATH", "")) if p)
        runtime_env = {"env_vars": {"PYTHONPATH": path}}
        if settings.address is None:
            cpus = max(1, math.ceil(settings.workers * settings.trial_cpus))
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING, object_store_memory=256 * 1024**2, runtime_env=runtime_env)
        else:
            host, _ = check_address(settings.address)
            _use_token_if_available()
            ray.init(address=settings.address, log_to_driver=False, logging_level=logging.WARNING, runtime_env=runtime_env,
                     _node_ip_address="127.0.0.1" if host in ("127.0.0.1", "localhost") else None)
        try:
            have = ray.cluster_resources()
            nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
            if not any(n.get("CPU", 0) >= settings.trial_cpus and n.get("GPU", 0) >= settings.trial_gpus for n in nodes):
                most = max(nodes, key=lambda n: (n.get("CPU", 0), n.get("GPU", 0)), default={})
                where = settings.address or "the local Ray instance"
                raise UserError(f"no node of {where} has the resources of one training ({settings.trial_cpus:g} CPUs, "
                                f"{settings.trial_gpus:g} GPUs; the largest has {most.get('CPU', 0):g} CPUs, {most.get('GPU', 0):g} GPUs): "
                                f"lower --trial-cpus/--trial-gpus or add a larger node")
        except BaseException:
            ray.shutdown()
            raise
        self._remote = ray.remote(num_cpus=settings.trial_cpus, num_gpus=settings.trial_gpus,
                                  max_retries=settings.max_retries, retry_exceptions=False)(train_on_worker)
        self._data: dict[int, Any] = {}
        log.info("Ray: %s, %s", settings.address or "local instance", have)

    def submit(self, ops: tuple[str, ...], data: ImageData, recipe: Recipe, log_dir: str | Path | None,
               accelerator: str) -> Any:
        """Start training ``ops`` (on ``recipe.threads`` CPU threads); returns the task's reference."""
        import ray

        ref = self._data.get(id(data))
        if ref is None:
            ref = self._data[id(data)] = (data, ray.put(data))
        return self._remote.remote(ops, ref[1], recipe, None if log_dir is None else str(log_dir), accelerator, recipe.threads)

    def finished(self, refs: list[Any], timeout: float | None = None) -> list[Any]:
        """Those of ``refs`` that are done (waits until at least one is, or ``timeout``)."""
        import ray

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

        for ref in refs:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # already finished or gone
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

