"""Seconds per verl step on this CPU (``ktae verl --cpu``), for each trainer, and KTAE's share of a step.

    python benchmarks/bench_verl_cpu.py                  # 4 runs of 8 steps (about 6 minutes on 2 idle cores)
    python benchmarks/bench_verl_cpu.py --steps 12 --out results/bench_verl_cpu

The toy job of the CPU runtime's tests (tests/verl_cpu_job.py: a tiny Qwen2, 2 layers of width 64, 2 prompts x
4 responses of up to 16 tokens per step) runs in verl's v1 trainer (default) and in the legacy trainer
(``trainer.use_v1=false``), each with ``algorithm.adv_estimator=ktae`` (K on) and ``grpo`` (K off), one after the
other. From verl's own step metrics it reports ``timing_s/step`` and ``timing_s/adv`` (the advantage computation,
where KTAE runs) and their ratio; the first step (warm-up: the first generation, allocator, imports) is left out
and shown apart. Means with 95% t-intervals over the remaining steps. The machine's load average before and after
is printed too: on a shared machine the seconds are only comparable within one invocation.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import verl_cpu_job as job  # noqa: E402

ARMS = [("v1", "ktae"), ("v1", "grpo"), ("legacy", "ktae"), ("legacy", "grpo")]


def _interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan")
    return mean, stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5


def run_arm(folder: Path, model: str, data: tuple[str, str], trainer: str, estimator: str, steps: int) -> dict:
    args = job.overrides(model, *data, folder, steps=steps, estimator=estimator, v1=trainer == "v1")
    args = [a for a in args if not a.startswith("trainer.save_freq")] + ["trainer.save_freq=-1"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"),
                                                       os.environ.get("PYTHONPATH", "")]))
    start = time.time()
    with open(folder / "log.txt", "w") as log:
        rc = subprocess.run([sys.executable, "-m", "ktae", "verl", "--cpu", *args], cwd=folder, env=env,
                            stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.time() - start
    text = (folder / "log.txt").read_text(errors="replace")
    if rc != 0:
        raise SystemExit(f"{trainer}/{estimator} failed (rc {rc}); log: {folder / 'log.txt'}\n{text[-3000:]}")
    per_step = {}
    for line in text.splitlines():
        if "timing_s/step:" in line and " - " in line:
            metrics = dict(item.split(":", 1) for item in line.split(" - ") if ":" in item)
            step = int(line.split("step:", 1)[1].split(" ")[0])
            per_step[step] = (float(metrics["timing_s/step"]), float(metrics["timing_s/adv"]))
    return {"trainer": trainer, "estimator": estimator, "wall_s": wall, "steps": per_step}


def summarize(result: dict) -> dict:
    steps = result["steps"]
    later = [steps[s] for s in sorted(steps) if s > 1]
    step_mean, step_ci = _interval([t for t, _ in later])
    adv_mean, adv_ci = _interval([a for _, a in later])
    share_mean, share_ci = _interval([a / t for t, a in later])
    return {"trainer": result["trainer"], "estimator": result["estimator"], "first_step_s": steps[min(steps)][0],
            "step_s": step_mean, "step_ci": step_ci, "adv_s": adv_mean, "adv_ci": adv_ci,
            "adv_share": share_mean, "adv_share_ci": share_ci, "n": len(later), "run_wall_s": result["wall_s"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="verl steps per run (the first is reported apart)")
    parser.add_argument("--out", default="", help="folder for the logs and results.json (default: a temp folder)")
    args = parser.parse_args(argv)
    if args.steps < 3:
        parser.error("--steps must be at least 3 (one warm-up step, then at least two measured)")
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_verl_cpu_"))
    model, data = job.build_model(out / "model"), job.build_data(out / "data", n_train=2 * args.steps)
    load_before = os.getloadavg()
    rows = []
    for trainer, estimator in ARMS:
        folder = out / f"{trainer}_{estimator}"
        folder.mkdir(parents=True, exist_ok=True)
        print(f"running {trainer} trainer, adv_estimator={estimator}, {args.steps} steps ...", flush=True)
        rows.append(summarize(run_arm(folder, model, data, trainer, estimator, args.steps)))
    load_after = os.getloadavg()
    print(f"\nverl step times on this CPU ({os.cpu_count()} cores; load average before "
          f"{load_before[0]:.1f}, after {load_after[0]:.1f}); steps 2..{args.steps}, mean ± 95% CI")
    print("| trainer | adv_estimator | first step (s) | s / step | timing_s/adv (ms) | adv / step | run incl. Ray start (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['trainer']} | {r['estimator']} | {r['first_step_s']:.1f} | {r['step_s']:.2f} ± {r['step_ci']:.2f} "
              f"| {1e3 * r['adv_s']:.1f} ± {1e3 * r['adv_ci']:.1f} | {100 * r['adv_share']:.1f}% ± "
              f"{100 * r['adv_share_ci']:.1f}% | {r['run_wall_s']:.0f} |")
    from ktae.environment import describe_environment

    (out / "results.json").write_text(json.dumps({"rows": rows, "load_before": load_before,
                                                  "load_after": load_after, "cpus": os.cpu_count(),
                                                  "environment": describe_environment()}, indent=1))
    print(f"\nlogs and results.json in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
