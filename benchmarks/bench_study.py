"""The learning studies' workload, timed: word-easy runs two side by side, as the studies run them, on this code and
on another commit, in one invocation.

    python benchmarks/bench_study.py                                   # this tree vs ffb7d3d, seed 0, one round
    python benchmarks/bench_study.py --baseline ffb7d3d --rounds 2 --json docs/data/benchmarks/study-workload.json
    python benchmarks/bench_study.py --curves 4 --json docs/data/benchmarks/study-curves.json   # old vs new curves

A *pair* is what one process of a study does at a time, twice over: two ``ktae train`` processes started together,
GRPO in one and GRPO+KTAE in the other (``--preset word-easy-grpo`` / ``word-easy-grpo-ktae``, ``--steps 30
--eval_every 2 --dump_key_tokens_every 10``, the studies' settings; the embedded model's shared warm start, built
and cached first, untimed). The pair's wall time runs from the start of both to the end of the later one. Each run's
time is split into start-up (imports, model and data loading: the process's wall time minus its steps and
evaluations), generation, reward, advantage, update (the trainer's own ``time_*`` metrics, summed over the steps)
and evaluation (``time_eval``). The baseline commit runs from a ``git worktree`` of it (its ``src/`` first on
PYTHONPATH), the current tree from its own ``src/``; rounds alternate which code goes first.

``--default_job`` instead times the README's main job, ``ktae train`` without options (the embedded arithmetic task,
150 steps), with both codes side by side, each from an empty model cache (its warm start included, as a newcomer's
first run), and reports each one's wall time and final held-out accuracy.

``--curves N`` instead runs GRPO and the blame oracle (``word-easy-grpo-oracle-blame``) on seeds 0..N-1 with both
codes (one process per code, side by side) and reports each arm's held-out AUC (trapezoids over steps 0-30, in
accuracy points) per seed, and the paired difference old - new with its 95% t-interval: the faster code's curves
should agree with the old ones within the seed-to-seed spread.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from study_tables import auc  # noqa: E402

from ktae.train.logger import read_metrics  # noqa: E402
STUDY = ["--steps", "30", "--eval_every", "2", "--dump_key_tokens_every", "10"]
PAIR = ("word-easy-grpo", "word-easy-grpo-ktae")
CURVE_ARMS = ("word-easy-grpo", "word-easy-grpo-oracle-blame")
PHASES = ("generation", "reward", "advantage", "update")


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--baseline", default="ffb7d3d", help="commit to compare with (default ffb7d3d)")
    p.add_argument("--rounds", type=int, default=1, help="pairs of each code, alternating which goes first (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the runs (default 0)")
    p.add_argument("--curves", type=int, default=0, help="instead: old vs new held-out curves on seeds 0..N-1")
    p.add_argument("--default_job", action="store_true", help="instead: the README's main job with both codes")
    p.add_argument("--train_args", default="", help="more ktae train options for every run (the tests: a small model)")
    p.add_argument("--workdir", default="", help="folder of the runs (default: a temporary folder, removed)")
    p.add_argument("--json", default="", help="also write the numbers (and the environment) to this JSON file")
    return p.parse_args(argv)


def worktree(commit: str, where: Path) -> Path:
    """A detached ``git worktree`` of ``commit`` at ``where`` (removed by :func:`remove_worktree`)."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(where), commit], check=True,
                   capture_output=True, text=True)
    return where


def remove_worktree(where: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)], capture_output=True)


def train_command(src: Path, preset: str, seed: int, run_dir: Path, extra: list[str]) -> tuple[list[str], dict]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, "-m", "ktae", "train", "--preset", preset, "--seed", str(seed), *STUDY,
               "--run_dir", str(run_dir), "--quiet", "true", "--save_model", "false", *extra]
    return command, env


def side_by_side(jobs: list[tuple[list[str], dict]]) -> list[float]:
    """Start every job at once; the wall seconds of each (raises if one fails)."""
    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()

    def run(job):
        cmd, env = job
        done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return time.perf_counter() - started

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(run, jobs))


def run_split(run_dir: Path, wall: float) -> dict[str, float]:
    """A finished run's seconds: wall, start-up, each phase and evaluation (from its metrics.jsonl)."""
    records = read_metrics(run_dir)
    steps = [r for r in records if "time_step" in r]
    evals = [r for r in records if "time_eval" in r]
    split = {"wall": wall, **{p: sum(r[f"time_{p}"] for r in steps) for p in PHASES},
             "evaluation": sum(r["time_eval"] for r in evals)}
    split["steps"] = sum(r["time_step"] for r in steps)
    split["startup"] = wall - split["steps"] - split["evaluation"]
    return split


def time_pairs(args, codes: dict[str, Path], work: Path, extra: list[str]) -> dict[str, list[dict]]:
    """``{code: [pair, ...]}``, a pair being ``{"wall": s, "runs": {preset: split}}``."""
    out: dict[str, list[dict]] = {code: [] for code in codes}
    for code, src in codes.items():   # build (or find) the warm start with each code, untimed
        side_by_side([train_command(src, PAIR[0], args.seed, work / f"warm-{code}", extra + ["--steps", "1",
                                                                                             "--eval_every", "0"])])
    for r in range(args.rounds):
        order = list(codes) if r % 2 == 0 else list(codes)[::-1]
        for code in order:
            dirs = [work / f"{code}-r{r}-{preset}" for preset in PAIR]
            walls = side_by_side([train_command(codes[code], preset, args.seed, d, extra)
                                  for preset, d in zip(PAIR, dirs)])
            pair = {"wall": max(walls), "runs": {p: run_split(d, w) for p, d, w in zip(PAIR, dirs, walls)},
                    "load_after": os.getloadavg()[0]}
            out[code].append(pair)
            print(f"round {r + 1}, {code}: pair {pair['wall']:.1f} s ("
                  + ", ".join(f"{p} {s['wall']:.1f} s" for p, s in pair["runs"].items()) + ")", flush=True)
    return out


def timing_table(pairs: dict[str, list[dict]]) -> str:
    """Markdown: per code, the median pair wall time and the mean split of a run; the ratio baseline / new."""
    rows = ["| code | pair wall (s) | run wall | start-up | generation | reward | advantage | update | evaluation |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for code, items in pairs.items():
        runs = [s for pair in items for s in pair["runs"].values()]
        mean = {k: statistics.mean(s[k] for s in runs) for k in runs[0]}
        rows.append(f"| {code} | {statistics.median(p['wall'] for p in items):.1f} | {mean['wall']:.1f} | "
                    + " | ".join(f"{mean[k]:.1f}" for k in ("startup", *PHASES, "evaluation")) + " |")
    old, new = (statistics.median(p["wall"] for p in items) for items in pairs.values())
    rows.append(f"\nbaseline / new (pair wall time): {old / new:.2f}x")
    return "\n".join(rows)


def held_out_auc(run_dir: Path) -> float:
    """Held-out AUC in accuracy points: the trapezoid mean of eval_accuracy over the evaluated steps."""
    return 100 * auc(sorted((r["step"], r["eval_accuracy"]) for r in read_metrics(run_dir) if "eval_accuracy" in r))


def compare_curves(args, codes: dict[str, Path], work: Path, extra: list[str]) -> dict:
    """Each arm's held-out AUC per seed with both codes, and the paired difference old - new (mean, 95% CI)."""
    from ktae.experiments.compare import mean_ci

    auc: dict[str, dict[str, list[float]]] = {arm: {code: [] for code in codes} for arm in CURVE_ARMS}
    for seed in range(args.curves):
        for arm in CURVE_ARMS:
            dirs = {code: work / f"curves-{code}-{arm}-s{seed}" for code in codes}
            side_by_side([train_command(src, arm, seed, dirs[code], extra) for code, src in codes.items()])
            for code in codes:
                auc[arm][code].append(held_out_auc(dirs[code]))
            print(f"seed {seed}, {arm}: " + ", ".join(f"{c} {auc[arm][c][-1]:.2f}" for c in codes), flush=True)
    summary = {}
    for arm, by_code in auc.items():
        old, new = by_code.values()
        mean, half = mean_ci([a - b for a, b in zip(old, new)])
        low, high = mean - half, mean + half
        spread = statistics.stdev(old) if len(old) > 1 else float("nan")
        summary[arm] = {"auc": by_code, "old_minus_new": {"mean": mean, "ci95": [low, high]}, "seed_sd_old": spread}
        print(f"{arm}: old - new {mean:+.2f} [{low:+.2f}, {high:+.2f}] AUC points; seed-to-seed SD (old) {spread:.2f}")
    return summary


def default_job(codes: dict[str, Path], work: Path, extra: list[str]) -> dict:
    """``ktae train`` (no options but ``extra``) with each code side by side, each from an empty model cache."""
    jobs, dirs = [], {}
    for k, (code, src) in enumerate(codes.items()):
        dirs[code] = work / f"default-{k}"
        command = [sys.executable, "-m", "ktae", "train", "--run_dir", str(dirs[code]), *extra]
        jobs.append((command, {**os.environ, "PYTHONPATH": str(src), "KTAE_CACHE": str(work / f"cache-{k}")}))
    walls = side_by_side(jobs)
    out = {}
    for (code, run_dir), wall in zip(dirs.items(), walls):
        evals = [r for r in read_metrics(run_dir) if "eval_accuracy" in r]
        out[code] = {"wall": wall, "heldout_first": evals[0]["eval_accuracy"], "heldout_last": evals[-1]["eval_accuracy"]}
        print(f"{code}: {wall:.0f} s, held-out {evals[0]['eval_accuracy']:.1%} -> {evals[-1]['eval_accuracy']:.1%}")
    return out


def main(argv=None) -> dict:
    args = parse(argv)
    from ktae.environment import describe_environment

    extra = args.train_args.split()
    keep = bool(args.workdir)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-study-"))
    work.mkdir(parents=True, exist_ok=True)
    base_tree = worktree(args.baseline, work / "baseline-tree")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "src"], capture_output=True,
                                text=True).stdout.strip())
    codes = {f"baseline {args.baseline}": base_tree / "src", f"new {head}{' (modified)' if dirty else ''}": ROOT / "src"}
    result = {"command": " ".join(["python", "benchmarks/bench_study.py", *(argv or sys.argv[1:])]),
              "codes": list(codes), "load_before": os.getloadavg()[0], "environment": describe_environment()}
    try:
        if args.default_job:
            result["default_job"] = default_job(codes, work, extra)
        elif args.curves:
            result["curves"] = compare_curves(args, codes, work, extra)
        else:
            result["pairs"] = time_pairs(args, codes, work, extra)
            result["table"] = timing_table(result["pairs"])
            print(result["table"])
    finally:
        remove_worktree(base_tree)
        if not keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
