"""``ktae doctor``: installed versions that do not go together, each named with the command that fixes it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from ktae.cli import main as ktae_main
from ktae.integrations import compatibility as compat

SRC = Path(__file__).resolve().parents[1] / "src"

#: the kernels lines of transformers 5.10.4's metadata (an extra), and of 5.25 (a plain dependency)
TRANSFORMERS_5_10 = ["huggingface-hub<2.0,>=1.5.0", 'kernels<0.13,>=0.12.0; extra == "kernels"',
                     'kernels<0.13,>=0.12.0; extra == "all"', 'pytest>=7; extra == "testing"']
TRANSFORMERS_5_25 = ["huggingface-hub<2.0,>=1.5.0", "kernels>=0.19.1"]
#: ktae's own lines: the base transformers requirement and the verl extra's cap
KTAE = ["torch>=2.4", "transformers>=4.51", 'verl<0.10,>=0.9; extra == "verl"',
        'transformers<5.11,>=4.51; extra == "verl"', 'trl<2,>=1.16; extra == "trl"']
VLLM = ["transformers>=4.56.0", "not a requirement ((", 'transformers<4.50; extra == "legacy"']


def test_declared_range_reads_markers_and_combines_lines():
    assert compat.declared_range(TRANSFORMERS_5_10, "kernels", extra="kernels") == SpecifierSet(">=0.12.0,<0.13")
    assert compat.declared_range(TRANSFORMERS_5_10, "kernels") is None           # only an extra wants it
    assert compat.declared_range(TRANSFORMERS_5_25, "Kernels", extra="kernels") == SpecifierSet(">=0.19.1")
    assert compat.declared_range(KTAE, "transformers", extra="verl") == SpecifierSet(">=4.51,<5.11")
    assert compat.declared_range(KTAE, "transformers") == SpecifierSet(">=4.51")
    assert compat.declared_range(VLLM, "transformers") == SpecifierSet(">=4.56.0")  # the bad line is skipped
    assert compat.declared_range(None, "transformers") is None
    assert compat.range_text(SpecifierSet("<0.13,>=0.12.0")) == ">=0.12.0,<0.13"
    assert compat.allows(SpecifierSet(">=2.4"), "2.13.0+cpu") and not compat.allows(SpecifierSet(">=2.4"), "x.y")


def test_transformers_and_kernels():
    name, ok, detail = compat.check_transformers_kernels("5.10.4", TRANSFORMERS_5_10, "0.19.1")
    assert name == "transformers and kernels" and ok is False
    assert "transformers 5.10.4 wants kernels>=0.12.0,<0.13, but kernels 0.19.1 is installed" in detail
    assert detail.endswith('pip install "kernels>=0.12.0,<0.13"')
    assert compat.check_transformers_kernels("5.10.4", TRANSFORMERS_5_10, "0.12.3")[1] is True
    assert compat.check_transformers_kernels("5.25.0", TRANSFORMERS_5_25, "0.19.1")[1] is True
    name, ok, detail = compat.check_transformers_kernels("5.25.0", TRANSFORMERS_5_25, "0.12.3")
    assert ok is False and detail.endswith('pip install "kernels>=0.19.1"')
    assert compat.check_transformers_kernels("4.51.0", ["numpy"], "0.19.1")[1] is True   # declares nothing
    assert compat.check_transformers_kernels("5.10.4", TRANSFORMERS_5_10, None)[1] is None
    assert compat.check_transformers_kernels(None, None, "0.19.1")[1] is None


def test_transformers_against_the_verl_extra():
    name, ok, detail = compat.check_transformers_verl_extra("5.25.0", "0.9.1", KTAE)
    assert name == "transformers for verl" and ok is False
    assert "wants transformers>=4.51,<5.11, but transformers 5.25.0 is installed" in detail
    assert detail.endswith('pip install "transformers>=4.51,<5.11"')
    assert compat.check_transformers_verl_extra("5.10.4", "0.9.1", KTAE)[1] is True
    assert compat.check_transformers_verl_extra("5.25.0", None, KTAE)[1] is None      # verl absent: no cap
    assert compat.check_transformers_verl_extra("5.25.0", "0.9.1", None)[1] is None   # ktae has no metadata


def test_vllm_against_transformers():
    name, ok, detail = compat.check_transformers_vllm("4.51.0", "0.11.0", VLLM)
    assert name == "vllm and transformers" and ok is False
    assert "vllm 0.11.0 wants transformers>=4.56.0, but transformers 4.51.0 is installed" in detail
    assert detail.endswith('pip install "transformers>=4.56.0"')
    assert compat.check_transformers_vllm("5.10.4", "0.11.0", VLLM)[1] is True
    assert compat.check_transformers_vllm("5.10.4", None, None)[1] is None


def test_a_cuda_torch_on_a_machine_without_cuda():
    name, ok, detail = compat.check_torch_build("2.13.0+cu130", "13.0", cuda_available=False, nvidia_driver=False)
    assert name == "torch build" and ok == compat.WARN
    assert "no NVIDIA driver" in detail
    assert detail.endswith('pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu')
    ok, detail = compat.check_torch_build("2.13.0", "13.0", cuda_available=False, nvidia_driver=True)[1:]
    assert ok == compat.WARN and "nvidia-smi" in detail and "--index-url" not in detail
    assert compat.check_torch_build("2.13.0", "13.0", cuda_available=True, nvidia_driver=True)[1] is True
    assert compat.check_torch_build("2.13.0+cpu", None, cuda_available=False, nvidia_driver=False)[1] is True
    assert compat.check_torch_build(None, None, cuda_available=False, nvidia_driver=False)[1] is None


def test_doctor_names_the_mismatched_pair_and_its_fix(monkeypatch, capsys):
    real_version = compat.installed_version
    real_requires = compat.declared_requirements
    monkeypatch.setattr(compat, "installed_version",
                        lambda package: {"kernels": "0.19.1", "transformers": "5.10.4"}.get(package,
                                                                                             real_version(package)))
    monkeypatch.setattr(compat, "declared_requirements",
                        lambda package: TRANSFORMERS_5_10 if package == "transformers" else real_requires(package))
    assert ktae_main(["doctor", "--no-ray"]) == 1
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "transformers and kernels" in line)
    assert line.strip().startswith("[FAIL]") and line.endswith('pip install "kernels>=0.12.0,<0.13"')
    assert "some checks failed" in out


def test_a_warning_does_not_fail_the_doctor(monkeypatch, capsys):
    from ktae.integrations import doctor

    monkeypatch.setattr(compat, "torch_build", lambda: ("2.13.0+cu130", "13.0", False))
    monkeypatch.setattr(compat, "nvidia_driver_present", lambda: False)
    monkeypatch.setattr(compat, "installed_version", lambda package: None)   # the other version checks: skipped
    monkeypatch.setattr(doctor, "run_checks", lambda ray_worker: compat.compatibility_checks())  # no verl here
    assert ktae_main(["doctor", "--no-ray"]) == 0
    out = capsys.readouterr().out
    assert "[warn] torch build" in out and "--index-url https://download.pytorch.org/whl/cpu" in out
    assert "[skip] transformers and kernels" in out and "KTAE is ready" in out


def test_doctor_in_an_environment_with_a_kernels_transformers_does_not_accept(tmp_path):
    """The real broken pair: kernels 0.19.1 next to the transformers installed here (when pip can fetch it)."""
    wanted = compat.declared_range(compat.declared_requirements("transformers"), "kernels", extra="kernels")
    if wanted is None or wanted.contains("0.19.1"):
        pytest.skip("the installed transformers accepts kernels 0.19.1: no broken pair to make")
    target = tmp_path / "kernels-0.19.1"
    try:
        fetched = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                                  str(target), "kernels==0.19.1"], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.skip("pip could not fetch kernels==0.19.1 within 2 minutes")
    if fetched.returncode:
        pytest.skip(f"pip could not fetch kernels==0.19.1: {fetched.stderr[-300:]}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(SRC)])}
    done = subprocess.run([sys.executable, "-m", "ktae", "doctor", "--no-ray"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]  # failed checks, not a crash
    transformers = compat.installed_version("transformers")
    expected = (f"[FAIL] transformers and kernels: transformers {transformers} wants kernels{compat.range_text(wanted)}"
                f", but kernels 0.19.1 is installed")
    assert expected in done.stdout and f'pip install "kernels{compat.range_text(wanted)}"' in done.stdout
    assert "some checks failed" in done.stdout
