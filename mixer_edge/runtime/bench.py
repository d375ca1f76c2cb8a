"""One artifact benchmarked end to end on raw data, as the device scripts do it: the held-out
selection, the golden check before timing, latency and throughput, memory, accuracy, agreement
with a reference artifact; one result entry (results.py)."""
from __future__ import annotations

import time
from pathlib import Path

from .accuracy import accuracy, agreement
from .artifact import artifact_size, batch_axis, file_hashes, read_manifest
from .backends import BACKENDS, Options, import_library, load_backend
from .batching import run_batched
from .conditions import OthersCPU, load_entry
from .errors import BadInput, NotRunnable
from .golden import device_check
from .identity import select
from .labels import model_labels
from .preprocess import preprocess
from .results import quantization_summary, result_entry, validation_summary
from .streaming import model_inputs
from .system import mark_memory, process_memory
from .timing import Settings, measure_speed


def bench_artifact(folder, data, settings: Settings, options: Options, selection: str = "held-out",
                   limit: int | None = None, reference: str | None = None,
                   manifest: dict | None = None) -> tuple[dict, dict]:
    """Benchmark one artifact folder on raw data (readers.Data); returns (result entry, runtime
    versions). manifest: the folder's manifest, already read and verified by read_manifest."""
    folder = Path(folder)
    manifest = read_manifest(folder) if manifest is None else manifest
    data, about = select(data, selection, manifest, limit)
    labels, labels_how = model_labels(manifest, data)
    fixed = batch_axis(manifest)
    base = dict(artifact=str(folder), name=folder.resolve().name, target=manifest["target"], precision=manifest["precision"],
                sha256=file_hashes(manifest), size_bytes=artifact_size(folder, manifest),
                data={**about, "labels": labels_how},
                quantization=quantization_summary(manifest), validation=validation_summary(manifest))
    x = model_inputs(data.images, lambda images: preprocess(images, manifest["preprocess"]))
    ref_logits = None
    if reference is not None:  # logits of the reference artifact first: its memory is not ours
        ref_logits = _reference_logits(reference, manifest, x, settings.eval_batch, folder)
    import_library(BACKENDS.get(manifest["target"]))
    mark = mark_memory()
    t0 = time.perf_counter()
    try:
        backend = load_backend(folder, manifest, options)
    except NotRunnable as why:
        return result_entry(**base, status="not-run", reason=str(why)), {}
    load_s = time.perf_counter() - t0
    check = device_check(folder, manifest, backend.run, fixed)   # before timing: what is timed must be right
    others = OthersCPU()   # what other processes took of the CPUs while this row was timed
    speed = measure_speed(backend.run, x, settings, fixed, memory=mark, batch_range=backend.config.get("batch_range"))
    load = load_entry(others.cores())
    logits = run_batched(backend.run, x, settings.eval_batch, fixed)
    entry = result_entry(
        **base, status="ok", runtime={**backend.config, "what": backend.what}, load_s=load_s, **speed,
        **process_memory(mark), accuracy=accuracy(logits, labels),
        agreement=None if ref_logits is None else agreement(ref_logits, logits, str(reference)),
        device_check=check, load=load)
    return entry, backend.versions


def _reference_logits(reference, manifest: dict, x, batch: int, folder):
    ref_manifest = read_manifest(reference)
    if ref_manifest["preprocess"] != manifest["preprocess"]:
        raise BadInput(f"reference {reference} preprocesses differently from {folder}")
    try:
        ref = load_backend(Path(reference), ref_manifest, Options())
    except NotRunnable as why:
        raise BadInput(f"reference {reference} cannot run here: {why}") from None
    return run_batched(ref.run, x, batch, batch_axis(ref_manifest))
