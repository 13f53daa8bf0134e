"""verl's ``cpu`` platform: the device layer verl 0.9 asks every accelerator for, answered by the CPU.

verl 0.9 routes every device question (``verl.utils.device.get_device_name``, ``get_torch_device``,
``get_device_id``, the Ray resource name, the process-group backend) through one platform object chosen by
``verl.plugin.platform.platform_manager._detect_platform_name``: ``VERL_PLATFORM`` if set, else the first
registered platform whose device is present, else ``nvidia`` — there is no CPU platform. This module registers
one under the name ``cpu`` (selected by ``VERL_PLATFORM=cpu``, which :mod:`ktae.integrations.verl_cpu` sets).
"""
from __future__ import annotations

import contextlib
import os
import types
from typing import Any

import torch
from verl.plugin.platform import PlatformBase, PlatformRegistry

NAME = "cpu"


def _memory() -> tuple[int, int]:
    """(free, total) bytes of this machine's memory."""
    try:
        import psutil

        info = psutil.virtual_memory()
        return int(info.available), int(info.total)
    except ImportError:  # pragma: no cover - psutil ships with Ray
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return pages * size, pages * size


class _Stream:
    """What verl does with a CUDA stream (wait, synchronize, use as a context) is immediate on the CPU."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def wait_stream(self, other: Any) -> None:
        pass

    def wait_event(self, event: Any) -> None:
        pass

    def record_event(self, event: Any = None) -> _Event:
        return event or _Event()

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class _Event(_Stream):
    def record(self, stream: Any = None) -> None:
        pass

    def query(self) -> bool:
        return True

    def elapsed_time(self, other: Any) -> float:
        return 0.0


def _zero(*args: Any, **kwargs: Any) -> int:
    return 0


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


def _device_module() -> types.ModuleType:
    """A ``torch.cuda``-shaped module for the CPU: ``torch.cpu``'s functions, and the rest of what verl calls on
    ``get_torch_device()`` (empty_cache, memory counters, mem_get_info, streams, RNG state, device name)."""
    module = types.ModuleType("ktae_verl_cpu_device")
    module.__dict__.update({name: getattr(torch.cpu, name) for name in dir(torch.cpu) if not name.startswith("_")})
    module.__dict__.update(
        is_available=lambda: True, device_count=lambda: 1, current_device=lambda: NAME, set_device=_nothing,
        synchronize=_nothing, empty_cache=_nothing, ipc_collect=_nothing, reset_peak_memory_stats=_nothing,
        memory_allocated=_zero, memory_reserved=_zero, max_memory_allocated=_zero, max_memory_reserved=_zero,
        set_per_process_memory_fraction=_nothing, mem_get_info=lambda *a, **k: _memory(),
        get_device_name=lambda *a, **k: "CPU", get_rng_state=lambda *a, **k: torch.get_rng_state(),
        set_rng_state=lambda state, *a, **k: torch.set_rng_state(state), manual_seed=torch.manual_seed,
        manual_seed_all=torch.manual_seed, Stream=_Stream, Event=_Event, stream=lambda s=None: contextlib.nullcontext(),
        current_stream=lambda *a, **k: _Stream(), default_stream=lambda *a, **k: _Stream(),
        is_initialized=lambda: True, get_device_capability=lambda *a, **k: (None, None),
    )
    return module


_DEVICE_MODULE = _device_module()


@PlatformRegistry.register(platform=NAME)
class PlatformCPU(PlatformBase):
    """The CPU as verl's device: gloo collectives, ``cpu`` tensors, one logical Ray ``GPU`` per trainer process.

    verl's resource pools always ask Ray for an accelerator per worker (``single_controller/ray/base.py``
    ``RayResourcePool(use_gpu=True)`` in ``ResourcePoolManager.create_resource_pool``), so the CPU runtime
    declares logical GPUs to Ray (``ray_kwargs.ray_init.num_gpus``) and this platform names that resource.
    """

    @property
    def device_name(self) -> str:
        return NAME

    @property
    def vendor_name(self) -> str:
        return NAME

    @property
    def device_module(self) -> types.ModuleType:
        return _DEVICE_MODULE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        return os.environ.get("VERL_PLATFORM", "").strip().lower() == NAME  # never auto-detected

    def current_device(self) -> str:  # type: ignore[override] - verl passes it to .to()/device=: "cpu" works
        return NAME

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        pass

    def synchronize(self, device_index: int | None = None) -> None:
        pass

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        pass

    def empty_cache(self) -> None:
        pass

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"  # what Ray sets for the logical GPUs; nothing reads it on a CPU

    @contextlib.contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        pass

    def profiler_stop(self) -> None:
        pass

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None
