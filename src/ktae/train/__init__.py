"""Training: GRPO/DAPO with or without KTAE, one readable loop (:func:`train`), presets, the embedded task.

>>> from ktae.train import make_config, train
>>> run_dir = train(make_config("dapo-ktae", steps=20, seed=1))     # doctest: +SKIP
>>> run_dir = train(steps=20, estimator="grpo")                       # doctest: +SKIP
"""
from ktae.train.config import TrainConfig, make_config, parse_args
from ktae.train.presets import PRESETS

__all__ = ["TrainConfig", "make_config", "parse_args", "train", "PRESETS"]


def train(*args, **kwargs):
    """See :func:`ktae.train.loop.train` (imported lazily: torch and transformers load only when training)."""
    from ktae.train.loop import train as _train

    return _train(*args, **kwargs)
