"""Reading rollouts for the analysis: jsonl / json files, one rollout per record.

A record needs
  * a group: ``group`` / ``uid`` / ``prompt_id`` / ``index`` or, failing those, the prompt text;
  * the response: ``token_ids`` (also ``response_ids``, ``response_token_ids``) or text
    (``response`` / ``completion`` / ``output`` / ``text``);
  * its outcome: ``reward`` (also ``score``) and/or ``correct`` (also ``is_correct``, ``acc``).
Optional: the prompt (``prompt`` / ``question`` / ``problem``) and the reference answer
(``reference`` / ``answer`` / ``ground_truth`` / ``solution``).

Optional too: ``step``, and, in the dumps every trainer writes (``ktae train``, the verl and TRL integrations:
`ktae.frontend.records`), ``key_token_values`` (K at each token as the trainer used it), ``ktae_config`` (the
trainer's KTAE options) and ``tokenizer`` (where its tokenizer loads from). Folders and verl's own dumps: see
`ktae.analysis.sources`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Hashable, Iterable

from ktae.frontend.outcomes import require_verdict

GROUP_FIELDS = ("group", "uid", "prompt_id", "group_id", "index")
PROMPT_FIELDS = ("prompt", "question", "problem")
TEXT_FIELDS = ("response", "completion", "output", "text")
IDS_FIELDS = ("token_ids", "response_ids", "response_token_ids")
REWARD_FIELDS = ("reward", "score")
CORRECT_FIELDS = ("correct", "is_correct", "acc")
REFERENCE_FIELDS = ("reference", "answer", "ground_truth", "solution")


@dataclass
class Rollout:
    """One rollout. ``score`` is what KTAE splits on (correct when ``score > threshold``)."""

    group: Hashable
    score: float
    response: str | None = None
    token_ids: list[int] | None = None
    prompt: str | None = None
    reference: str | None = None
    reward: float | None = None
    correct: bool | None = None
    source: str = ""
    step: int | None = None
    key_token_values: list[float] | None = None
    ktae_config: dict | None = None
    tokenizer: str | None = None  # where the trainer's tokenizer loads from (the trainers' dumps)


def _first(record: dict, names: Iterable[str]) -> tuple[str | None, Any]:
    for name in names:
        if name in record and record[name] is not None:
            return name, record[name]
    return None, None


def _hashable(value: Any) -> Hashable:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def rollout_from_record(record: Any, where: str = "record", prefer: str = "reward") -> Rollout:
    """Build a `Rollout` from one decoded json record (see the module docstring for the fields).

    Args:
        record: a dict.
        where: where the record came from, for error messages (e.g. ``"rollouts.jsonl:12"``).
        prefer: ``"reward"`` (score = reward when present, else 1/0 from correct) or ``"correct"``
            (score = 1/0 from correct when present, else the reward).
    """
    if prefer not in ("reward", "correct"):
        raise ValueError(f"prefer must be 'reward' or 'correct', got {prefer!r}")
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object per rollout, got {type(record).__name__}")
    _, prompt = _first(record, PROMPT_FIELDS)
    group_name, group = _first(record, GROUP_FIELDS)
    if group_name is None:
        if prompt is None:
            raise ValueError(
                f"{where}: needs a group id (one of {', '.join(GROUP_FIELDS)}) or a prompt "
                f"(one of {', '.join(PROMPT_FIELDS)}) to group rollouts by"
            )
        group = prompt
    ids_name, ids = _first(record, IDS_FIELDS)
    text_name, text = _first(record, TEXT_FIELDS)
    if ids is None and text is None:
        raise ValueError(
            f"{where}: needs the response as token ids (one of {', '.join(IDS_FIELDS)}) "
            f"or text (one of {', '.join(TEXT_FIELDS)})"
        )
    if ids is not None:
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
            raise ValueError(f"{where}: field {ids_name!r} must be a list of non-negative integer token ids")
    if text is not None and not isinstance(text, str):
        raise ValueError(f"{where}: field {text_name!r} must be a string, got {type(text).__name__}")
    reward_name, reward = _first(record, REWARD_FIELDS)
    correct_name, correct = _first(record, CORRECT_FIELDS)
    if reward is not None:
        if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(reward):
            raise ValueError(f"{where}: field {reward_name!r} must be a finite number, got {reward!r}")
        reward = float(reward)
    if correct is not None:
        correct = require_verdict(correct, where, correct_name)
    if reward is None and correct is None:
        raise ValueError(
            f"{where}: needs the outcome: a reward (one of {', '.join(REWARD_FIELDS)}) "
            f"or correctness (one of {', '.join(CORRECT_FIELDS)})"
        )
    if prefer == "correct" and correct is not None or reward is None:
        score = 1.0 if correct else 0.0
    else:
        score = reward
    _, reference = _first(record, REFERENCE_FIELDS)
    if reference is not None and not isinstance(reference, str):
        reference = json.dumps(reference, ensure_ascii=False)
    if prompt is not None and not isinstance(prompt, str):
        prompt = json.dumps(prompt, ensure_ascii=False)
    step = record.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        raise ValueError(f"{where}: field 'step' must be an integer, got {step!r}")
    values = record.get("key_token_values")
    if values is not None:
        if ids is None or not isinstance(values, list) or len(values) != len(ids):
            raise ValueError(f"{where}: field 'key_token_values' must be a list of numbers, one per token id")
        values = [float(v) for v in values]
    tokenizer = record.get("tokenizer")
    if tokenizer is not None and not isinstance(tokenizer, str):
        raise ValueError(f"{where}: field 'tokenizer' must be a tokenizer name or folder, got {tokenizer!r}")
    config = record.get("ktae_config")
    if config is not None and not isinstance(config, dict):
        raise ValueError(f"{where}: field 'ktae_config' must be an object of KTAE options")
    return Rollout(
        group=_hashable(group),
        score=score,
        response=text,
        token_ids=list(ids) if ids is not None else None,
        prompt=prompt,
        reference=reference,
        reward=reward,
        correct=correct,
        source=where,
        step=step,
        key_token_values=values,
        ktae_config=config,
        tokenizer=tokenizer,
    )
