"""End to end: ``ktae eval --limit 3`` on a tiny random-weight model, resume, and re-grading its output."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ktae.cli import main as ktae_main
from test_generation import build_tiny_lm

SUITE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "evaluation_suite"
needs_suite = pytest.mark.skipif(not SUITE.exists(), reason="../shared/data/evaluation_suite not present")

BENCHES = ["aime", "math", "amc", "minerva", "olympiad_bench"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(build_tiny_lm(tmp_path_factory.mktemp("tiny_eval_lm")))


def _records(out):
    with open(os.path.join(out, "generations.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


@needs_suite
def test_eval_end_to_end_resume_and_regrade(tiny_model, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "run")
    args = ["eval", "--model", tiny_model, "--data", str(SUITE), "--limit", "3", "--max-new-tokens", "6",
            "--output", out, "--grading-workers", "1", "--batch-size", "3"]
    assert ktae_main(args) == 0
    printed = capsys.readouterr().out
    assert "Table 1: accuracy (%)" in printed and "Table 2: mean response length (tokens)" in printed
    for label in ("AIME24", "MATH500", "AMC", "Minerva", "OlympiadBench", "Avg"):
        assert label in printed

    records = _records(out)
    assert len(records) == 15
    assert sorted({r["benchmark"] for r in records}) == sorted(BENCHES)
    for r in records:
        assert set(r) >= {"benchmark", "index", "problem", "reference", "response", "tokens", "correct", "finished"}
        assert 1 <= r["tokens"] <= 6 and isinstance(r["correct"], bool)
    minerva = [r for r in records if r["benchmark"] == "minerva"]
    assert isinstance(minerva[0]["reference"], list)  # Minerva references stay lists

    summary = json.load(open(os.path.join(out, "summary.json")))
    assert list(summary["benchmarks"]) == BENCHES
    for b in BENCHES:
        entry = summary["benchmarks"][b]
        assert entry["problems"] == 3 and entry["samples"] == 3
        mine = [r for r in records if r["benchmark"] == b]
        assert entry["accuracy"] == pytest.approx(100 * sum(r["correct"] for r in mine) / 3)
        assert entry["mean_tokens"] == pytest.approx(sum(r["tokens"] for r in mine) / 3)

    # Interrupted run: drop the last two records and leave a half-written line behind.
    path = os.path.join(out, "generations.jsonl")
    lines = open(path).read().splitlines()
    kept = lines[:-2]
    with open(path, "w") as f:
        f.write("\n".join(kept) + "\n" + lines[-1][: len(lines[-1]) // 2])
    assert ktae_main(args) == 0
    capsys.readouterr()
    resumed = _records_tolerant(path)
    assert len(resumed) == 15
    assert [json.loads(line) for line in kept] == resumed[:13]  # saved generations untouched, only the rest added
    key = lambda r: (r["benchmark"], r["index"])  # noqa: E731
    assert sorted(map(key, resumed)) == sorted(map(key, records))

    # Nothing left to do: the model is not even loaded.
    import ktae.loading

    def no_loading(*a, **k):
        raise AssertionError("model loaded although every generation is saved")

    monkeypatch.setattr(ktae.loading, "load_model", no_loading)
    assert ktae_main(args) == 0
    assert "Table 1" in capsys.readouterr().out

    # Different generation settings in the same folder are refused (nothing is overwritten).
    assert ktae_main(args[:-6] + ["--max-new-tokens", "7", "--output", out, "--grading-workers", "1"]) == 2
    assert "other settings" in capsys.readouterr().err

    # Re-grading the saved generations agrees with the verdicts made during the run.
    regraded = str(tmp_path / "regraded.jsonl")
    assert ktae_main(["eval", "--from-generations", path, "--output", regraded, "--no-progress",
                      "--grading-workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "Agreement with the saved verdicts: 100.0% (15/15)" in printed
    assert "Table 1: accuracy (%)" in printed
    assert len(open(regraded).read().splitlines()) == 15
    assert os.path.exists(str(tmp_path / "regraded.summary.json"))


def _records_tolerant(path):
    out = []
    for line in open(path).read().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def test_eval_cli_argument_errors(capsys):
    with pytest.raises(SystemExit):
        ktae_main(["eval"])
    assert "--model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ktae_main(["eval", "--model", "m", "--from-generations", "f.jsonl"])
    assert ktae_main(["eval", "--model", "m", "--benchmarks", "gsm8k"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err
    assert ktae_main(["eval", "--model", "m", "--n", "4"]) == 2
    assert "temperature" in capsys.readouterr().err


def test_eval_help_lists_options(capsys):
    assert ktae_main(["eval", "--help"]) == 0
    text = capsys.readouterr().out
    for opt in ("--model", "--benchmarks", "--limit", "--output", "--from-generations", "--skip_long_prompts"):
        assert opt in text
    assert "--template" not in text and "ktae eval --help SECTION" in text
    assert ktae_main(["eval", "--help", "generation"]) == 0
    text = capsys.readouterr().out
    for opt in ("--template", "--n", "--temperature", "--skip_long_prompts"):
        assert opt in text


def test_evaluate_from_python_with_sampling(tiny_model, tmp_path):
    """n > 1 samples: mean accuracy and pass@k, data from a jsonl file, a model passed in."""
    from ktae.eval import EvalConfig, format_tables, run_benchmarks
    from ktae.loading import load_model
    from ktae.model_source import resolve_model_source

    data = tmp_path / "math.jsonl"
    data.write_text("\n".join(json.dumps({"question": f"What is {i}+0?", "final_answer": str(i)}) for i in range(2)))
    model, tokenizer = load_model(resolve_model_source(tiny_model), device="cpu")
    config = EvalConfig(model=tiny_model, benchmarks=("MATH500",), data=str(tmp_path), output=str(tmp_path / "o"),
                        max_new_tokens=4, temperature=1.0, n=4, grading_workers=1, progress=False)
    summary = run_benchmarks(config, model=model, tokenizer=tokenizer)
    entry = summary["benchmarks"]["math"]
    assert entry["problems"] == 2 and entry["samples"] == 8
    assert set(entry["pass@k"]) == {"1", "2", "4"}
    assert entry["pass@k"]["1"] == pytest.approx(entry["accuracy"])
    text = format_tables(summary, "tiny")
    assert "pass@4" in text and "mean accuracy" in text
    records = _records(str(tmp_path / "o"))
    assert sorted((r["index"], r["sample"]) for r in records) == [(i, s) for i in range(2) for s in range(4)]
    # the summary records what made it: versions, the CPU, torch's threads
    import torch

    written = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert written["environment"] == summary["environment"]
    assert written["environment"]["packages"]["torch"] == torch.__version__
    assert written["environment"]["torch_threads"] == torch.get_num_threads()
    assert written["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_eval_cli_spellings_and_bare_flags():
    """Dashed and underscored spellings are the same option; the two flags work bare, anywhere."""
    from ktae.eval.cli import EvalArgs, build_parser
    from ktae.options import parse

    def parsed(*argv):
        return EvalArgs(*parse(build_parser(), ["--model", "m", *argv]))

    dashed = parsed("--max-new-tokens", "6", "--top-p", "0.5", "--grading-workers", "1", "--from-generations", "g")
    underscored = parsed("--max_new_tokens", "6", "--top_p", "0.5", "--grading_workers", "1", "--from_generations", "g")
    assert dashed == underscored
    assert (dashed.generation.max_new_tokens, dashed.generation.top_p, dashed.grading.grading_workers,
            dashed.source.from_generations) == (6, 0.5, 1, "g")
    default = parsed()
    assert (default.report.no_progress, default.report.show_paper) == (False, False)
    assert default.generation.max_new_tokens == 3000 and default.source.benchmarks == BENCHES
    flags = parsed("--no-progress", "--benchmarks", "math", "aime", "--show-paper")
    assert (flags.report.no_progress, flags.report.show_paper) == (True, True)
    assert flags.source.benchmarks == ["math", "aime"]


@pytest.mark.parametrize("argv, message", [
    (["--max-new-tokens", "x"], "argument --max_new_tokens/--max-new-tokens: invalid int value: 'x'"),
    (["--grading-timeout", "soon"], "argument --grading_timeout/--grading-timeout: invalid float value: 'soon'"),
    (["--backend", "tpu"], "argument --backend: invalid choice: 'tpu'"),
    (["--limit"], "argument --limit: expected one argument"),
    (["--bogus", "1"], "unrecognized arguments: --bogus 1"),
])
def test_eval_cli_bad_values_name_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        ktae_main(["eval", "--model", "m", *argv])
    assert exc.value.code == 2
    assert f"ktae eval: error: {message}" in capsys.readouterr().err


def test_eval_help_shows_defaults(capsys):
    assert ktae_main(["eval", "--help", "all"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("--max_new_tokens, --max-new-tokens MAX_NEW_TOKENS",
                  "response length limit in tokens (paper: 3000) (default: 3000)",
                  "(default: qwen_math)", "(default: 5.0)", "--no-progress", "--show-paper", "--response-field",
                  "--backend {hf,vllm}", "(default: ['aime', 'math', 'amc', 'minerva', 'olympiad_bench'])",
                  "generation:", "re-grading (--from-generations):"):
        assert shown in text


@needs_suite
def test_eval_long_prompts_refused_then_skipped(tmp_path, capsys):
    """A model of 224 positions on the first four MATH problems (prompts of 216, 267, 179 and 130 tokens): refused
    in one line before generating; with --skip_long_prompts the one without room is reported as skipped and the
    216-token prompt's response stops at the positions."""
    from transformers import AutoTokenizer

    from ktae.eval.benchmarks import load_benchmark
    from ktae.generation import prompt_token_ids
    from ktae.prompts import format_prompt

    model = str(build_tiny_lm(tmp_path / "short", positions=224))
    tokenizer = AutoTokenizer.from_pretrained(model)
    examples = load_benchmark("math", str(SUITE), limit=4)
    ids = prompt_token_ids(tokenizer, [format_prompt(ex.problem, "qwen_math", tokenizer) for ex in examples])
    lengths = {ex.index: len(row) for ex, row in zip(examples, ids)}
    too_long = sorted(i for i, n in lengths.items() if n >= 224)
    assert len(too_long) == 1 and any(212 < n < 224 for n in lengths.values())   # the data this test relies on
    out = str(tmp_path / "run")
    args = ["eval", "--model", model, "--data", str(SUITE), "--benchmarks", "math", "--limit", "4",
            "--max-new-tokens", "12", "--output", out, "--grading-workers", "1", "--no-progress"]
    assert ktae_main(args) == 2
    error = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(error) == 1 and error[0].startswith("ktae eval: error: 1 of 4 problems have more than 223 tokens")
    assert "(math 1)" in error[0] and "--skip_long_prompts" in error[0]
    assert not os.path.exists(os.path.join(out, "generations.jsonl")) or not _records(out)

    assert ktae_main(args + ["--skip_long_prompts"]) == 0
    printed = capsys.readouterr().out
    assert "Skipped (prompt leaves no room for a response in the model's positions): MATH500 1" in printed
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["skipped"] == {"math": too_long}
    assert summary["benchmarks"]["math"]["problems"] == 3
    records = {r["index"]: r for r in _records(out)}
    assert sorted(records) == sorted(set(lengths) - set(too_long))
    for index, record in records.items():
        assert record["tokens"] <= min(12, 224 - lengths[index])
    capped = next(i for i, n in lengths.items() if 212 < n < 224)
    assert records[capped]["tokens"] == 224 - lengths[capped] and not records[capped]["finished"]
