"""Training and held-out problems: the embedded task, a Hub dataset, or a local file/folder.

Every source ends up as a list of ``{"problem": str, "answer": str}`` records; a
:class:`PromptSampler` walks it in a seeded random order, epoch after epoch, with a
state that a checkpoint can save and restore exactly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ktae.recipes import smollm2
from ktae.recipes.arithmetic import ArithmeticTask
from ktae.recipes.word_problems import WordProblemTask
from ktae.train.config import TaskConfig

#: seed of the embedded task's held-out pool (fixed, so every run is evaluated on the same problems)
EMBEDDED_EVAL_SEED = 2_000_003
#: held-out pool size of the embedded task; the warm start and the training pool never contain these
EMBEDDED_EVAL_POOL = 1000
#: training pool size of the embedded task
EMBEDDED_TRAIN_POOL = 20_000


def embedded_task(task: TaskConfig) -> ArithmeticTask | WordProblemTask:
    """The embedded task that ``task.name`` names: ``arithmetic`` (with its operand options) or ``word`` (with its
    number ranges)."""
    if task.name == "word":
        return WordProblemTask(max_count=task.max_count, max_change=task.max_change)
    return ArithmeticTask(min_operands=task.min_operands, max_operands=task.max_operands,
                          max_operand=task.max_operand)


def embedded_problems(task: ArithmeticTask | WordProblemTask, seed: int) -> tuple[list[dict], list[dict]]:
    """(training pool, held-out pool) of the embedded task; the training pool depends on ``seed``.

    The training pool never contains a held-out problem.
    """
    held_out = task.problems(EMBEDDED_EVAL_POOL, seed=EMBEDDED_EVAL_SEED)
    exclude = {r["problem"] for r in held_out}
    size = min(EMBEDDED_TRAIN_POOL, max(1, task.size() // 2 - EMBEDDED_EVAL_POOL))
    train = task.problems(size, seed=10_007 + seed, exclude=exclude)
    return train, held_out


# ---------------------------------------------------------------------------- files and the Hub
def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in ("dataset_info.json", "state.json",
                                                                      "dataset_dict.json"))


def load_rows(source: str, split: str = "train", config_name: str = "") -> list[dict]:
    """Rows of a dataset: a ``.jsonl``/``.json``/``.parquet``/``.csv`` file, a ``save_to_disk`` folder
    (a ``DatasetDict`` is indexed by ``split``), a local dataset folder, or a Hub id."""
    import datasets

    path = Path(os.path.expanduser(source))
    if path.is_file():
        suffix = path.suffix.lower()
        kinds = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
        if suffix not in kinds:
            raise ValueError(f"--data: unsupported file type {suffix!r} of {source!r}; expected one of {sorted(kinds)}")
        ds = datasets.load_dataset(kinds[suffix], data_files=str(path), split="train")
    elif _is_saved_dataset(path):
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"--split: {split!r} is not a split of {source!r}; splits: {list(ds)}")
            ds = ds[split]
    elif path.is_dir():
        ds = datasets.load_dataset(str(path), config_name or None, split=split)
    else:
        if source.startswith((".", "/", "~")) or source.endswith((".jsonl", ".json", ".parquet", ".csv")):
            raise ValueError(f"--data: no such file or folder {source!r}")
        ds = datasets.load_dataset(source, config_name or None, split=split)
    return [dict(row) for row in ds]


def to_problems(rows: list[dict], problem_field: str, answer_field: str, answer_from_solution: bool = False,
                filter_field: str = "", filter_values: list[str] | tuple[str, ...] = (), where: str = "data"
                ) -> list[dict]:
    """Rows -> ``{"problem", "answer"}`` records (filtered; rows without a usable answer are dropped)."""
    from ktae.rewards import extract_boxed

    if not rows:
        raise ValueError(f"{where}: the dataset is empty")
    columns = set(rows[0])
    for name, value in (("problem_field", problem_field), ("answer_field", answer_field)):
        if value not in columns:
            raise ValueError(f"--{name}: {value!r} is not a field of {where}; fields: {sorted(columns)}")
    if filter_field and filter_field not in columns:
        raise ValueError(f"--filter_field: {filter_field!r} is not a field of {where}; fields: {sorted(columns)}")
    accepted = {str(v) for v in filter_values}
    out = []
    for row in rows:
        if filter_field and str(row[filter_field]) not in accepted:
            continue
        answer: Any = row[answer_field]
        if answer_from_solution:
            answer = extract_boxed(str(answer))
            if answer is None:
                continue
        if answer is None or (isinstance(answer, str) and not answer.strip()):
            continue
        out.append({"problem": str(row[problem_field]), "answer": answer if isinstance(answer, (list, str))
                    else str(answer)})
    if not out:
        raise ValueError(f"{where}: no rows left after filtering ({filter_field} in {sorted(accepted)})")
    return out


#: generated data sources written ``--data <prefix>:<name>``: prefix -> function taking the TrainConfig and
#: returning (training problems, held-out problems)
DATA_PLUGINS: dict[str, Callable] = {
    "reasoning_gym": smollm2.load_reasoning_gym,
}


def plugin_for(source: str):
    """The loader function of a ``<prefix>:<name>`` data source, or None."""
    prefix, colon, _ = source.partition(":")
    if not colon or prefix not in DATA_PLUGINS or Path(os.path.expanduser(source)).exists():
        return None
    return DATA_PLUGINS[prefix]


def load_problems(cfg) -> tuple[list[dict], list[dict]]:
    """(training problems, held-out problems) for a :class:`~ktae.train.config.TrainConfig`."""
    plugin = plugin_for(cfg.data.path)
    if plugin is not None:
        train, held_out = plugin(cfg)
        if cfg.eval.path:
            held_out = _load_eval(cfg)
        return train, held_out
    if cfg.data.path == "embedded":
        train, held_out = embedded_problems(embedded_task(cfg.task), cfg.seed)
        if cfg.eval.path:
            held_out = _load_eval(cfg)
        return train, held_out
    rows = load_rows(cfg.data.path, cfg.data.split, cfg.data.subset)
    data = cfg.data
    train = to_problems(rows, data.problem_field, data.answer_field, data.answer_from_solution, data.filter_field,
                        data.filter_values, where=f"--data {data.path}")
    held_out = _load_eval(cfg) if cfg.eval.path else []
    return train, held_out


def _load_eval(cfg) -> list[dict]:
    if cfg.eval.path == "embedded":
        return embedded_problems(embedded_task(cfg.task), cfg.seed)[1]
    rows = load_rows(cfg.eval.path, cfg.eval.split, cfg.eval.subset)
    columns = set(rows[0]) if rows else set()
    answer_field = cfg.data.answer_field if cfg.data.answer_field in columns else "answer"
    from_solution = cfg.data.answer_from_solution and answer_field == cfg.data.answer_field
    return to_problems(rows, cfg.data.problem_field, answer_field, from_solution, where=f"--eval_data {cfg.eval.path}")


# ---------------------------------------------------------------------------- sampling
@dataclass
class PromptSampler:
    """Seeded shuffled passes over ``size`` items; ``state()``/``load_state()`` resume exactly."""

    size: int
    seed: int
    epoch: int = 0
    position: int = 0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("PromptSampler needs at least one problem")
        self._order = self._permutation(self.epoch)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def next(self, count: int) -> list[int]:
        out: list[int] = []
        while len(out) < count:
            if self.position >= self.size:
                self.epoch += 1
                self.position = 0
                self._order = self._permutation(self.epoch)
            take = min(count - len(out), self.size - self.position)
            out.extend(int(i) for i in self._order[self.position : self.position + take])
            self.position += take
        return out

    def state(self) -> dict:
        return {"size": self.size, "seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state(self, state: dict) -> None:
        if state["size"] != self.size or state["seed"] != self.seed:
            raise ValueError(f"checkpoint's prompt sampler was over {state['size']} problems (seed {state['seed']}), "
                             f"this run has {self.size} (seed {self.seed}): the data changed")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._permutation(self.epoch)
