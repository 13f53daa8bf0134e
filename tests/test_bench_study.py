"""benchmarks/bench_study.py runs study pairs with two codes (here: HEAD's and this tree's) on a tiny model."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_study", ROOT / "benchmarks" / "bench_study.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

TINY = ("--tiny_hidden_size 16 --tiny_layers 1 --tiny_heads 2 --tiny_intermediate_size 32 --tiny_sft_steps 10 "
        "--tiny_sft_batch_size 8 --prompts_per_step 2 --rollouts_per_prompt 2 --max_new_tokens 12 --eval_size 4 "
        "--steps 2 --eval_every 1 --dump_key_tokens_every 1 --grader_workers 0")

needs_git = pytest.mark.skipif(shutil.which("git") is None or subprocess.run(
    ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode != 0, reason="needs a git checkout")


@needs_git
def test_pairs_of_two_codes_are_timed_and_split(tmp_path, monkeypatch):
    monkeypatch.setenv("KTAE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "study.json"
    result = bench.main(["--baseline", "HEAD", "--train_args", TINY, "--workdir", str(tmp_path / "work"),
                         "--json", str(out)])
    assert json.loads(out.read_text())["codes"] == result["codes"] and len(result["codes"]) == 2
    for code in result["codes"]:
        (pair,) = result["pairs"][code]
        assert set(pair["runs"]) == set(bench.PAIR)
        for split in pair["runs"].values():
            parts = split["startup"] + split["steps"] + split["evaluation"]
            assert split["wall"] == pytest.approx(parts) and split["steps"] >= split["generation"] > 0
            assert split["update"] > 0 and split["evaluation"] > 0 and split["startup"] > 0
        assert pair["wall"] == max(s["wall"] for s in pair["runs"].values())
    assert "baseline / new (pair wall time)" in result["table"]
    assert not (tmp_path / "work" / "baseline-tree").exists()          # the worktree is removed


@needs_git
def test_curves_of_two_codes_are_paired_by_seed(tmp_path, monkeypatch):
    monkeypatch.setenv("KTAE_CACHE", str(tmp_path / "cache"))
    result = bench.main(["--baseline", "HEAD", "--train_args", TINY, "--curves", "2"])
    for arm in bench.CURVE_ARMS:
        old, new = result["curves"][arm]["auc"].values()
        assert len(old) == len(new) == 2 and all(0 <= a <= 100 for a in old + new)
        mean = result["curves"][arm]["old_minus_new"]["mean"]
        assert mean == pytest.approx(sum(a - b for a, b in zip(old, new)) / 2)


def test_held_out_auc_is_the_trapezoid_mean(tmp_path):
    records = [{"step": 0, "eval_accuracy": 0.2}, {"step": 1, "loss": 1.0}, {"step": 2, "eval_accuracy": 0.4},
               {"step": 6, "eval_accuracy": 0.4}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert bench.held_out_auc(tmp_path) == pytest.approx(100 * (2 * 0.3 + 4 * 0.4) / 6)
