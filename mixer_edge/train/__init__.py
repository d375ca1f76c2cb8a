"""Training and evaluation."""
from .config import TrainConfig
from .evaluate import evaluate, predict_logits, topk_accuracy


def train(cfg: TrainConfig):
    from .loop import train as _train

    return _train(cfg)


__all__ = ["TrainConfig", "train", "evaluate", "predict_logits", "topk_accuracy"]
