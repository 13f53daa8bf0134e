"""The paper's five benchmarks and where to read them from.

A benchmark source (``data``) can be

* a folder written by ``datasets.DatasetDict.save_to_disk`` with one split per
  benchmark (``aime``, ``math``, ``amc``, ``minerva``, ``olympiad_bench``), such
  as the ``evaluation_suite`` folder shipped with the project's shared data;
* a folder holding one ``save_to_disk`` folder, ``.jsonl``, ``.json`` or
  ``.parquet`` file per benchmark, named after it (``math.jsonl``...);
* one ``.jsonl``/``.json``/``.parquet`` file (all rows one benchmark, or a
  ``benchmark`` column saying which);
* a Hugging Face Hub dataset id with one split per benchmark;
* nothing (``None``): each benchmark's usual public Hub dataset (needs network).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BenchmarkInfo",
    "BENCHMARKS",
    "Example",
    "benchmark_names",
    "canonical_benchmark",
    "load_benchmark",
    "PROBLEM_FIELDS",
    "ANSWER_FIELDS",
]


@dataclass(frozen=True)
class BenchmarkInfo:
    """One benchmark: short name, table label, size in the paper and its public Hub source."""

    name: str
    label: str
    size: int
    hub_id: str
    hub_config: str | None
    hub_split: str


BENCHMARKS: dict[str, BenchmarkInfo] = {
    "aime": BenchmarkInfo("aime", "AIME24", 30, "HuggingFaceH4/aime_2024", None, "train"),
    "math": BenchmarkInfo("math", "MATH500", 500, "HuggingFaceH4/MATH-500", None, "test"),
    "amc": BenchmarkInfo("amc", "AMC", 83, "AI-MO/aimo-validation-amc", None, "train"),
    "minerva": BenchmarkInfo("minerva", "Minerva", 272, "math-ai/minervamath", None, "test"),
    "olympiad_bench": BenchmarkInfo(
        "olympiad_bench", "OlympiadBench", 675, "Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train"
    ),
}

_ALIASES = {
    "aime24": "aime", "aime2024": "aime", "aime_2024": "aime",
    "math500": "math", "math-500": "math", "math_500": "math",
    "amc23": "amc", "amc2023": "amc",
    "minerva_math": "minerva", "minervamath": "minerva",
    "olympiad": "olympiad_bench", "olympiadbench": "olympiad_bench", "olympiad-bench": "olympiad_bench",
}

#: Column names tried, in order, for the problem text and for the reference answer.
PROBLEM_FIELDS = ("problem", "question", "prompt", "query", "input")
ANSWER_FIELDS = ("answer", "final_answer", "reference", "ground_truth", "gt", "expected_answer", "target")


@dataclass
class Example:
    """One problem of a benchmark (``index`` is its row number in the source)."""

    benchmark: str
    index: int
    problem: str
    reference: Any


def benchmark_names() -> list[str]:
    return list(BENCHMARKS)


def canonical_benchmark(name: str) -> str:
    """``"MATH500"`` -> ``"math"``; raises ``ValueError`` listing the names for an unknown one."""
    if not isinstance(name, str):
        raise TypeError(f"benchmark name must be a str, got {type(name).__name__}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose from {benchmark_names()}")
    return key


def _pick_field(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, where: str) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise ValueError(f"{what} field {wanted!r} not found in {where}; its fields are {columns}")
        return wanted
    for c in candidates:
        if c in columns:
            return c
    raise ValueError(
        f"no {what} field in {where} (looked for {list(candidates)}); its fields are {columns}. "
        f"Name it with --{what}-field"
    )


def _read_rows(path: str) -> list[dict]:
    lower = path.lower()
    if lower.endswith(".jsonl"):
        rows = []
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
        return rows
    if lower.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data, dict):
            for key in ("data", "examples", "rows", "records"):
                if isinstance(data.get(key), list):
                    data = data[key]
                    break
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of objects")
        return data
    if lower.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    raise ValueError(f"unsupported file type {path!r}: use .jsonl, .json or .parquet")


def _is_saved_dataset(path: str) -> bool:
    return os.path.isdir(path) and (
        os.path.exists(os.path.join(path, "dataset_info.json")) or os.path.exists(os.path.join(path, "state.json"))
    )


def _rows_from_dataset(ds) -> list[dict]:
    return [dict(r) for r in ds]


def _load_rows(name: str, data: str | None) -> tuple[list[dict], str]:
    """Rows of benchmark ``name`` and a description of where they came from."""
    info = BENCHMARKS[name]
    names = {name, *(alias for alias, target in _ALIASES.items() if target == name)}
    if data is None:
        import datasets

        ds = datasets.load_dataset(info.hub_id, info.hub_config, split=info.hub_split)
        return _rows_from_dataset(ds), f"{info.hub_id} ({info.hub_split})"
    data = os.path.expanduser(str(data))
    if os.path.isdir(data):
        import datasets

        if os.path.exists(os.path.join(data, "dataset_dict.json")):
            dd = datasets.load_from_disk(data)
            for split in dd:
                if split.lower() in names:
                    return _rows_from_dataset(dd[split]), f"{data} (split {split})"
            raise ValueError(f"{data} has no split for benchmark {name!r}; its splits are {list(dd)}")
        for entry in sorted(os.listdir(data)):
            stem, ext = os.path.splitext(entry)
            full = os.path.join(data, entry)
            if stem.lower() in names:
                if _is_saved_dataset(full):
                    return _rows_from_dataset(datasets.load_from_disk(full)), full
                if ext.lower() in (".jsonl", ".json", ".parquet"):
                    return _read_rows(full), full
        if _is_saved_dataset(data):
            return _filter_rows(_rows_from_dataset(datasets.load_from_disk(data)), names, data), data
        raise ValueError(
            f"no data for benchmark {name!r} in folder {data}: expected a save_to_disk DatasetDict with a "
            f"{name!r} split, or a {name}.jsonl / {name}.parquet / {name}/ entry"
        )
    if os.path.isfile(data):
        return _filter_rows(_read_rows(data), names, data), data
    looks_like_path = (
        data.lower().endswith((".jsonl", ".json", ".parquet"))
        or data.startswith((".", "/", "~"))
        or data.count("/") != 1
    )
    if looks_like_path:
        raise FileNotFoundError(f"benchmark data {data!r} does not exist (and is not a Hub id 'owner/name')")
    import datasets  # a Hub dataset id with one split per benchmark

    ds = datasets.load_dataset(data, split=name)
    return _rows_from_dataset(ds), f"{data} (split {name})"


def _filter_rows(rows: list[dict], names: set[str], where: str) -> list[dict]:
    for column in ("benchmark", "data_source", "dataset"):
        if rows and column in rows[0]:
            kept = [r for r in rows if str(r.get(column, "")).lower() in names]
            if not kept:
                raise ValueError(f"{where}: no row has {column!r} in {sorted(names)}")
            return kept
    return rows


def load_benchmark(
    name: str,
    data: str | None = None,
    *,
    limit: int | None = None,
    problem_field: str | None = None,
    answer_field: str | None = None,
) -> list[Example]:
    """The problems of benchmark ``name`` (first ``limit`` of them) from ``data`` (see the module doc)."""
    name = canonical_benchmark(name)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    rows, where = _load_rows(name, data)
    if not rows:
        raise ValueError(f"benchmark {name!r} from {where} is empty")
    columns = list(rows[0].keys())
    pfield = _pick_field(columns, problem_field, PROBLEM_FIELDS, "problem", where)
    afield = _pick_field(columns, answer_field, ANSWER_FIELDS, "answer", where)
    if limit is not None:
        rows = rows[:limit]
    examples = []
    for i, row in enumerate(rows):
        problem = row.get(pfield)
        if not isinstance(problem, str) or not problem.strip():
            raise ValueError(f"{where}: row {i} has no problem text in field {pfield!r}")
        examples.append(Example(benchmark=name, index=i, problem=problem, reference=row.get(afield)))
    return examples
