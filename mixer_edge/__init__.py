"""mixer-edge: MLP-Mixer image classifiers from PyTorch to edge devices.

Public API (importing this needs only torch and numpy; backends load when used):
    create_model, list_models, load_pretrained, load_checkpoint, save_checkpoint, Preprocess, load_data,
    export

Names resolve on first use (PEP 562), so `mixer-edge --version` and `--help` start without torch.
"""
__version__ = "0.1.0"

_API = {  # public name -> "module:attribute", imported on first access
    "Preprocess": "data.preprocess:Preprocess",
    "Checkpoint": "models.checkpoint:Checkpoint",
    "load_checkpoint": "models.checkpoint:load_checkpoint",
    "save_checkpoint": "models.checkpoint:save_checkpoint",
    "MixerConfig": "models.mixer:MixerConfig",
    "MlpMixer": "models.mixer:MlpMixer",
    "create_model": "models.variants:create_model",
    "list_models": "models.variants:list_models",
    "load_pretrained": "models.weights:load_pretrained",   # official .npz, timm .pth/.bin/.safetensors, ours
    "load_data": "data.sources:load_data",                 # 'digits', 'mnist:DIR', 'imagefolder:DIR', ...
    "export": "export:export",                             # one validated artifact; see mixer_edge.export
}


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'mixer_edge' has no attribute {name!r}")
    import importlib

    module, attr = _API[name].split(":")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_API])


__all__ = ["__version__", *_API]
