"""A test double of pycuda (tests/doubles/README.md): autoinit, and the driver calls the runtime's
GPU buffers use. Like CUDA, its async copies refuse pageable host memory (they would silently run
synchronously, or not at all, on a real device): only arrays from pagelocked_empty are accepted."""

import os

if os.environ.get("PYCUDA_DOUBLE_ABSENT"):
    raise ImportError("pycuda is not installed (PYCUDA_DOUBLE_ABSENT)")
