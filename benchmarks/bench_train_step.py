"""One RL training step of ``ktae train`` vs TRL's ``GRPOTrainer``, phase by phase, on this CPU.

    python benchmarks/bench_train_step.py                    # embedded tiny model, 16 prompts x 8 rollouts
    python benchmarks/bench_train_step.py --steps 5 --max_new_tokens 64

Both trainers start from the same model (the embedded task's tiny Llama, warm-started and cached by
``ktae train``), sample the same number of prompts of the embedded task per step, the same rollouts
per prompt (temperature 1, top-p 1, no top-k), the same response length limit, and apply the same
update: one PPO epoch, one optimizer step over the whole batch (no gradient accumulation), clip 0.2,
token-mean loss (TRL ``loss_type="dapo"``), no KL (no reference model), AdamW, same learning rate and
gradient clipping. Rewards are graded by the same grader (``ktae.rewards.grade_batch``, one worker
process). TRL runs on the CPU (``use_cpu=True``, transformers generation, no vLLM); ktae runs GRPO+KTAE.

Phases, per step (median over the timed steps, after ``--warmup`` untimed steps):

* generation: sampling the rollouts (ktae: ``time_generation``; TRL: ``GRPOTrainer._generate``);
* scoring: grading the answers (ktae: ``time_reward``; TRL: ``GRPOTrainer._calculate_rewards``);
* update: forward/backward/optimizer step (ktae: ``time_update``; TRL: the optimizer step minus the
  generation-and-scoring call);
* other: the rest of the step (ktae: advantages — the KTAE estimator — and bookkeeping; TRL: padding,
  advantages, logging).

Prints one table: seconds per phase for each trainer, the ratio TRL / ktae (> 1: ktae faster), and
KTAE's share of ktae's step (the time of ``ktae.ktae_advantages`` on the step's batch). The response
lengths differ run to run (they are sampled), so generation is also given per generated token.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--prompts", type=int, default=16, help="prompts per step (default 16)")
    p.add_argument("--rollouts", type=int, default=8, help="rollouts per prompt (default 8)")
    p.add_argument("--max_new_tokens", type=int, default=64, help="response length limit (default 64, as ktae train)")
    p.add_argument("--steps", type=int, default=8, help="timed steps per run (default 8)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate of both (default 1e-4, as ktae train)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads of both trainers (default 1: what ktae train uses for the embedded model)")
    p.add_argument("--rounds", type=int, default=2, help="runs of each trainer, alternating which goes first (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--json", default="", help="also write the numbers (and the environment) to this JSON file")
    return p.parse_args()


# ---------------------------------------------------------------------------- ktae
def run_ktae(args, workdir: Path, **overrides) -> tuple[dict[str, list[float]], dict]:
    """ktae train's phases per timed step and the estimator's time on each step's batch; ``overrides``: more
    ``make_config`` options (the tests give a smaller model)."""
    import torch

    import ktae
    from ktae.frontend.records import DUMP_FILE, DUMP_FOLDER
    from ktae.train import make_config, train
    from ktae.train.logger import read_metrics

    total = args.steps + args.warmup
    cfg = make_config("grpo-ktae", seed=args.seed, steps=total, prompts_per_step=args.prompts,
                      rollouts_per_prompt=args.rollouts, max_new_tokens=args.max_new_tokens,
                      generation_batch_size=args.prompts * args.rollouts, lr=args.lr, grad_clip=1.0,
                      clip_low=0.2, clip_high=0.2, loss_agg_mode="token-mean", kl_coef=0.0, ppo_epochs=1,
                      mini_batch_prompts=0, micro_batch_size=0, eval_every=0, save_every=0, save_model=False,
                      grader_workers=1, threads=args.threads, run_dir=str(workdir / "ktae"), quiet=True,
                      dump_key_tokens_every=1, **overrides)
    train(cfg)
    records = [r for r in read_metrics(workdir / "ktae") if "time_step" in r][args.warmup:]
    phases = {
        "generation": [r["time_generation"] for r in records],
        "scoring": [r["time_reward"] for r in records],
        "update": [r["time_update"] for r in records],
        "step": [r["time_step"] for r in records],
        "tokens": [r["response_length"] * r["rollouts_generated"] for r in records],
        "longest": [r["response_length_max"] for r in records],
    }
    phases["other"] = [s - g - c - u for s, g, c, u in zip(phases["step"], phases["generation"], phases["scoring"],
                                                             phases["update"])]
    # KTAE's own cost: the estimator on each timed step's real batch (token ids dumped by the run)
    ktae_times = []
    kcfg = ktae.KTAEConfig()
    for r in records:
        dump = workdir / "ktae" / DUMP_FOLDER / DUMP_FILE.format(step=r["step"])   # the trainer's own record files
        rows = [json.loads(line) for line in open(dump)]
        width = max(len(x["token_ids"]) for x in rows)
        responses = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, x in enumerate(rows):
            responses[i, : len(x["token_ids"])] = torch.tensor(x["token_ids"])
            mask[i, : len(x["token_ids"])] = 1
        scores = torch.tensor([x["reward"] for x in rows])
        group = [x["group"] for x in rows]
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            ktae.ktae_advantages(responses, mask, scores, group, kcfg)
            best = min(best, time.perf_counter() - t0)
        ktae_times.append(best)
    phases["ktae"] = ktae_times
    info = {"model_folder": None}
    return phases, info


# ---------------------------------------------------------------------------- TRL
def run_trl(args, workdir: Path, model_folder: str) -> dict[str, list[float]]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from ktae.rewards import grade_batch
    from ktae.train.config import make_config
    from ktae.train.data import embedded_problems, embedded_task
    from ktae.recipes.arithmetic import format_problem

    torch.set_num_threads(args.threads)
    train_pool, _held_out = embedded_problems(embedded_task(make_config().task), args.seed)
    rows = train_pool[: 64 * args.prompts * (args.steps + args.warmup)]
    dataset = Dataset.from_dict({"prompt": [format_problem(r["problem"]) for r in rows],
                                 "answer": [r["answer"] for r in rows]})

    def math_reward(prompts, completions, answer, **kwargs):
        return [1.0 if ok else 0.0 for ok in grade_batch(completions, answer, workers=1, progress=False)]

    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32)
    batch = args.prompts * args.rollouts
    config = GRPOConfig(
        output_dir=str(workdir / "trl"), use_cpu=True, report_to="none", seed=args.seed, disable_tqdm=True,
        max_steps=args.steps + args.warmup, per_device_train_batch_size=batch, gradient_accumulation_steps=1,
        steps_per_generation=1, num_generations=args.rollouts, num_iterations=1, max_completion_length=args.max_new_tokens,
        temperature=1.0, top_p=1.0, top_k=0, learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0,
        max_grad_norm=1.0, weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.99, epsilon=0.2, beta=0.0,
        loss_type="dapo", scale_rewards="group", logging_steps=1, save_strategy="no", use_vllm=False,
        dataloader_num_workers=0, bf16=False, fp16=False,
    )
    times: dict[str, list[float]] = {k: [] for k in ("generation", "scoring", "prepare", "step", "tokens", "longest")}
    current: dict[str, float] = {}

    class Timed(GRPOTrainer):
        def _generate(self, prompts):
            t0 = time.perf_counter()
            out = super()._generate(prompts)
            current["generation"] = current.get("generation", 0.0) + time.perf_counter() - t0
            current["tokens"] = current.get("tokens", 0.0) + sum(len(ids) for ids in out[1])
            current["longest"] = max([current.get("longest", 0)] + [len(ids) for ids in out[1]])
            return out

        def _calculate_rewards(self, *a, **k):
            t0 = time.perf_counter()
            out = super()._calculate_rewards(*a, **k)
            current["scoring"] = current.get("scoring", 0.0) + time.perf_counter() - t0
            return out

        def _generate_and_score_completions(self, inputs):
            t0 = time.perf_counter()
            out = super()._generate_and_score_completions(inputs)
            current["prepare"] = current.get("prepare", 0.0) + time.perf_counter() - t0
            return out

    class StepClock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            current.clear()
            current["start"] = time.perf_counter()

        def on_step_end(self, *a, **k):
            step = time.perf_counter() - current["start"]
            for key in ("generation", "scoring", "prepare", "tokens", "longest"):
                times[key].append(current.get(key, 0.0))
            times["step"].append(step)

    trainer = Timed(model=model, reward_funcs=math_reward, args=config, train_dataset=dataset,
                    processing_class=tokenizer, callbacks=[StepClock()])
    trainer.remove_callback(PrinterCallback)  # no metrics dict printed per step
    trainer.train()
    out = {k: v[args.warmup:] for k, v in times.items()}
    out["update"] = [s - p for s, p in zip(out["step"], out["prepare"])]
    out["other"] = [p - g - c for p, g, c in zip(out["prepare"], out["generation"], out["scoring"])]
    return out


# ---------------------------------------------------------------------------- main
def main() -> int:
    args = parse()
    if min(args.steps, args.rounds, args.threads, args.prompts, args.max_new_tokens) < 1 or args.rollouts < 2 \
            or args.warmup < 0:
        print("error: --steps, --rounds, --threads, --prompts, --max_new_tokens must be >= 1, --rollouts >= 2, "
              "--warmup >= 0",
              file=sys.stderr)
        return 2
    try:
        import trl  # noqa: F401
    except ImportError:
        print("error: this benchmark needs TRL: pip install 'ktae[trl]'", file=sys.stderr)
        return 2
    import torch

    from ktae.train.config import make_config
    from ktae.train.modeling import load_policy

    torch.set_num_threads(args.threads)
    # the embedded model, built (or found in the cache) exactly as ktae train builds it
    _model, _tok, folder = load_policy(make_config(), torch.device("cpu"), torch.float32, progress=True)
    if not Path(str(folder)).is_dir():
        print(f"error: the embedded model was not cached ({folder}); set KTAE_CACHE to a writable folder",
              file=sys.stderr)
        return 2
    del _model
    print(f"model: embedded tiny Llama ({folder}); {args.prompts} prompts x {args.rollouts} rollouts, "
          f"<= {args.max_new_tokens} new tokens; {args.rounds} rounds of {args.warmup} warm-up + {args.steps} timed "
          f"steps each; "
          f"torch threads {torch.get_num_threads()}", flush=True)
    ours: dict[str, list[float]] = {}
    theirs: dict[str, list[float]] = {}
    # rounds alternate the order (ktae, TRL), (TRL, ktae), ... so that a change of machine load hits both
    for round_ in range(args.rounds):
        order = ("ktae", "trl") if round_ % 2 == 0 else ("trl", "ktae")
        for who in order:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.time()
                if who == "ktae":
                    got, _ = run_ktae(args, Path(tmp))
                    target = ours
                else:
                    got = run_trl(args, Path(tmp), str(folder))
                    target = theirs
                for key, values in got.items():
                    target.setdefault(key, []).extend(values)
                print(f"round {round_ + 1}/{args.rounds}: {'ktae train' if who == 'ktae' else 'TRL GRPOTrainer'} "
                      f"{time.time() - t0:.0f}s", flush=True)

    med = statistics.median
    rows = []
    for phase in ("generation", "scoring", "update", "other", "step"):
        a, b = med(ours[phase]), med(theirs[phase])
        rows.append((phase, a, b, b / a if a > 0 else float("inf")))
    tok_a = med([t / g for t, g in zip(ours["tokens"], ours["generation"])])
    tok_b = med([t / g for t, g in zip(theirs["tokens"], theirs["generation"])])
    share = med([k / s for k, s in zip(ours["ktae"], ours["step"])])
    print()
    print(f"{'phase':<24}{'ktae (s)':>10}{'TRL (s)':>10}{'TRL / ktae':>12}")
    for phase, a, b, r in rows:
        print(f"{phase:<24}{a:>10.3f}{b:>10.3f}{r:>11.2f}x")
    print(f"{'generation (tokens/s)':<24}{tok_a:>10.0f}{tok_b:>10.0f}{tok_a / tok_b:>11.2f}x")
    # a batch decodes until its longest response ends: time per decoding step compares like with like
    per_a = med([1000 * g / n for g, n in zip(ours["generation"], ours["longest"])])
    per_b = med([1000 * g / n for g, n in zip(theirs["generation"], theirs["longest"])])
    print(f"{'generation (ms/decode step)':<24}{per_a:>10.2f}{per_b:>10.2f}{per_b / per_a:>11.2f}x")
    print(f"{'longest response (tokens)':<24}{med(ours['longest']):>10.0f}{med(theirs['longest']):>10.0f}")
    print(f"\nKTAE estimator (ktae_advantages on the step's batch): {1000 * med(ours['ktae']):.2f} ms "
          f"= {100 * share:.3f}% of ktae's step")
    print(f"(median over {len(ours['step'])} timed steps each; TRL / ktae > 1 means ktae is faster)")
    if args.json:
        from ktae.environment import describe_environment

        Path(args.json).write_text(json.dumps({"args": vars(args), "ktae": ours, "trl": theirs,
                                               "ratios": {p: r for p, _, _, r in rows},
                                               "ktae_share_of_step": share,
                                               "environment": describe_environment()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
