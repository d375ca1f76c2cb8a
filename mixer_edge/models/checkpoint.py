"""Our own checkpoint: one safetensors file whose header carries the JSON metadata, plus a
readable JSON sidecar with the file's sha256.

    model.safetensors   weights (timm key names) + header metadata {"mixer_edge": "<json>"}
    model.json          the same metadata, plus "sha256" of model.safetensors

Everything a later stage needs (config, preprocess, class names, split) is in the metadata, so
calibration, export and benchmarks never guess.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import BadInput
from ..runtime.artifact import atomic_write_bytes, atomic_write_json, sha256_file
from ..runtime.identity import pack_keys, unpack_keys
from .mixer import MixerConfig, MlpMixer

FORMAT = "mixer-edge-checkpoint"
SCHEMA = 1
WEIGHTS_NAME = "model.safetensors"


@dataclass(frozen=True)
class Checkpoint:
    model: MlpMixer
    preprocess: "object"           # data.preprocess.Preprocess
    classes: tuple[str, ...]
    meta: dict = field(default_factory=dict)  # everything else: data spec, split, metrics, versions
    path: Path | None = None
    sha256: str | None = None

    @property
    def config(self) -> MixerConfig:
        return self.model.config

    @property
    def split(self):
        """The train / calib / eval split the model was trained with (the default for foreign weights)."""
        from ..data.dataset import SplitSpec

        return SplitSpec(**self.meta["split"]) if self.meta.get("split") else SplitSpec()

    @property
    def trained_keys(self):
        """Content keys of the images the model was trained on (empty for foreign weights)."""
        return self._keys("trained")

    @property
    def reserved_keys(self):
        """Keys no evaluation may use: the training images and the training data's calib split."""
        import numpy as np

        return np.union1d(self.trained_keys, self._keys("calibration_split"))

    def _keys(self, name: str):
        return unpack_keys((self.meta.get("images") or {}).get(name, ""), f"{self.path or 'checkpoint'} metadata")

    @property
    def classes_named(self) -> bool:
        """False for foreign weights whose outputs are bare indices ("0".."999")."""
        return bool(self.meta.get("classes_named", True))

    @property
    def identity(self) -> dict:
        """What an artifact manifest says of the model's classes and reserved images (the runtime's
        model_labels and select read it the same way for a checkpoint)."""
        return {"classes": list(self.classes), "classes_named": self.classes_named,
                "images": {"reserved": pack_keys(self.reserved_keys)}}



def versions() -> dict:
    import numpy

    from .. import __version__
    return {"mixer_edge": __version__, "torch": torch.__version__, "numpy": numpy.__version__}



def save_checkpoint(out_dir, model: MlpMixer, preprocess, classes, meta: dict | None = None) -> Path:
    """Write out_dir/model.safetensors and out_dir/model.json atomically; returns the weights path."""
    from safetensors.torch import save

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if len(classes) != model.config.num_classes:
        raise BadInput(f"{len(classes)} class names for a model with {model.config.num_classes} outputs")
    metadata = {
        "format": FORMAT, "schema": SCHEMA, "config": model.config.to_dict(),
        "preprocess": preprocess.to_dict(), "classes": list(classes), **(meta or {}),
        "versions": versions(),
    }
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    blob = save(tensors, metadata={"mixer_edge": json.dumps(metadata)})
    weights = out_dir / WEIGHTS_NAME
    atomic_write_bytes(weights, blob)
    sidecar = {**metadata, "sha256": hashlib.sha256(blob).hexdigest(), "weights": WEIGHTS_NAME}
    atomic_write_json(out_dir / "model.json", sidecar)
    return weights


def resolve_checkpoint_path(path) -> Path:
    """A checkpoint is named by its .safetensors file or by the folder that holds model.safetensors."""
    p = Path(path)
    if p.is_dir():
        p = p / WEIGHTS_NAME
    if not p.is_file():
        raise BadInput(f"checkpoint not found: {path} (give a .safetensors file or a folder with {WEIGHTS_NAME})")
    return p


def read_metadata(path: Path) -> dict | None:
    """The mixer_edge metadata of a safetensors file, or None when it is someone else's file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("mixer_edge")
    except Exception as e:  # safetensors raises its own error types for truncated / foreign bytes
        raise BadInput(f"{path} is not a readable safetensors file ({type(e).__name__}: {e})") from None
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise BadInput(f"{path} has corrupt mixer-edge metadata ({e})") from None


def load_checkpoint(path) -> Checkpoint:
    """Load our own checkpoint (file or folder). Never unpickles: safetensors + JSON only."""
    from safetensors.torch import load_file

    from ..data.preprocess import Preprocess

    weights = resolve_checkpoint_path(path)
    meta = read_metadata(weights)
    if meta is None or meta.get("format") != FORMAT:
        raise BadInput(f"{weights} is a safetensors file but not a mixer-edge checkpoint "
                       f"(no '{FORMAT}' metadata); load timm or Google weights with load_pretrained")
    if meta.get("schema") != SCHEMA:
        raise BadInput(f"{weights} has checkpoint schema {meta.get('schema')}; this mixer-edge reads schema {SCHEMA}")
    model = MlpMixer(MixerConfig.from_dict(meta["config"]))
    state = load_file(str(weights))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BadInput(f"{weights} does not match its own config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.eval()
    rest = {k: v for k, v in meta.items() if k not in ("config", "preprocess", "classes")}
    return Checkpoint(model=model, preprocess=Preprocess.from_dict(meta["preprocess"]),
                      classes=tuple(meta["classes"]), meta=rest, path=weights, sha256=sha256_file(weights))
