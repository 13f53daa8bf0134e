"""A CPU runtime for verl 0.9.x: verl's own ``main_ppo`` (both trainers, FSDP2 updates, weight sync, checkpoints)
on a machine without an accelerator, to rehearse a verl job before the GPUs.

Selected by naming this module in ``VERL_USE_EXTERNAL_MODULES`` (verl imports it in every process, the Ray workers
included; ``ktae verl --cpu`` does that for you). Importing it *is* the selection, for the importing process: do
not import it where verl should use an accelerator. Nothing else in ktae imports it. On import it

1. registers verl's ``cpu`` platform (:mod:`.platform`) and selects it (``VERL_PLATFORM=cpu`` unless set), and
   makes verl's engine registry give the FSDP engine for it (``VERL_ENGINE_DEVICE=cuda``: verl 0.9.1
   ``workers/engine/base.py`` ``EngineRegistry.get_engine_cls`` registers FSDP for cuda/npu only, and its engine
   code is device-agnostic);
2. registers the ``hf`` rollout (:mod:`.rollout`: transformers ``generate()`` in a Ray actor, weights from verl's
   sync);
3. installs the patches of :mod:`.patches` (the process-group backend, the rollout registry).

The configuration a CPU needs is :data:`SETTINGS`; ``ktae verl --cpu`` applies it to the composed config, and
``python -m ktae.integrations.verl_cpu`` prints it as Hydra overrides for the plain ``main_ppo`` route.
"""
from __future__ import annotations

import os
from typing import Any

#: the verl releases this runtime is written against (checked on import)
SUPPORTED_VERL = ">=0.9,<0.10"
#: Ray's shared-memory object store: small, the machine is shared (bytes)
OBJECT_STORE_BYTES = 1 << 30

#: verl config key -> value on a CPU, with why (``ktae verl --cpu`` sets them, replacing the user's values)
SETTINGS: dict[str, tuple[Any, str]] = {
    "trainer.device": ("cpu", "the device of verl's workers"),
    "trainer.nnodes": (1, "one machine"),
    "trainer.n_gpus_per_node": (1, "one trainer process (a logical Ray GPU)"),
    "ray_kwargs.ray_init.num_gpus": (1, "verl's resource pools ask Ray for one accelerator per trainer process"),
    "ray_kwargs.ray_init.num_cpus": (16, "logical CPUs for verl's actors (TransferQueue, reward, agent loop); not cores"),
    "ray_kwargs.ray_init.object_store_memory": (OBJECT_STORE_BYTES, "a small object store"),
    "ray_kwargs.ray_init.include_dashboard": (False, "no dashboard process"),
    "transfer_queue.backend.SimpleStorage.num_data_storage_units": (1, "one storage actor"),
    "actor_rollout_ref.actor.strategy": ("fsdp2", "FSDP1 pins device_id=0 (an accelerator)"),
    "actor_rollout_ref.ref.strategy": ("fsdp2", "FSDP1 pins device_id=0 (an accelerator)"),
    "critic.strategy": ("fsdp2", "FSDP1 pins device_id=0 (an accelerator)"),
    "actor_rollout_ref.actor.use_torch_compile": (False, "no compilation for a few steps"),
    "actor_rollout_ref.actor.fsdp_config.use_torch_compile": (False, "no compilation for a few steps"),
    "actor_rollout_ref.ref.fsdp_config.use_torch_compile": (False, "no compilation for a few steps"),
    "actor_rollout_ref.model.override_config.attn_implementation": ("sdpa", "flash_attention_2 needs CUDA"),
    "actor_rollout_ref.rollout.name": ("hf", "transformers generate() on the CPU"),
    "actor_rollout_ref.rollout.tensor_model_parallel_size": (1, "one rollout server per trainer process"),
    "actor_rollout_ref.rollout.data_parallel_size": (1, "one rollout server per trainer process"),
    "actor_rollout_ref.rollout.pipeline_model_parallel_size": (1, "one rollout server per trainer process"),
    "actor_rollout_ref.rollout.checkpoint_engine.backend": ("naive", "weights go to the rollout in verl's colocated sync"),
    "actor_rollout_ref.rollout.agent.num_workers": (1, "one agent-loop worker"),
    "reward.num_workers": (1, "one reward worker"),
    "data.dataloader_num_workers": (0, "the data loader in the trainer's process"),
}

#: environment of every verl process (set on import unless already set)
ENVIRONMENT = {"VERL_PLATFORM": "cpu", "VERL_ENGINE_DEVICE": "cuda", "VERL_ENGINE_VENDOR": "nvidia",
               "TOKENIZERS_PARALLELISM": "false"}


def check_verl_version() -> str:
    import verl
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    version = getattr(verl, "__version__", "0")
    if Version(version) not in SpecifierSet(SUPPORTED_VERL):
        raise ImportError(
            f"ktae's verl CPU runtime supports verl{SUPPORTED_VERL}, but verl {version} is installed: "
            f"pip install \"verl{SUPPORTED_VERL}\""
        )
    return version


def verl_defaults() -> Any:
    """verl's composed default ``ppo_trainer`` config (no overrides)."""
    import verl.trainer.main_ppo as main_ppo
    from hydra import compose, initialize_config_dir

    folder = os.path.join(os.path.dirname(main_ppo.__file__), "config")
    with initialize_config_dir(config_dir=folder, version_base=None):
        return compose(config_name="ppo_trainer")


def hydra_overrides(defaults: Any = None) -> list[str]:
    """:data:`SETTINGS` as Hydra command-line overrides, ``+key=value`` for the keys verl's default config lacks.

    Args:
        defaults: verl's composed default config (None: :func:`verl_defaults`).
    """
    from omegaconf import OmegaConf

    defaults = verl_defaults() if defaults is None else defaults
    out = []
    for key, (value, _) in SETTINGS.items():
        parent, leaf = key.rsplit(".", 1)
        section = OmegaConf.select(defaults, parent)
        new = section is None or leaf not in section.keys()  # keys() also lists the ones left unset ("???")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        out.append(f"{'+' if new else ''}{key}={text}")
    return out


def apply(config: Any) -> list[str]:
    """Set :data:`SETTINGS` on a composed verl config (in place).

    Returns:
        One line per value of the user's that was replaced.
    """
    from omegaconf import OmegaConf, open_dict

    changed = []
    with open_dict(config):
        for key, (value, why) in SETTINGS.items():
            old = OmegaConf.select(config, key, default=None)
            if old is not None and old != value:
                changed.append(f"{key}={old} -> {value} ({why})")
            OmegaConf.update(config, key, value, merge=True, force_add=True)
    return changed


def install() -> None:
    """Register the platform, the rollout and the patches (idempotent)."""
    check_verl_version()
    for key, value in ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    from ktae.integrations.verl_cpu import patches, platform  # noqa: F401 - importing platform registers it

    patches.install()


install()
