"""OpenVINO Runtime: an IR compiled with an explicit precision hint and thread count, both recorded
with what the plugin applied (its CPU default is bf16 where the ISA has it, which would make FP32
checks meaningless)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..artifact import listed, model_file
from ..errors import BadInput, NotRunnable
from ..needs import require
from ..threads import default_threads
from .base import Backend, Options

LIBRARY = "openvino"
NEEDS = ()   # openvino from PyPI; plain pip install says it
PRECISION_HINTS = ("f32", "bf16", "f16")   # INFERENCE_PRECISION_HINT values the CPU plugin takes


def load(folder: Path, manifest: dict, opt: Options) -> Backend:
    ov = require(LIBRARY, "openvino artifacts", NEEDS)
    hint = opt.precision_hint or "f32"  # explicit: OpenVINO's CPU default is bf16 where the ISA has it
    if hint not in PRECISION_HINTS:
        raise BadInput(f"unknown --precision-hint {hint!r}; accepted: {', '.join(PRECISION_HINTS)}")
    device = opt.provider or "CPU"
    core = ov.Core()
    if device.split(":")[0].split(".")[0] not in {d.split(".")[0] for d in core.available_devices} \
            and not device.startswith(("AUTO", "HETERO", "MULTI")):
        raise NotRunnable(f"needs OpenVINO device {device}; this machine has {', '.join(core.available_devices)}")
    threads = opt.threads or default_threads()
    xml = model_file(folder, manifest, ".xml")
    weights = listed(folder, manifest, xml.with_suffix(".bin").name)  # read_model would open it unlisted
    compiled = core.compile_model(core.read_model(str(xml), str(weights)), device,
                                  {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()

    config = {"device": device, "precision_hint": hint, "threads": threads}
    try:  # what the plugin actually uses: a CPU without BF16 runs a bf16 hint in f32
        config["applied_precision"] = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        config["applied_threads"] = int(compiled.get_property("INFERENCE_NUM_THREADS"))
    except (RuntimeError, AttributeError, TypeError):  # not every device reports these
        pass
    release = ov.__version__.split("-")[0]   # "2026.4.1-22982-e213a147257-releases/..." -> "2026.4.1"
    return Backend(run, config, f"openvino {release} {device} {hint}", {"openvino": ov.__version__})
