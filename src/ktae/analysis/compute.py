"""Key-token analysis of a set of rollouts: tokenise, call the core, decode one piece per token.

This is shell code: every number comes from `ktae.explain` (per (group, token) statistics),
`ktae.key_token_values` (K at every position) and `ktae.rollout_advantages`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

import ktae
from ktae.analysis.rollouts import Rollout
from ktae.analysis.tokens import TokenPieces, _is_byte_level, _token_bytes, decode_ids, token_pieces
from ktae.core.advantages import KeyTokenTable
from ktae.core.config import KTAEConfig
from ktae.progress import progress_bar
from ktae.special_tokens import special_token_ids


@dataclass
class GroupSummary:
    """One prompt: its rollouts (indices into `Analysis.rollouts`) and its top key tokens (table records)."""

    index: int
    key: Any
    prompt: str | None
    reference: str | None
    members: list[int]
    n_correct: int
    n_wrong: int
    positive: list[dict] = field(default_factory=list)
    negative: list[dict] = field(default_factory=list)
    step: int | None = None


@dataclass
class Analysis:
    """Everything a report needs.

    ``values[i]`` is K (float32, from `ktae.key_token_values`) at each token of rollout i,
    ``pieces[i]`` its decoded text per token, ``advantages[i]`` its rollout-level advantage,
    ``correct[i]`` whether KTAE counted it as correct (score > threshold).
    """

    rollouts: list[Rollout]
    token_ids: list[list[int]]
    pieces: list[TokenPieces]
    values: list[torch.Tensor]
    advantages: list[float]
    correct: list[bool]
    groups: list[GroupSummary]
    table: KeyTokenTable
    config: KTAEConfig
    token_labels: dict[int, str]
    notes: list[str] = field(default_factory=list)
    dump_check: "DumpCheck | None" = None

    @property
    def group_of(self) -> list[int]:
        out = [0] * len(self.rollouts)
        for g in self.groups:
            for i in g.members:
                out[i] = g.index
        return out


@dataclass
class DumpCheck:
    """Recomputed K against the K a trainer dumped with its rollouts (``key_token_values``)."""

    tokens: int
    max_abs_diff: float
    mismatched: int
    config_from_dump: bool

    @property
    def exact(self) -> bool:
        return self.mismatched == 0


def config_from_rollouts(rollouts: Sequence[Rollout]) -> dict | None:
    """The KTAE options a dump recorded (``ktae_config`` of its records), or None.

    Raises:
        ValueError: the records carry different options (dumps of different runs mixed).
    """
    configs = {json.dumps(r.ktae_config, sort_keys=True) for r in rollouts if r.ktae_config is not None}
    if not configs:
        return None
    if len(configs) > 1:
        raise ValueError("the rollouts carry different KTAE options (ktae_config): dumps of different runs are mixed")
    options = json.loads(configs.pop())
    if "ignore_token_ids" in options:
        options["ignore_token_ids"] = tuple(options["ignore_token_ids"])
    return options


def check_dumped_values(rollouts: Sequence[Rollout], values: torch.Tensor, atol: float = 1e-6) -> DumpCheck | None:
    """Compare ``values`` ([B, L], recomputed K) with the rollouts' dumped ``key_token_values``; None without any."""
    tokens, worst, bad = 0, 0.0, 0
    for i, r in enumerate(rollouts):
        if r.key_token_values is None:
            continue
        dumped = torch.tensor(r.key_token_values, dtype=torch.float64)
        diff = (values[i, : len(dumped)].to(torch.float64) - dumped).abs()
        tokens += len(dumped)
        if diff.numel():
            worst = max(worst, float(diff.max()))
            bad += int((diff > atol).sum())
    if tokens == 0 and not any(r.key_token_values is not None for r in rollouts):
        return None
    return DumpCheck(tokens=tokens, max_abs_diff=worst, mismatched=bad, config_from_dump=False)


def group_size_notes(groups: Sequence[GroupSummary]) -> list[str]:
    """What to tell the reader when prompts have a single rollout (KTAE needs groups to compare)."""
    singles = sum(1 for g in groups if len(g.members) == 1)
    if singles and singles == len(groups):
        return [
            "every prompt has a single rollout (a validation dump has one per prompt): KTAE compares the correct "
            "and wrong rollouts of a prompt, so it needs groups, and every K here is 0. Shown: the rollouts and "
            "their outcomes only. Analyse the training rollouts (rollout_data_dir) for key tokens."
        ]
    if singles:
        return [f"{singles} of {len(groups)} prompts have a single rollout: their K is 0 (KTAE needs groups)"]
    return []


def load_tokenizer(name_or_path: Any) -> Any:
    """A tokenizer object as is, or ``AutoTokenizer.from_pretrained(name_or_path)`` for a name / folder."""
    if isinstance(name_or_path, (str, os.PathLike)):
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(os.fspath(name_or_path))
        except (OSError, ValueError) as err:
            raise ValueError(
                f"tokenizer {os.fspath(name_or_path)!r} could not be loaded: give a Hugging Face model name "
                f"or a folder with tokenizer files ({err})"
            ) from err
    if not hasattr(name_or_path, "decode"):
        raise TypeError(
            f"tokenizer must be a name, a folder or a tokenizer object with decode(), got {type(name_or_path).__name__}"
        )
    return name_or_path


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a response given as text, without added special tokens."""
    if callable(tokenizer) and hasattr(tokenizer, "convert_ids_to_tokens"):
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if hasattr(tokenizer, "encode"):
        try:
            return list(tokenizer.encode(text, add_special_tokens=False))
        except TypeError:
            return list(tokenizer.encode(text))
    raise TypeError(f"tokenizer {type(tokenizer).__name__} cannot encode text; give token_ids in the rollouts file")


def token_label(tokenizer: Any, token_id: int) -> str:
    """A short readable label of one token for tables: its own text, or its bytes when it is part of a character."""
    if _is_byte_level(tokenizer):
        chunks = _token_bytes(tokenizer, [token_id])
        if chunks is not None:
            try:
                return chunks[0].decode("utf-8")
            except UnicodeDecodeError:
                return "".join(f"<0x{b:02X}>" for b in chunks[0])
    text = decode_ids(tokenizer, [token_id])
    if "\ufffd" in text and hasattr(tokenizer, "convert_ids_to_tokens"):
        raw = tokenizer.convert_ids_to_tokens([token_id])[0]
        if raw:
            return str(raw)
    return text


def _group_slices(table: KeyTokenTable, num_groups: int) -> list[tuple[int, int]]:
    # rows are ordered by group, then token id
    bounds = torch.searchsorted(table.group, torch.arange(num_groups + 1, dtype=table.group.dtype)).tolist()
    return [(bounds[g], bounds[g + 1]) for g in range(num_groups)]


def analyze(
    rollouts: Sequence[Rollout],
    tokenizer: Any,
    config: KTAEConfig | None = None,
    num_tokens: int = 20,
    progress: bool = True,
    notes: Sequence[str] = (),
) -> Analysis:
    """Key-token values of every token of every rollout, grouped by prompt.

    Args:
        rollouts: from `load_rollouts`.
        tokenizer: a tokenizer object (or a name / folder for ``AutoTokenizer``).
        config: KTAE options; None -> the options recorded in the rollouts (``ktae_config`` of a trainer's dump),
            else defaults with the tokenizer's pad and EOS ids ignored.
        num_tokens: how many positive and negative tokens to keep per group.
        progress: show tqdm progress bars.
        notes: what the report should say about where the rollouts came from (`RolloutSource.notes`).

    When rollouts carry the K values a trainer used (``key_token_values``), ``Analysis.dump_check`` compares
    them with the recomputed ones.
    """
    if not rollouts:
        raise ValueError("rollouts must not be empty")
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 0:
        raise ValueError(f"num_tokens must be a non-negative integer, got {num_tokens!r}")
    tokenizer = load_tokenizer(tokenizer)
    dumped_options = config_from_rollouts(rollouts)
    if config is None and dumped_options is not None:
        config = KTAEConfig(**dumped_options)
    elif config is None:
        config = KTAEConfig(ignore_token_ids=special_token_ids(tokenizer))
    elif not isinstance(config, KTAEConfig):
        raise TypeError(f"config must be a KTAEConfig, got {type(config).__name__}")
    token_ids: list[list[int]] = []
    for r in progress_bar(rollouts, desc="tokenising", unit="rollout", disable=not progress, leave=False):
        token_ids.append(list(r.token_ids) if r.token_ids is not None else encode_text(tokenizer, r.response or ""))
    length = max(1, max(len(ids) for ids in token_ids))
    batch = len(rollouts)
    responses = torch.zeros(batch, length, dtype=torch.int64)
    mask = torch.zeros(batch, length, dtype=torch.bool)
    for i, ids in enumerate(token_ids):
        if ids:
            responses[i, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
            mask[i, : len(ids)] = True
    scores = torch.tensor([r.score for r in rollouts], dtype=torch.float64)
    group = [r.group for r in rollouts]
    table = ktae.explain(responses, mask, scores, group, config)
    values = ktae.key_token_values(responses, mask, scores, group, config)
    advantages = ktae.rollout_advantages(scores, group, config).tolist()
    correct = (scores > config.threshold).tolist()
    dump_check = check_dumped_values(rollouts, values)
    if dump_check is not None:
        dump_check.config_from_dump = dumped_options is not None and config == KTAEConfig(**dumped_options)

    cache: dict = {}
    pieces = [
        token_pieces(tokenizer, ids, cache)
        for ids in progress_bar(token_ids, desc="decoding tokens", unit="rollout", disable=not progress, leave=False)
    ]
    keys = table.group_keys
    index = {key: g for g, key in enumerate(keys)}
    groups = [
        GroupSummary(index=g, key=key, prompt=None, reference=None, members=[], n_correct=0, n_wrong=0)
        for g, key in enumerate(keys)
    ]
    for i, r in enumerate(rollouts):
        summary = groups[index[r.group]]
        summary.members.append(i)
        summary.prompt = summary.prompt if summary.prompt is not None else r.prompt
        summary.reference = summary.reference if summary.reference is not None else r.reference
        summary.step = summary.step if summary.step is not None else r.step
        if correct[i]:
            summary.n_correct += 1
        else:
            summary.n_wrong += 1
    notes = list(notes) + group_size_notes(groups)
    labels: dict[int, str] = {}
    for g, summary in enumerate(groups):
        summary.positive, summary.negative = table.strongest(g, num_tokens)
        for record in summary.positive + summary.negative:
            if record["token"] not in labels:
                labels[record["token"]] = token_label(tokenizer, record["token"])
    return Analysis(
        rollouts=list(rollouts),
        token_ids=token_ids,
        pieces=pieces,
        values=[values[i, : len(ids)].clone() for i, ids in enumerate(token_ids)],
        advantages=[float(a) for a in advantages],
        correct=[bool(c) for c in correct],
        groups=groups,
        table=table,
        config=config,
        token_labels=labels,
        notes=list(notes),
        dump_check=dump_check,
    )


def step_rows(analysis: Analysis) -> list[dict]:
    """Per training step: prompts, rollouts, correct rollouts, prompts with both outcomes, first group index."""
    rows: dict[int | None, dict] = {}
    for g in analysis.groups:
        row = rows.setdefault(g.step, {"step": g.step, "prompts": 0, "rollouts": 0, "correct": 0, "mixed": 0,
                                       "first": g.index})
        row["prompts"] += 1
        row["rollouts"] += len(g.members)
        row["correct"] += g.n_correct
        row["mixed"] += int(g.n_correct > 0 and g.n_wrong > 0)
    return list(rows.values())
