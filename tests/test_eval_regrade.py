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
    written_summary = json.loads((tmp_path / "out.summary.json").read_text())
    assert written_summary["agreement"]["agreed"] == 2
    assert written_summary["environment"]["packages"]["ktae"] == result.summary["environment"]["packages"]["ktae"]
    assert set(written_summary["environment"]) >= {"python", "packages", "git", "cpu_model", "cpu_count",
                                                   "cpu_capability", "torch_threads"}


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


# ---------------------------------------------------------------------------------------------------------------
# other harnesses' files, recognised without flags
# ---------------------------------------------------------------------------------------------------------------

def test_understand_r1_zero_layout_sample_lists(tmp_path, capsys):
    """The Dr. GRPO evaluator: a JSON list of {task_name, prompt, gt: [..], model_output: [..], reward: [..]}."""
    rows = [
        {"task_name": "aime", "prompt": "p0", "gt": ["204"],
         "model_output": [r"\boxed{204}", r"\boxed{205}", r"so \boxed{204}", "204"], "reward": [1.0, 0.0, 1.0, 1.0]},
        {"task_name": "math", "prompt": "p1", "gt": ["\\frac{1}{2}"],
         "model_output": [r"\boxed{0.5}", r"\boxed{1}", r"\boxed{1/2}", r"\boxed{2}"], "reward": [1.0, 0.0, 0.0, 0.0]},
        {"task_name": "olympiad_bench", "prompt": "p2", "gt": ["3"],
         "model_output": [r"\boxed{3}"] * 4, "reward": [1.0] * 4},
        {"task_name": "gaokao2023", "prompt": "p3", "gt": ["7"],
         "model_output": [r"\boxed{7}", r"\boxed{8}", r"\boxed{8}", r"\boxed{8}"], "reward": [1.0, 0.0, 0.0, 0.0]},
    ]
    path = tmp_path / "model_eval.json"
    path.write_text(json.dumps(rows))
    result = regrade(str(path), workers=1, progress=False, output=str(tmp_path / "out.jsonl"))
    assert result.layout == "understand-r1-zero" and result.samples == 16
    assert [r["correct"] for r in result.records] == [[True, False, True, False], [True, False, True, False],
                                                     [True] * 4, [True, False, False, False]]
    per = result.summary["benchmarks"]
    assert list(per) == ["aime", "math", "olympiad_bench", "gaokao2023"]  # an unknown benchmark keeps its name
    assert per["aime"]["accuracy"] == pytest.approx(50.0) and per["aime"]["problems"] == 1
    assert per["math"]["pass@k"] == {"1": pytest.approx(50.0), "2": pytest.approx(100 * (1 - 1 / 6)),
                                     "4": pytest.approx(100.0)}
    assert result.compared == 16 and result.agreed == 14
    assert [(d["record"], d["previous"], d["now"]) for d in result.disagreements] == [("0.3", True, False),
                                                                                      ("1.2", False, True)]
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert written[0]["previous_correct"] == [1.0, 0.0, 1.0, 1.0] and written[0]["correct"] == [True, False, True, False]
    assert ktae_main(["eval", "--from-generations", str(path), "--no-progress", "--grading-workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "Re-graded 16 responses in 4 records" in out and "layout: understand-r1-zero" in out
    assert "pass@4" in out and "mean accuracy" in out and "gaokao2023" in out
    assert "Agreement with the saved verdicts: 87.5% (14/16); 2 disagree" in out


def test_qwen_math_harness_layout(tmp_path):
    """Qwen2.5-Math's evaluator: <out>/<benchmark>/test_*.jsonl with question, gt, code (list), pred, score (lists)."""
    folder = tmp_path / "olympiadbench"
    folder.mkdir()
    rows = [
        {"idx": 0, "question": "q0", "gt_cot": "...", "gt": "12", "code": [r"\boxed{12}", r"\boxed{13}"],
         "pred": ["12", "13"], "score": [True, False]},
        {"idx": 1, "question": "q1", "gt_cot": "...", "gt": "x^2", "code": [r"\boxed{x^{2}}", r"\boxed{x}"],
         "pred": ["x^{2}", "x"], "score": [False, False]},
    ]
    path = _write_jsonl(folder / "test_qwen25-math-cot_-1_seed0_t0.6_s0_e-1.jsonl", rows)
    result = regrade(path, workers=1, progress=False)
    assert result.layout == "qwen2.5-math"
    assert [r["correct"] for r in result.records] == [[True, False], [True, False]]
    entry = result.summary["benchmarks"]["olympiad_bench"]  # from the folder name
    assert entry["problems"] == 2 and entry["accuracy"] == pytest.approx(50.0)
    assert entry["pass@k"]["2"] == pytest.approx(100.0)
    assert result.compared == 4 and [d["record"] for d in result.disagreements] == ["1.0"]
    other = tmp_path / "gsm8k"
    other.mkdir()
    unknown = regrade(_write_jsonl(other / "test_qwen25-math-cot.jsonl", rows), workers=1, progress=False)
    assert list(unknown.summary["benchmarks"]) == ["gsm8k"]  # an unknown benchmark keeps its own name


def test_verl_dump_layout(tmp_path):
    """verl's own writer: input, output, gts, score, step, acc (validation: one rollout per prompt)."""
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    RayPPOTrainer._write_generations(
        ["q0", "q1", "q2"], [r"\boxed{4}", r"\boxed{5}", "no box 6"], ["4", "6", "6"], [1.0, 1.0, -1.0],
        {"acc": [1.0, 1.0, 0.0], "data_source": ["math500", "math500", "aime24"]}, str(tmp_path), 7,
    )
    result = regrade(str(tmp_path / "7.jsonl"), workers=1, progress=False)
    assert result.layout == "verl"
    assert [r["correct"] for r in result.records] == [True, False, False]
    assert list(result.summary["benchmarks"]) == ["aime", "math"]
    assert result.compared == 3 and [d["record"] for d in result.disagreements] == [1]


def test_regrade_ambiguous_and_bad_sample_lists(tmp_path):
    both = _write_jsonl(tmp_path / "both.jsonl", [{"response": "a", "completion": "b", "reference": "1"}])
    with pytest.raises(ValueError, match=r"several fields could hold the responses \(response, completion\).*"
                                         r"--response-field"):
        regrade(both, workers=1, progress=False)
    assert regrade(both, response_field="completion", workers=1, progress=False).samples == 1
    short = _write_jsonl(tmp_path / "short.jsonl", [{"task_name": "math", "prompt": "p", "gt": ["1"],
                                                    "model_output": ["a", "b"], "reward": [1.0]}])
    with pytest.raises(ValueError, match=r"record 0: 2 responses in 'model_output' but 1 values in 'reward'"):
        regrade(short, workers=1, progress=False)
    nested = _write_jsonl(tmp_path / "nested.jsonl", [{"response": [["a"]], "reference": "1"}])
    with pytest.raises(ValueError, match="must be a string or a list of strings"):
        regrade(nested, workers=1, progress=False)
    missing = _write_jsonl(tmp_path / "missing.jsonl", [{"task_name": "math", "prompt": "p", "gt": ["1"],
                                                        "model_output": ["a"]}, {"task_name": "math", "gt": ["1"]}])
    with pytest.raises(ValueError, match="no response field found"):
        regrade(missing, workers=1, progress=False)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="holds no records"):
        regrade(str(empty), workers=1, progress=False)
