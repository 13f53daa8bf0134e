"""The places where verl 0.9 cannot run on a CPU through configuration alone, worked around in place.

Each patch names the verl line it works around and checks that the function it wraps is still the one it was
written for (verl 0.9.x); all are installed only when :mod:`ktae.integrations.verl_cpu` is loaded (selected by
``VERL_USE_EXTERNAL_MODULES``), each when its verl module is imported (nothing is imported early):

- the trainer's process-group backend (acts only on the ``cpu`` platform);
- the ``hf`` entries of verl's two rollout registries (used only with ``actor_rollout_ref.rollout.name=hf``).

(verl's ``is_trl_available`` with trl >= 1 concerns every device: the plug-in itself fixes it,
:mod:`ktae.integrations.verl.trl_compat`.)
"""
from __future__ import annotations

import functools
import inspect
from typing import Any

import wrapt

_WRAPPED = "__ktae_verl_cpu__"
ROLLOUT = "hf"  # actor_rollout_ref.rollout.name of ktae.integrations.verl_cpu.rollout


class UnsupportedVerlError(ImportError):
    """verl changed where a CPU patch applies: the runtime would not know what it runs."""


def _on_cpu() -> bool:
    from verl.utils.device import get_device_name

    return get_device_name() == "cpu"


def _expect(func: Any, params: list[str], where: str) -> None:
    try:
        found = list(inspect.signature(func).parameters)[: len(params)]
    except (TypeError, ValueError):
        found = None
    if found != params:
        raise UnsupportedVerlError(
            f"ktae's verl CPU runtime supports verl>=0.9,<0.10: {where} is not ({', '.join(params)}, ...) here"
        )


def _gloo_process_group(module: Any) -> None:
    """verl 0.9.1 ``utils/distributed.py`` line 89, ``initialize_global_process_group_ray``::

        backend = backend or f"cpu:gloo,{get_device_name()}:{get_nccl_backend()}"

    is ``"cpu:gloo,cpu:gloo"`` on the CPU platform, which torch refuses (``Duplicate device type cpu``). The
    trainer workers (``workers/engine_workers.py``, which imported the function by name) get plain ``gloo``.
    """
    original = module.initialize_global_process_group_ray
    if hasattr(original, _WRAPPED):
        return
    _expect(original, ["timeout_second", "backend"], "verl.utils.distributed.initialize_global_process_group_ray")

    @functools.wraps(original)
    def initialize_global_process_group_ray(timeout_second: Any = None, backend: Any = None) -> Any:
        if backend is None and _on_cpu():
            backend = "gloo"
        return original(timeout_second=timeout_second, backend=backend)

    setattr(initialize_global_process_group_ray, _WRAPPED, original)
    module.initialize_global_process_group_ray = initialize_global_process_group_ray


def _rollout_registry(module: Any) -> None:
    """verl 0.9.1 ``workers/rollout/base.py`` ``_ROLLOUT_REGISTRY`` (a dict with no register function, unlike
    ``replica.RolloutReplicaRegistry``) lists vllm, sglang and trtllm: the ``hf`` adapter is added to it."""
    registry = getattr(module, "_ROLLOUT_REGISTRY", None)
    if not isinstance(registry, dict):
        raise UnsupportedVerlError(
            "ktae's verl CPU runtime supports verl>=0.9,<0.10: verl.workers.rollout.base._ROLLOUT_REGISTRY is gone"
        )
    registry.setdefault((ROLLOUT, "async"), "ktae.integrations.verl_cpu.rollout.HFServerAdapter")


def _replica_registry(module: Any) -> None:
    def load() -> type:
        from ktae.integrations.verl_cpu.rollout import HFReplica

        return HFReplica

    module.RolloutReplicaRegistry.register(ROLLOUT, load)


#: verl module -> what to do once it is imported
PATCHES = {
    "verl.workers.engine_workers": _gloo_process_group,
    "verl.workers.rollout.base": _rollout_registry,
    "verl.workers.rollout.replica": _replica_registry,
}


def install() -> None:
    for module, patch in PATCHES.items():
        wrapt.register_post_import_hook(patch, module)
