"""KTAE inside verl (``pip install "ktae[verl]"``, verl >= 0.9, < 0.10).

Importing this module (verl does it in every process through the ``verl.plugins`` entry point that ktae
ships, or through ``actor_rollout_ref.model.external_lib=ktae.integrations.verl``):

1. registers the advantage estimators ``ktae``, ``grpo_ktae``, ``dr_grpo_ktae`` and ``rloo_ktae`` with
   ``verl.trainer.ppo.core_algos.register_adv_est``, so ``algorithm.adv_estimator=ktae`` works;
2. makes the response token ids reach them. verl calls an estimator with ``token_level_rewards``,
   ``response_mask``, ``index`` (the ``uid`` of each rollout's prompt) and ``config`` (the ``algorithm``
   section) but not with the ids, so two verl functions are wrapped once each, as soon as their module is
   imported, and only act when the configured estimator is a KTAE one (other estimators pass straight through):

   - v1 trainer (default, ``trainer.use_v1=true``): ``PPOTrainer._compute_advantage`` also fetches ``responses``
     from the TransferQueue (``kv_batch_get(..., select_fields=["responses"])``) and logs ``ktae/*`` metrics;
   - legacy trainer (``trainer.use_v1=false``): ``ray_trainer.compute_advantage`` hands ``data.batch["responses"]``
     to the estimator.

Options come from ``algorithm.ktae.*`` (new keys need Hydra's ``+``: ``+algorithm.ktae.alpha=1.0``); the keys are
the fields of :class:`ktae.KTAEConfig`. ``ignore_token_ids`` defaults to the tokenizer's pad and EOS ids.
The advantages themselves are ``ktae.ktae_advantages``: this module only moves data.

Correctness: a rollout is correct when its score (the sum of its ``token_level_rewards``) is > ``threshold``; a
rollout whose ``response_mask`` is all zero is left out of its group's counts. After ``algorithm.ktae.warn_after``
(default 5) consecutive steps without a group that has both correct and wrong rollouts, a ``NoMixedGroupsWarning``
says that K is 0 and what to set.

Supported verl: :data:`SUPPORTED_VERL`, checked at import; the private names wrapped are checked (presence and
signature) before anything is wrapped, and a mismatch raises :class:`UnsupportedVerlError`. ``ktae verl`` (see
:mod:`ktae.integrations.verl_launch`) runs verl's ``main_ppo`` after these checks; ``ktae doctor``
(:mod:`ktae.integrations.doctor`) reports them, in a Ray worker too.

The module also provides verl reward functions for math (``math_score``: 1/0, ``dapo_score``: +1/-1, both with
``acc``), usable as ``reward.custom_reward_function.path=pkg://ktae.integrations.verl``.
"""
from __future__ import annotations

import contextvars
import dataclasses
import inspect
import sys
import warnings
import weakref
from collections.abc import Mapping
from typing import Any, Callable

import torch

#: the verl releases whose private names this module wraps (checked at import)
SUPPORTED_VERL = ">=0.9,<0.10"

try:
    import verl
    import wrapt
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"ktae.integrations.verl needs verl: pip install \"ktae[verl]\" (verl{SUPPORTED_VERL})"
    ) from err


class UnsupportedVerlError(ImportError):
    """The installed verl is outside the supported range, or lacks what the plugin wraps."""


def check_verl_version(version: str | None = None) -> str:
    """Raise :class:`UnsupportedVerlError` unless ``version`` (default: the installed verl's) is supported.

    Returns:
        The version string checked.
    """
    version = getattr(verl, "__version__", "unknown") if version is None else version
    try:
        ok = Version(version) in SpecifierSet(SUPPORTED_VERL)
    except InvalidVersion:
        ok = False
    if not ok:
        raise UnsupportedVerlError(
            f"ktae's verl plugin supports verl{SUPPORTED_VERL}, but verl {version} is installed: "
            f"pip install \"verl{SUPPORTED_VERL}\" (or a ktae release made for your verl)"
        )
    return version


check_verl_version()
from verl.trainer.ppo import core_algos  # noqa: E402 - after the version check

from ktae.core.advantages import ktae_parts
from ktae.core.config import KTAEConfig
from ktae.integrations._common import key_token_stats
from ktae.special_tokens import special_token_ids
from ktae.monitoring import MixedGroupWatch, mixed_groups

__all__ = [
    "ESTIMATORS",
    "SUPPORTED_VERL",
    "UnsupportedVerlError",
    "check_verl_version",
    "installation_report",
    "compute_ktae_advantage",
    "dapo_score",
    "install",
    "is_ktae_estimator",
    "ktae_config_from_verl",
    "math_score",
]

#: verl estimator name -> rollout-level estimator it composes K with (None: from the config, see below).
ESTIMATORS: dict[str, str | None] = {
    "ktae": None,
    "grpo_ktae": "grpo",
    "dr_grpo_ktae": "dr_grpo",
    "rloo_ktae": "rloo",
}

_OPTION_NAMES = tuple(f.name for f in dataclasses.fields(KTAEConfig))
#: keys of ``algorithm.ktae`` that belong to this adapter rather than to KTAEConfig, with their defaults:
#: ``warn_after``: warn after this many consecutive steps without a group of both correct and wrong rollouts
ADAPTER_OPTIONS: dict[str, Any] = {"warn_after": 5}
_RAY_TRAINER = "verl.trainer.ppo.ray_trainer"
_V1_TRAINER = "verl.trainer.ppo.v1.trainer_base"
_WRAPPED = "__ktae_wrapped__"
_MISSING_IDS = (
    "adv_estimator={name!r} needs the response token ids, and verl's compute_advantage does not pass them. "
    "ktae.integrations.verl supplies them when it is imported before the trainer runs: install ktae with the "
    "verl extra (pip install \"ktae[verl]\") so verl loads it through its 'verl.plugins' entry point (and do not "
    "set VERL_USE_EXTERNAL_PLUGINS=none), or add actor_rollout_ref.model.external_lib=ktae.integrations.verl. "
    "When calling the estimator yourself, pass responses=[B, L] token ids."
)


@dataclasses.dataclass
class _Batch:
    """What a wrapped trainer function hands to the estimator it calls (one advantage computation)."""

    responses: torch.Tensor | None = None
    tokenizer: Any = None
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    step: int | None = None  # the trainer's global step, for the key-token dump
    prompts: Any = None  # [B] prompt ids (tensor or lists), for the dump
    references: Any = None  # [B] verl reward_model dicts, for the dump
    dump: tuple | None = None  # (ids, mask, scores, index, config) of the last advantage computation


_BATCH: contextvars.ContextVar[_Batch | None] = contextvars.ContextVar("ktae_verl_batch", default=None)
# Tokenizer of the legacy RayPPOTrainer built in this process (its compute_advantage is a module function).
_LEGACY_TOKENIZER: list[Any] = [None]
_warned_no_tokenizer = [False]


def is_ktae_estimator(name: Any) -> bool:
    """Whether ``name`` (a string or verl's ``AdvantageEstimator``) is one of this module's estimators."""
    value = getattr(name, "value", name)
    return isinstance(value, str) and value in ESTIMATORS


def _section(config: Any) -> dict[str, Any]:
    """The KTAE options of verl's ``algorithm.ktae`` section as a plain dict ({} when absent), without the dump
    options (:data:`DUMP_OPTIONS`)."""
    return {k: v for k, v in _raw_section(config).items() if k not in DUMP_OPTIONS}


def _raw_section(config: Any) -> dict[str, Any]:
    """The ``ktae`` sub-section of verl's ``algorithm`` config as a plain dict ({} when absent)."""
    if config is None:
        return {}
    if isinstance(config, Mapping) or hasattr(config, "get"):
        section = config.get("ktae", None)
    else:
        section = getattr(config, "ktae", None)
    if section is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(section, DictConfig):
            section = OmegaConf.to_container(section, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf ships with verl
        pass
    if not isinstance(section, Mapping):
        raise TypeError(f"algorithm.ktae must be a mapping of KTAE options, got {type(section).__name__}")
    return dict(section)


def _config_get(config: Any, key: str, default: Any) -> Any:
    if config is None:
        return default
    if isinstance(config, Mapping) or hasattr(config, "get"):
        value = config.get(key, default)
    else:
        value = getattr(config, key, default)
    return default if value is None else value


def ktae_config_from_verl(
    algorithm_config: Any, estimator: str = "ktae", tokenizer: Any = None, norm_adv_by_std_in_grpo: bool | None = None
) -> KTAEConfig:
    """Build the :class:`KTAEConfig` for one verl run.

    Args:
        algorithm_config: verl's ``algorithm`` section (DictConfig, dict or AlgoConfig); KTAE options are read from
            its ``ktae`` sub-section, whose keys must be fields of KTAEConfig.
        estimator: the verl estimator name (a key of :data:`ESTIMATORS`).
        tokenizer: the policy's tokenizer; its pad/EOS ids are ignored unless ``algorithm.ktae.ignore_token_ids``
            is set (a list, possibly empty).
        norm_adv_by_std_in_grpo: verl's switch (read from the config when None). For ``ktae`` with the GRPO
            rollout estimator, False means Dr. GRPO (no division by the std), as it does for verl's ``grpo``.

    Returns:
        The validated KTAEConfig.

    Raises:
        ValueError: unknown estimator or option, or a ``rollout`` option that contradicts the estimator name.
    """
    name = getattr(estimator, "value", estimator)
    if not is_ktae_estimator(name):
        raise ValueError(f"estimator must be one of {sorted(ESTIMATORS)}, got {estimator!r}")
    options = _section(algorithm_config)
    unknown = sorted(set(options) - set(_OPTION_NAMES) - set(ADAPTER_OPTIONS))
    if unknown:
        raise ValueError(
            f"algorithm.ktae has unknown option(s) {unknown}; expected some of "
            f"{list(_OPTION_NAMES) + list(ADAPTER_OPTIONS)}"
        )
    warn_after(algorithm_config)  # validates it
    for key in ADAPTER_OPTIONS:
        options.pop(key, None)
    fixed = ESTIMATORS[name]
    if fixed is not None:
        if options.get("rollout") not in (None, fixed):
            raise ValueError(
                f"algorithm.adv_estimator={name} composes KTAE with {fixed!r}, but algorithm.ktae.rollout="
                f"{options['rollout']!r}; use adv_estimator=ktae with algorithm.ktae.rollout, or drop the option"
            )
        options["rollout"] = fixed
    else:
        if norm_adv_by_std_in_grpo is None:
            norm_adv_by_std_in_grpo = bool(_config_get(algorithm_config, "norm_adv_by_std_in_grpo", True))
        options.setdefault("rollout", "grpo")
        if options["rollout"] == "grpo" and not norm_adv_by_std_in_grpo:
            options["rollout"] = "dr_grpo"
    if options.get("ignore_token_ids") is None:
        options.pop("ignore_token_ids", None)
        if tokenizer is not None:
            options["ignore_token_ids"] = special_token_ids(tokenizer)
        elif not _warned_no_tokenizer[0]:
            _warned_no_tokenizer[0] = True
            warnings.warn(
                "KTAE: no tokenizer is known here and algorithm.ktae.ignore_token_ids is not set, so no token id "
                "(pad, EOS) is excluded from the key-token values; set +algorithm.ktae.ignore_token_ids=[...] to "
                "choose them",
                stacklevel=3,
            )
    else:
        ids = options["ignore_token_ids"]
        options["ignore_token_ids"] = (ids,) if isinstance(ids, int) else tuple(ids)
    return KTAEConfig(**options)


def warn_after(algorithm_config: Any) -> int:
    """``algorithm.ktae.warn_after`` (default 5): consecutive steps without a mixed group before a warning."""
    value = _section(algorithm_config).get("warn_after", ADAPTER_OPTIONS["warn_after"])
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"algorithm.ktae.warn_after must be an integer >= 0 (0: never warn), got {value!r}")
    return value


_WATCHES: dict[tuple[float, int], MixedGroupWatch] = {}  # per process: verl computes advantages in the driver


def _watch(threshold: float, patience: int) -> MixedGroupWatch:
    key = (threshold, patience)
    if key not in _WATCHES:
        _WATCHES[key] = MixedGroupWatch(
            patience=patience,
            correctness=f"its score (the sum of its token_level_rewards: the reward function's 'score') is > "
            f"{threshold}",
            advice="set +algorithm.ktae.threshold between the scores of wrong and right responses (e.g. 0.5 for a "
            "reward in [0, 1] that is 1 only for a right answer), or make the reward function's 'score' say "
            "whether the answer is right",
        )
    return _WATCHES[key]


def _padded(tensor: torch.Tensor) -> torch.Tensor:
    """A regular [B, L] tensor from a (possibly jagged nested) [B, *] one, padding with 0."""
    if getattr(tensor, "is_nested", False):
        return tensor.to_padded_tensor(0)
    return tensor


def _make_estimator(name: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    def estimator(
        token_level_rewards: torch.Tensor,
        response_mask: torch.Tensor,
        index: Any = None,
        config: Any = None,
        responses: torch.Tensor | None = None,
        norm_adv_by_std_in_grpo: bool | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return compute_ktae_advantage(
            token_level_rewards,
            response_mask,
            index,
            config,
            responses=responses,
            estimator=name,
            norm_adv_by_std_in_grpo=norm_adv_by_std_in_grpo,
        )

    estimator.__name__ = f"compute_{name}_advantage"
    estimator.__qualname__ = estimator.__name__
    estimator.__doc__ = f"verl advantage estimator {name!r}: see ktae.integrations.verl.compute_ktae_advantage."
    estimator.__ktae_estimator__ = name  # type: ignore[attr-defined]
    return estimator


def compute_ktae_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any,
    config: Any = None,
    *,
    responses: torch.Tensor | None = None,
    estimator: str = "ktae",
    tokenizer: Any = None,
    norm_adv_by_std_in_grpo: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl advantage estimator: ``ktae.ktae_advantages`` on one verl batch.

    Args:
        token_level_rewards: [B, L] float; the outcome score of a rollout is its sum (as in verl's GRPO).
        response_mask: [B, L] 0/1.
        index: [B] prompt ids (verl's ``uid`` numpy object array of strings).
        config: verl's ``algorithm`` section; options from ``algorithm.ktae.*``.
        responses: [B, L] response token ids; taken from the trainer wrappers of this module when None.
        estimator: which of :data:`ESTIMATORS`.
        tokenizer: gives the default ignored ids (pad, EOS); the trainer's tokenizer when None.
        norm_adv_by_std_in_grpo: see :func:`ktae_config_from_verl`.

    Returns:
        (advantages, returns): [B, L] float32 each, on the device of ``token_level_rewards``.

    Raises:
        ValueError: no response ids, ids of the wrong shape, missing ``index``, or a bad option.
    """
    batch = _BATCH.get()
    if responses is None and batch is not None:
        responses = batch.responses
    if responses is None:
        raise ValueError(_MISSING_IDS.format(name=estimator))
    if index is None:
        raise ValueError(
            f"adv_estimator={estimator!r} needs the prompt id ('uid') of every rollout to form groups; verl passes "
            "it as index when data.non_tensor_batch has 'uid'"
        )
    responses = _padded(responses)
    if responses.shape != response_mask.shape:
        raise ValueError(
            f"response ids have shape {tuple(responses.shape)} but response_mask has {tuple(response_mask.shape)}; "
            "KTAE needs one token id per response position"
        )
    if tokenizer is None:
        tokenizer = batch.tokenizer if batch is not None and batch.tokenizer is not None else _LEGACY_TOKENIZER[0]
    cfg = ktae_config_from_verl(config, estimator, tokenizer, norm_adv_by_std_in_grpo)
    device = token_level_rewards.device
    with torch.no_grad():
        scores = token_level_rewards.sum(dim=-1)
        ids = responses.to(device)
        advantages, _, values = ktae_parts(ids, response_mask, scores, index, cfg)
        returns = advantages
        if batch is not None:
            batch.dump = (ids, response_mask, scores, index, cfg, values)
            stats = key_token_stats(values, response_mask, scores, index, cfg.threshold)
            batch.metrics.update({f"ktae/{key}": value for key, value in stats.items()})
            mixed, groups = mixed_groups(scores, index, cfg.threshold, response_mask)
            _watch(cfg.threshold, warn_after(config)).update(mixed, groups)
    return advantages.to(device), returns.to(device)


def _params(func: Any) -> list[str]:
    try:
        return list(inspect.signature(getattr(func, _WRAPPED, func)).parameters)
    except (TypeError, ValueError):
        return []


def _require(checks: dict[str, bool]) -> None:
    """Raise :class:`UnsupportedVerlError` naming every private verl name that is missing or has changed."""
    missing = [name for name, ok in checks.items() if not ok]
    if missing:
        raise UnsupportedVerlError(
            f"ktae's verl plugin cannot install into verl {getattr(verl, '__version__', 'unknown')}: "
            f"{'; '.join(missing)} not found with the expected signature. Supported: verl{SUPPORTED_VERL} "
            f"(pip install \"verl{SUPPORTED_VERL}\")"
        )


def _check_core_algos(module: Any = core_algos) -> None:
    _require({
        "core_algos.register_adv_est(name)": len(_params(getattr(module, "register_adv_est", None))) == 1,
        "core_algos.ADV_ESTIMATOR_REGISTRY": isinstance(getattr(module, "ADV_ESTIMATOR_REGISTRY", None), dict),
        "core_algos.get_adv_estimator_fn(name)": callable(getattr(module, "get_adv_estimator_fn", None)),
    })


def _register_estimators() -> None:
    for name in ESTIMATORS:
        current = core_algos.ADV_ESTIMATOR_REGISTRY.get(name)
        if current is not None:
            if getattr(current, "__ktae_estimator__", None) == name:
                continue  # already ours (module imported twice, e.g. entry point + external_lib)
            raise ValueError(
                f"verl already has an advantage estimator named {name!r} ({current!r}); ktae cannot register its own"
            )
        core_algos.register_adv_est(name)(_make_estimator(name))


def _check_ray_trainer(module: Any) -> None:
    _require({
        f"{_RAY_TRAINER}.compute_advantage(data, adv_estimator, ...)":
            _params(getattr(module, "compute_advantage", None))[:2] == ["data", "adv_estimator"],
        f"{_RAY_TRAINER}.RayPPOTrainer.__init__": callable(getattr(getattr(module, "RayPPOTrainer", None), "__init__",
                                                                   None)),
    })


def _patch_ray_trainer(module: Any) -> None:
    """Wrap the legacy trainer's module-level ``compute_advantage`` and record the trainer's tokenizer."""
    _check_ray_trainer(module)
    trainer_cls = module.RayPPOTrainer
    original = module.compute_advantage
    if not hasattr(original, _WRAPPED):

        def compute_advantage(data: Any, adv_estimator: Any, *args: Any, **kwargs: Any) -> Any:
            if not is_ktae_estimator(adv_estimator) or "responses" not in data.batch.keys():
                return original(data, adv_estimator, *args, **kwargs)
            outer = _BATCH.get()
            batch = _Batch(
                responses=data.batch["responses"], tokenizer=outer.tokenizer if outer is not None else None
            )
            _legacy_dump_inputs(batch, data)
            token = _BATCH.set(batch)
            try:
                result = original(data, adv_estimator, *args, **kwargs)
            finally:
                _BATCH.reset(token)
            if outer is not None:
                outer.metrics.update(batch.metrics)
            else:  # the legacy trainer: its compute_data_metrics call adds them to the step's metrics
                _LEGACY_METRICS.update(batch.metrics)
            config = kwargs.get("config", args[4] if len(args) > 4 else None)  # verl: (..., norm_adv..., config)
            _dump(batch, config, batch.tokenizer if batch.tokenizer is not None else _LEGACY_TOKENIZER[0])
            return result

        setattr(compute_advantage, _WRAPPED, original)
        compute_advantage.__doc__ = original.__doc__
        module.compute_advantage = compute_advantage

    init = getattr(trainer_cls, "__init__", None) if trainer_cls is not None else None
    if init is not None and not hasattr(init, _WRAPPED):

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            _LEGACY_TOKENIZER[0] = getattr(self, "tokenizer", None)
            _LEGACY_TRAINER[0] = weakref.ref(self)

        setattr(__init__, _WRAPPED, init)
        trainer_cls.__init__ = __init__

    data_metrics = getattr(module, "compute_data_metrics", None)
    if data_metrics is not None and not hasattr(data_metrics, _WRAPPED):

        def compute_data_metrics(*args: Any, **kwargs: Any) -> dict:
            out = data_metrics(*args, **kwargs)
            out.update(_LEGACY_METRICS)  # the ktae/* metrics of this step's advantage computation
            _LEGACY_METRICS.clear()
            return out

        setattr(compute_data_metrics, _WRAPPED, data_metrics)
        compute_data_metrics.__doc__ = data_metrics.__doc__
        module.compute_data_metrics = compute_data_metrics


def _check_v1_trainer(module: Any) -> None:
    _require({
        f"{_V1_TRAINER}.PPOTrainer._compute_advantage(self, batch, metrics)":
            _params(getattr(getattr(module, "PPOTrainer", None), "_compute_advantage", None))
            == ["self", "batch", "metrics"],
        f"{_V1_TRAINER}.tq.kv_batch_get(keys, partition_id, select_fields)":
            {"keys", "partition_id", "select_fields"} <= set(_params(getattr(getattr(module, "tq", None),
                                                                             "kv_batch_get", None))),
    })


def _patch_v1_trainer(module: Any) -> None:
    """Wrap v1 ``PPOTrainer._compute_advantage`` to fetch the response ids from the TransferQueue."""
    _check_v1_trainer(module)
    trainer_cls = module.PPOTrainer
    original = trainer_cls._compute_advantage
    if hasattr(original, _WRAPPED):
        return

    def _compute_advantage(self: Any, batch: Any, metrics: dict) -> Any:
        name = self.config.algorithm.adv_estimator
        if not is_ktae_estimator(name):
            return original(self, batch, metrics)
        tq = module.tq
        try:
            data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["responses"])
            responses = data["responses"]
        except (KeyError, ValueError, RuntimeError) as err:
            raise ValueError(
                f"adv_estimator={getattr(name, 'value', name)!r} needs the 'responses' field of the batch, but the "
                f"TransferQueue did not return it ({err}); KTAE only works with rollouts that store their response "
                "token ids"
            ) from err
        context = _Batch(responses=_padded(responses), tokenizer=getattr(self, "tokenizer", None))
        _v1_dump_inputs(context, self, tq, batch)
        token = _BATCH.set(context)
        try:
            result = original(self, batch, metrics)
        finally:
            _BATCH.reset(token)
        metrics.update(context.metrics)
        _dump(context, self.config.algorithm, context.tokenizer)
        return result

    setattr(_compute_advantage, _WRAPPED, original)
    _compute_advantage.__doc__ = original.__doc__
    trainer_cls._compute_advantage = _compute_advantage


def installation_report() -> dict[str, Any]:
    """Import verl's two trainer modules here and say what is in place (for ``ktae doctor`` and ``ktae verl``).

    Returns:
        ``verl_version``, ``estimators`` (the KTAE names in verl's registry), ``legacy_wrapped`` and ``v1_wrapped``
        (whether ``ray_trainer.compute_advantage`` and ``PPOTrainer._compute_advantage`` carry the KTAE wrapper).

    Raises:
        UnsupportedVerlError: a wrapped verl name is missing or changed (raised while importing its module).
    """
    import importlib

    legacy = importlib.import_module(_RAY_TRAINER)
    v1 = importlib.import_module(_V1_TRAINER)
    return {
        "verl_version": getattr(verl, "__version__", "unknown"),
        "estimators": sorted(n for n in core_algos.ADV_ESTIMATOR_REGISTRY if is_ktae_estimator(n)),
        "legacy_wrapped": hasattr(legacy.compute_advantage, _WRAPPED),
        "v1_wrapped": hasattr(v1.PPOTrainer._compute_advantage, _WRAPPED),
    }


def install() -> None:
    """Register the KTAE estimators and arrange the trainer wrappers (idempotent; runs on import)."""
    targets = ((_RAY_TRAINER, _check_ray_trainer, _patch_ray_trainer), (_V1_TRAINER, _check_v1_trainer,
                                                                         _patch_v1_trainer))
    # every check of what is already imported runs before anything is changed: never half the wrapping
    _check_core_algos()
    for name, check, _ in targets:
        if name in sys.modules:
            check(sys.modules[name])
    _register_estimators()
    for name, _, patch in targets:
        module = sys.modules.get(name)
        if module is not None:
            patch(module)
        else:  # checked, then patched, when verl imports it; a failed check fails that import
            wrapt.register_post_import_hook(patch, name)


def _score(solution_str: str, ground_truth: Any, correct: float, wrong: float) -> dict[str, float]:
    from ktae.rewards import grade_math

    ok = grade_math(solution_str, ground_truth)
    return {"score": correct if ok else wrong, "acc": 1.0 if ok else 0.0}


def math_score(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: Any = None, **kwargs: Any
) -> dict[str, float]:
    """verl reward function (GRPO, paper): score 1 for a correct last ``\\boxed{}`` answer, else 0; ``acc`` 1/0."""
    return _score(solution_str, ground_truth, 1.0, 0.0)


def dapo_score(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: Any = None, **kwargs: Any
) -> dict[str, float]:
    """verl reward function (DAPO, paper): score +1 correct / -1 wrong, ``acc`` 1/0; use it with verl's ``dapo``
    reward manager, which adds the overlong penalty."""
    return _score(solution_str, ground_truth, 1.0, -1.0)



# ---- key-token dumps: ``+algorithm.ktae.dump_every=N +algorithm.ktae.dump_dir=DIR`` writes, every N steps, the
# step's rollouts with their token ids, rewards, groups and exact K values to DIR (ktae.integrations._dump, in a
# background thread on the driver) for ``ktae analyze DIR``. And the legacy trainer's ktae/* metrics, which reach
# its step metrics through its compute_data_metrics call (wrapped in _patch_ray_trainer).

#: ``algorithm.ktae`` keys of the key-token dump: ``dump_every`` (steps) and ``dump_dir`` (folder)
DUMP_OPTIONS = ("dump_every", "dump_dir")
_LEGACY_METRICS: dict[str, float] = {}
_LEGACY_TRAINER: list[Any] = [None]  # weakref to the legacy RayPPOTrainer of this process
_DUMPERS: dict[tuple[str, int], Any] = {}  # (folder, every) -> KeyTokenDumper


def dumper_from_verl(algorithm_config: Any, tokenizer: Any = None) -> Any:
    """The `KeyTokenDumper` that ``algorithm.ktae.dump_every`` / ``dump_dir`` ask for (one per folder), or None.

    Raises:
        ValueError: ``dump_every`` is not a non-negative integer, or it is set without ``dump_dir``.
    """
    options = _raw_section(algorithm_config)
    every = options.get("dump_every") or 0
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise ValueError(f"algorithm.ktae.dump_every must be an integer >= 0 (0: no dumps), got {every!r}")
    if not every:
        return None
    folder = options.get("dump_dir")
    if not folder:
        raise ValueError(
            "algorithm.ktae.dump_every is set but not the folder to write to: add +algorithm.ktae.dump_dir=DIR"
        )
    key = (str(folder), every)
    if key not in _DUMPERS:
        from ktae.integrations._dump import KeyTokenDumper

        _DUMPERS[key] = KeyTokenDumper(str(folder), every, tokenizer)
    return _DUMPERS[key]


def _legacy_dump_inputs(context: _Batch, data: Any) -> None:
    trainer = _LEGACY_TRAINER[0]() if _LEGACY_TRAINER[0] is not None else None
    context.step = getattr(trainer, "global_steps", None)
    context.prompts = data.batch["prompts"] if "prompts" in data.batch.keys() else None
    context.references = data.non_tensor_batch.get("reward_model")


def _v1_dump_inputs(context: _Batch, trainer: Any, tq: Any, batch: Any) -> None:
    context.step = getattr(trainer, "global_steps", None)
    dumper = dumper_from_verl(trainer.config.algorithm, context.tokenizer)
    if dumper is None or not dumper.due(context.step):
        return
    for name in ("prompts", "reward_model"):
        try:
            value = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=[name])[name]
        except (KeyError, ValueError, RuntimeError):
            continue  # the dump goes without prompt texts / references
        if name == "prompts":
            context.prompts = [row.tolist() for row in value.unbind()] if getattr(value, "is_nested", False) else value
        else:
            context.references = value


def _dump(context: _Batch, algorithm_config: Any, tokenizer: Any) -> None:
    """Queue the rollouts of this advantage computation with their K values, when a dump is due."""
    dumper = dumper_from_verl(algorithm_config, tokenizer)
    if dumper is None or context.dump is None or not dumper.due(context.step):
        return
    ids, mask, scores, index, cfg, values = context.dump   # values: the K inside the advantages
    prompts = context.prompts.tolist() if torch.is_tensor(context.prompts) else context.prompts
    references = None
    if context.references is not None:
        items = context.references.tolist() if hasattr(context.references, "tolist") else list(context.references)
        references = [item.get("ground_truth") if isinstance(item, Mapping) else item for item in items]
    dumper.submit(context.step, ids, mask, scores, [str(i) for i in index], values, cfg, prompts, references)


install()
