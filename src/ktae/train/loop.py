"""The training loop of ``ktae train``: :func:`train`, a loop of named steps read top to bottom.

Per step::

    collect rollouts  sample prompts, generate n rollouts each, grade the \\boxed{} answers
                      [DAPO: drop groups whose rollouts are all right or all wrong, generate more]
    advantages        the ktae core: GRPO / Dr. GRPO / RLOO, with or without key-token values
    update            PPO epochs over mini-batches (ktae.core.losses), finished even on Ctrl-C
    log               metrics.jsonl, the console, callbacks
    evaluate / save   on schedule

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
from typing import Any, Callable

import numpy as np
import torch

import ktae
from ktae.core.credit import gate_advantages, oracle_advantages
from ktae.core.label_free import LABEL_FREE_CREDITS, NEWLINE_CREDITS, label_free_advantages
from ktae.environment import describe_environment
from ktae.files import atomic_write
from ktae.frontend.metrics import MIXED_GROUP_FRACTION, key_token_metrics
from ktae.frontend.outcomes import mixed_groups
from ktae.frontend.records import DUMP_FOLDER, KeyTokenDumper
from ktae.generation import model_positions
from ktae.loading import resolve_device, resolve_dtype
from ktae.monitoring import MixedGroupWatch
from ktae.special_tokens import newline_token_ids, special_token_ids
from ktae.train import checkpoint as ckpt
from ktae.train.config import ORACLE_CREDITS, PPOConfig, TrainConfig, make_config, resume_config, save_yaml, with_options
from ktae.train.data import PromptSampler, load_problems
from ktae.train.logger import MetricsLogger
from ktae.train.modeling import load_policy, parameter_dtype
from ktae.train.rollouts import (Prompts, Rollouts, collect_rollouts, dump_rollouts, fitting_problems,
                                 mistake_tokens, prepare_prompts)
from ktae.train.update import greedy_accuracy, ppo_update

PHASES = ("generation", "reward", "advantage", "update")
#: the run folder's record of the versions and machine each start of the run ran on
ENVIRONMENT_FILE = "environment.json"
#: a callback receives every record the run logs: a step's metrics, or an evaluation (``eval_*`` keys)
Callback = Callable[[dict], None]


# ============================================================================ the run
@dataclass
class RunState:
    """Where a run stands between steps; a checkpoint saves it whole and a resumed run starts from it."""

    step: int                # steps completed
    eval_pending: bool       # the evaluation due after ``step`` has not run yet
    rng: dict                # every random generator's state
    sampler: dict            # the prompt sampler's position

    @classmethod
    def now(cls, step: int, eval_pending: bool, sampler: PromptSampler) -> "RunState":
        return cls(step, eval_pending, ckpt.rng_state(), sampler.state())


@dataclass
class Run:
    """Everything a run holds while it trains (built by :func:`open_run`)."""

    cfg: TrainConfig
    run_dir: Path
    model: Any
    ref_model: Any
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    sampler: PromptSampler
    prompts: Prompts
    eval_problems: list[dict]
    ktae_config: ktae.KTAEConfig
    engine: Any
    logger: MetricsLogger
    amp: Callable
    say: Callable[[str], None]
    log: Callable[[str], None]
    state: RunState
    start_step: int
    elapsed_before: float
    t_setup: float
    dumper: KeyTokenDumper | None = None  # --dump_key_tokens_every
    t_start: float = 0.0
    skipped_total: int = 0

    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.t_start

    def save(self, state: RunState) -> Path:
        trainer_state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                         "rng": state.rng, "sampler": state.sampler, "eval_pending": state.eval_pending,
                         "elapsed": self.elapsed(), "config": self.cfg.to_dict()}
        return ckpt.save_checkpoint(self.run_dir, state.step, self.model, self.tokenizer, trainer_state,
                                    keep=self.cfg.log.keep_checkpoints)


# ============================================================================ the loop
def train(config: TrainConfig | dict | None = None, *, resume: str | Path | None = None, log=None,
          callbacks: list[Callback] | tuple[Callback, ...] = (), **overrides) -> Path:
    """Run RL training and return the run folder (metrics.jsonl, config.yaml, environment.json, checkpoints/, final/).

    ``config``: a :class:`TrainConfig`, a dict of options, or ``None`` (defaults); ``overrides`` are option
    values applied on top (``train(steps=10, estimator="grpo")``). ``resume``: a run folder to continue from
    its last checkpoint (its saved configuration, ``overrides`` on top). ``log``: where console lines go
    (default: print). ``callbacks``: functions called with every record logged (steps and evaluations).
    Raises ``KeyboardInterrupt`` after saving when stopped by Ctrl-C/SIGTERM.
    """
    run = open_run(*run_config(config, resume, overrides), log=log or _print)
    cfg, state = run.cfg, run.state
    # token credit (K, gate, oracle, label-free rules) adds nothing when no group has right and wrong rollouts: say so
    watch = MixedGroupWatch(
        patience=5 if cfg.token_credit else 0, warn=False, metric=MIXED_GROUP_FRACTION,
        correctness=f"its reward is > {run.ktae_config.threshold} (--ktae_threshold)",
        advice="set --ktae_threshold between the rewards of wrong and right answers, or use a --reward that says "
               "whether the answer is right")
    guard = StopGuard(run.log)
    run.t_start = time.time()
    try:
        with guard:
            while True:
                if state.eval_pending:                                          # evaluate / save on schedule
                    evaluate_and_log(run, state.step, callbacks)
                    state.eval_pending = False
                if state.step > run.start_step and (state.step == cfg.steps or
                                                    (cfg.log.save_every and state.step % cfg.log.save_every == 0)):
                    with guard.critical():
                        run.save(state)
                if state.step >= cfg.steps:
                    break
                step = state.step + 1
                if step == run.start_step + 1 or (step - 1) % 20 == 0:
                    run.say(run.logger.header_line())
                state = RunState.now(step - 1, False, run.sampler)             # what a stop now saves
                times, t_step = dict.fromkeys(PHASES, 0.0), time.time()
                batch, generated = collect_rollouts(run.model, run.tokenizer, run.prompts, run.sampler, cfg, times,
                                                    run.engine, run.amp)        # collect rollouts
                advantages, key_values = compute_advantages(batch, cfg, run.ktae_config, times, run.tokenizer)
                with guard.critical():                                          # update (finished on Ctrl-C)
                    update = update_policy(run, batch, advantages, step, generated["generation_batches"], times)
                    record = step_record(step, generated, update, key_values, batch, times, time.time() - t_step,
                                         run)
                    log_step(run, record, callbacks)                           # log
                    warning = watch.update(*(mixed_groups(batch.rewards, batch.group, run.ktae_config.threshold,
                                                          batch.response_mask) if batch else (0, 0)), step)
                    if warning:
                        run.log(f"warning: {warning}")
                    if batch is not None and run.dumper is not None and (step == 1 or step % run.dumper.every == 0):
                        dump_rollouts(run.dumper, batch, key_values, step, run.ktae_config)
                    state = RunState.now(step, bool(cfg.eval.every) and (step % cfg.eval.every == 0
                                                                         or step == cfg.steps), run.sampler)
    except BaseException as exc:
        save_on_stop(run, state, guard, exc)
        raise
    return close_run(run)


# ============================================================================ the steps
def compute_advantages(batch: Rollouts | None, cfg: TrainConfig, ktae_config: ktae.KTAEConfig,
                       times: dict[str, float], tokenizer: Any = None
                       ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Token advantages ``[B, L]`` from the ktae core and, with KTAE, the key-token values ``[B, L]`` (else None).

    The oracles (``+oracle``, ``+oracle-blame``) label the responses' wrong steps first, and the label-free rules
    that cut lines (``+line``, ``+first-novel``, ``+line-ktae``, ...) take the newline token ids from it: both need
    ``tokenizer``."""
    if batch is None:
        return None, None
    t0 = time.time()
    credit = cfg.token_credit
    key_values = None
    if credit == "ktae":
        parts = ktae.ktae_parts(batch.responses, batch.response_mask, batch.rewards, batch.group, ktae_config)
        advantages, key_values = parts.advantages, parts.key_values
    elif credit == "ktae-gate":
        advantages = gate_advantages(batch.responses, batch.response_mask, batch.rewards, batch.group, ktae_config)
    elif credit in ORACLE_CREDITS:
        mistake = mistake_tokens(batch, tokenizer)
        advantages = oracle_advantages(batch.response_mask, batch.rewards, batch.group, mistake, ktae_config,
                                       blame_only=credit == "oracle-blame")
    elif credit in LABEL_FREE_CREDITS:
        newline_ids = line_ends(tokenizer, cfg.algorithm.estimator) if credit in NEWLINE_CREDITS else ()
        advantages = label_free_advantages(credit, batch.responses, batch.response_mask, batch.rewards, batch.group,
                                           ktae_config, newline_ids=newline_ids, n=cfg.algorithm.ngram)
    else:
        base = ktae.rollout_advantages(batch.rewards, batch.group, ktae_config)       # [B]
        advantages = base[:, None] * batch.response_mask
    times["advantage"] += time.time() - t0
    return advantages, key_values


def line_ends(tokenizer: Any, estimator: str) -> tuple[int, ...]:
    """The newline token ids of ``tokenizer`` (:func:`ktae.special_tokens.newline_token_ids`), for an estimator that
    cuts responses into lines; a clear error when there is no tokenizer or it has no such token."""
    if tokenizer is None:
        raise ValueError(f"--estimator {estimator}: the line rules need the tokenizer to find the newline tokens")
    ids = newline_token_ids(tokenizer)
    if not ids:
        raise ValueError(f"--estimator {estimator}: the tokenizer has no token whose text holds a newline, so the "
                         "responses cannot be cut into lines; use +prefix, +tree or +ngram-ktae")
    return ids


def update_policy(run: Run, batch: Rollouts | None, advantages: torch.Tensor | None, step: int, batches: int,
                  times: dict[str, float]) -> dict[str, float]:
    """PPO update on the step's rollouts (none when no group was kept), then the learning-rate schedule."""
    update: dict[str, float] = {}
    if batch is not None:
        t0 = time.time()
        update = ppo_update(run.model, run.ref_model, run.optimizer, batch, advantages, run.cfg,
                            run.tokenizer.pad_token_id, run.log, run.amp)
        times["update"] += time.time() - t0
        if run.engine is not None:
            run.engine.sync(run.model)
    else:
        run.say(f"step {step}: no group with both right and wrong rollouts after {batches} generation batches; "
                "no update")
    update["lr"] = run.optimizer.param_groups[0]["lr"]
    with warnings.catch_warnings():  # the first update may have been skipped (non-finite)
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        run.scheduler.step()
    run.skipped_total += int(update.get("skipped_updates", 0))
    return update


def step_record(step: int, generated: dict[str, float], update: dict[str, float], key_values: torch.Tensor | None,
                batch: Rollouts | None, times: dict[str, float], step_time: float, run: Run) -> dict[str, Any]:
    """The step's metrics: rollouts generated, the update, the key-token values' shares, timings."""
    record: dict[str, Any] = {"step": step, **generated, **update}
    if batch is None:
        record[MIXED_GROUP_FRACTION] = 0.0
    else:
        record.update(key_token_metrics(key_values, batch.response_mask, batch.rewards, batch.group,
                                        run.ktae_config.threshold))
    record["time_step"] = step_time
    for phase in PHASES:
        record[f"time_{phase}"] = times[phase]
        record[f"share_{phase}"] = times[phase] / step_time if step_time > 0 else 0.0
    record["skipped_updates_total"] = run.skipped_total
    return record


def log_step(run: Run, record: dict, callbacks) -> None:
    run.logger.log(record)
    run.say(run.logger.row(record))
    for callback in callbacks:
        callback(record)


def evaluate_and_log(run: Run, step: int, callbacks) -> None:
    """Greedy held-out accuracy of the current policy, logged as an ``eval_*`` record."""
    t0 = time.time()
    with run.amp():
        results = greedy_accuracy(run.model, run.tokenizer, run.eval_problems, run.cfg, run.engine)
    record = {"step": step, **results, "time_eval": time.time() - t0}
    if "eval_accuracy" not in record:
        return
    run.logger.log(record)
    run.say(f"eval @ step {step}: held-out accuracy {record['eval_accuracy']:.1%} ({record['eval_problems']} "
            f"problems, greedy), mean length {record['eval_response_length']:.1f} tokens")
    for callback in callbacks:
        callback(record)


# ============================================================================ opening and closing a run
def run_config(config, resume, overrides: dict) -> tuple[TrainConfig, Path, Path | None]:
    """``(configuration, run folder, checkpoint to resume from or None)``; the run folder gets config.yaml."""
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
    return cfg, run_dir, last


def open_run(cfg: TrainConfig, run_dir: Path, last: Path | None, log: Callable[[str], None]) -> Run:
    """Load the policy, data and optimizer, seed everything, restore a checkpoint when resuming."""
    say = (lambda text: None) if cfg.log.quiet else log
    device = resolve_device(cfg.model.device)
    threads = cfg.model.threads or (1 if cfg.model.path == "embedded" and device.type == "cpu" else 0)
    if threads:
        torch.set_num_threads(threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no bar per checkpoint write; the console shows one row per step
    dtype = resolve_dtype(cfg.model.dtype, device)   # compute dtype; trained parameters float32 (mixed precision)
    weights = parameter_dtype(dtype)                 # ... or float64 for a float64 run
    amp = contextlib.nullcontext if dtype == weights else \
        (lambda: torch.autocast(device_type=device.type, dtype=dtype))
    t_setup = time.time()
    model, tokenizer, source = load_policy(cfg, device, weights, progress=not cfg.log.quiet)
    model.eval()
    ref_model = None
    if cfg.ppo.kl_coef > 0:
        ref_model = copy.deepcopy(model).to(dtype).eval()   # frozen: kept in the compute dtype
        ref_model.requires_grad_(False)
    train_problems, eval_problems = load_problems(cfg)
    positions = model_positions(model)
    prompts = prepare_prompts(train_problems, cfg.data, tokenizer, positions)
    held_out = fitting_problems(eval_problems, cfg.data, tokenizer, positions)
    eval_left_out, eval_problems = len(eval_problems) - len(held_out), held_out
    sampler = PromptSampler(len(prompts.usable), cfg.seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.ppo.lr,
                                  betas=(cfg.ppo.adam_beta1, cfg.ppo.adam_beta2), weight_decay=cfg.ppo.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg.ppo, cfg.steps))
    ktae_config = cfg.ktae_config(special_token_ids(tokenizer))
    engine = None
    if cfg.rollout.backend == "vllm":
        from ktae.train.engines import VLLMEngine

        engine = VLLMEngine(model, tokenizer, cfg, source, run_dir, dtype,
                            longest_prompt=max(len(prompts.ids[i]) for i in prompts.usable), say=say)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    start_step, eval_pending, elapsed = 0, cfg.eval.every > 0, 0.0
    if last is not None:
        start_step, eval_pending, elapsed = restore(last, model, optimizer, scheduler, sampler, engine)
        say(f"resuming {run_dir} from step {start_step}")
    record_environment(run_dir, start_step if last is not None else None)
    logger = MetricsLogger(run_dir, cfg.to_dict(), resume_step=start_step if last is not None else None,
                           tensorboard=cfg.log.tensorboard, wandb=cfg.log.wandb, wandb_project=cfg.log.wandb_project,
                           quiet=cfg.log.quiet)
    eval_problems = eval_problems[: cfg.eval.size] if cfg.eval.size else eval_problems
    if prompts.no_room or eval_left_out:
        say(f"left out {prompts.no_room} training and {eval_left_out} held-out problems whose prompts leave no room "
            f"for a response in the model's {positions} positions; responses stop where prompt + response reach "
            f"{positions} tokens")
    nparams = sum(p.numel() for p in model.parameters())
    say(f"run folder: {run_dir}\nmodel: {source} ({nparams / 1e6:.2f}M parameters, computing in "
        f"{str(dtype).removeprefix('torch.')} on {device}); data: {cfg.data.path} ({len(prompts.usable)} training "
        f"problems, {len(eval_problems)} held-out)\nestimator: {cfg.algorithm.estimator}, reward: "
        f"{cfg.algorithm.reward}, {cfg.rollout.prompts_per_step} prompts x {cfg.rollout.rollouts_per_prompt} rollouts "
        f"per step, {cfg.steps} steps "
        f"(setup {time.time() - t_setup:.0f}s)")
    state = RunState(start_step, eval_pending, ckpt.rng_state(), sampler.state())
    dumper = None
    if cfg.log.dump_key_tokens_every:
        embedded_folder = cfg.model.path == "embedded" and Path(source).is_dir()
        dumper = KeyTokenDumper(run_dir / DUMP_FOLDER, cfg.log.dump_key_tokens_every, tokenizer,
                                source=cfg.model.tokenizer or (source if embedded_folder else cfg.model.path))
    return Run(cfg, run_dir, model, ref_model, tokenizer, optimizer, scheduler, sampler, prompts, eval_problems,
               ktae_config, engine, logger, amp, say, log, state, start_step, elapsed, t_setup, dumper)


def record_environment(run_dir: Path, resumed_at: int | None) -> Path:
    """Write what this start of the run runs on into ``run_dir/environment.json`` (beside config.yaml, which
    resuming reads back): ``{"start": environment}`` for a new run; a resumed run keeps that and appends
    ``{"step": resumed_at, "environment": ...}`` to ``"resumes"``. See :func:`ktae.environment.describe_environment`."""
    path = run_dir / ENVIRONMENT_FILE
    environment = describe_environment()
    if resumed_at is None:
        record: dict[str, Any] = {"start": environment, "resumes": []}
    else:
        record = json.loads(path.read_text()) if path.is_file() else {"start": None, "resumes": []}
        record.setdefault("resumes", []).append({"step": resumed_at, "environment": environment})
    with atomic_write(path) as handle:
        handle.write(json.dumps(record, indent=1) + "\n")
    return path


def restore(last: Path, model, optimizer, scheduler, sampler: PromptSampler, engine) -> tuple[int, bool, float]:
    """Load checkpoint ``last`` into the run's parts; ``(steps done, evaluation pending, seconds trained)``."""
    saved = ckpt.load_trainer_state(last)
    ckpt.load_weights_into(model, last)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    sampler.load_state(saved["sampler"])
    ckpt.set_rng_state(saved["rng"])
    if engine is not None:
        engine.sync(model)
    return int(saved["step"]), bool(saved["eval_pending"]), float(saved.get("elapsed", 0.0))


def lr_factor(step: int, ppo: PPOConfig, steps: int) -> float:
    """Learning-rate multiplier at ``step`` of ``steps``: linear warm-up, then constant or cosine decay."""
    if step < ppo.warmup_steps:
        return (step + 1) / ppo.warmup_steps
    if ppo.lr_schedule == "cosine":
        frac = (step - ppo.warmup_steps) / max(1, steps - ppo.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
    return 1.0


def save_on_stop(run: Run, state: RunState, guard: "StopGuard", exc: BaseException) -> None:
    """Ctrl-C / SIGTERM, or a crash: save the last consistent state (not when the crash hit an update half-way:
    its weights are then neither the old nor the new ones, and the last checkpoint stays)."""
    stopped = isinstance(exc, KeyboardInterrupt)
    try:
        if not guard.failed_inside:
            path = run.save(state)
            run.log(f"\n{'stopped' if stopped else 'error: ' + type(exc).__name__}: checkpoint of step "
                    f"{state.step} saved in {path}\ncontinue with: ktae train --resume {run.run_dir}")
        else:
            last = ckpt.latest_checkpoint(run.run_dir)
            run.log(f"\nerror during an update ({type(exc).__name__}); last checkpoint: {last or 'none'}")
    except Exception as save_error:  # e.g. a full disk: report, and let the original error through
        run.log(f"could not save a checkpoint: {save_error}")
    finally:
        run.logger.close()


def close_run(run: Run) -> Path:
    """Close the logs, save the final policy (``save_model``), say where everything is."""
    run.logger.close()
    where = f"run folder {run.run_dir}"
    if run.cfg.log.save_model:
        final = run.run_dir / "final"
        run.model.save_pretrained(final, safe_serialization=True)
        run.tokenizer.save_pretrained(final)
    else:
        last = ckpt.latest_checkpoint(run.run_dir)
        if last is not None:
            where += f"; trained model: {last / 'model'} (--save_model false: no final/)"
    run.say(f"done: step {run.cfg.steps} reached; training took {run.elapsed():.0f}s "
            f"(+{run.t_start - run.t_setup:.0f}s setup this session); {where}")
    return run.run_dir


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



# ============================================================================ helpers
def _as_config(config, overrides: dict) -> TrainConfig:
    if config is None:
        return make_config(**overrides)
    if isinstance(config, dict):
        return make_config(**{**config, **overrides})
    if isinstance(config, TrainConfig):
        return with_options(config, "arguments", **overrides)
    raise TypeError(f"config must be a TrainConfig, a dict or None, got {type(config).__name__}")


def _new_run_dir(cfg: TrainConfig) -> Path:
    if cfg.run_dir:
        return Path(cfg.run_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.output_root) / f"{cfg.preset}-{cfg.algorithm.estimator.replace('+', '-')}-s{cfg.seed}-{stamp}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = Path(f"{base}-{k}")
    return path


def _print(text: str) -> None:
    print(text, flush=True)


