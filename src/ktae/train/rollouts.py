"""Collecting a step's rollouts: sample prompts, generate, score, keep groups (DAPO's dynamic sampling).

:func:`collect_rollouts` returns one :class:`Rollouts` record of tensors (the kept groups, their n rollouts
adjacent) and the statistics of everything generated in the step, including the groups it dropped.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ktae.generation import fit_prompts, prompt_token_ids
from ktae.prompts import format_prompt
from ktae.rewards import grade_batch, overlong_penalty
from ktae.train.config import AlgorithmConfig, DataConfig, RolloutConfig, TrainConfig


@dataclass
class Rollouts:
    """The rollouts of one step (``B = groups x n``, grouped: the n rollouts of a prompt are adjacent)."""

    prompt_ids: list[list[int]]      # [B] prompt token ids
    responses: torch.Tensor          # [B, L] response ids, right-padded (EOS included when emitted)
    response_mask: torch.Tensor      # [B, L] 1 on response tokens
    group: torch.Tensor              # [B] group index (0..groups-1)
    rewards: torch.Tensor            # [B] float
    correct: torch.Tensor            # [B] bool
    finished: torch.Tensor           # [B] bool, False when cut at max_new_tokens
    texts: list[str]
    problems: list[str]
    references: list[Any]


@dataclass
class Group:
    """The n generations of one prompt, scored."""

    index: int                       # the problem's index in the training pool
    gens: list                       # ktae.generation.Generation, n of them
    rewards: list[float]
    correct: list[bool]


@dataclass
class Generated:
    """Every rollout a step generated (kept or dropped), for the step's statistics."""

    rewards: list[float]
    correct: list[bool]
    lengths: list[int]
    finished: list[bool]
    batches: int = 0

    def metrics(self, kept: list[Group]) -> dict[str, float]:
        """Reward, accuracy, lengths, share cut, kept groups, generation batches."""
        return {
            "reward": sum(self.rewards) / len(self.rewards),
            "accuracy": sum(self.correct) / len(self.correct),
            "response_length": sum(self.lengths) / len(self.lengths),
            "response_length_max": max(self.lengths),
            "clipped_fraction": 1.0 - sum(self.finished) / len(self.finished),
            "groups": len(kept),
            "generation_batches": self.batches,
            "rollouts_generated": len(self.rewards),
        }


@dataclass
class Prompts:
    """The training pool as the loop samples it: problems, formatted prompts and their token ids."""

    problems: list[dict]             # {"problem", "answer"} records
    texts: list[str]                 # formatted prompts
    ids: list[list[int]]             # prompt token ids
    usable: list[int]                # indices of the prompts within max_prompt_tokens that leave room for a response
    no_room: int = 0                 # prompts within max_prompt_tokens left out: no room for a response


def build_prompts(problems: list[dict], data: DataConfig, tokenizer) -> list[str]:
    """The prompt text of each problem (``--template``; ``auto``: the bare problem for the embedded task)."""
    template = data.template
    if template == "auto":
        template = "{problem}\n" if data.path == "embedded" else "qwen_math"
    return [format_prompt(p["problem"], template, tokenizer) for p in problems]


def prepare_prompts(problems: list[dict], data: DataConfig, tokenizer, positions: int | None = None) -> Prompts:
    """Format and tokenise the training pool; prompts over ``max_prompt_tokens``, and those that leave no room for
    a response in the model's ``positions`` (:func:`ktae.generation.fit_prompts`), are left out.

    Raises:
        ValueError: no prompt is left (the message names ``--max_prompt_tokens`` and the positions).
    """
    texts = build_prompts(problems, data, tokenizer)
    ids = prompt_token_ids(tokenizer, texts)
    short = [i for i, row in enumerate(ids) if len(row) <= data.max_prompt_tokens]
    too_long = set(fit_prompts([len(ids[i]) for i in short], positions, 1).too_long)
    usable = [i for k, i in enumerate(short) if k not in too_long]
    if not usable:
        room = f", or leaves no room for a response in the model's {positions} positions" if too_long else ""
        raise ValueError(f"--max_prompt_tokens {data.max_prompt_tokens}: every prompt is longer{room}")
    return Prompts(problems, texts, ids, usable, no_room=len(too_long))


def fitting_problems(problems: list[dict], data: DataConfig, tokenizer, positions: int | None) -> list[dict]:
    """The ``problems`` whose prompts leave room for a response in the model's ``positions`` (held-out problems:
    the same rule as the training pool's, :func:`ktae.generation.fit_prompts`)."""
    ids = prompt_token_ids(tokenizer, build_prompts(problems, data, tokenizer))
    too_long = set(fit_prompts([len(row) for row in ids], positions, 1).too_long)
    return [p for i, p in enumerate(problems) if i not in too_long]


def generate_rollouts(model, tokenizer, prompts: list[str], rollout: RolloutConfig, engine=None) -> list:
    """``len(prompts) * n`` sampled responses (``ktae.generation.Generation``), prompt-major."""
    from ktae.generation import generate

    if engine is not None:  # vLLM
        return engine.generate(prompts, n=rollout.rollouts_per_prompt)
    return generate(model, tokenizer, prompts, max_new_tokens=rollout.max_new_tokens, temperature=rollout.temperature,
                    top_p=rollout.top_p, n=rollout.rollouts_per_prompt, batch_size=rollout.generation_batch_size,
                    backend="hf", progress=False, draw=rollout.draw)


def score(texts: list[str], references: list, lengths: list[int], algorithm: AlgorithmConfig,
          max_new_tokens: int) -> tuple[list[float], list[bool]]:
    """Outcome rewards and correctness: ``math`` 1/0, ``dapo`` +1/-1 plus the overlong penalty."""
    correct = grade_batch(texts, references, workers=algorithm.grader_workers, progress=False)
    if algorithm.reward == "math":
        return [1.0 if c else 0.0 for c in correct], correct
    rewards = [(1.0 if c else -1.0) + overlong_penalty(n, max_new_tokens, algorithm.overlong_buffer,
                                                       algorithm.overlong_penalty)
               for c, n in zip(correct, lengths)]
    return rewards, correct


def collect_rollouts(model, tokenizer, prompts: Prompts, sampler, cfg: TrainConfig, times: dict[str, float],
                     engine=None, amp=contextlib.nullcontext) -> tuple[Rollouts | None, dict[str, float]]:
    """Generate and score groups until ``prompts_per_step`` are kept (or the generation batches run out).

    Without dynamic sampling: one batch of ``prompts_per_step`` prompts, every group kept. With it (DAPO):
    batches of ``generation_prompts`` prompts, groups whose rollouts are all right or all wrong dropped, at most
    ``max_generation_batches`` batches. Adds the seconds spent to ``times["generation"]`` / ``times["reward"]``.
    Returns the kept groups as one :class:`Rollouts` (``None`` when none was kept) and the statistics of every
    rollout generated (:meth:`Generated.metrics`).
    """
    rollout, n = cfg.rollout, cfg.rollout.rollouts_per_prompt
    dynamic = rollout.dynamic_sampling
    per_batch = (rollout.generation_prompts or rollout.prompts_per_step) if dynamic else rollout.prompts_per_step
    max_batches = rollout.max_generation_batches if dynamic else 1
    kept: list[Group] = []
    seen = Generated([], [], [], [])
    while len(kept) < rollout.prompts_per_step and seen.batches < max_batches:
        seen.batches += 1
        chosen = [prompts.usable[i] for i in sampler.next(per_batch)]
        t0 = time.time()
        with amp():
            gens = generate_rollouts(model, tokenizer, [prompts.texts[i] for i in chosen], rollout, engine)
        times["generation"] += time.time() - t0
        t0 = time.time()
        refs = [prompts.problems[chosen[g.prompt_index]]["answer"] for g in gens]
        rewards, correct = score([g.text for g in gens], refs, [g.num_tokens for g in gens], cfg.algorithm,
                                 rollout.max_new_tokens)
        times["reward"] += time.time() - t0
        seen.rewards += rewards
        seen.correct += correct
        seen.lengths += [g.num_tokens for g in gens]
        seen.finished += [g.finished for g in gens]
        for j, index in enumerate(chosen):
            group = Group(index, gens[j * n:(j + 1) * n], rewards[j * n:(j + 1) * n], correct[j * n:(j + 1) * n])
            if dynamic and (all(group.correct) or not any(group.correct)):
                continue  # DAPO: a group with one accuracy carries no signal
            kept.append(group)
    kept = kept[: rollout.prompts_per_step]
    return (assemble(kept, prompts, tokenizer.pad_token_id) if kept else None), seen.metrics(kept)


def assemble(kept: list[Group], prompts: Prompts, pad_id: int) -> Rollouts:
    """The kept groups as one right-padded batch."""
    gens = [g for grp in kept for g in grp.gens]
    n = len(kept[0].gens)
    responses, response_mask = pad([g.token_ids for g in gens], pad_id)
    return Rollouts(
        prompt_ids=[prompts.ids[grp.index] for grp in kept for _ in range(n)],
        responses=responses, response_mask=response_mask,
        group=torch.arange(len(kept)).repeat_interleave(n),
        rewards=torch.tensor([r for grp in kept for r in grp.rewards], dtype=torch.float32),
        correct=torch.tensor([c for grp in kept for c in grp.correct], dtype=torch.bool),
        finished=torch.tensor([g.finished for g in gens], dtype=torch.bool),
        texts=[g.text for g in gens],
        problems=[prompts.problems[grp.index]["problem"] for grp in kept for _ in range(n)],
        references=[prompts.problems[grp.index]["answer"] for grp in kept for _ in range(n)],
    )


def pad(rows: list[list[int]], pad_id: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows as ``(ids [N, W], mask [N, W])``, W the longest row (at least 1); padded on the right
    (responses) or, with ``left``, on the left (prompts, so that they end where the response begins)."""
    width = max([len(r) for r in rows] + [1])
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, span] = torch.tensor(r, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


def mistake_tokens(batch: Rollouts, tokenizer) -> torch.Tensor:
    """``[B, L]`` bool: the response token lies in a line that the word-problem task labels a ``mistake``
    (:func:`ktae.recipes.word_problems.token_labels` of the batch's story and the decoded text of each token)."""
    from ktae.recipes.word_problems import token_labels

    if tokenizer is None:
        raise ValueError("mistake_tokens: the oracle estimators need the tokenizer to label the responses' tokens")
    out = torch.zeros(batch.responses.shape, dtype=torch.bool)
    for i, story in enumerate(batch.problems):
        ids = batch.responses[i][batch.response_mask[i].bool()].tolist()
        texts = tokenizer.batch_decode([[t] for t in ids], skip_special_tokens=True)
        labels = token_labels(story, texts)
        out[i, : len(ids)] = torch.tensor([label == "mistake" for label in labels], dtype=torch.bool)
    return out.to(batch.responses.device)


def dump_rollouts(dumper, batch: Rollouts, key_values: torch.Tensor | None, step: int, ktae_config) -> None:
    """Write the step's rollouts with ``dumper`` (:class:`ktae.frontend.records.KeyTokenDumper`: the records of
    every trainer, K included; K = 0 without KTAE) and, when ``ktae.analysis`` is available, the HTML key-token
    report next to the file."""
    values = key_values if key_values is not None else torch.zeros(batch.responses.shape)
    group = [f"step{step}-{int(g)}" for g in batch.group]
    dumper.submit(step, batch.responses, batch.response_mask, batch.rewards, group, values, ktae_config,
                  prompts=batch.problems, references=batch.references)
    path = Path(dumper.flush()[-1])
    try:
        from ktae.analysis import write_report
    except ImportError:
        return
    try:
        write_report(path, dumper.tokenizer, path.with_suffix(".html"), config=ktae_config, progress=False)
    except Exception as exc:  # the report is a convenience; the rollouts file is what matters
        print(f"warning: no key-token report for {path.name}: {type(exc).__name__}: {exc}", flush=True)
