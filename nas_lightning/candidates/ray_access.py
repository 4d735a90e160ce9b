"""Who can reach a Ray instance: a local one listens on loopback only and asks for a private token;
a cluster's address is checked to be Ray before Ray is asked to connect.

Ray's servers bind to every interface unless the node's address is the loopback one, and Ray
keeps a node on loopback only where clusters are off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``,
read once when Ray is imported). Token authentication (``RAY_AUTH_MODE=token``) reads the token
from ``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``. Only Ray's
environment variables are used here, no Ray module: this module never imports Ray.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import stat
import sys
from pathlib import Path
from typing import Iterator

from nas_lightning.errors import UserError

log = logging.getLogger(__name__)
AUTH_MODE = "RAY_AUTH_MODE"
CLUSTERS = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": a node on loopback, no multi-node cluster
ALLOW_FLAG = "--oracle.ray.allow_unauthenticated true (--data.oracle.ray.allow_unauthenticated in train.py)"
# HTTP/2 as gRPC speaks it: the client's connection preface and an empty SETTINGS frame
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def check_authentication(allow_unauthenticated: bool) -> None:
    """Refuse ``RAY_AUTH_MODE=disabled`` unless the user allowed it explicitly (then warn).

    Raises:
        UserError: authentication disabled and not allowed.
    """
    if os.environ.get(AUTH_MODE, "").strip().lower() != "disabled":
        return
    if not allow_unauthenticated:
        raise UserError(f"{AUTH_MODE}=disabled turns Ray's token authentication off: anyone who reaches the Ray ports "
                        f"could run code as you; unset it, or pass {ALLOW_FLAG} if that is what you want")
    log.warning("Ray runs without authentication (%s=disabled): anyone who reaches its ports can run code as you", AUTH_MODE)


def token_path() -> Path:
    """The token file Ray reads (``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``)."""
    given = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(given).expanduser() if given else Path.home() / ".ray" / "auth_token"


def private_token() -> None:
    """Make sure a local instance's token is readable by its owner only: a missing token file is
    created with mode 0600 (a token as ``ray get-auth-token --generate`` makes), one readable by
    others is restricted to 0600."""
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get(AUTH_MODE, "").strip().lower() == "disabled":
        return
    path = token_path()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
            log.warning("Ray's token file %s was readable by others (mode %o); restricted to its owner (0600)", path, mode)
        return
    except OSError as err:
        raise UserError(f"cannot create Ray's token file {str(path)!r} ({err.strerror or err}); "
                        "set RAY_AUTH_TOKEN_PATH to a writable file") from None
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    log.info("Ray token created in %s (readable by you only)", path)


def use_token_for_cluster() -> None:
    """Authenticate to a cluster with the user's token when one exists and ``RAY_AUTH_MODE`` is
    unset, as ``ray start --address`` does (effective when Ray is first imported after this)."""
    if AUTH_MODE in os.environ:
        return
    if os.environ.get("RAY_AUTH_TOKEN") or token_path().is_file():
        os.environ[AUTH_MODE] = "token"
        if "ray" in sys.modules:
            log.debug("Ray was imported before %s=token was set; set it in the environment to use the token", AUTH_MODE)


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """While a local instance starts: Ray imported in this block keeps its node on 127.0.0.1
    (every server on loopback). The setting of ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` is restored after."""
    before = os.environ.get(CLUSTERS)
    os.environ[CLUSTERS] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CLUSTERS, None)
        else:
            os.environ[CLUSTERS] = before


def speaks_grpc(host: str, port: int, timeout: float) -> bool:
    """Whether ``host:port`` answers an HTTP/2 connection preface (as Ray's gRPC servers do) within
    ``timeout`` seconds; a listener that says nothing, or something else, does not."""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.settimeout(timeout)
        try:
            conn.sendall(_PREFACE)
            head = conn.recv(9)
        except OSError:  # a timeout, or the peer hung up
            return False
    return len(head) == 9 and head[3] == 4  # the server's first frame: SETTINGS (type 4)


def ignore_ctrl_c() -> None:
    """Set-up of a local instance's workers: Ctrl-C in a terminal reaches every process of the
    command's group, but only the driver acts on it (it cancels the trainings and stops Ray)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
