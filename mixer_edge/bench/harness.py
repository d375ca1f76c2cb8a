"""`mixer-edge bench`: artifacts and PyTorch baselines measured in this process, with the very
modules the on-device script uses (mixer_edge/runtime: timing, accuracy, system, results), so both
write one schema.

What differs from the device script is only where things come from: runners from the target
registry (mixer_edge.export.registry), images from mixer_edge's data sources and Preprocess, and
checkpoints run as PyTorch eager (and torch.compile) FP32 baselines.
"""
from __future__ import annotations

import inspect
import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.dataset import ImageSet, warn_small
from ..data.preprocess import Preprocess
from ..data.sources import ReadOptions, load_data
from ..errors import BadInput, NotRunnable, UnknownName
from ..export import registry
from ..export.artifact import load_artifact
from ..export.base import LoadedRunner
from ..models.checkpoint import WEIGHTS_NAME, load_checkpoint, versions
from ..runtime.accuracy import accuracy, agreement
from ..runtime.artifact import MANIFEST, artifact_size, atomic_write_json, batch_axis, file_hashes
from ..runtime.backends import Options, import_library
from ..runtime.batching import run_batched, tile
from ..runtime.conditions import OthersCPU, Watch, load_entry
from ..runtime.golden import device_check
from ..runtime.identity import SELECTIONS, select
from ..runtime.labels import model_labels
from ..runtime.readers import Data, read_npz
from ..runtime.results import document, quantization_summary, result_entry, validation_summary
from ..runtime.streaming import model_inputs
from ..runtime.system import base_versions, device_info, mark_memory, process_memory
from ..runtime.profile import summarize
from ..runtime.timing import Settings, measure_speed

TOOL = "mixer-edge bench"
RUNTIME_MODULES = ("onnxruntime", "openvino", "nncf", "tensorrt", "coremltools")
# A bench option -> the load_runner parameter names that take it, first match wins.
RUNNER_PARAMS = {"threads": ("threads", "num_threads"), "precision_hint": ("precision_hint",),
                 "provider": ("provider", "device"), "compute_units": ("compute_units",)}


@dataclass(frozen=True)
class BenchConfig:
    data: str
    settings: Settings = field(default_factory=Settings)
    threads: int | None = None
    precision_hint: str | None = None
    provider: str | None = None
    compute_units: str | None = None    # Core ML: ALL, CPU_ONLY, CPU_AND_GPU, CPU_AND_NE
    limit: int | None = None
    images: str = "held-out"            # held-out (not trained or calibrated on, by content) | all
    reference: str | None = None        # FP32 artifact or checkpoint; default: a checkpoint benchmarked
    compile: bool = False               # also benchmark torch.compile for each checkpoint
    device_name: str | None = None
    read: ReadOptions = ReadOptions()   # --skip-bad, --class-map for the data
    profile: int = 0                    # calls profiled per artifact by the runtime's profiler (0: none)

    def __post_init__(self):
        if self.limit is not None and self.limit < 1:
            raise BadInput(f"--limit must be at least 1, got {self.limit}")
        if self.images not in SELECTIONS:
            raise BadInput(f"unknown image selection {self.images!r}; accepted: {', '.join(SELECTIONS)}")
        if self.threads is not None and self.threads < 1:
            raise BadInput(f"--threads must be at least 1, got {self.threads}")
        if self.profile < 0:
            raise BadInput(f"--profile takes a number of calls, at least 1; got {self.profile}")


# ---- what is benchmarked ------------------------------------------------------------------------

@dataclass(frozen=True)
class Subject:
    """One row of the result: an artifact, or a checkpoint run by PyTorch (eager or compiled)."""
    path: Path
    name: str
    target: str
    precision: str
    sha256: dict
    size_bytes: int
    preprocess: object                  # mixer_edge.data.preprocess.Preprocess
    num_classes: int
    identity: dict                      # manifest keys "classes", "classes_named", "images" (reserved keys)
    fixed_batch: int | None             # None: the batch axis is dynamic
    load: Callable[["BenchConfig"], LoadedRunner]
    quantization: dict | None = None    # an INT8 artifact's recipe in brief (results.quantization_summary)
    validation: dict | None = None      # an artifact's export check, as its manifest has it (validation_summary)
    manifest: dict | None = None        # an artifact's manifest (its golden set is checked before timing)
    backend: object = None              # an artifact's runtime backend (its library is imported before timing)


def subjects_for(path: str, config: BenchConfig) -> list[Subject]:
    p = Path(path)
    if p.is_dir() and (p / MANIFEST).is_file():
        return [_artifact_subject(p)]
    if p.suffix == ".safetensors" or (p.is_dir() and (p / WEIGHTS_NAME).is_file()):
        ck = load_checkpoint(p)
        subjects = [_checkpoint_subject(ck, "pytorch-eager", _eager_loader(ck))]
        if config.compile:
            subjects.append(_checkpoint_subject(ck, "pytorch-compile", _compile_loader(ck)))
        return subjects
    raise BadInput(f"{path} is neither an artifact folder (with {MANIFEST}) nor a checkpoint "
                   f"(a .safetensors file or a folder with {WEIGHTS_NAME})")


def _artifact_subject(path: Path) -> Subject:
    art = load_artifact(path)  # checks every file's sha256
    m = art.manifest
    return Subject(path=path, name=path.name, target=m["target"], precision=m["precision"],
                   sha256=file_hashes(m), size_bytes=artifact_size(path, m),
                   preprocess=Preprocess.from_dict(m["preprocess"]), num_classes=len(m["classes"]),
                   identity={k: m[k] for k in ("classes", "classes_named", "images") if k in m},
                   fixed_batch=batch_axis(m), load=lambda cfg: _registry_runner(art, cfg),
                   quantization=quantization_summary(m), validation=validation_summary(m), manifest=m,
                   backend=_backend_of(m["target"]))


def _backend_of(target: str):
    """The registered target's runtime backend; None for a target this mixer-edge does not know
    (its load says so, as a not-run row)."""
    try:
        return registry.get_target(target).backend
    except UnknownName:
        return None


def _checkpoint_subject(ck, target: str, loader) -> Subject:
    return Subject(path=ck.path, name=ck.path.parent.name if ck.path.name == WEIGHTS_NAME else ck.path.stem,
                   target=target, precision="fp32", sha256={ck.path.name: ck.sha256},
                   size_bytes=ck.path.stat().st_size, preprocess=ck.preprocess, num_classes=ck.config.num_classes,
                   identity=ck.identity,
                   fixed_batch=None, load=loader)


# ---- runners ------------------------------------------------------------------------------------

def runner_options(load_runner, config: BenchConfig) -> tuple[dict, dict]:
    """(keyword arguments load_runner takes, options it has no parameter for). The second is
    recorded with the result: an option is never dropped silently."""
    params = inspect.signature(load_runner).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs, not_applied = {}, {}
    for option, names in RUNNER_PARAMS.items():
        value = getattr(config, option)
        if value is None:
            continue
        name = next((n for n in names if n in params), names[0] if takes_any else None)
        if name is None:
            not_applied[option] = value
        else:
            kwargs[name] = value
    return kwargs, not_applied


def _registry_runner(art, config: BenchConfig) -> LoadedRunner:
    """The artifact's target's runner; NotRunnable (a not-run row) where it cannot run here."""
    try:
        target = registry.get_target(art.target)
    except UnknownName as e:
        raise NotRunnable(str(e)) from None   # an artifact of a target this mixer-edge does not know
    status = target.status()
    if not status.runs_here:
        raise NotRunnable(status.reason or f"the {art.target} runtime does not run on this machine")
    kwargs, not_applied = runner_options(target.load_runner, config)
    runner = target.load_runner(art, **kwargs)
    if not_applied:
        runner = replace(runner, config={**runner.config, "not_applied": not_applied})
    return runner


def _torch_config(config: BenchConfig) -> dict:
    import torch

    if config.threads is not None:
        torch.set_num_threads(config.threads)  # process-wide, as torch has it
    not_applied = {k: getattr(config, k) for k in ("precision_hint", "provider", "compute_units")
                   if getattr(config, k) is not None}
    cfg = {"threads": torch.get_num_threads(), "precision_hint": None, "provider": "cpu"}
    return {**cfg, "not_applied": not_applied} if not_applied else cfg


def _torch_run(model):
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).float().numpy()
    return run


def _fresh_model(ck):
    """A copy of the checkpoint's model, made as the load: the checkpoint was read before the
    memory mark, and its model's memory would otherwise leave out the weights."""
    import copy

    return copy.deepcopy(ck.model).eval()


def _eager_loader(ck):
    def load(config: BenchConfig) -> LoadedRunner:
        import torch

        cfg = _torch_config(config)
        return LoadedRunner(_torch_run(_fresh_model(ck)), cfg, f"pytorch {torch.__version__} eager")
    return load


class CompileFailed(NotRunnable):
    """torch.compile (or a recompile for a new batch size) raised; recorded as not run, never fatal."""


def _compile_loader(ck):
    def load(config: BenchConfig) -> LoadedRunner:
        import torch

        cfg = _torch_config(config)
        t0 = time.perf_counter()
        try:
            compiled = torch.compile(_fresh_model(ck))
            run = _torch_run(compiled)
            # Compile now, on one image of the input shape, so load time includes compilation.
            c = ck.config
            run(np.zeros((1, c.in_chans, *c.img_size), np.float32))
        except Exception as e:  # inductor needs a C++ compiler, triton, ...: many ways to fail
            raise CompileFailed(f"torch.compile failed: {type(e).__name__}: {_first_line(e)}") from None

        def guarded(x: np.ndarray) -> np.ndarray:
            try:
                return run(x)
            except Exception as e:  # a recompile for a new batch size
                raise CompileFailed(f"torch.compile failed at batch {len(x)}: {type(e).__name__}: "
                                    f"{_first_line(e)}") from e
        return LoadedRunner(guarded, {**cfg, "compile_s": time.perf_counter() - t0},
                            f"pytorch {torch.__version__} torch.compile (inductor)")
    return load


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]


def _reference_logits(path: str, x, config: BenchConfig) -> np.ndarray:
    """Logits of the reference (an FP32 artifact or a checkpoint run eagerly) on x."""
    (subject, *_) = subjects_for(path, replace(config, compile=False))
    try:
        runner = subject.load(replace(config, threads=None, precision_hint=None, provider=None, compute_units=None))
    except NotRunnable as why:
        raise BadInput(f"reference {path} cannot run here: {why}") from None
    return run_batched(runner.run, x, config.settings.eval_batch, subject.fixed_batch)


# ---- data ---------------------------------------------------------------------------------------

def load_images(spec: str, options: ReadOptions = ReadOptions()) -> ImageSet:
    """mixer_edge's data sources, plus the edge script's raw-image .npz ('images', 'labels')."""
    if spec.endswith(".npz") and Path(spec).is_file():
        d = read_npz(Path(spec))
        return ImageSet(d.images, d.labels, d.classes or (), spec)
    return load_data(spec, options)


def evaluation_images(subject: Subject, data: ImageSet, config: BenchConfig) -> tuple:
    """(raw images, labels as model outputs or None, what they are): by default every image the
    model was not trained on and the artifact not calibrated on (identity.select, by content)."""
    # A streamed folder stays lazy through the selection (identity.subset indexes it); its images
    # are decoded one at a time when the caller preprocesses them.
    raw = Data(data.images, data.labels, data.classes or None, data.spec)
    part, about = select(raw, config.images, subject.identity, config.limit, keys=data.keys)
    labels, how = model_labels(subject.identity, part)
    return part.images, labels, {**about, "labels": how}


# ---- the benchmark ------------------------------------------------------------------------------

def benchmark(paths, config: BenchConfig, on_result: Callable[[dict], None] | None = None) -> dict:
    """Benchmark every artifact / checkpoint; returns the result document (runtime/results' schema).
    A Ctrl-C propagates: the caller writes nothing."""
    subjects = [s for p in paths for s in subjects_for(p, config)]
    if not subjects:
        raise BadInput("nothing to benchmark: give artifact folders or checkpoints")
    data = load_images(config.data, config.read)
    for size in dict.fromkeys(tuple(s.preprocess.size) for s in subjects):   # once per model input size
        warn_small(data, size)
    watch = Watch()   # power mode, clocks, load and temperatures around the whole run
    reference = config.reference or next((str(s.path) for s in subjects if s.target == "pytorch-eager"), None)
    inputs: dict[str, tuple] = {}   # one model input (held, or Batches) per (image selection, preprocess), shared
    results = []
    for s in subjects:
        images, labels, about = evaluation_images(s, data, config)
        key = json.dumps([about["fingerprint"], s.preprocess.to_dict()])
        if key not in inputs:
            x = model_inputs(images, s.preprocess)   # held, or made a batch at a time when too large
            inputs[key] = (x, None if reference is None else _reference_logits(reference, x, config))
        x, ref = inputs[key]
        entry = bench_subject(s, x, labels, config, ref, reference)
        entry["data"] = about
        results.append(entry)
        if on_result:
            on_result(entry)
    return document(results, device_info(config.device_name), _versions(), config.settings, TOOL, config.data,
                    watch.finish(config.compute_units))


def bench_subject(s: Subject, x, labels, config: BenchConfig, ref_logits=None,
                  reference: str | None = None) -> dict:
    base = dict(artifact=str(s.path), name=s.name, target=s.target, precision=s.precision, sha256=s.sha256,
                size_bytes=s.size_bytes, quantization=s.quantization, validation=s.validation)
    import_library(s.backend)
    mark = mark_memory()
    t0 = time.perf_counter()
    try:
        runner = s.load(config)
        load_s = time.perf_counter() - t0
        check = None if s.manifest is None else device_check(s.path, s.manifest, runner.run, s.fixed_batch)
        others = OthersCPU()   # what other processes took of the CPUs while this row was timed
        speed = measure_speed(runner.run, x, config.settings, s.fixed_batch, memory=mark,
                              batch_range=runner.config.get("batch_range"))
        load = load_entry(others.cores())
        logits = run_batched(runner.run, x, config.settings.eval_batch, s.fixed_batch)
    except NotRunnable as why:   # the runtime, a GPU, macOS, a working torch.compile: missing here
        return result_entry(**base, status="not-run", reason=str(why))
    agree = None if ref_logits is None else agreement(ref_logits, logits, reference)
    memory = process_memory(mark)   # read before profiling, which compiles the model a second time
    profile = profile_subject(s, x, speed["latency_batch"], config) if config.profile else None
    return result_entry(
        **base, status="ok", runtime={**runner.config, "what": runner.what}, load_s=load_s, **speed,
        **memory, accuracy=accuracy(logits, labels), agreement=agree, device_check=check,
        load=load, profile=profile)


def profile_subject(s: Subject, x, batch: int, config: BenchConfig) -> dict:
    """Where the time goes, per op type, from the runtime's own profiler (runtime/profile.py), on
    its own load of the artifact after the timing: a profiler's overhead never touches the timed
    figures. A runtime without a profiler mixer-edge reads is recorded as not run, with why."""
    backend_profile = getattr(s.backend, "profile", None)
    if s.manifest is None or backend_profile is None:
        return {"status": "not-run", "reason": f"{s.target}: no runtime profiler read here "
                                               f"(profiles come from onnxruntime and openvino artifacts)"}
    opt = Options(threads=config.threads, precision_hint=config.precision_hint, provider=config.provider)
    nodes = backend_profile(s.path, s.manifest, opt, tile(x, batch), config.profile)
    return {"status": "ok", **summarize(nodes, config.profile, batch, s.backend.LIBRARY)}


def _versions() -> dict:
    out = {**base_versions(), **versions()}
    for name in RUNTIME_MODULES:
        mod = sys.modules.get(name)
        if mod is not None and hasattr(mod, "__version__"):
            out[name] = mod.__version__
    return out


def write_results(path, doc: dict) -> None:
    atomic_write_json(path, doc)
