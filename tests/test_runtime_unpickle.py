"""runtime/unpickle.py: a pickle is read only when it holds numpy arrays and plain containers; one
that names any other callable (os.system, a class of this package) is refused before it runs."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from mixer_edge.runtime.errors import BadInput
from mixer_edge.runtime.unpickle import unpickle


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_arrays_and_containers_round_trip(tmp_path, protocol):
    data = {b"data": np.arange(12, dtype=np.uint8).reshape(3, 4), "labels": [1, 2, 3], "name": "x",
            "t": (1.5, b"b"), "scalar": np.int64(7), "f": np.float32(0.5)}
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    got = unpickle(path)
    assert np.array_equal(got[b"data"], data[b"data"]) and got["labels"] == [1, 2, 3] and got["t"] == (1.5, b"b")
    assert got["scalar"] == 7 and got["f"] == np.float32(0.5)


class Payload:
    def __reduce__(self):
        return os.system, ("echo pwned > /dev/null",)


def test_a_callable_is_refused_before_it_runs(tmp_path):
    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({"data": Payload()}))
    with pytest.raises(BadInput, match=r"refusing to unpickle (posix|os)\.system"):
        unpickle(path)
    path.write_bytes(pickle.dumps(BadInput("x")))
    with pytest.raises(BadInput, match="refusing to unpickle mixer_edge.runtime.errors.BadInput"):
        unpickle(path)


def test_corrupt_pickles_are_one_error(tmp_path):
    path = tmp_path / "cut"
    path.write_bytes(pickle.dumps({"a": np.zeros(100)})[:40])
    with pytest.raises(BadInput, match="cannot read .*cut"):
        unpickle(path)
