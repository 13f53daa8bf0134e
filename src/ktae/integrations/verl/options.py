"""verl's ``algorithm.ktae`` section: the KTAE options (read by :func:`ktae.frontend.options.ktae_config`) and
the plug-in's own (:data:`ADAPTER_OPTIONS`), and the estimator names the plug-in registers."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ktae.core.config import KTAEConfig
from ktae.frontend.options import KTAE_ONLY, ESTIMATOR_NAMES, ktae_config, parse_estimator, plain_options
from ktae.special_tokens import special_token_ids

__all__ = ["ESTIMATORS", "ADAPTER_OPTIONS", "is_ktae_estimator", "ktae_config_from_verl", "section", "warn_after",
           "dump_options"]

#: the verl estimator names: ``ktae`` (rollout estimator from ``algorithm.ktae.rollout``) and ``<rollout>_ktae``
ESTIMATORS = tuple(name for name in ESTIMATOR_NAMES if name == KTAE_ONLY or name.endswith("_ktae"))
#: keys of ``algorithm.ktae`` that belong to the plug-in rather than to KTAEConfig, with their defaults:
#: ``warn_after`` (steps without a mixed group before a warning), ``dump_every`` (steps) and ``dump_dir`` (folder)
#: of the key-token dumps
ADAPTER_OPTIONS: dict[str, Any] = {"warn_after": 5, "dump_every": 0, "dump_dir": None}
WHERE = "algorithm.ktae"


def is_ktae_estimator(name: Any) -> bool:
    """Whether ``name`` (a string or verl's ``AdvantageEstimator``) is one of :data:`ESTIMATORS`."""
    return getattr(name, "value", name) in ESTIMATORS


def section(algorithm_config: Any) -> dict[str, Any]:
    """The ``ktae`` sub-section of verl's ``algorithm`` config as a plain dict ({} when absent)."""
    if algorithm_config is None:
        return {}
    if isinstance(algorithm_config, Mapping) or hasattr(algorithm_config, "get"):
        node = algorithm_config.get("ktae", None)
    else:
        node = getattr(algorithm_config, "ktae", None)
    return plain_options(node, WHERE)


def _algorithm_value(config: Any, key: str, default: Any) -> Any:
    if config is None:
        return default
    getter = config.get if isinstance(config, Mapping) or hasattr(config, "get") else (
        lambda k, d: getattr(config, k, d))
    value = getter(key, default)
    return default if value is None else value


def warn_after(algorithm_config: Any) -> int:
    """``algorithm.ktae.warn_after`` (default 5): consecutive steps without a mixed group before a warning."""
    value = section(algorithm_config).get("warn_after", ADAPTER_OPTIONS["warn_after"])
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{WHERE}.warn_after must be an integer >= 0 (0: never warn), got {value!r}")
    return value


def dump_options(algorithm_config: Any) -> tuple[int, str | None]:
    """``(dump_every, dump_dir)`` of ``algorithm.ktae``; ``dump_every`` 0 means no dumps.

    Raises:
        ValueError: ``dump_every`` is not a non-negative integer, or it is set without ``dump_dir``.
    """
    options = section(algorithm_config)
    every = options.get("dump_every") or 0
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise ValueError(f"{WHERE}.dump_every must be an integer >= 0 (0: no dumps), got {every!r}")
    folder = options.get("dump_dir")
    if every and not folder:
        raise ValueError(f"{WHERE}.dump_every is set but not the folder to write to: add +{WHERE}.dump_dir=DIR")
    return every, (str(folder) if folder else None)


def _rollout(name: str, options: dict[str, Any], algorithm_config: Any, norm_by_std: bool | None) -> str:
    """The rollout estimator of a verl estimator name (``ktae``: the options', Dr. GRPO without the std)."""
    fixed = parse_estimator(name)[0]
    if fixed is not None:
        if options.get("rollout") not in (None, fixed):
            raise ValueError(
                f"algorithm.adv_estimator={name} composes KTAE with {fixed!r}, but {WHERE}.rollout="
                f"{options['rollout']!r}; use adv_estimator=ktae with {WHERE}.rollout, or drop the option"
            )
        return fixed
    if norm_by_std is None:
        norm_by_std = bool(_algorithm_value(algorithm_config, "norm_adv_by_std_in_grpo", True))
    rollout = options.get("rollout") or "grpo"
    return "dr_grpo" if rollout == "grpo" and not norm_by_std else rollout


def ktae_config_from_verl(
    algorithm_config: Any, estimator: str = "ktae", tokenizer: Any = None, norm_adv_by_std_in_grpo: bool | None = None
) -> KTAEConfig:
    """Build the :class:`KTAEConfig` for one verl run.

    Args:
        algorithm_config: verl's ``algorithm`` section (DictConfig, dict or AlgoConfig); KTAE options are read from
            its ``ktae`` sub-section, whose keys are KTAEConfig fields or :data:`ADAPTER_OPTIONS`.
        estimator: the verl estimator name (one of :data:`ESTIMATORS`).
        tokenizer: the policy's tokenizer; its pad/EOS ids are ignored unless ``algorithm.ktae.ignore_token_ids``
            is set (a list, possibly empty).
        norm_adv_by_std_in_grpo: verl's switch (read from the config when None). For ``ktae`` with the GRPO
            rollout estimator, False means Dr. GRPO (no division by the std), as it does for verl's ``grpo``.

    Raises:
        ValueError: unknown estimator or option, or a ``rollout`` option that contradicts the estimator name.
    """
    name = getattr(estimator, "value", estimator)
    if not is_ktae_estimator(name):
        raise ValueError(f"estimator must be one of {sorted(ESTIMATORS)}, got {estimator!r}")
    options = section(algorithm_config)
    warn_after(algorithm_config)  # validates it
    options["rollout"] = _rollout(name, options, algorithm_config, norm_adv_by_std_in_grpo)
    defaults = {"ignore_token_ids": special_token_ids(tokenizer)} if tokenizer is not None else None
    return ktae_config(options, where=WHERE, defaults=defaults, extra=ADAPTER_OPTIONS)
