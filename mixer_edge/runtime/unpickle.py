"""Restricted unpickling: numpy arrays and plain containers only. A pickle can name any callable
and have it run while loading; a downloaded batch file (CIFAR-10's python version) is untrusted."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .errors import BadInput


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """Protocol-2 pickles spell bytes as _codecs.encode(text, 'latin1'); allow exactly that."""
    if encoding.lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


# Resolved from live objects, so the allow-list works on numpy 1 (numpy.core) and 2 (numpy._core)
# without importing the numpy.core shim that numpy 2 deprecates.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_SCALAR = np.int64(0).__reduce__()[0]
_FROMBUFFER = np.empty(1).__reduce_ex__(5)[0]  # protocol 5 writes arrays as _frombuffer(bytes, ...)
PICKLE_ALLOWED = {
    **{(m, "_reconstruct"): _RECONSTRUCT for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "scalar"): _SCALAR for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "_frombuffer"): _FROMBUFFER for m in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
    **{("builtins", t.__name__): t for t in (list, dict, tuple, str, bytes, bytearray, int, float)},
}


class _DataOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")  # Python 2 str -> bytes, as CIFAR's own loader does
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) in PICKLE_ALLOWED:
            return PICKLE_ALLOWED[(module, name)]
        raise BadInput(f"refusing to unpickle {module}.{name} from {self.path}; "
                       f"only numpy arrays and plain lists, dicts, strings and bytes are accepted")


def unpickle(path: Path):
    """The data a pickle file holds, if it holds only PICKLE_ALLOWED types; BadInput otherwise."""
    with open(path, "rb") as f:
        try:
            return _DataOnlyUnpickler(f, path).load()
        except BadInput:
            raise
        except Exception as e:  # a corrupt pickle can fail in many ways; all mean "not a batch"
            raise BadInput(f"cannot read {path}: {type(e).__name__}: {e}") from None
