"""`mixer-edge quant inspect`: where INT8 error enters a Mixer. The FP32 graph and the quantized
graph of a target's recipe run side by side on held-out images; per quantizable layer (stem,
token MLP and channel MLP of each block, head) it reports

    sqnr_out_db      SQNR of the layer's output, quantized model against FP32: the error so far
    sqnr_alone_db    logit SQNR with only this layer quantized: the error this layer adds
    input range      min / max of the layer's input on the calibration images, and the range kept
    spread           max / median of the input's per-channel max |x| along the matmul's reduction
                     axis (what smoothing fixes) and along its rows (token mixing's LayerNorm
                     channels, where no fold applies); the top outlier channels by index

Core ML's W8A8 is simulated by the symmetric (TensorRT) flavor of the same Q/DQ graph.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from ..runtime.artifact import atomic_write_bytes
from . import int8, qdq
from .base import ExportSpec
from .registry import get_target
from .validate import compare

TOP_OUTLIERS = 3


@dataclass(frozen=True)
class InspectSpec:
    target: str = "onnx"
    method: str | None = None
    smooth: float | None = 0.5


def inspect(checkpoint, calib_x: np.ndarray, x: np.ndarray, spec: InspectSpec = InspectSpec()) -> dict:
    """Per-layer figures for checkpoint's model under the target's INT8 recipe; x: held-out images."""
    simulation = get_target(spec.target).simulation
    calib = _Images(calib_x)
    ck, _, prepared = int8.prepare(checkpoint, ExportSpec("int8", smooth=spec.smooth), calib)
    smoothing = prepared.get("smoothing")
    graph = int8.fp32_onnx(ck.model)
    flavor = qdq.FLAVORS[simulation]
    nodes = qdq.quant_nodes(graph)
    acts = [n.input[0] for n in nodes]
    stats = qdq.activation_stats(graph, calib_x, acts)
    quantized, details = qdq.calibrate(graph, calib_x, flavor, spec.method, stats=stats)
    outs = _layer_outputs(graph, nodes)
    f32 = _gather(graph, x, outs)
    q = _gather(quantized, x, outs)
    spread = _spreads(graph, calib_x, acts)
    alone = {r["layer"]: r for r in int8.sensitivity(ck.model, calib_x, simulation, spec.method)}
    layers = []
    for node, act, out in zip(nodes, acts, outs):
        name = qdq.layer_name(node.name)
        st = stats[act]
        layers.append({"layer": name, "kind": _kind(name), "sqnr_out_db": round(_sqnr(f32[out], q[out]), 2),
                       "sqnr_alone_db": alone[name]["sqnr_db"], "macs": alone[name]["macs"],
                       "input_min": round(st.lo, 4), "input_max": round(st.hi, 4),
                       "range_kept": details["calibration"]["ranges"].get(name),
                       **spread[act]})
    logits = compare(f32["__logits__"], q["__logits__"])
    return {"target": spec.target, "flavor": flavor.name, "method": details["calibration"]["method"],
            "smoothing": None if smoothing is None else {"alpha": smoothing["alpha"], "folds": smoothing["folds"]},
            "recentred": details.get("recentred", {}), "images": int(len(x)), "calibration_images": int(len(calib_x)),
            "logits": {k: round(logits[k], 4) for k in ("sqnr_db", "top1_agreement", "cosine")},
            "layers": layers, "worst": sorted(layers, key=lambda r: r["sqnr_alone_db"])[:3]}


def _layer_outputs(graph, nodes) -> list[str]:
    """Each layer's output after its bias Add: recentring changes the MatMul's own output by a
    constant that the bias takes back, so the comparison is made where the two graphs agree."""
    inits = {i.name for i in graph.graph.initializer}
    users: dict[str, list] = {}
    for n in graph.graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    aliases, out = qdq.initializer_aliases(graph.graph, inits), []
    for node in nodes:
        bias = qdq.bias_add(users.get(node.output[0], []), node.output[0], inits, aliases)
        out.append(bias[0].output[0] if bias else node.output[0])
    return out


class _Images:
    """The part of a CalibrationSet smoothing reads."""

    def __init__(self, x):
        self.x = x


def _gather(graph, x, names) -> dict[str, np.ndarray]:
    out_name = graph.graph.output[0].name
    parts: dict[str, list] = {n: [] for n in [*names, out_name]}
    for batch in qdq.run_tensors(graph, x, [*names, out_name], batch=64)():
        for n, v in batch.items():
            parts[n].append(v)
    got = {n: np.concatenate(v) for n, v in parts.items()}
    got["__logits__"] = got[out_name]
    return got


def _sqnr(ref: np.ndarray, out: np.ndarray) -> float:
    err = (out.astype(np.float64) - ref) ** 2
    return float(10 * np.log10(max((ref.astype(np.float64) ** 2).sum(), 1e-30) / max(err.sum(), 1e-30)))


def _spreads(graph, x, acts) -> dict[str, dict]:
    """Per-channel max |x| of each layer input along its last axis (the matmul's reduction axis)
    and, for 3-D inputs, along its rows: max / median, and the top channels."""
    k_amax = {a: None for a in acts}
    row_amax = {a: None for a in acts}
    for batch in qdq.run_tensors(graph, x, acts, batch=64)():
        for a, v in batch.items():
            v = np.abs(v)
            k = v.reshape(-1, v.shape[-1]).max(0)                          # (K,)
            k_amax[a] = k if k_amax[a] is None else np.maximum(k_amax[a], k)
            if v.ndim == 3:
                r = v.max(axis=(0, 2))                                      # (rows,)
                row_amax[a] = r if row_amax[a] is None else np.maximum(row_amax[a], r)
    out = {}
    for a in acts:
        k = k_amax[a]
        out[a] = {"spread_reduction": _ratio(k), "outlier_channels": np.argsort(-k)[:TOP_OUTLIERS].tolist()}
        if row_amax[a] is not None:
            out[a].update(spread_rows=_ratio(row_amax[a]),
                          outlier_rows=np.argsort(-row_amax[a])[:TOP_OUTLIERS].tolist())
    return out


def _ratio(amax: np.ndarray) -> float:
    return round(float(amax.max() / max(np.median(amax), 1e-12)), 2)


def _kind(layer: str) -> str:
    for key, kind in (("stem", "stem"), ("mlp_tokens", "token MLP"), ("mlp_channels", "channel MLP"),
                      ("head", "head")):
        if key in layer:
            return kind
    return "other"


def table(report: dict) -> str:
    """The per-layer table as Markdown."""
    head = ("| layer | kind | SQNR out dB | SQNR alone dB | input min | input max | kept range | "
            "spread (reduction) | spread (rows) | top channels |\n|---|---|---|---|---|---|---|---|---|---|")
    rows = [f"| {r['layer']} | {r['kind']} | {r['sqnr_out_db']:.1f} | {r['sqnr_alone_db']:.1f} | "
            f"{r['input_min']:.3g} | {r['input_max']:.3g} | "
            f"{_kept(r['range_kept'])} | "
            f"{r['spread_reduction']:.1f} | {r.get('spread_rows', '')} | {r['outlier_channels']} |"
            for r in report["layers"]]
    return "\n".join([head, *rows])


def _kept(pair) -> str:
    return "" if not pair else f"{pair[0]:.3g}..{pair[1]:.3g}"


def plot(report: dict, path) -> None:
    """Two panels over the layers: SQNR (output so far, and alone), and input spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = report["layers"]
    names = [r["layer"].replace("blocks.", "b").replace(".mlp_", ".").replace("channels", "ch").replace("tokens", "tok")
             for r in layers]
    idx = np.arange(len(layers))
    fig, (a, b) = plt.subplots(2, 1, figsize=(max(8, 0.45 * len(layers)), 7), sharex=True)
    a.bar(idx, [r["sqnr_alone_db"] for r in layers], color="#9ecae1", label="logit SQNR, this layer alone")
    a.plot(idx, [r["sqnr_out_db"] for r in layers], "o-", color="#d62728", label="output SQNR, all layers so far")
    a.set_ylabel("SQNR (dB), higher is better")
    a.set_title(f"{report['target']} INT8 ({report['flavor']} Q/DQ, {report['method']}): "
                f"logits {report['logits']['sqnr_db']:.1f} dB")
    a.legend(loc="lower left")
    b.bar(idx - 0.2, [r["spread_reduction"] for r in layers], 0.4, label="reduction axis (smoothing applies)")
    b.bar(idx + 0.2, [r.get("spread_rows") or 0 for r in layers], 0.4, label="rows (token mixing)")
    b.set_yscale("log")
    b.set_ylabel("input max / median channel")
    b.set_xticks(idx, names, rotation=70, fontsize=8)
    b.legend(loc="upper right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
