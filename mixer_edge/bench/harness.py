"""`mixer-edge bench`: artifacts and PyTorch baselines measured in this process, with the very
functions the on-device script uses (mixer_edge/runtime/edge_bench.py), so both write one schema.

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

from ..data.dataset import ImageSet
from ..errors import BadInput, MissingDependency, UnknownName
from ..export import registry
from ..export.artifact import MANIFEST, load_artifact
from ..export.base import LoadedRunner, NotRunnableHere
from ..models.checkpoint import WEIGHTS_NAME
from ..runtime import edge_bench as eb

TOOL = "mixer-edge bench"
RUNTIME_MODULES = ("onnxruntime", "openvino", "nncf", "tensorrt", "coremltools")
# A bench option -> the load_runner parameter names that take it, first match wins.
RUNNER_PARAMS = {"threads": ("threads", "num_threads"), "precision_hint": ("precision_hint",),
                 "provider": ("provider", "device")}


@dataclass(frozen=True)
class BenchConfig:
    data: str
    settings: eb.Settings = field(default_factory=eb.Settings)
    threads: int | None = None
    precision_hint: str | None = None
    provider: str | None = None
    limit: int | None = None
    images: str = "held-out"            # held-out (not trained or calibrated on, by content) | all
    reference: str | None = None        # FP32 artifact or checkpoint; default: a checkpoint benchmarked
    compile: bool = False               # also benchmark torch.compile for each checkpoint
    device_name: str | None = None

    def __post_init__(self):
        if self.limit is not None and self.limit < 1:
            raise BadInput(f"--limit must be at least 1, got {self.limit}")
        if self.images not in eb.SELECTIONS:
            raise BadInput(f"unknown image selection {self.images!r}; accepted: {', '.join(eb.SELECTIONS)}")
        if self.threads is not None and self.threads < 1:
            raise BadInput(f"--threads must be at least 1, got {self.threads}")


def make_settings(**kwargs) -> eb.Settings:
    """edge_bench.Settings, its complaints raised as mixer-edge's BadInput."""
    with _bad_input():
        return eb.Settings(**kwargs)


class _bad_input:
    """edge_bench cannot import mixer_edge, so it raises its own BenchError; we re-raise it as ours."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is not None and issubclass(kind, eb.BenchError):
            raise BadInput(str(exc)) from None
        return False


class NotRun(Exception):
    """This subject cannot run here; the message says what it needs."""


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
    quantization: dict | None = None    # an INT8 artifact's recipe in brief (edge_bench.quantization_summary)
    validation: dict | None = None      # an artifact's export check, as its manifest has it (validation_summary)
    manifest: dict | None = None        # an artifact's manifest (its golden set is checked before timing)


def subjects_for(path: str, config: BenchConfig) -> list[Subject]:
    p = Path(path)
    if p.is_dir() and (p / MANIFEST).is_file():
        return [_artifact_subject(p)]
    if p.suffix == ".safetensors" or (p.is_dir() and (p / WEIGHTS_NAME).is_file()):
        ck = _load_checkpoint(p)
        subjects = [_checkpoint_subject(ck, "pytorch-eager", _eager_loader(ck))]
        if config.compile:
            subjects.append(_checkpoint_subject(ck, "pytorch-compile", _compile_loader(ck)))
        return subjects
    raise BadInput(f"{path} is neither an artifact folder (with {MANIFEST}) nor a checkpoint "
                   f"(a .safetensors file or a folder with {WEIGHTS_NAME})")


def _artifact_subject(path: Path) -> Subject:
    from ..data.preprocess import Preprocess

    art = load_artifact(path)  # checks every file's sha256
    m = art.manifest
    return Subject(path=path, name=path.name, target=m["target"], precision=m["precision"],
                   sha256=eb.file_hashes(m), size_bytes=eb.artifact_size(path, m),
                   preprocess=Preprocess.from_dict(m["preprocess"]), num_classes=len(m["classes"]),
                   identity={k: m[k] for k in ("classes", "classes_named", "images") if k in m},
                   fixed_batch=eb.batch_axis(m), load=lambda cfg: _registry_runner(art, cfg),
                   quantization=eb.quantization_summary(m), validation=eb.validation_summary(m), manifest=m)


def _load_checkpoint(path: Path):
    from ..models.checkpoint import load_checkpoint

    return load_checkpoint(path)


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
    try:
        target = registry.get_target(art.target)
    except UnknownName as e:
        raise NotRun(str(e)) from None
    status = target.status() if hasattr(target, "status") else None
    if status is not None and not status.runs_here:
        raise NotRun(status.reason or f"the {art.target} runtime does not run on this machine")
    kwargs, not_applied = runner_options(target.load_runner, config)
    try:
        runner = target.load_runner(art, **kwargs)
    except NotRunnableHere as why:
        raise NotRun(str(why)) from None
    except MissingDependency as e:
        raise NotRun(f"needs {', '.join(target.capabilities.requires)}: {e}") from None
    if not_applied:
        runner = replace(runner, config={**runner.config, "not_applied": not_applied})
    return runner


def _torch_config(config: BenchConfig) -> dict:
    import torch

    if config.threads is not None:
        torch.set_num_threads(config.threads)  # process-wide, as torch has it
    not_applied = {k: getattr(config, k) for k in ("precision_hint", "provider") if getattr(config, k) is not None}
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


class CompileFailed(Exception):
    """torch.compile (or a recompile for a new batch size) raised; recorded, never fatal."""


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
            raise NotRun(f"torch.compile failed: {type(e).__name__}: {_first_line(e)}") from None

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
        runner = subject.load(replace(config, threads=None, precision_hint=None, provider=None))
    except NotRun as why:
        raise BadInput(f"reference {path} cannot run here: {why}") from None
    return eb.predict(runner.run, x, config.settings.eval_batch, subject.fixed_batch)


# ---- data ---------------------------------------------------------------------------------------

def load_images(spec: str) -> ImageSet:
    """mixer_edge's data sources, plus the edge script's raw-image .npz ('images', 'labels')."""
    if spec.endswith(".npz") and Path(spec).is_file():
        with _bad_input():
            d = eb.read_npz(Path(spec))
        return ImageSet(d.images, d.labels, d.classes or (), spec)
    from ..data.sources import load_data

    return load_data(spec)


def evaluation_images(subject: Subject, data: ImageSet, config: BenchConfig) -> tuple:
    """(raw images, labels as model outputs or None, what they are): by default every image the
    model was not trained on and the artifact not calibrated on (edge_bench.select, by content)."""
    # A streamed folder stays lazy through the selection (edge_bench._subset indexes it); its images
    # are decoded one at a time when the caller preprocesses them.
    raw = eb.Data(data.images, data.labels, data.classes or None, data.spec)
    with _bad_input():
        part, about = eb.select(raw, config.images, subject.identity, config.limit, keys=data.keys)
        labels, how = eb.model_labels(subject.identity, part)
    return part.images, labels, {**about, "labels": how}


# ---- the benchmark ------------------------------------------------------------------------------

def benchmark(paths, config: BenchConfig, on_result: Callable[[dict], None] | None = None) -> dict:
    """Benchmark every artifact / checkpoint; returns the result document (edge_bench's schema).
    A Ctrl-C propagates: the caller writes nothing."""
    subjects = [s for p in paths for s in subjects_for(p, config)]
    if not subjects:
        raise BadInput("nothing to benchmark: give artifact folders or checkpoints")
    data = load_images(config.data)
    reference = config.reference or next((str(s.path) for s in subjects if s.target == "pytorch-eager"), None)
    inputs: dict[str, tuple] = {}   # one model input (held, or Batches) per (image selection, preprocess), shared
    results = []
    for s in subjects:
        images, labels, about = evaluation_images(s, data, config)
        key = json.dumps([about["fingerprint"], s.preprocess.to_dict()])
        if key not in inputs:
            with _bad_input():
                x = eb.model_inputs(images, s.preprocess)   # held, or made a batch at a time when too large
            inputs[key] = (x, None if reference is None else _reference_logits(reference, x, config))
        x, ref = inputs[key]
        entry = bench_subject(s, x, labels, config, ref, reference)
        entry["data"] = about
        results.append(entry)
        if on_result:
            on_result(entry)
    return eb.document(results, eb.device_info(config.device_name), _versions(), config.settings, TOOL, config.data)


def bench_subject(s: Subject, x, labels, config: BenchConfig, ref_logits=None,
                  reference: str | None = None) -> dict:
    base = dict(artifact=str(s.path), name=s.name, target=s.target, precision=s.precision, sha256=s.sha256,
                size_bytes=s.size_bytes, quantization=s.quantization, validation=s.validation)
    eb.import_runtime(s.target)
    mark = eb.mark_memory()
    t0 = time.perf_counter()
    try:
        runner = s.load(config)
        load_s = time.perf_counter() - t0
        with _bad_input():
            check = None if s.manifest is None else eb.device_check(s.path, s.manifest, runner.run, s.fixed_batch)
            speed = eb.measure_speed(runner.run, x, config.settings, s.fixed_batch, memory=mark)
            logits = eb.predict(runner.run, x, config.settings.eval_batch, s.fixed_batch)
    except (NotRun, CompileFailed) as why:
        return eb.result_entry(**base, status="not-run", reason=str(why))
    with _bad_input():
        agree = None if ref_logits is None else eb.agreement(ref_logits, logits, reference)
    return eb.result_entry(
        **base, status="ok", runtime={**runner.config, "what": runner.what}, load_s=load_s, **speed,
        **eb.process_memory(mark), accuracy=eb.accuracy(logits, labels), agreement=agree, device_check=check)


def _versions() -> dict:
    from ..models.checkpoint import versions

    out = {**eb.base_versions(), **versions()}
    for name in RUNTIME_MODULES:
        mod = sys.modules.get(name)
        if mod is not None and hasattr(mod, "__version__"):
            out[name] = mod.__version__
    return out


def write_results(path, doc: dict) -> None:
    eb.atomic_write_json(path, doc)
