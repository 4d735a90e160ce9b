"""Reading pickled files a user is given without running code from them.

A pickle names the functions that rebuild its objects, and a plain unpickler calls whatever it
names (``os.system`` included). Every pickled file the project opens goes through one of two
restricted readers instead, each allowing only what that kind of file holds:

* torch files (checkpoints, the official NAS-Bench-201 file): torch's weights-only unpickler
  (tensors, plain containers, numbers, strings) plus a short allow-list per kind of file
  (:data:`CHECKPOINT_GLOBALS`, :func:`nb201_globals`);
* plain pickles (CIFAR python batches): :func:`restricted_pickle_load` with an explicit map of the
  globals allowed (:func:`cifar_globals`).

Anything else in a file is refused before it is built; callers turn the refusal into one line
naming what the file holds (:func:`refused_global`).
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
from typing import Any, Callable, Iterator, Mapping

import torch

# What train.py's checkpoints need beyond torch's weights-only defaults (tensors, OrderedDict,
# dicts, lists, tuples, numbers, strings): nothing, measured on a tiny train.py run with search
# feedback on (the richest checkpoint: Lightning loops, callbacks, optimizer and oracle state).
CHECKPOINT_GLOBALS: list[Callable | tuple[Callable, str]] = []

# how torch's weights-only unpickler names what it refuses (a global, or a type it may not build)
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>")


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle names a global its restricted reader does not allow (``name``: ``module.qualname``)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"refused global {name}")
        self.name = name


def refused_global(err: BaseException) -> str | None:
    """What a restricted reader refused (``module.name``), or ``None`` when ``err`` is no refusal
    (a damaged or foreign file: unreadable rather than refused)."""
    if isinstance(err, RefusedGlobal):
        return err.name
    if not isinstance(err, pickle.UnpicklingError):
        return None
    found = _GLOBAL.search(str(err))
    return next(g for g in found.groups() if g) if found else None


@contextlib.contextmanager
def weights_only_loads(allowed: list[Callable | tuple[Callable, str]]) -> Iterator[None]:
    """Within the block every ``torch.load`` is weights-only (even a third-party call that leaves
    ``weights_only`` unset or passes ``False``), with ``allowed`` added to torch's allow-list."""
    saved = {k: os.environ.pop(k, None) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        with torch.serialization.safe_globals(allowed):
            yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_checkpoint_file(path: str | os.PathLike[str]) -> Any:
    """The contents of a torch checkpoint, read weights-only with :data:`CHECKPOINT_GLOBALS`.

    Raises:
        pickle.UnpicklingError: for a file that holds anything else (see :func:`refused_global`);
            the usual ``torch.load`` errors for a file that is not a torch file.
    """
    with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
        return torch.load(path, map_location="cpu", weights_only=True)


def _multiarray() -> Any:
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    return multiarray


def _numeric_dtype_classes() -> list[type]:
    import numpy as np

    return sorted({type(np.dtype(c)) for c in "?bBhHiIlLqQefdgFDG"}, key=lambda t: t.__name__)


def nb201_globals() -> list[Callable | tuple[Callable, str]]:
    """What the official NAS-Bench-201 file holds beyond torch's defaults: numpy scalars (its
    ``flop`` values), i.e. ``numpy.core.multiarray.scalar`` (numpy 1.x's name, as the file was
    written) and numeric ``numpy.dtype`` objects."""
    import numpy as np

    scalar = _multiarray().scalar
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *_numeric_dtype_classes()]


def cifar_globals() -> dict[tuple[str, str], Any]:
    """What CIFAR python batches hold beyond dicts, lists, strings, bytes and numbers: numpy arrays
    (``_reconstruct`` under numpy 1.x's and 2.x's module names, or ``_frombuffer`` as protocol 5
    writes them) and their dtypes, and ``_codecs.encode`` (bytes as protocol 2 writes them in Python 3)."""
    import codecs

    import numpy as np

    multiarray = _multiarray()
    try:
        from numpy._core.numeric import _frombuffer
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.numeric import _frombuffer
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                           ("_codecs", "encode"): codecs.encode}
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{mod}.numeric", "_frombuffer")] = _frombuffer
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only the globals of its map (no persistent ids)."""

    def __init__(self, file: io.BufferedIOBase, allowed: Mapping[tuple[str, str], Any], **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None


def restricted_pickle_load(file: io.BufferedIOBase, allowed: Mapping[tuple[str, str], Any], encoding: str = "ASCII") -> Any:
    """``pickle.load`` that builds only ``allowed`` globals (``(module, name)`` -> object).

    Raises:
        RefusedGlobal: for any other global the pickle names (before anything is called).
    """
    return _RestrictedUnpickler(file, allowed, encoding=encoding).load()
