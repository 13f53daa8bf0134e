"""verl 0.9 with trl >= 1 in one environment (``ktae[verl,trl]``): verl's model patches ask ``is_trl_available``
and then import a class trl 1.x no longer has, so no model can be built, on any device. Installed by the plug-in."""
from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any

from ktae.integrations.verl.version import WRAPPED, UnsupportedVerlError

__all__ = ["MODULE", "patch_is_trl_available", "trl_has_value_head"]

#: the verl module whose ``is_trl_available`` is patched
MODULE = "verl.models.transformers.monkey_patch"


def trl_has_value_head() -> bool:
    """Whether the installed trl still has ``AutoModelForCausalLMWithValueHead`` (where verl 0.9 looks for it)."""
    for name in ("trl.experimental.ppo", "trl"):
        try:
            if hasattr(importlib.import_module(name), "AutoModelForCausalLMWithValueHead"):
                return True
        except ImportError:
            continue
    return False


def patch_is_trl_available(module: Any) -> None:
    """verl 0.9.1 ``models/transformers/monkey_patch.py`` lines 352-356, ``apply_monkey_patch``::

        if is_trl_available():
            try: from trl.experimental.ppo import AutoModelForCausalLMWithValueHead
            except ImportError: from trl import AutoModelForCausalLMWithValueHead

    fails on every model when a trl without that class is installed (trl >= 1.x): the FSDP engine cannot build
    the actor. The class is only there to be patched; without it there is nothing to patch, so this module's
    ``is_trl_available`` also asks whether trl still has it.
    """
    original = module.is_trl_available
    if hasattr(original, WRAPPED):
        return
    if not callable(original) or inspect.signature(original).parameters:
        raise UnsupportedVerlError(f"ktae's verl plugin supports verl>=0.9,<0.10: {MODULE}.is_trl_available is "
                                   "not a function of no arguments here")

    @functools.wraps(original)
    def is_trl_available() -> bool:
        return bool(original()) and trl_has_value_head()

    setattr(is_trl_available, WRAPPED, original)
    module.is_trl_available = is_trl_available
