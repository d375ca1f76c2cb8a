"""ONNX files as every ONNX-based target writes them (ONNX Runtime, TensorRT, and OpenVINO's Q/DQ
path): the fp32 export from PyTorch, the metadata a runtime needs to use the file alone, saving
with the full checker. A leaf: targets import it, it imports no target. onnx is imported inside
functions only."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from .. import __version__
from ..errors import BadInput, require

INPUT, OUTPUT = "input", "logits"
MIN_OPSET = 17                 # LayerNormalization is an ONNX op from opset 17 on
EXPORTER = "torch.onnx.export (TorchScript, dynamo=False)"


def export_fp32_onnx(model, path, opset: int = MIN_OPSET):
    """torch -> ONNX at `path`, checked; returns the loaded ModelProto. Input "input" (B, C, H, W),
    output "logits" (B, K); batch is the only dynamic axis (token mixing fixes the token count).
    The TorchScript exporter (dynamo=False) gives byte-identical files for the same weights with
    torch 2.14."""
    import torch

    onnx = require("onnx", "onnx")
    if opset < MIN_OPSET:
        raise BadInput(f"ONNX opset {opset} is too old: LayerNormalization needs opset {MIN_OPSET} or newer")
    cfg = model.config
    dummy = torch.zeros(1, cfg.in_chans, *cfg.img_size, device=next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), torch.inference_mode(False):
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is on purpose
            torch.onnx.export(model, (dummy,), str(path), dynamo=False, opset_version=opset,
                              input_names=[INPUT], output_names=[OUTPUT], do_constant_folding=True,
                              dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
    finally:
        model.train(was_training)
    onnx.checker.check_model(str(path), full_check=True)
    return onnx.load(str(path))


def add_metadata(onnx_model, checkpoint):
    """Stamp what a runtime needs to use the model alone: classes, preprocessing, versions."""
    props = {"classes": json.dumps(list(checkpoint.classes)),
             "preprocess": json.dumps(checkpoint.preprocess.to_dict()),
             "mixer_edge_version": __version__,
             "variant": checkpoint.config.variant}
    if checkpoint.sha256:
        props["checkpoint_sha256"] = checkpoint.sha256
    kept = [p for p in onnx_model.metadata_props if p.key not in props]
    del onnx_model.metadata_props[:]
    for p in kept:
        onnx_model.metadata_props.add(key=p.key, value=p.value)
    for k, v in props.items():
        onnx_model.metadata_props.add(key=k, value=v)
    return onnx_model


def save_onnx(onnx_model, path) -> Path:
    """Save and run the ONNX checker (with shape inference) on the file as written."""
    onnx = require("onnx", "onnx")
    onnx.save(onnx_model, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    return Path(path)


def onnx_versions() -> dict:
    return {"onnx": require("onnx", "onnx").__version__,
            "onnxruntime": require("onnxruntime", "onnx").__version__}
