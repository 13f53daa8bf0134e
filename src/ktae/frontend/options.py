"""KTAE options from any source to a :class:`~ktae.KTAEConfig`, and the estimator names every front-end accepts.

Every front-end reads its KTAE options through :func:`ktae_config` (verl's ``algorithm.ktae`` node, ``ktae
analyze --config KEY=VALUE``, the TRL config's ``ktae_*`` fields) or holds a :class:`KTAEConfig` itself (the
trainer's ``ktae`` section); the TRL config's fields are made from :class:`KTAEConfig`'s by :func:`ktae_fields`.
So a field added to :class:`KTAEConfig` reaches them all.

>>> ktae_config({"alpha": "0.5", "ignore_token_ids": "0,2"}, where="--config").alpha
0.5
>>> parse_estimator("grpo_ktae"), parse_estimator("rloo+ktae"), parse_estimator("dr_grpo")
(('grpo', True), ('rloo', True), ('dr_grpo', False))
>>> parse_estimator("grpo+ktae-gate"), token_credit("grpo+ktae-gate"), token_credit("grpo_ktae")
(('grpo', False), 'ktae-gate', 'ktae')
>>> parse_estimator("rloo+line-ktae-blame"), token_credit("grpo+prefix")
(('rloo', False), 'prefix')
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, Iterable

from ktae.core.config import ROLLOUT_ESTIMATORS, KTAEConfig
from ktae.core.label_free import LABEL_FREE_CREDITS

__all__ = ["ktae_config", "plain_options", "ktae_fields", "parse_estimator", "token_credit", "ESTIMATOR_NAMES",
           "KTAE_ONLY", "TOKEN_CREDITS", "STUDY_CREDITS", "LABEL_FREE_CREDITS"]

#: an estimator name made only of the key-token part: KTAE with the configured rollout estimator (verl's ``ktae``)
KTAE_ONLY = "ktae"
#: token credit the trainer alone adds to a rollout estimator besides KTAE's key-token values
#: (:mod:`ktae.core.credit`, learning study 3): the label-free specificity gate (a KTAE-family estimator: it counts
#: tokens as KTAE does but gives no A_i + K), and the oracles that read the labelled wrong steps (not KTAE)
STUDY_CREDITS = ("ktae-gate", "oracle", "oracle-blame")
#: the token credit after ``+`` in an estimator name: key-token values (KTAE), one of :data:`STUDY_CREDITS`, or one
#: of the trainer's label-free rules :data:`LABEL_FREE_CREDITS` (:mod:`ktae.core.label_free`, issue 30)
TOKEN_CREDITS = ("ktae", *STUDY_CREDITS, *LABEL_FREE_CREDITS)
#: every spelling of an estimator: ``grpo``, ``grpo+ktae`` (the trainer's), ``grpo_ktae`` (verl's), ``ktae``, and
#: the trainer's ``grpo+ktae-gate``, ``grpo+oracle``, ``grpo+oracle-blame`` and label-free ``grpo+prefix``, ...
#: (verl and TRL do not offer these)
ESTIMATOR_NAMES = (KTAE_ONLY,) + tuple(e + suffix for e in ROLLOUT_ESTIMATORS
                                       for suffix in ("", "+ktae", "_ktae",
                                                      *(f"+{c}" for c in (*STUDY_CREDITS, *LABEL_FREE_CREDITS))))


def _parts(name: Any) -> tuple[str | None, str]:
    """``(rollout estimator, token credit)`` of an estimator name (see :func:`parse_estimator`)."""
    value = getattr(name, "value", name)
    if value not in ESTIMATOR_NAMES:
        raise ValueError(f"estimator: expected one of {ESTIMATOR_NAMES}, got {name!r}")
    if value == KTAE_ONLY:
        return None, "ktae"
    if value.endswith("_ktae"):
        return value[: -len("_ktae")], "ktae"
    rollout, _, credit = value.partition("+")
    return rollout, credit


def parse_estimator(name: Any) -> tuple[str | None, bool]:
    """``(rollout estimator, with key-token values)`` of an estimator name in any front-end's spelling.

    ``name`` may be a string or an enum whose ``value`` is one (verl's ``AdvantageEstimator``). The rollout part
    is None for ``ktae`` alone (the options' ``rollout`` decides). "With key-token values" means A_i + K of the
    tokens: true for ``+ktae`` (and its spellings), false for the gate, the oracles (:data:`STUDY_CREDITS`) and the
    label-free rules (:data:`LABEL_FREE_CREDITS`; the step-level KTAE adds K of lines or n-grams, not of tokens;
    see :func:`token_credit`).

    Raises:
        ValueError: not one of :data:`ESTIMATOR_NAMES`.
    """
    rollout, credit = _parts(name)
    return rollout, credit == "ktae"


def token_credit(name: Any) -> str:
    """The token credit of an estimator name: one of :data:`TOKEN_CREDITS` (``ktae`` also for verl's
    ``grpo_ktae`` and ``ktae``), or ``""`` for a rollout estimator alone.

    Raises:
        ValueError: not one of :data:`ESTIMATOR_NAMES`.
    """
    return _parts(name)[1]


def plain_options(source: Any, where: str) -> dict[str, Any]:
    """A plain dict of a source of options: a mapping, an OmegaConf node (resolved) or a dataclass instance;
    ``{}`` for None.

    Raises:
        TypeError: anything else (the message names ``where``).
    """
    if source is None:
        return {}
    if type(source).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        source = OmegaConf.to_container(source, resolve=True)
    if dataclasses.is_dataclass(source) and not isinstance(source, type):
        return {f.name: getattr(source, f.name) for f in dataclasses.fields(source)}
    if not isinstance(source, Mapping):
        raise TypeError(f"{where}: expected a mapping of KTAE options, got {type(source).__name__}")
    return {str(key).replace("-", "_"): value for key, value in source.items()}


def _token_ids(raw: Any) -> tuple[int, ...]:
    if isinstance(raw, str):
        raw = raw.replace(",", " ").strip("[]() ").split()
    elif isinstance(raw, int) and not isinstance(raw, bool):
        raw = (raw,)
    return tuple(int(item) for item in raw)


def _typed(name: str, raw: Any, where: str) -> Any:
    """``raw`` as field ``name`` of KTAEConfig takes it: numbers and token ids also from text (YAML, a command
    line)."""
    kind = typing.get_type_hints(KTAEConfig)[name]
    try:
        if name == "ignore_token_ids":
            return _token_ids(raw)
        if kind is float and isinstance(raw, str):
            return float(raw)
    except (TypeError, ValueError):
        expected = "a list of token ids" if name == "ignore_token_ids" else "a number"
        raise ValueError(f"{where}.{name}: expected {expected}, got {raw!r}") from None
    return raw


def ktae_config(source: Any = None, *, where: str = "KTAE options", defaults: Mapping[str, Any] | None = None,
                extra: Iterable[str] = ()) -> KTAEConfig:
    """The validated :class:`KTAEConfig` of ``source`` (see :func:`plain_options`) over ``defaults``.

    Args:
        source: the options, keyed by :class:`KTAEConfig` field names; a None value means "not set".
        where: how the user wrote the options, for messages (``algorithm.ktae``, ``--config``).
        defaults: values used where ``source`` sets nothing (e.g. the tokenizer's ``ignore_token_ids``).
        extra: keys of ``source`` that belong to the front-end, not to KTAEConfig (ignored here).

    Raises:
        ValueError: an unknown key, or a value KTAEConfig refuses; the message names ``where`` and the option.
    """
    options = plain_options(source, where)
    names = [f.name for f in dataclasses.fields(KTAEConfig)]
    unknown = sorted(set(options) - set(names) - set(extra))
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown}; expected some of {names + sorted(extra)}")
    values = {k: v for k, v in (defaults or {}).items() if v is not None}
    values.update({k: _typed(k, v, where) for k, v in options.items() if k in names and v is not None})
    try:
        return KTAEConfig(**values)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def ktae_fields(prefix: str, skip: Iterable[str] = (), help_of: Mapping[str, str] | None = None) -> list[tuple]:
    """``(name, type, field)`` of each :class:`KTAEConfig` field but ``skip``, named ``<prefix><name>``, with its
    default and help (``help_of`` replaces a help text), for ``dataclasses.make_dataclass`` or a config class.
    ``ignore_token_ids`` becomes ``list[int] | None`` with default None (the front-end's tokenizer decides)."""
    hints = typing.get_type_hints(KTAEConfig)
    out = []
    for f in dataclasses.fields(KTAEConfig):
        if f.name in skip:
            continue
        help_text = (help_of or {}).get(f.name, f.metadata.get("help", ""))
        if f.name == "ignore_token_ids":
            out.append((prefix + f.name, typing.Optional[list[int]],
                        dataclasses.field(default=None, metadata={"help": help_text})))
        else:
            out.append((prefix + f.name, hints[f.name], dataclasses.field(default=f.default, metadata={"help": help_text})))
    return out
