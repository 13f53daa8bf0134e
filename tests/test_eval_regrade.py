"""Re-grading saved generations: agreement with earlier verdicts, field names, formats, errors."""
from __future__ import annotations

import json

import pytest

from ktae.cli import main as ktae_main
from ktae.eval import regrade

RECORDS = [
    # earlier grader was too strict here: now correct
    {"benchmark": "math", "index": 0, "problem": "p0", "response": r"so \boxed{\frac12}", "reference": "0.5",
     "tokens": 10, "correct": False},
    {"benchmark": "minerva", "index": 0, "problem": "p1", "response": r"\boxed{9.6}", "reference": ["9.6\n"],
     "tokens": 20, "correct": True},
    {"benchmark": "aime", "index": 0, "problem": "p2", "response": r"\boxed{204}", "reference": "204",
     "tokens": 30, "correct": True},
    # earlier grader was too lenient (no box): now wrong
    {"benchmark": "aime", "index": 1, "problem": "p3", "response": "The answer is 204", "reference": "204",
     "tokens": 40, "correct": True},
]


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_regrade_reports_agreement_and_disagreements(tmp_path):
    path = _write_jsonl(tmp_path / "gens.jsonl", RECORDS)
    result = regrade(path, workers=1, progress=False, output=str(tmp_path / "out.jsonl"))
    assert [r["correct"] for r in result.records] == [True, True, True, False]
    assert result.compared == 4 and result.agreed == 2 and result.agreement == pytest.approx(50.0)
    assert [(d["record"], d["previous"], d["now"]) for d in result.disagreements] == [(0, False, True), (3, True, False)]
    per = result.summary["benchmarks"]
    assert list(per) == ["aime", "math", "minerva"]
    assert per["aime"]["accuracy"] == pytest.approx(50.0) and per["aime"]["mean_tokens"] == pytest.approx(35.0)
    assert result.summary["average"]["accuracy"] == pytest.approx((50 + 100 + 100) / 3)
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert written[0]["previous_correct"] is False and written[0]["correct"] is True
    assert json.loads((tmp_path / "out.summary.json").read_text())["agreement"]["agreed"] == 2


def test_regrade_cli_prints_tables_and_disagreements(tmp_path, capsys):
    path = _write_jsonl(tmp_path / "gens.jsonl", RECORDS)
    assert ktae_main(["eval", "--from-generations", path, "--no-progress", "--grading-workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "Table 1: accuracy (%)" in out and "Table 2: mean response length (tokens)" in out
    assert "Agreement with the saved verdicts: 50.0% (2/4); 2 disagree" in out
    assert "record 3 [aime]: answer None, reference '204': was True, now False" in out


def test_regrade_json_list_with_custom_fields(tmp_path):
    rows = [
        {"data_source": "MATH500", "completion": r"\boxed{x+1}", "gt": "1+x", "score": 1, "len": 5},
        {"data_source": "MATH500", "completion": r"\boxed{x-1}", "gt": "1+x", "score": 1, "len": 7},
        {"data_source": "MATH500", "completion": r"\boxed{3}", "gt": "3", "score": 1, "len": 9},
    ]
    path = tmp_path / "gens.json"
    path.write_text(json.dumps(rows))
    result = regrade(str(path), response_field="completion", reference_field="gt", benchmark_field="data_source",
                     verdict_field="score", tokens_field="len", workers=1, progress=False)
    assert [r["correct"] for r in result.records] == [True, False, True]
    assert result.compared == 3 and result.agreed == 2
    entry = result.summary["benchmarks"]["math"]
    assert entry["mean_tokens"] == pytest.approx(7.0) and entry["accuracy"] == pytest.approx(200 / 3)


def test_regrade_groups_samples_for_pass_at_k(tmp_path):
    rows = [{"benchmark": "amc", "index": i // 2, "response": rf"\boxed{{{v}}}", "reference": "1"}
            for i, v in enumerate([1, 2, 3, 4])]
    result = regrade(_write_jsonl(tmp_path / "g.jsonl", rows), workers=1, progress=False)
    entry = result.summary["benchmarks"]["amc"]
    assert entry["problems"] == 2 and entry["pass@k"] == {"1": pytest.approx(25.0), "2": pytest.approx(50.0)}
    assert result.compared == 0 and entry["mean_tokens"] is None


def test_regrade_errors_name_the_field(tmp_path, capsys):
    path = _write_jsonl(tmp_path / "g.jsonl", [{"benchmark": "math", "output_text": "x", "reference": "1"}])
    with pytest.raises(ValueError, match="response"):
        regrade(path, workers=1, progress=False)
    with pytest.raises(ValueError, match="'answer_text'"):
        regrade(path, response_field="output_text", reference_field="answer_text", workers=1, progress=False)
    with pytest.raises(FileNotFoundError):
        regrade(str(tmp_path / "missing.jsonl"), workers=1, progress=False)
    assert ktae_main(["eval", "--from-generations", path, "--no-progress"]) == 2
    assert "response" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"response": "x", "reference": "1"}\nnot json\n{"response": "y", "reference": "2"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        regrade(str(bad), workers=1, progress=False)
