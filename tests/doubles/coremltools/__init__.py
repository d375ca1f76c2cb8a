"""A test double of coremltools 9 on macOS, for the device rehearsal (tests/doubles/README.md):
ComputeUnit, and models.MLModel, which runs an ONNX twin of the program (COREML_DOUBLE_ONNX, the
same checkpoint exported to ONNX) with ONNX Runtime, under Core ML's input contract: a tensor input
"input" whose batch must be one of the program's declared shapes (its manifest's
export.coreml.input: enumerated batches, or 1..64 for an older range-shaped program).

    COREML_DOUBLE_ONNX   the ONNX twin to run
    COREML_DOUBLE_FAIL   load: the framework cannot load the program (coremltools then warns and
                         keeps the error for predict(), as the real MLModel does)
"""
import enum

from . import models  # noqa: F401

__version__ = "9.0"


class ComputeUnit(enum.Enum):
    ALL = 1
    CPU_ONLY = 2
    CPU_AND_GPU = 3
    CPU_AND_NE = 4
