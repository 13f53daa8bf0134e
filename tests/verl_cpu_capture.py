"""Test-only verl module (named in VERL_USE_EXTERNAL_MODULES): records what verl's actor trains on.

In the trainer worker, ``engine_workers.ActorRolloutRefWorker.update_actor`` hands the batch of the PPO update (a
TensorDict, after verl's dispatch has fetched it from the TransferQueue in the v1 trainer) to
``TrainingWorker.train_mini_batch(data=...)`` (both trainers); this wraps the latter to save ``advantages``, ``responses`` and ``response_mask`` (jagged rows as lists)
to ``$KTAE_TEST_CAPTURE_DIR/update_<pid>_<n>.pt`` before verl trains on them.
"""
import functools
import itertools
import os

import torch
import wrapt

_counter = itertools.count()


def _rows(value):
    if getattr(value, "is_nested", False):
        return [row.clone() for row in value.unbind()]
    return [row.clone() for row in value]


def _wrap(module):
    cls = module.TrainingWorker
    original = cls.train_mini_batch
    if getattr(original, "__captured__", False):
        return

    @functools.wraps(original)  # keeps verl's @register dispatch attributes
    def train_mini_batch(self, *args, **kwargs):
        data = kwargs["data"] if "data" in kwargs else args[0]
        folder = os.environ.get("KTAE_TEST_CAPTURE_DIR")
        if folder:
            os.makedirs(folder, exist_ok=True)
            record = {key: _rows(data[key]) for key in ("advantages", "responses", "response_mask")
                      if key in data.keys()}
            torch.save(record, os.path.join(folder, f"update_{os.getpid()}_{next(_counter)}.pt"))
        return original(self, *args, **kwargs)

    train_mini_batch.__captured__ = True
    cls.train_mini_batch = train_mini_batch


wrapt.register_post_import_hook(_wrap, "verl.workers.engine_workers")
