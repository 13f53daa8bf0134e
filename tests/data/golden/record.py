"""Record the metrics of short fixed-seed CPU runs that ``tests/test_train_golden.py`` replays.

    python tests/data/golden/record.py        # rewrites tests/data/golden/*.jsonl

Run it only when a change of the trainer's behaviour is intended; a refactoring must leave these files as they
are. The runs use a tiny model (built in seconds, cached under the folder given as the first argument, or a
temporary one) so that some rollouts are right: GRPO+KTAE with PPO mini-batches and two epochs (KL loss, DAPO
rewards so that K is not zero), and DAPO+KTAE with dynamic sampling.

They run in float64 (``dtype="float64"``: the tiny model is built, warm-started and trained in float64), so that
they come out the same on CPUs with different SIMD kernels (AVX2, AVX-512): what float64 leaves CPU-specific
(transformers computes RMSNorm, rotary angles and sampling probabilities in float32) moves the continuous
metrics in their 4th-6th digit, and no rollout, answer or length (checked with ATEN_CPU_CAPABILITY=avx2, avx512
and default). In float32 the runs part ways from the first step.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
TINY = dict(tiny_hidden_size=32, tiny_layers=2, tiny_heads=2, tiny_intermediate_size=64, tiny_sft_steps=150,
            tiny_sft_batch_size=32, tiny_sft_lr=1e-2, prompts_per_step=4, rollouts_per_prompt=4, max_new_tokens=24,
            eval_size=8, eval_every=2, threads=1, grader_workers=0, quiet=True, steps=3, save_every=0, dtype="float64")
RUNS = {
    "grpo-ktae": ("grpo-ktae", dict(mini_batch_prompts=2, ppo_epochs=2, reward="dapo", overlong_buffer=12,
                                    ktae_threshold=-1.5, seed=0)),
    "dapo-ktae": ("dapo-ktae", dict(seed=1)),
}


def comparable(records: list[dict]) -> list[dict]:
    """The records without wall-clock timings."""
    return [{k: v for k, v in r.items() if not k.startswith(("time_", "share_"))} for r in records]


def run(name: str, cache: str, run_dir: Path, **extra) -> Path:
    from ktae.train import make_config, train

    preset, options = RUNS[name]
    return train(make_config(preset, **{**TINY, **options, **extra}, cache_dir=cache, run_dir=str(run_dir)))


def main() -> None:
    from ktae.train.logger import read_metrics

    cache = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
    for name in RUNS:
        folder = Path(tempfile.mkdtemp())
        records = comparable(read_metrics(run(name, cache, folder / "run")))
        (HERE / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        print(f"{name}: {len(records)} records")


if __name__ == "__main__":
    main()
