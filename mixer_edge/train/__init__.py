"""Training and evaluation. Names resolve on first use, so the CLI's option tables (TrainConfig)
load without torch."""
from .config import TrainConfig

_LAZY = {"evaluate": "evaluate", "predict_logits": "evaluate"}


def train(cfg: TrainConfig):
    from .loop import train as _train

    return _train(cfg)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


__all__ = ["TrainConfig", "train", "evaluate", "predict_logits"]
