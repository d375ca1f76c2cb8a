"""cuda.cudart: cuda-python 12's older module name for the runtime API (gone in 13); the double
has it only when CUDA_DOUBLE_MAJOR is 12 (the default)."""
import os

if os.environ.get("CUDA_DOUBLE_MAJOR", "12") != "12":
    raise ImportError("cuda.cudart is not in cuda-python 13 (use cuda.bindings.runtime)")
from .bindings.runtime import *  # noqa: F401,F403,E402
