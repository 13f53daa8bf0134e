"""benchmarks/bench_train_step.py, ktae's side: a real (small) run, read back as the benchmark reads it."""
from argparse import Namespace

from benchmark_scripts import load_benchmark

SMALL = dict(tiny_hidden_size=32, tiny_layers=2, tiny_heads=2, tiny_intermediate_size=64, tiny_sft_steps=40,
             tiny_sft_batch_size=32)


def test_ktae_phases_and_the_estimator_on_each_timed_step(tmp_path):
    bench = load_benchmark("bench_train_step")
    args = Namespace(steps=2, warmup=1, prompts=2, rollouts=4, max_new_tokens=16, lr=1e-4, threads=1, seed=0)
    phases, _ = bench.run_ktae(args, tmp_path, cache_dir=str(tmp_path / "cache"), **SMALL)
    for key in ("generation", "scoring", "update", "step", "other", "tokens", "longest", "ktae"):
        assert len(phases[key]) == args.steps, key
    assert all(t > 0 for t in phases["ktae"]) and all(s > g for s, g in zip(phases["step"], phases["generation"]))
