"""The tiny model of the embedded task: a small Llama and its warm start (the tokenizer is the task's own).

:func:`load_embedded_model` returns a standard ``LlamaForCausalLM`` and a
``PreTrainedTokenizerFast``, built on the first call and cached (by a hash of every
setting) under ``$KTAE_CACHE`` or ``~/.cache/ktae``. Building means: a fresh model
with a fixed seed, then a short supervised phase on generated solutions of the
embedded task — a mix of correct worked solutions and solutions that evaluate left to
right (``correct_fraction``), so that the model's own samples are sometimes right and
sometimes wrong and reinforcement learning has something to learn.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

#: bump when the build recipe changes so that old caches are not reused (3: each warm-start step in micro-batches of
#: similar length, the same gradient up to float rounding)
BUILD_VERSION = 3
#: padded tokens per forward/backward pass of a warm-start step at most (micro-batches of similar length)
SFT_MICRO_TOKENS = 4096


@dataclass(frozen=True)
class TinyModelConfig:
    """Architecture and warm-start recipe of the embedded model."""

    hidden_size: int = field(default=64, metadata={"help": "width of the tiny Llama"})
    num_layers: int = field(default=4, metadata={"help": "transformer blocks of the tiny Llama"})
    num_heads: int = field(default=2, metadata={"help": "attention heads of the tiny Llama (head size = width / heads; "
                                                        "vLLM's CPU attention needs a head size of at least 32)"})
    intermediate_size: int = field(default=192, metadata={"help": "MLP width of the tiny Llama"})
    max_positions: int = field(default=128, metadata={"help": "longest sequence (prompt + response) in tokens"})
    sft_steps: int = field(default=800, metadata={"help": "supervised warm-start steps"})
    sft_batch_size: int = field(default=64, metadata={"help": "sequences per warm-start step"})
    sft_lr: float = field(default=3e-3, metadata={"help": "peak learning rate of the warm start (cosine decay)"})
    correct_fraction: float = field(
        default=0.35,
        metadata={"help": "share of warm-start solutions with the right order of operations (the rest go left to right)"},
    )
    seed: int = field(default=1234, metadata={"help": "seed of the initialisation and the warm-start data"})

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_positions", "sft_steps",
                     "sft_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"TinyModelConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"TinyModelConfig.hidden_size ({self.hidden_size}) must be divisible by num_heads "
                             f"({self.num_heads})")
        if not 0 <= self.correct_fraction <= 1:
            raise ValueError(f"TinyModelConfig.correct_fraction must be in [0, 1], got {self.correct_fraction!r}")
        if not self.sft_lr >= 0:
            raise ValueError(f"TinyModelConfig.sft_lr must be >= 0, got {self.sft_lr!r}")


def build_model(cfg: TinyModelConfig, vocab_size: int, pad_id: int, eos_id: int, dtype: torch.dtype = torch.float32):
    """A freshly initialised tiny ``LlamaForCausalLM`` (seeded by ``cfg.seed``), its weights drawn in ``dtype``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=True,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=None,
        attention_dropout=0.0,
    )
    torch.manual_seed(cfg.seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)   # the initial weights are drawn in this dtype (float32's draws are CPU-specific)
    try:
        return LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled positions, as transformers' causal-LM loss computes it.

    ``logits`` ``[B, T, V]``, ``labels`` ``[B, T]`` (-100 where not trained; position t predicts t + 1). The one
    difference: float64 logits stay float64 (transformers casts them to float32, whose kernels differ by CPU).
    """
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    shifted = torch.nn.functional.pad(labels, (0, 1), value=-100)[..., 1:].contiguous()
    return torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), shifted.view(-1), ignore_index=-100)


def sft_example(task, rng: random.Random, correct_fraction: float) -> tuple[str, str]:
    """One (prompt, response) pair of the warm-start data (the task's own teacher, careful or not)."""
    return task.warm_start_pair(rng, correct_fraction)


def _encode_batch(tokenizer, pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask and labels (-100 outside the response + EOS)."""
    rows, label_rows = [], []
    for prompt, response in pairs:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        r = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(p + r)
        label_rows.append([-100] * len(p) + r)
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, lab) in enumerate(zip(rows, label_rows)):
        ids[i, : len(row)] = torch.tensor(row)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(row)] = 1
    return ids, mask, labels


def sft_backward(model, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                 max_tokens: int = SFT_MICRO_TOKENS) -> float:
    """Backward of :func:`causal_lm_loss` over the batch ``ids, mask, labels`` ``[B, T]`` (right-padded), in
    micro-batches of similar length of at most ``max_tokens`` padded tokens (:func:`ktae.core.batching.length_buckets`),
    each cut to its longest row and weighted by its share of the labelled tokens: the gradient of the whole batch's
    mean loss, for less padding and smaller activations. Returns that loss."""
    from ktae.core.batching import length_buckets

    lengths = mask.sum(-1)
    labelled = int((labels[:, 1:] != -100).sum())
    total = 0.0
    for rows in length_buckets(lengths, max_tokens=max_tokens):
        width = int(lengths[rows].max())
        part = labels[rows, :width]
        share = int((part[:, 1:] != -100).sum()) / max(labelled, 1)
        if share == 0:
            continue
        loss = causal_lm_loss(model(input_ids=ids[rows, :width], attention_mask=mask[rows, :width]).logits, part)
        (loss * share).backward()
        total += float(loss.detach()) * share
    return total


def warm_start(model, tokenizer, task, cfg: TinyModelConfig, exclude: frozenset[str] = frozenset(),
               progress: bool = True) -> list[float]:
    """Supervised phase on generated solutions; returns the loss curve (one value per step)."""
    from ktae.progress import progress_bar

    rng = random.Random(cfg.seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.sft_lr, weight_decay=0.0, betas=(0.9, 0.98))
    warmup = max(1, cfg.sft_steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        frac = (step - warmup) / max(1, cfg.sft_steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    losses: list[float] = []
    bar = progress_bar(range(cfg.sft_steps), desc="warm start (supervised)", disable=not progress, leave=False)
    for _ in bar:
        pairs = []
        while len(pairs) < cfg.sft_batch_size:
            prompt, response = sft_example(task, rng, cfg.correct_fraction)
            if prompt.rstrip("\n") in exclude:
                continue
            pairs.append((prompt, response))
        loss = sft_backward(model, *_encode_batch(tokenizer, pairs))
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        losses.append(loss)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


def cache_root() -> Path:
    """``$KTAE_CACHE`` or ``~/.cache/ktae``."""
    return Path(os.environ.get("KTAE_CACHE") or Path.home() / ".cache" / "ktae")


def cache_key(task, cfg: TinyModelConfig, exclude: frozenset[str], dtype: torch.dtype = torch.float32) -> str:
    """The cache folder's name: a hash of everything the built model depends on (float32 keys as before)."""
    fields = {"version": BUILD_VERSION, "task": asdict(task), "model": asdict(cfg), "exclude": sorted(exclude),
              "torch": torch.__version__.split("+")[0]}
    if dtype != torch.float32:
        fields["dtype"] = str(dtype).removeprefix("torch.")
    payload = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_embedded_model(task, cfg: TinyModelConfig, exclude: frozenset[str] = frozenset(),
                        cache: bool = True, progress: bool = True, cache_dir: str | Path | None = None,
                        dtype: torch.dtype = torch.float32):
    """The warm-started tiny model and its tokenizer, from the cache or built now.

    Returns ``(model, tokenizer, path)``; ``path`` is the cached folder (``None`` when
    ``cache`` is false). The held-out problems in ``exclude`` never appear in the
    warm-start data. ``cache_dir`` overrides :func:`cache_root`. ``dtype``: the dtype the model is
    built, warm-started and returned in (float64 gives the same weights on any CPU).
    """
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    root = Path(cache_dir) if cache_dir else cache_root()
    folder = root / "embedded" / cache_key(task, cfg, exclude, dtype) if cache else None
    if folder is not None and (folder / "done").exists():
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
        model.eval()
        return model, tokenizer, folder

    start = time.time()
    tokenizer = task.build_tokenizer()
    model = build_model(cfg, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id, dtype)
    if progress:
        print(f"building the embedded model (first run only): {cfg.num_layers} layers, width {cfg.hidden_size}, "
              f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, {cfg.sft_steps} warm-start steps",
              flush=True)
    rng_state = torch.get_rng_state()
    losses = warm_start(model, tokenizer, task, cfg, exclude=exclude, progress=progress)
    torch.set_rng_state(rng_state)
    if folder is None:
        return model, tokenizer, None
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp", dir=folder.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "warm_start.json").write_text(json.dumps(
        {"task": asdict(task), "model": asdict(cfg), "loss_first": losses[:1], "loss_last": losses[-1:],
         "seconds": round(time.time() - start, 1)}, indent=1))
    (tmp / "done").write_text("ok\n")
    try:
        os.replace(tmp, folder)
    except OSError:  # another process finished first: use theirs
        shutil.rmtree(tmp, ignore_errors=True)
    if progress:
        print(f"warm start done in {time.time() - start:.0f}s (loss {losses[0]:.2f} -> {losses[-1]:.2f}); "
              f"cached in {folder}", flush=True)
    return model, tokenizer, folder
