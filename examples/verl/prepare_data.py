"""Write the paper's training data (MATH train, levels 3-5) and a validation set as verl parquet files.

    python examples/verl/prepare_data.py --out ~/data/ktae_math

writes ``train.parquet`` and ``val.parquet`` with the columns verl's RL dataset reads: ``prompt`` (chat messages:
the paper's system instruction and the problem, which Qwen2.5-Math's chat template turns into the paper's
prompt), ``data_source``, ``ability``, ``reward_model.ground_truth`` and ``extra_info``. The answers are graded
by ``ktae.integrations.verl.math_score`` / ``dapo_score`` (set by the launch scripts).

Sources (Hugging Face Hub ids, or a local dataset saved with ``datasets.save_to_disk``):
  --train   a MATH train set with ``problem``, ``level`` ("Level 3") and ``solution`` (answer = last \\boxed{})
            or ``answer`` columns; default DigitalLearningGmbH/MATH-lighteval.
  --val     problems with ``problem`` and ``answer``; default HuggingFaceH4/MATH-500. A saved DatasetDict (e.g.
            the five benchmarks) gives one validation source per split.
"""
from __future__ import annotations

import argparse
import os
import sys

from tqdm import tqdm

from ktae.prompts import BOXED_INSTRUCTION
from ktae.rewards import extract_boxed


def _load(source: str, split: str):
    import datasets

    path = os.path.expanduser(source)
    if os.path.exists(path):
        loaded = datasets.load_from_disk(path)
        if isinstance(loaded, datasets.DatasetDict):
            return {name: loaded[name] for name in loaded} if split == "all" else {split: loaded[split]}
        return {split: loaded}
    return {split: datasets.load_dataset(source, split=split)}


def _level(value) -> int | None:
    digits = "".join(ch for ch in str(value) if ch.isdigit())
    return int(digits) if digits else None


def _row(problem: str, answer: str, source: str, split: str, index: int) -> dict:
    return {
        "data_source": source,
        "prompt": [
            {"role": "system", "content": BOXED_INSTRUCTION},
            {"role": "user", "content": problem},
        ],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": str(answer)},
        "extra_info": {"split": split, "index": index},
    }


def build_rows(dataset, source: str, split: str, levels: set[int] | None) -> tuple[list[dict], int]:
    """verl rows of ``dataset``; returns (rows, skipped) where skipped rows had no level match or no answer."""
    rows, skipped = [], 0
    for i, example in enumerate(tqdm(dataset, desc=f"{source}:{split}", unit="problem")):
        if levels is not None and _level(example.get("level")) not in levels:
            skipped += 1
            continue
        answer = example.get("answer")
        if answer is None and example.get("solution") is not None:
            answer = extract_boxed(example["solution"])
        if answer is None or str(answer).strip() == "":
            skipped += 1
            continue
        rows.append(_row(example["problem"], answer, source, split, i))
    return rows, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for train.parquet and val.parquet")
    parser.add_argument("--train", default="DigitalLearningGmbH/MATH-lighteval", help="Hub id or saved dataset")
    parser.add_argument("--train-split", default="train", help="split of --train")
    parser.add_argument("--levels", type=int, nargs="+", default=[3, 4, 5], help="MATH levels to keep (0: all)")
    parser.add_argument("--val", default="HuggingFaceH4/MATH-500", help="Hub id or saved dataset (dict)")
    parser.add_argument("--val-split", default="test", help="split of --val; 'all' for every split of a saved dict")
    args = parser.parse_args(argv)

    import pandas as pd

    levels = None if args.levels == [0] else set(args.levels)
    os.makedirs(os.path.expanduser(args.out), exist_ok=True)
    train_rows: list[dict] = []
    for split, dataset in _load(args.train, args.train_split).items():
        rows, skipped = build_rows(dataset, "math", split, levels)
        train_rows += rows
        print(f"train {args.train}:{split}: {len(rows)} problems kept, {skipped} skipped", file=sys.stderr)
    val_rows: list[dict] = []
    for split, dataset in _load(args.val, args.val_split).items():
        rows, skipped = build_rows(dataset, split if args.val_split == "all" else "math500", split, None)
        val_rows += rows
        print(f"val {args.val}:{split}: {len(rows)} problems kept, {skipped} skipped", file=sys.stderr)
    if not train_rows:
        raise SystemExit("no training problem left: check --train and --levels")
    for name, rows in (("train", train_rows), ("val", val_rows)):
        path = os.path.join(os.path.expanduser(args.out), f"{name}.parquet")
        pd.DataFrame(rows).to_parquet(path)
        print(f"wrote {len(rows)} rows to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
