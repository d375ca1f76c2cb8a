"""coremltools.models.MLModel, as the double runs it (see the package docstring)."""
import json
import os
import warnings
from pathlib import Path

import numpy as np

PREDICTED: list = []   # batch sizes predict() was called with, in order (for in-process tests)


class MLModel:
    def __init__(self, path, compute_units=None):
        self.path, self.compute_units = Path(path), compute_units
        self._framework_error = None
        if os.environ.get("COREML_DOUBLE_FAIL") == "load":
            # What coremltools 9 does when the framework refuses the program: a warning, the error kept.
            self._framework_error = RuntimeError("Error compiling model: unsupported operation (double)")
            warnings.warn("You will not be able to run predict() on this Core ML model. Underlying exception "
                          f"message was: {self._framework_error}", RuntimeWarning)
            return
        record = json.loads((self.path.parent / "manifest.json").read_text())["export"]["coreml"]["input"]
        self.batches = record.get("batches") or list(range(1, record["shape"][0][1] + 1))
        import onnxruntime as ort

        self.session = ort.InferenceSession(os.environ["COREML_DOUBLE_ONNX"], providers=["CPUExecutionProvider"])

    def predict(self, data):
        if self._framework_error is not None:
            raise self._framework_error
        x = data["input"]
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 4:
            raise RuntimeError(f"input must be a float32 (N, C, H, W) array, got {type(x).__name__}")
        if len(x) not in self.batches:
            raise RuntimeError(f"MultiArray shape {list(x.shape)} does not match the shape ranges of the "
                               f"model's input (batches {self.batches})")
        PREDICTED.append(len(x))
        return {"logits": self.session.run(None, {"input": x})[0]}
