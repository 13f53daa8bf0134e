"""benchmarks/gpu_acceptance.py: every part at toy size on the CPU (--cpu-dry-run), the summary written even when
a part fails, and a clear non-zero exit without CUDA."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_acceptance.py"


def env():
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def load_script():
    return load_benchmark("gpu_acceptance")


def test_dry_run_runs_every_part(tmp_path):
    out = tmp_path / "summary.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--cpu-dry-run", "--output", str(out)],
                         capture_output=True, text=True, env=env(), timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["mode"] == "cpu-dry-run" and summary["passed"] is True
    parts = summary["parts"]
    assert list(parts) == ["equality", "paper_batch", "trainer", "trl"]
    assert all(part["status"] == "ok" for part in parts.values()), parts
    assert parts["equality"]["max_abs_diff"] <= 1e-6 and parts["equality"]["nonzero_values_checked"] > 0
    assert set(parts["equality"]["max_abs_diff_by_kind"]) == {"mixed", "singletons", "uniform", "interleaved",
                                                              "big_ids", "ignored", "empty_masks", "string_groups"}
    batch = parts["paper_batch"]
    assert batch["key_token_values_sort_ratio"] > 0 and batch["ktae_advantages_seconds"] > 0
    trainer = parts["trainer"]
    assert trainer["steps"] == 2 and set(trainer["phase_shares"]) == {"generation", "reward", "advantage", "update"}
    assert parts["trl"]["steps"] == 2 and parts["trl"]["ktae_metrics"]["ktae/mixed_group_fraction"] >= 0
    for name in ("[equality] starting", "[paper_batch] ok", "[trainer] ok", "[trl] ok", "summary written"):
        assert name in run.stdout  # progress, not silence


def test_summary_is_written_when_a_part_fails(tmp_path, monkeypatch):
    script = load_script()

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(script, "part_paper_batch", broken)
    out = tmp_path / "summary.json"
    code = script.main(["--cpu-dry-run", "--parts", "paper_batch,equality", "--batches", "8", "--output", str(out)])
    summary = json.loads(out.read_text())
    assert code == 1 and summary["passed"] is False
    assert summary["parts"]["paper_batch"]["status"] == "error"
    assert "out of memory (simulated)" in summary["parts"]["paper_batch"]["error"]
    assert summary["parts"]["equality"]["status"] == "ok"
    environment = summary["environment"]  # ktae.environment's record, and the device the parts ran on
    assert environment["device"] == "cpu" and environment["packages"]["torch"] == script.torch.__version__
    assert environment["cpu_capability"] == script.torch.backends.cpu.get_cpu_capability()


def test_without_cuda_it_stops_at_once(tmp_path):
    out = tmp_path / "summary.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--output", str(out)], capture_output=True, text=True,
                         env={**env(), "CUDA_VISIBLE_DEVICES": ""}, timeout=300)
    assert run.returncode == 2 and "no CUDA device" in run.stdout and not out.exists()
    bad = subprocess.run([sys.executable, str(SCRIPT), "--cpu-dry-run", "--parts", "nope"], capture_output=True,
                         text=True, env=env(), timeout=300)
    assert bad.returncode == 2 and "unknown part" in bad.stderr
