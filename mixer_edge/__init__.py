"""mixer-edge: MLP-Mixer image classifiers from PyTorch to edge devices.

Public API (importing this needs only torch and numpy; backends load when used):
    create_model, list_models, load_pretrained, load_checkpoint, save_checkpoint, Preprocess, load_data,
    export
"""
__version__ = "0.1.0"

from .data.preprocess import Preprocess
from .models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .models.mixer import MixerConfig, MlpMixer
from .models.variants import create_model, list_models


def load_pretrained(path, **overrides):
    """Load official Google .npz, timm state dicts (.pth/.bin/.safetensors) or our checkpoints."""
    from .models.weights import load_pretrained as _load

    return _load(path, **overrides)


def load_data(spec: str):
    """Load a data source by spec string: 'digits', 'mnist:DIR', 'cifar10:DIR', 'imagefolder:DIR'."""
    from .data.sources import load_data as _load

    return _load(spec)


def export(checkpoint_or_model, **kwargs):
    """Export a checkpoint to one validated artifact; see mixer_edge.export.export."""
    from .export import export as _export

    return _export(checkpoint_or_model, **kwargs)


__all__ = ["export", "__version__", "create_model", "list_models", "load_pretrained", "load_checkpoint",
           "save_checkpoint", "Checkpoint", "MixerConfig", "MlpMixer", "Preprocess", "load_data"]
