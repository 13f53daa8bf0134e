"""GPU acceptance of ktae in one command: CUDA equals CPU, the paper batch's speed and memory, the trainer and the
TRL adapter on CUDA. Writes one JSON summary (after every part, so a failing or interrupted part loses nothing).

    python benchmarks/gpu_acceptance.py                        # on one CUDA GPU, ~3-6 minutes
    python benchmarks/gpu_acceptance.py --output acc.json --parts equality,paper_batch
    python benchmarks/gpu_acceptance.py --cpu-dry-run          # every part at toy size on a CPU (the test suite)

Parts (each prints its progress; the summary says ``ok``, ``failed``, ``error`` or ``skipped`` per part):

1. ``equality``: a few hundred random batches (groups of one, all-right and all-wrong groups, interleaved groups,
   token ids >= 2^31, ignored ids, all-zero masks, string group ids, several KTAE options): ``key_token_values``
   and ``ktae_advantages`` on CUDA against the CPU, max abs difference <= 1e-6.
2. ``paper_batch``: 1024 prompts x 16 rollouts x 3072 tokens (Zipf ids over Qwen's 151,936-token vocabulary,
   log-normal response lengths with ~10% cut at 3072): time of ``key_token_values`` and ``ktae_advantages``, each
   also as a ratio to one ``torch.sort`` of as many int64 keys as there are unmasked tokens, and the peak extra
   GPU memory. Targets (H100/H200 class): <= 3 sorts, <= 0.1 s, <= 4 GiB (for ``key_token_values``).
3. ``trainer``: ``ktae train`` (embedded task, default GRPO+KTAE preset) for 30 steps on CUDA with bf16 autocast,
   through the public API ``ktae.train.make_config`` / ``ktae.train.train``: held-out accuracy before and after
   (learning must be visible), seconds per step and the share of each phase.
4. ``trl``: ``KTAEGRPOTrainer`` for 2 steps on CUDA (a tiny Llama built here), skipped with the reason when TRL
   cannot be imported.

Without CUDA (and without ``--cpu-dry-run``) the script says so and exits with status 2 at once.

Offline machines. The machine needs PyTorch (CUDA build) and transformers already installed; everything else comes
as wheels. The packages, beyond torch and transformers and their own dependencies: ktae (this source tree, installed
with ``pip install --no-deps -e .``), numpy, datasets, math-verify, tqdm, pyyaml, matplotlib (ktae's own
dependencies) and, for part 4, trl and accelerate. Fetch them on a machine with network, for Python 3.12 on
manylinux x86-64, with one command, copy ``wheels/`` over, and install:

    pip download -d wheels --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \\
        "numpy>=1.24" "datasets>=3.0" "math-verify>=0.8" "tqdm>=4.66" "pyyaml>=6.0" "matplotlib>=3.8" \\
        "trl>=1.16,<2" "accelerate>=0.26" "transformers>=4.51,<5.11" "torch==2.13.0"
    # on the GPU machine (torch and transformers already there are kept):
    pip install --no-index --find-links wheels "numpy>=1.24" "datasets>=3.0" "math-verify>=0.8" tqdm pyyaml \\
        matplotlib "trl>=1.16,<2" accelerate && pip install --no-deps --no-build-isolation -e .

(``pip download`` resolves the dependencies of every package listed, so torch and transformers are named to keep
the resolution consistent; their wheels are fetched too but ``pip install`` without them on the list leaves the
installed ones alone.)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

import ktae
from ktae.environment import describe_environment

VOCAB = 151_936
PARTS = ("equality", "paper_batch", "trainer", "trl")
TOLERANCE = 1e-6
TARGETS = {"sort_ratio": 3.0, "seconds": 0.1, "peak_gib": 4.0}


def say(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------------------------------------------- 1. equality

KINDS = ("mixed", "singletons", "uniform", "interleaved", "big_ids", "ignored", "empty_masks", "string_groups")
OPTIONS = (
    {},
    {"fisher_at_one": "zero"},
    {"alpha": 0.0, "rollout": "dr_grpo"},
    {"beta": 2.0, "gamma": 0.5, "top": 2.0, "rollout": "rloo"},
    {"threshold": 0.5},
)


def random_case(index: int, gen: torch.Generator) -> tuple[str, tuple, ktae.KTAEConfig]:
    """One random batch with the feature ``KINDS[index % len(KINDS)]``, and a KTAE config."""
    kind = KINDS[index % len(KINDS)]
    groups = int(torch.randint(1, 9, (1,), generator=gen))
    per = 1 if kind == "singletons" else int(torch.randint(2, 9, (1,), generator=gen))
    batch, length = groups * per, int(torch.randint(1, 97, (1,), generator=gen))
    vocab = int(torch.randint(2, 400, (1,), generator=gen))
    responses = torch.randint(0, vocab, (batch, length), generator=gen)
    if kind == "big_ids":
        responses = responses * 7_919_813 + 2**31
    lengths = torch.randint(0 if kind == "empty_masks" else 1, length + 1, (batch,), generator=gen)
    if kind == "empty_masks":
        lengths[torch.rand(batch, generator=gen) < 0.3] = 0
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    scores = torch.randint(0, 2, (batch,), generator=gen).float() + 0.25 * torch.rand(batch, generator=gen)
    group = torch.arange(groups).repeat_interleave(per)
    if kind == "uniform":  # every other group all right, the others all wrong
        scores = (group % 2 == 0).float()
    if kind in ("interleaved", "string_groups", "empty_masks"):
        group = group[torch.randperm(batch, generator=gen)]
    options = dict(OPTIONS[index % len(OPTIONS)])
    if kind == "ignored":
        options["ignore_token_ids"] = tuple(range(0, vocab, max(1, vocab // 5)))
    if kind == "string_groups":
        group = [f"uid-{int(g):04d}" for g in group]
    return kind, (responses, mask, scores, group), ktae.KTAEConfig(**options)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.cpu() - b).abs().max()) if a.numel() else 0.0


def part_equality(device: str, batches: int, seed: int) -> dict[str, Any]:
    """CUDA against CPU. On a CPU (dry run) the second side runs the estimator in blocks of 32 tokens instead of
    one block, so the comparison still crosses two code paths."""
    from ktae.core import advantages as core

    gen = torch.Generator().manual_seed(seed)
    block = core.CPU_BLOCK_TOKENS
    worst: dict[str, float] = {kind: 0.0 for kind in KINDS}
    nonzero = 0
    for index in range(batches):
        kind, (responses, mask, scores, group), config = random_case(index, gen)
        on_device = [t.to(device) if isinstance(t, torch.Tensor) else t for t in (responses, mask, scores, group)]
        ref_values = ktae.key_token_values(responses, mask, scores, group, config)
        ref_adv, _ = ktae.ktae_advantages(responses, mask, scores, group, config)
        core.CPU_BLOCK_TOKENS = 32 if device == "cpu" else block
        try:
            values = ktae.key_token_values(*on_device, config)
            adv, _ = ktae.ktae_advantages(*on_device, config)
        finally:
            core.CPU_BLOCK_TOKENS = block
        assert values.device.type == torch.device(device).type and adv.device == values.device
        diff = max(max_abs_diff(values, ref_values), max_abs_diff(adv, ref_adv))
        worst[kind] = max(worst[kind], diff)
        nonzero += int((ref_values != 0).sum())
        if (index + 1) % max(1, batches // 5) == 0 or index + 1 == batches:
            say(f"  [equality] {index + 1}/{batches} batches, max abs diff so far {max(worst.values()):.2e}")
    largest = max(worst.values())
    return {"status": "ok" if largest <= TOLERANCE and nonzero > 0 else "failed", "batches": batches,
            "max_abs_diff": largest, "max_abs_diff_by_kind": worst, "tolerance": TOLERANCE,
            "nonzero_values_checked": nonzero}


# ------------------------------------------------------------------------------------------------ 2. paper batch


def paper_batch(prompts: int, rollouts: int, length: int, device: str, seed: int = 0):
    """Zipf(1.1) ids over the Qwen vocabulary; log-normal lengths (median ~ length/4), ~10% cut at ``length``."""
    gen = torch.Generator(device=device).manual_seed(seed)
    batch = prompts * rollouts
    weights = torch.arange(1, VOCAB + 1, dtype=torch.float64, device=device).pow(-1.1)
    cdf = (weights.cumsum(0) / weights.sum()).to(torch.float32)
    responses = torch.empty(batch, length, dtype=torch.int64, device=device)
    for start in range(0, batch, 1024):
        u = torch.rand(min(1024, batch - start), length, generator=gen, device=device)
        responses[start : start + 1024] = torch.searchsorted(cdf, u).clamp_(max=VOCAB - 1)
    normal = torch.randn(batch, generator=gen, device=device)
    lengths = (math.log(length / 4) + 0.9 * normal).exp().clamp(1, length).long()
    mask = torch.arange(length, device=device)[None, :] < lengths[:, None]
    scores = (torch.rand(batch, generator=gen, device=device) < 0.5).float()
    group = torch.arange(prompts, device=device).repeat_interleave(rollouts)
    return responses, mask, scores, group


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_time(fn: Callable[[], Any], device: str, repeat: int) -> float:
    fn()  # warm-up (kernels, allocator)
    _sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_extra_gib(fn: Callable[[], Any], device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    _sync(device)
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    result = fn()
    _sync(device)
    peak = torch.cuda.max_memory_allocated() - base
    del result
    return peak / 2**30


def part_paper_batch(device: str, size: tuple[int, int, int], repeat: int, check_targets: bool) -> dict[str, Any]:
    say(f"  [paper_batch] building {size[0]} x {size[1]} x {size[2]} on {device}")
    responses, mask, scores, group = paper_batch(*size, device=device)
    unmasked = int(mask.sum())
    keys = torch.randint(0, 2**62, (unmasked,), dtype=torch.int64, device=device)
    config = ktae.KTAEConfig(ignore_token_ids=(151643,))
    say(f"  [paper_batch] {unmasked:,} unmasked tokens of {mask.numel():,}; timing (median of {repeat})")
    sort_s = median_time(lambda: torch.sort(keys), device, repeat)
    values_s = median_time(lambda: ktae.key_token_values(responses, mask, scores, group, config), device, repeat)
    advantages_s = median_time(lambda: ktae.ktae_advantages(responses, mask, scores, group, config), device, repeat)
    del keys
    peak_values = peak_extra_gib(lambda: ktae.key_token_values(responses, mask, scores, group, config), device)
    peak_adv = peak_extra_gib(lambda: ktae.ktae_advantages(responses, mask, scores, group, config), device)
    result = {
        "shape": list(size), "unmasked_tokens": unmasked, "sort_seconds": sort_s,
        "key_token_values_seconds": values_s, "ktae_advantages_seconds": advantages_s,
        "key_token_values_sort_ratio": values_s / sort_s, "ktae_advantages_sort_ratio": advantages_s / sort_s,
        "key_token_values_peak_extra_gib": peak_values, "ktae_advantages_peak_extra_gib": peak_adv,
        "targets": TARGETS,
    }
    say(f"  [paper_batch] sort {sort_s * 1e3:.1f} ms, key_token_values {values_s * 1e3:.1f} ms "
        f"({values_s / sort_s:.2f} sorts), ktae_advantages {advantages_s * 1e3:.1f} ms "
        f"({advantages_s / sort_s:.2f} sorts), peak extra {peak_values} GiB")
    if not check_targets:
        result["status"] = "ok"
        result["note"] = "targets apply to the full batch on an H100/H200-class GPU, not to this run"
        return result
    met = {"sort_ratio": values_s / sort_s <= TARGETS["sort_ratio"], "seconds": values_s <= TARGETS["seconds"],
           "peak_gib": peak_values is not None and peak_values <= TARGETS["peak_gib"]}
    result.update(targets_met=met, status="ok" if all(met.values()) else "failed")
    return result


# ---------------------------------------------------------------------------------------------------- 3. trainer

#: the dry run's trainer: a model small enough to build in seconds
DRY_TRAINER = dict(tiny_hidden_size=32, tiny_layers=2, tiny_heads=2, tiny_intermediate_size=64, tiny_sft_steps=20,
                   tiny_sft_batch_size=16, prompts_per_step=4, rollouts_per_prompt=4, max_new_tokens=24,
                   eval_size=8, eval_every=1, threads=1, grader_workers=0)


def part_trainer(device: str, steps: int, dry: bool, work: Path) -> dict[str, Any]:
    from ktae.train import make_config, train
    from ktae.train.logger import read_metrics

    options = dict(DRY_TRAINER) if dry else {"eval_every": 10}
    cfg = make_config("default", steps=steps, device=device, dtype="bfloat16", run_dir=str(work / "trainer_run"),
                      cache_dir=str(work / "cache") if dry else "", save_every=0, **options)
    say(f"  [trainer] ktae train, preset default (GRPO+KTAE), {steps} steps, device {device}, bf16 autocast")
    start = time.time()
    run_dir = train(cfg)
    records = read_metrics(run_dir)
    steps_done = [r for r in records if "reward" in r]
    evals = [r for r in records if "eval_accuracy" in r]
    if not steps_done or not evals:
        return {"status": "failed", "reason": "no step or no evaluation was logged", "run_dir": str(run_dir)}
    shares = {phase: statistics.mean(r[f"share_{phase}"] for r in steps_done)
              for phase in ("generation", "reward", "advantage", "update")}
    first, last = evals[0]["eval_accuracy"], evals[-1]["eval_accuracy"]
    learned = last > first
    result = {
        "run_dir": str(run_dir), "steps": len(steps_done), "wall_seconds": time.time() - start,
        "seconds_per_step": statistics.median(r["time_step"] for r in steps_done), "phase_shares": shares,
        "eval_accuracy": {str(r["step"]): r["eval_accuracy"] for r in evals},
        "rollout_accuracy_first_last": [steps_done[0]["accuracy"], steps_done[-1]["accuracy"]],
        "learning_visible": learned,
    }
    result["status"] = "ok" if (learned or dry) and len(steps_done) == steps else "failed"
    say(f"  [trainer] held-out accuracy {first:.3f} -> {last:.3f}, {result['seconds_per_step']:.3f} s/step, "
        + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    return result


# -------------------------------------------------------------------------------------------------------- 4. trl


def tiny_llama_and_tokenizer(device: str):
    """A 2-layer Llama over a character vocabulary, built here (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = list("0123456789+-= ")
    vocab = {tok: i for i, tok in enumerate(["<pad>", "<eos>", "<unk>", *chars])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=0, eos_token_id=1, bos_token_id=None)
    return LlamaForCausalLM(config), tokenizer


def part_trl(device: str, dry: bool, work: Path) -> dict[str, Any]:
    try:
        from datasets import Dataset

        from ktae.integrations.trl import KTAEGRPOConfig, KTAEGRPOTrainer
    except Exception as err:  # TRL could not be carried: say why
        return {"status": "skipped", "reason": f"TRL not importable: {type(err).__name__}: {err}"}
    model, tokenizer = tiny_llama_and_tokenizer(device)

    def even_digits(completions, **kwargs):
        return [float(sum(ch.isdigit() for ch in text) % 2 == 0) for text in completions]

    args = KTAEGRPOConfig(
        output_dir=str(work / "trl_run"), use_cpu=dry, bf16=not dry, report_to="none", max_steps=2,
        per_device_train_batch_size=8, num_generations=4, max_completion_length=16, logging_steps=1,
        save_strategy="no", learning_rate=1e-3, seed=0, disable_tqdm=True, temperature=1.0,
    )
    prompts = Dataset.from_dict({"prompt": ["12+3=", "4-1=", "5+5=", "9-2=", "7+8=", "6-3="]})
    say(f"  [trl] KTAEGRPOTrainer, 2 steps, tiny Llama, {'CPU' if dry else device}")
    start = time.time()
    trainer = KTAEGRPOTrainer(model=model, reward_funcs=even_digits, args=args, train_dataset=prompts,
                              processing_class=tokenizer)
    trainer.train()
    logged = [e for e in trainer.state.log_history if "ktae/abs_mean" in e]
    ran_on = next(trainer.model.parameters()).device.type
    ok = trainer.state.global_step == 2 and bool(logged) and (dry or ran_on == "cuda")
    return {"status": "ok" if ok else "failed", "steps": trainer.state.global_step, "device": ran_on,
            "seconds": time.time() - start, "ktae_metrics": logged[-1] if logged else None}


# ------------------------------------------------------------------------------------------------------- driver


def environment(device: str) -> dict[str, Any]:
    """ktae's record of the environment (versions, git commit, CPU, torch threads, GPUs), the device the parts
    run on and, on a GPU, its name and memory."""
    info = {**describe_environment(), "device": device}
    if device.startswith("cuda"):
        info.update(gpu=torch.cuda.get_device_name(0),
                    gpu_memory_gib=torch.cuda.get_device_properties(0).total_memory / 2**30)
    return info


def run_part(name: str, args: argparse.Namespace, device: str, work: Path) -> dict[str, Any]:
    dry = args.cpu_dry_run
    if name == "equality":
        return part_equality(device, args.batches or (16 if dry else 300), args.seed)
    if name == "paper_batch":
        size = (4, 4, 64) if dry else (1024, 16, 3072)
        return part_paper_batch(device, size, repeat=2 if dry else 5, check_targets=not dry)
    if name == "trainer":
        return part_trainer(device, args.steps or (2 if dry else 30), dry, work)
    return part_trl(device, dry, work)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-dry-run", action="store_true", help="run every part at toy size on the CPU")
    parser.add_argument("--output", default="gpu_acceptance.json", help="the JSON summary")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--batches", type=int, default=0, help="random batches of the equality part (0: default)")
    parser.add_argument("--steps", type=int, default=0, help="trainer steps (0: 30, or 2 in the dry run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default="", help="where run folders go (default: a temporary folder)")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts: unknown part(s) {unknown}; expected some of {list(PARTS)}")
    if not args.cpu_dry_run and not torch.cuda.is_available():
        say("gpu_acceptance: no CUDA device is available here (torch.cuda.is_available() is False); run it on a "
            "GPU machine, or use --cpu-dry-run to try every part at toy size on the CPU")
        return 2
    device = "cpu" if args.cpu_dry_run else "cuda"
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"mode": "cpu-dry-run" if args.cpu_dry_run else "gpu", "started": time.time(),
                               "environment": environment(device), "parts": {}}

    def write() -> None:
        tmp = output.with_suffix(output.suffix + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2, default=str))
        os.replace(tmp, output)

    write()
    with tempfile.TemporaryDirectory(prefix="ktae_acceptance_") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        for name in parts:
            say(f"[{name}] starting")
            start = time.time()
            try:
                result = run_part(name, args, device, work)
            except KeyboardInterrupt:
                summary["parts"][name] = {"status": "interrupted", "seconds": time.time() - start}
                write()
                raise
            except Exception as err:
                result = {"status": "error", "error": f"{type(err).__name__}: {err}",
                          "traceback": traceback.format_exc(limit=8)}
            result["part_seconds"] = time.time() - start
            summary["parts"][name] = result
            write()
            say(f"[{name}] {result['status']} in {result['part_seconds']:.1f} s")
    summary["seconds"] = time.time() - summary["started"]
    summary["passed"] = all(p["status"] in ("ok", "skipped") for p in summary["parts"].values())
    write()
    say(f"summary written to {output}: {'all parts passed' if summary['passed'] else 'some parts did not pass'}")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
