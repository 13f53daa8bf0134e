"""Benchmark loading (shared suite, jsonl/json/parquet, folders), pass@k, summaries and tables."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from ktae.eval import BENCHMARKS, benchmark_names, format_tables, load_benchmark, pass_at_k, summarize
from ktae.eval.benchmarks import canonical_benchmark

SUITE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "evaluation_suite"
needs_suite = pytest.mark.skipif(not SUITE.exists(), reason="../shared/data/evaluation_suite not present")


@needs_suite
@pytest.mark.parametrize("name", benchmark_names())
def test_shared_suite_has_the_paper_sizes(name):
    examples = load_benchmark(name, str(SUITE))
    assert len(examples) == BENCHMARKS[name].size
    assert all(isinstance(e.problem, str) and e.problem for e in examples)
    assert [e.index for e in examples[:5]] == list(range(5))
    assert all(e.benchmark == name for e in examples)


@needs_suite
def test_suite_reference_types_and_limit():
    minerva = load_benchmark("minerva", str(SUITE), limit=4)
    assert len(minerva) == 4 and all(isinstance(e.reference, list) for e in minerva)
    amc = load_benchmark("AMC", str(SUITE), limit=2)
    assert all(isinstance(e.reference, float) for e in amc)
    assert load_benchmark("MATH500", str(SUITE), limit=1)[0].benchmark == "math"


def test_names_and_aliases():
    assert benchmark_names() == ["aime", "math", "amc", "minerva", "olympiad_bench"]
    assert canonical_benchmark("AIME24") == "aime" and canonical_benchmark("olympiadbench") == "olympiad_bench"
    with pytest.raises(ValueError, match="unknown benchmark 'gsm8k'"):
        canonical_benchmark("gsm8k")


def test_jsonl_parquet_json_and_folders(tmp_path):
    rows = [{"question": f"q{i}", "final_answer": [str(i)]} for i in range(3)]
    (tmp_path / "amc.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    got = load_benchmark("amc", str(tmp_path))
    assert [(e.problem, e.reference) for e in got] == [("q0", ["0"]), ("q1", ["1"]), ("q2", ["2"])]

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"problem": "p", "answer": "7"}]), str(tmp_path / "aime.parquet"))
    assert load_benchmark("aime", str(tmp_path))[0].reference == "7"

    mixed = tmp_path / "all.json"
    mixed.write_text(json.dumps([
        {"benchmark": "math", "problem": "m", "answer": "1"},
        {"benchmark": "minerva", "problem": "n", "answer": "2"},
    ]))
    assert [e.problem for e in load_benchmark("minerva", str(mixed))] == ["n"]

    import datasets

    datasets.Dataset.from_list([{"prompt": "x", "gt": "3"}]).save_to_disk(str(tmp_path / "saved" / "minerva"))
    got = load_benchmark("minerva", str(tmp_path / "saved"), problem_field="prompt", answer_field="gt")
    assert (got[0].problem, got[0].reference) == ("x", "3")


def test_loading_errors_are_clear(tmp_path):
    (tmp_path / "math.jsonl").write_text(json.dumps({"text": "q", "label": "1"}))
    with pytest.raises(ValueError, match="no problem field"):
        load_benchmark("math", str(tmp_path))
    with pytest.raises(ValueError, match="answer field 'sol' not found"):
        load_benchmark("math", str(tmp_path), problem_field="text", answer_field="sol")
    with pytest.raises(ValueError, match="no data for benchmark 'aime'"):
        load_benchmark("aime", str(tmp_path))
    with pytest.raises(FileNotFoundError):
        load_benchmark("aime", str(tmp_path / "nope.jsonl"))
    with pytest.raises(ValueError, match="limit"):
        load_benchmark("math", str(tmp_path), limit=0)


def _brute_pass_at_k(n, c, k):
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n,c,k", [(n, c, k) for n in range(1, 7) for c in range(n + 1) for k in range(1, n + 1)])
def test_pass_at_k_matches_enumeration(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(n, c, k))


def test_pass_at_k_rejects_bad_counts():
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_summarize_and_tables():
    records = (
        [{"benchmark": "math", "index": i, "correct": i < 3, "tokens": 100 + i} for i in range(4)]
        + [{"benchmark": "aime", "index": 0, "correct": True, "tokens": 10}]
    )
    s = summarize(records, ["aime", "math"])
    assert list(s["benchmarks"]) == ["aime", "math"]
    assert s["benchmarks"]["math"]["accuracy"] == pytest.approx(75.0)
    assert s["benchmarks"]["math"]["mean_tokens"] == pytest.approx(101.5)
    assert s["average"] == {"accuracy": pytest.approx(87.5), "mean_tokens": pytest.approx(55.75)}
    text = format_tables(s, "my-model", show_paper=True)
    lines = text.splitlines()
    assert lines[0] == "Table 1: accuracy (%)"
    assert "| my-model" in lines[3] and "100.0" in lines[3] and "75.0" in lines[3] and "87.5" in lines[3]
    assert "GRPO+KTAE-7B (paper)" in text and "33.3" in text  # reported AIME accuracy
    assert "Table 2: mean response length (tokens)" in text and "55.8" in text
