"""The training loop of ``ktae train``: one function, :func:`train`, read top to bottom.

Per step::

    sample prompts -> generate n rollouts each -> reward (grade the \\boxed{} answers)
    [DAPO: drop groups whose rollouts are all right or all wrong, generate more, up to a limit]
    -> advantages (ktae core: GRPO / Dr. GRPO / RLOO, with or without key-token values)
    -> PPO epochs over mini-batches (old log-probs from the generating policy, reference log-probs
       only when kl_coef > 0; ktae.core.losses for the clipped loss, the KL loss and the entropy)
    -> log -> evaluate / checkpoint on schedule

Ctrl-C and SIGTERM save a checkpoint of the last completed state (an update in progress is
finished first); ``train(..., resume=RUN_DIR)`` continues it and, on a CPU with the same seed,
produces the same metrics as a run that was never stopped.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import random
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import ktae
from ktae.core.losses import aggregate_loss, entropy_from_logits, high_entropy_mask, kl_loss, policy_loss
from ktae.prompts import format_prompt
from ktae.rewards import grade_batch, overlong_penalty
from ktae.train import checkpoint as ckpt
from ktae.train.config import TrainConfig, make_config, resume_config, save_yaml
from ktae.train.data import PromptSampler, load_problems
from ktae.train.logger import MetricsLogger
from ktae.train.modeling import load_policy, resolve_device, resolve_dtype

PHASES = ("generation", "reward", "advantage", "update")


# ============================================================================ pieces of one step
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


def build_prompts(problems: list[dict], cfg: TrainConfig, tokenizer) -> list[str]:
    template = cfg.template
    if template == "auto":
        template = "{problem}\n" if cfg.data == "embedded" else "qwen_math"
    return [format_prompt(p["problem"], template, tokenizer) for p in problems]


def generate_rollouts(model, tokenizer, prompts: list[str], cfg: TrainConfig, engine=None) -> list:
    """``len(prompts) * n`` sampled responses (``ktae.generation.Generation``), prompt-major."""
    from ktae.generation import generate

    if engine is not None:  # vLLM
        return engine.generate(prompts, n=cfg.rollouts_per_prompt)
    return generate(model, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                    top_p=cfg.top_p, n=cfg.rollouts_per_prompt, batch_size=cfg.generation_batch_size,
                    backend="hf", progress=False)


def score(texts: list[str], references: list, lengths: list[int], cfg: TrainConfig) -> tuple[list[float], list[bool]]:
    """Outcome rewards and correctness: ``math`` 1/0, ``dapo`` +1/-1 plus the overlong penalty."""
    correct = grade_batch(texts, references, workers=cfg.grader_workers, progress=False)
    if cfg.reward == "math":
        return [1.0 if c else 0.0 for c in correct], correct
    rewards = [(1.0 if c else -1.0) + overlong_penalty(n, cfg.max_new_tokens, cfg.overlong_buffer, cfg.overlong_penalty)
               for c, n in zip(correct, lengths)]
    return rewards, correct


def pad_right(rows: list[list[int]], pad_id: int, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    width = max([len(r) for r in rows] + [1]) if width is None else width
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def pad_left(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r):] = 1
    return ids, mask


def response_log_probs(model, prompt_ids: list[list[int]], responses: torch.Tensor, response_mask: torch.Tensor,
                       pad_id: int, temperature: float, entropy: bool = False, entropy_grad: bool = False
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities ``[b, L]`` of the response tokens (logits / temperature), and optionally the entropy.

    Prompts are left-padded and responses right-padded; position ids count real tokens only,
    as in generation, so the log-probs match the sampling distribution. The entropy ``[b, L]``
    carries a gradient only with ``entropy_grad`` (an entropy bonus).
    """
    device = next(model.parameters()).device
    prompt, prompt_mask = pad_left(prompt_ids, pad_id)
    length = responses.shape[1]
    input_ids = torch.cat([prompt, responses.cpu()], dim=1).to(device)
    attention = torch.cat([prompt_mask, response_mask.cpu().long()], dim=1).to(device)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    kwargs = {"logits_to_keep": length + 1} if _takes_logits_to_keep(model) else {}
    out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=False, **kwargs)
    logits = out.logits[:, -(length + 1):-1, :].float() / temperature       # [b, L, V] predicting the response
    targets = responses.to(device)
    log_probs = -F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                 reduction="none").view(targets.shape)
    ent = None
    if entropy:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            ent = entropy_from_logits(logits if entropy_grad else logits.detach(), chunk_size=4096)
    return log_probs, ent


def _takes_logits_to_keep(model) -> bool:
    import inspect

    forward = type(model).forward
    cached = _LOGITS_TO_KEEP.get(forward)
    if cached is None:
        cached = _LOGITS_TO_KEEP[forward] = "logits_to_keep" in inspect.signature(forward).parameters
    return cached


_LOGITS_TO_KEEP: dict = {}


def chunks(indices: torch.Tensor, size: int) -> list[torch.Tensor]:
    return [indices[i : i + size] for i in range(0, len(indices), size)] if len(indices) else []


@torch.no_grad()
def forward_log_probs(model, batch: Rollouts, cfg: TrainConfig, pad_id: int, micro: int,
                      amp=contextlib.nullcontext) -> torch.Tensor:
    """``[B, L]`` log-probs of every rollout under ``model`` (no gradient), micro-batch by micro-batch."""
    out = torch.zeros(batch.responses.shape, dtype=torch.float32)
    for idx in chunks(torch.arange(len(batch.prompt_ids)), micro):
        width = max(int(batch.response_mask[idx].sum(-1).max()), 1)
        with amp():
            lp, _ = response_log_probs(model, [batch.prompt_ids[i] for i in idx], batch.responses[idx, :width],
                                       batch.response_mask[idx, :width], pad_id, cfg.temperature)
        out[idx, :width] = lp.float().cpu()
    return out


def normaliser(mask: torch.Tensor, mode: str) -> float:
    """What ``aggregate_loss(mode)`` divides by over ``mask`` (tokens, non-empty rows, or rows)."""
    if mode == "token-mean":
        return float(mask.sum())
    if mode == "seq-mean-token-sum-norm":
        return float(mask.shape[0])
    return float((mask.sum(-1) > 0).sum())


def ppo_update(model, ref_model, optimizer, batch: Rollouts, advantages: torch.Tensor, cfg: TrainConfig,
               pad_id: int, log, amp=contextlib.nullcontext) -> dict[str, float]:
    """PPO epochs over mini-batches; one optimizer step per mini-batch; non-finite steps are skipped.

    ``amp`` makes the context of the forward passes (``torch.autocast`` for bf16 on a GPU).
    """
    device = next(model.parameters()).device
    n = cfg.rollouts_per_prompt
    size = len(batch.prompt_ids)
    mini = (cfg.mini_batch_prompts * n) if cfg.mini_batch_prompts else size
    micro = cfg.micro_batch_size or mini
    params = [p for p in model.parameters() if p.requires_grad]
    on_policy = cfg.ppo_epochs == 1 and mini >= size  # old log-probs = the current ones, no extra forward
    old_log_probs = None if on_policy else forward_log_probs(model, batch, cfg, pad_id, micro, amp)
    ref_log_probs = forward_log_probs(ref_model, batch, cfg, pad_id, micro, amp) if cfg.kl_coef > 0 else None
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}

    def add(name: str, value: float, weight: float) -> None:
        sums[name] = sums.get(name, 0.0) + value * weight
        weights[name] = weights.get(name, 0.0) + weight

    skipped = steps = 0
    model.train()
    for _ in range(cfg.ppo_epochs):
        for mb in chunks(torch.arange(size), mini):
            optimizer.zero_grad(set_to_none=True)
            total = max(normaliser(batch.response_mask[mb], cfg.loss_agg_mode), 1.0)
            finite = True
            for idx in chunks(mb, micro):
                width = max(int(batch.response_mask[idx].sum(-1).max()), 1)
                mask = batch.response_mask[idx, :width].to(device)
                with amp():
                    log_prob, entropy = response_log_probs(
                        model, [batch.prompt_ids[i] for i in idx], batch.responses[idx, :width], mask, pad_id,
                        cfg.temperature, entropy=True, entropy_grad=cfg.entropy_coef != 0)
                old = log_prob.detach() if old_log_probs is None else old_log_probs[idx, :width].to(device)
                adv = advantages[idx, :width].to(device)
                if cfg.top_entropy_quantile < 1:  # a zero advantage gives a token no policy loss or gradient
                    adv = adv * high_entropy_mask(entropy.detach(), mask, cfg.top_entropy_quantile)
                loss, pg_metrics = policy_loss(
                    log_prob, old, adv, mask, clip_low=cfg.clip_low, clip_high=cfg.clip_high,
                    dual_clip=cfg.dual_clip or None, loss_agg_mode=cfg.loss_agg_mode,
                    loss_scale_factor=cfg.max_new_tokens)
                tokens = float(mask.sum())
                if ref_log_probs is not None:
                    kl, kl_metrics = kl_loss(log_prob, ref_log_probs[idx, :width].to(device), mask, cfg.kl_kind,
                                             cfg.loss_agg_mode, loss_scale_factor=cfg.max_new_tokens)
                    loss = loss + cfg.kl_coef * kl
                    add("kl", kl_metrics["kl_mean"], tokens)
                if cfg.entropy_coef:
                    loss = loss - cfg.entropy_coef * aggregate_loss(entropy, mask, cfg.loss_agg_mode,
                                                                    loss_scale_factor=cfg.max_new_tokens)
                share = normaliser(mask, cfg.loss_agg_mode) / total
                if not torch.isfinite(loss):
                    finite = False
                    break
                (loss * share).backward()
                add("loss", float(loss.detach()), share)
                add("entropy", float((entropy.detach() * mask).sum()) / max(tokens, 1.0), tokens)
                for key in ("clip_fraction", "approx_kl"):
                    add(key, pg_metrics[key], tokens)
            grad_norm = float("nan")
            if finite:
                max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
                finite = math.isfinite(grad_norm)
            if finite:
                optimizer.step()
                steps += 1
                add("grad_norm", grad_norm, 1.0)
            else:
                optimizer.zero_grad(set_to_none=True)
                skipped += 1
                log(f"warning: non-finite loss or gradient (grad norm {grad_norm}); this update was skipped")
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    out = {k: sums[k] / weights[k] for k in sums if weights[k] > 0}
    out.update(optimizer_steps=steps, skipped_updates=skipped)
    return out


@torch.no_grad()
def evaluate(model, tokenizer, problems: list[dict], cfg: TrainConfig, engine=None) -> dict[str, float]:
    """Greedy held-out accuracy and response length (``eval_*`` metrics)."""
    from ktae.generation import generate

    if not problems:
        return {}
    prompts = build_prompts(problems, cfg, tokenizer)
    max_new = cfg.eval_max_new_tokens or cfg.max_new_tokens
    if engine is not None:
        gens = engine.generate(prompts, n=1, greedy=True, max_new_tokens=max_new)
    else:
        gens = generate(model, tokenizer, prompts, max_new_tokens=max_new, temperature=0.0, n=1,
                        batch_size=cfg.eval_batch_size, backend="hf", progress=False)
    correct = grade_batch([g.text for g in gens], [p["answer"] for p in problems], workers=cfg.grader_workers,
                          progress=False)
    return {
        "eval_accuracy": sum(correct) / len(correct),
        "eval_response_length": sum(g.num_tokens for g in gens) / len(gens),
        "eval_clipped_fraction": sum(not g.finished for g in gens) / len(gens),
        "eval_problems": len(problems),
    }


def dump_rollouts(path: Path, batch: Rollouts, tokenizer, step: int, ktae_config) -> None:
    """Write the step's rollouts as jsonl (fields: group, prompt, response, token_ids, reward, correct, reference)
    and, when ``ktae.analysis`` is available, its HTML key-token report next to it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for i in range(len(batch.texts)):
            ids = batch.responses[i][batch.response_mask[i].bool()].tolist()
            ref = batch.references[i]
            f.write(json.dumps({
                "group": f"step{step}-{int(batch.group[i])}",
                "prompt": batch.problems[i],
                "response": batch.texts[i],
                "token_ids": ids,
                "reward": float(batch.rewards[i]),
                "correct": bool(batch.correct[i]),
                "reference": ref if isinstance(ref, (str, list)) else str(ref),
            }) + "\n")
    try:
        from ktae.analysis import write_report
    except ImportError:
        return
    try:
        write_report(path, tokenizer, path.with_suffix(".html"), config=ktae_config, progress=False)
    except Exception as exc:  # the report is a convenience; the rollouts file is what matters
        print(f"warning: no key-token report for {path.name}: {type(exc).__name__}: {exc}", flush=True)


# ============================================================================ interruption
class StopGuard:
    """Turns SIGINT/SIGTERM into KeyboardInterrupt, except inside :meth:`critical` (an update, a save),
    where the stop waits for the section to end."""

    def __init__(self, log):
        self.log = log
        self.inside = False
        self.failed_inside = False
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        return False

    def _handle(self, signum, frame):
        if self.inside:
            self.requested = True
            self.log("stop requested: finishing the current update, then saving a checkpoint")
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def critical(self):
        self.inside = True
        try:
            yield
        except BaseException:
            self.failed_inside = True   # the section (an update, a save) did not finish
            raise
        finally:
            self.inside = False
        if self.requested:
            raise KeyboardInterrupt


# ============================================================================ the loop
def _as_config(config, overrides: dict) -> TrainConfig:
    if config is None:
        return make_config(**overrides)
    if isinstance(config, dict):
        return make_config(**{**config, **overrides})
    if isinstance(config, TrainConfig):
        return dataclasses.replace(config, **overrides).validate() if overrides else config.validate()
    raise TypeError(f"config must be a TrainConfig, a dict or None, got {type(config).__name__}")


def _new_run_dir(cfg: TrainConfig) -> Path:
    if cfg.run_dir:
        return Path(cfg.run_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.output_root) / f"{cfg.preset}-{cfg.estimator.replace('+', '-')}-s{cfg.seed}-{stamp}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = Path(f"{base}-{k}")
    return path


def _print(text: str) -> None:
    print(text, flush=True)


def train(config: TrainConfig | dict | None = None, *, resume: str | Path | None = None, log=_print,
          **overrides) -> Path:
    """Run RL training and return the run folder (metrics.jsonl, config.yaml, checkpoints/, final/).

    ``config``: a :class:`TrainConfig`, a dict of options, or ``None`` (defaults); ``overrides``
    are option values applied on top (``train(steps=10, estimator="grpo")``). ``resume``: a run
    folder to continue from its last checkpoint (its saved configuration is used, with
    ``overrides`` on top). Raises ``KeyboardInterrupt`` after saving when stopped by Ctrl-C/SIGTERM.
    """
    # ------------------------------------------------------------------ configuration and run folder
    if resume is not None:
        cfg = resume_config(resume, overrides)
        run_dir = Path(resume)
        last = ckpt.latest_checkpoint(run_dir)
        if last is None:
            raise ValueError(f"--resume: {str(resume)!r} has no complete checkpoint to resume from")
    else:
        cfg = _as_config(config, overrides)
        run_dir = _new_run_dir(cfg)
        if ckpt.latest_checkpoint(run_dir) is not None:
            raise ValueError(f"run folder {str(run_dir)!r} already holds checkpoints; use --resume {run_dir} to "
                             "continue it or choose another --run_dir")
        last = None
        cfg = dataclasses.replace(cfg, run_dir=str(run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, run_dir / "config.yaml")
    say = (lambda text: None) if cfg.quiet else log

    threads = cfg.threads or (1 if cfg.model == "embedded" and resolve_device(cfg.device).type == "cpu" else 0)
    if threads:
        torch.set_num_threads(threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no bar per checkpoint write; the console shows one row per step
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)   # compute dtype; trained parameters stay float32 (mixed precision)

    def amp():
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    # ------------------------------------------------------------------ model, data, optimizer
    t_setup = time.time()
    model, tokenizer, source = load_policy(cfg, device, torch.float32, progress=not cfg.quiet)
    model.eval()
    ref_model = None
    if cfg.kl_coef > 0:
        ref_model = copy.deepcopy(model).to(dtype).eval()   # frozen: kept in the compute dtype
        ref_model.requires_grad_(False)
    train_problems, eval_problems = load_problems(cfg)
    if cfg.eval_size:
        eval_problems = eval_problems[: cfg.eval_size]
    all_prompts = build_prompts(train_problems, cfg, tokenizer)
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in all_prompts]
    usable = [i for i, ids in enumerate(prompt_ids) if len(ids) <= cfg.max_prompt_tokens]
    if not usable:
        raise ValueError(f"--max_prompt_tokens {cfg.max_prompt_tokens}: every prompt is longer")
    sampler = PromptSampler(len(usable), cfg.seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay)

    def lr_factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "cosine":
            frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        return 1.0

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    ktae_config = ktae.KTAEConfig(
        alpha=cfg.ktae_alpha, beta=cfg.ktae_beta, gamma=cfg.ktae_gamma, top=cfg.ktae_top,
        threshold=cfg.ktae_threshold, fisher_at_one=cfg.ktae_fisher_at_one, rollout=cfg.rollout_estimator,
        ignore_token_ids=tuple(sorted({i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None})),
    )
    engine = None
    if cfg.backend == "vllm":
        from ktae.train.engines import VLLMEngine

        engine = VLLMEngine(model, tokenizer, cfg, source, run_dir, dtype)

    # ------------------------------------------------------------------ resume or start
    start_step, eval_pending, elapsed_before = 0, cfg.eval_every > 0, 0.0
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    if last is not None:
        state = ckpt.load_trainer_state(last)
        ckpt.load_weights_into(model, last)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.load_state(state["sampler"])
        ckpt.set_rng_state(state["rng"])
        start_step, eval_pending = int(state["step"]), bool(state["eval_pending"])
        elapsed_before = float(state.get("elapsed", 0.0))
        if engine is not None:
            engine.sync(model)
        say(f"resuming {run_dir} from step {start_step}")
    logger = MetricsLogger(run_dir, cfg.to_dict(), resume_step=start_step if last is not None else None,
                           tensorboard=cfg.tensorboard, wandb=cfg.wandb, wandb_project=cfg.wandb_project,
                           quiet=cfg.quiet)
    nparams = sum(p.numel() for p in model.parameters())
    say(f"run folder: {run_dir}\nmodel: {source} ({nparams / 1e6:.2f}M parameters, computing in {str(dtype).removeprefix('torch.')} on {device}); "
        f"data: {cfg.data} ({len(usable)} training problems, {len(eval_problems)} held-out)\n"
        f"estimator: {cfg.estimator}, reward: {cfg.reward}, {cfg.prompts_per_step} prompts x "
        f"{cfg.rollouts_per_prompt} rollouts per step, {cfg.steps} steps (setup {time.time() - t_setup:.0f}s)")

    def save(step: int, pending: bool, rng: dict, sampler_state: dict, elapsed: float) -> Path:
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng,
                 "sampler": sampler_state, "eval_pending": pending, "elapsed": elapsed, "config": cfg.to_dict()}
        return ckpt.save_checkpoint(run_dir, step, model, tokenizer, state, keep=cfg.keep_checkpoints)

    # the state a checkpoint would hold if the run stopped now
    point = {"step": start_step, "pending": eval_pending, "rng": ckpt.rng_state(), "sampler": sampler.state()}
    t_start = time.time()
    skipped_total = 0
    guard = StopGuard(log)
    try:
        with guard:
            step = start_step
            while True:
                # ---------------------------------------------- evaluate / checkpoint on schedule
                if point["pending"]:
                    t0 = time.time()
                    with amp():
                        results = evaluate(model, tokenizer, eval_problems, cfg, engine)
                    record = {"step": step, **results, "time_eval": time.time() - t0}
                    if "eval_accuracy" in record:
                        logger.log(record)
                        say(f"eval @ step {step}: held-out accuracy {record['eval_accuracy']:.1%} "
                            f"({record['eval_problems']} problems, greedy), mean length "
                            f"{record['eval_response_length']:.1f} tokens")
                    point["pending"] = False
                if step > start_step and (step == cfg.steps or (cfg.save_every and step % cfg.save_every == 0)):
                    with guard.critical():
                        save(step, False, point["rng"], point["sampler"], elapsed_before + time.time() - t_start)
                if step >= cfg.steps:
                    break
                step += 1
                if step == start_step + 1 or (step - 1) % 20 == 0:
                    say(logger.header_line())
                point = {"step": step - 1, "pending": False, "rng": ckpt.rng_state(), "sampler": sampler.state()}
                times = dict.fromkeys(PHASES, 0.0)
                t_step = time.time()

                # ---------------------------------------------- sample prompts, generate, reward
                kept: list[dict] = []   # groups: {"index", "gens", "rewards", "correct"}
                all_rewards: list[float] = []
                all_correct: list[bool] = []
                all_lengths: list[int] = []
                all_finished: list[bool] = []
                batches = 0
                per_batch = (cfg.generation_prompts or cfg.prompts_per_step) if cfg.dynamic_sampling \
                    else cfg.prompts_per_step
                while len(kept) < cfg.prompts_per_step and batches < (cfg.max_generation_batches
                                                                      if cfg.dynamic_sampling else 1):
                    batches += 1
                    chosen = [usable[i] for i in sampler.next(per_batch)]
                    t0 = time.time()
                    with amp():
                        gens = generate_rollouts(model, tokenizer, [all_prompts[i] for i in chosen], cfg, engine)
                    times["generation"] += time.time() - t0
                    t0 = time.time()
                    refs = [train_problems[chosen[g.prompt_index]]["answer"] for g in gens]
                    rewards, correct = score([g.text for g in gens], refs, [g.num_tokens for g in gens], cfg)
                    times["reward"] += time.time() - t0
                    all_rewards += rewards
                    all_correct += correct
                    all_lengths += [g.num_tokens for g in gens]
                    all_finished += [g.finished for g in gens]
                    n = cfg.rollouts_per_prompt
                    for j, index in enumerate(chosen):
                        c = correct[j * n:(j + 1) * n]
                        if cfg.dynamic_sampling and (all(c) or not any(c)):
                            continue  # DAPO: a group with one accuracy carries no signal
                        kept.append({"index": index, "gens": gens[j * n:(j + 1) * n],
                                     "rewards": rewards[j * n:(j + 1) * n], "correct": c})
                kept = kept[: cfg.prompts_per_step]
                n = cfg.rollouts_per_prompt
                mixed = 0
                if kept:
                    gens = [g for grp in kept for g in grp["gens"]]
                    responses, response_mask = pad_right([g.token_ids for g in gens], tokenizer.pad_token_id)
                    batch = Rollouts(
                        prompt_ids=[prompt_ids[grp["index"]] for grp in kept for _ in range(n)],
                        responses=responses, response_mask=response_mask,
                        group=torch.arange(len(kept)).repeat_interleave(n),
                        rewards=torch.tensor([r for grp in kept for r in grp["rewards"]], dtype=torch.float32),
                        correct=torch.tensor([c for grp in kept for c in grp["correct"]], dtype=torch.bool),
                        finished=torch.tensor([g.finished for g in gens], dtype=torch.bool),
                        texts=[g.text for g in gens],
                        problems=[train_problems[grp["index"]]["problem"] for grp in kept for _ in range(n)],
                        references=[train_problems[grp["index"]]["answer"] for grp in kept for _ in range(n)],
                    )
                    mixed = sum(1 for grp in kept if any(grp["correct"]) and not all(grp["correct"]))

                    # ------------------------------------------ advantages (the ktae core)
                    t0 = time.time()
                    base = ktae.rollout_advantages(batch.rewards, batch.group, ktae_config)        # [B]
                    if cfg.uses_ktae:
                        advantages, _ = ktae.ktae_advantages(batch.responses, batch.response_mask, batch.rewards,
                                                             batch.group, ktae_config)          # [B, L]
                    else:
                        advantages = base[:, None] * batch.response_mask
                    times["advantage"] += time.time() - t0

                # ---------------------------------------------- PPO update (finished even on Ctrl-C)
                with guard.critical():
                    update: dict[str, float] = {}
                    if kept:
                        t0 = time.time()
                        update = ppo_update(model, ref_model, optimizer, batch, advantages, cfg,
                                            tokenizer.pad_token_id, log, amp)
                        times["update"] += time.time() - t0
                        if engine is not None:
                            engine.sync(model)
                    else:
                        say(f"step {step}: no group with both right and wrong rollouts after {batches} generation "
                            "batches; no update")
                    lr_now = optimizer.param_groups[0]["lr"]
                    with warnings.catch_warnings():  # the first update may have been skipped (non-finite)
                        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                        scheduler.step()
                    skipped_total += int(update.get("skipped_updates", 0))

                    # ------------------------------------------ log
                    step_time = time.time() - t_step
                    record: dict[str, Any] = {
                        "step": step,
                        "reward": sum(all_rewards) / len(all_rewards),
                        "accuracy": sum(all_correct) / len(all_correct),
                        "response_length": sum(all_lengths) / len(all_lengths),
                        "response_length_max": max(all_lengths),
                        "clipped_fraction": 1.0 - sum(all_finished) / len(all_finished),
                        "lr": lr_now,
                        "groups": len(kept),
                        "mixed_groups": mixed / max(len(kept), 1),
                        "generation_batches": batches,
                        "rollouts_generated": len(all_rewards),
                    }
                    record.update({k: v for k, v in update.items()})
                    if kept and cfg.uses_ktae:
                        key = (advantages - base[:, None] * batch.response_mask)[batch.response_mask.bool()]
                        record.update(ktae_abs_mean=float(key.abs().mean()) if key.numel() else 0.0,
                                      ktae_pos_frac=float((key > 0).float().mean()) if key.numel() else 0.0,
                                      ktae_neg_frac=float((key < 0).float().mean()) if key.numel() else 0.0)
                    record["time_step"] = step_time
                    for phase in PHASES:
                        record[f"time_{phase}"] = times[phase]
                        record[f"share_{phase}"] = times[phase] / step_time if step_time > 0 else 0.0
                    record["skipped_updates_total"] = skipped_total
                    logger.log(record)
                    say(logger.row(record))
                    if kept and cfg.dump_key_tokens_every and step % cfg.dump_key_tokens_every == 0:
                        dump_rollouts(run_dir / "key_tokens" / f"step_{step:04d}.jsonl", batch, tokenizer, step,
                                      ktae_config)
                    point = {"step": step, "pending": bool(cfg.eval_every) and (step % cfg.eval_every == 0
                                                                               or step == cfg.steps),
                             "rng": ckpt.rng_state(), "sampler": sampler.state()}
    except BaseException as exc:
        # Ctrl-C / SIGTERM, or a crash: save the last consistent state (not when the crash hit an update
        # half-way: its weights are then neither the old nor the new ones, and the last checkpoint stays)
        stopped = isinstance(exc, KeyboardInterrupt)
        try:
            if not guard.failed_inside:
                path = save(point["step"], point["pending"], point["rng"], point["sampler"],
                            elapsed_before + time.time() - t_start)
                log(f"\n{'stopped' if stopped else 'error: ' + type(exc).__name__}: checkpoint of step "
                    f"{point['step']} saved in {path}\ncontinue with: ktae train --resume {run_dir}")
            else:
                last = ckpt.latest_checkpoint(run_dir)
                log(f"\nerror during an update ({type(exc).__name__}); last checkpoint: {last or 'none'}")
        except Exception as save_error:  # e.g. a full disk: report, and let the original error through
            log(f"could not save a checkpoint: {save_error}")
        finally:
            logger.close()
        raise
    logger.close()
    if cfg.save_model:
        final = run_dir / "final"
        model.save_pretrained(final, safe_serialization=True)
        tokenizer.save_pretrained(final)
    say(f"done: step {cfg.steps} reached; training took {elapsed_before + time.time() - t_start:.0f}s "
        f"(+{t_start - t_setup:.0f}s setup this session); run folder {run_dir}")
    return run_dir
