"""Installed versions that do not go together, for ``ktae doctor``: one line each, with the command that fixes it.

Four pairs, each judged from what the packages themselves declare (their distribution metadata), not from a
table kept here:

* transformers and kernels: transformers' requirement on kernels (its ``kernels`` extra, or a plain dependency);
  a kernels outside it breaks ``import`` of transformers' hub-kernels integration (``ValueError: Either a
  revision or a version must be specified.``);
* transformers and ktae's ``verl`` extra: the transformers range that extra pins, when verl is installed;
* torch's build and the machine: a CUDA build of torch where there is no NVIDIA driver (it runs, on the CPU, but
  a CPU wheel is much smaller);
* vLLM and transformers: vLLM's requirement on transformers.

Each check is a pure function of versions and requirement lines (``check_*``), so that it can be tested without
a broken environment; :func:`compatibility_checks` reads the installed ones. Versions come from metadata and no
package is imported to learn its version (a broken transformers cannot stop the doctor); only torch is imported,
for its build and ``torch.cuda.is_available()``, and an import error is reported, not raised.
"""
from __future__ import annotations

import importlib.metadata as metadata
import shutil
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ktae.environment import distribution, installed_version

#: the ``ok`` value of a check that found something worth fixing that does not stop anything from working
WARN = "warn"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

#: (name, ok: True / False / None for skipped / WARN, detail)
Check = tuple[str, Any, str]


# ---------------------------------------------------------------------------------------------- pure checks
def declared_range(requirements: list[str] | None, package: str, extra: str = "") -> SpecifierSet | None:
    """The versions of ``package`` that a distribution's ``Requires-Dist`` lines allow when it is installed with
    ``extra`` ("" for none): the requirements on ``package`` without a marker or whose marker holds for that
    extra here, combined; ``None`` when no such requirement is declared. Lines that do not parse are skipped."""
    found: SpecifierSet | None = None
    for line in requirements or ():
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(requirement.name) != canonicalize_name(package):
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        found = requirement.specifier if found is None else found & requirement.specifier
    return found


def allows(spec: SpecifierSet, version: str) -> bool:
    """Whether ``version`` lies in ``spec`` (pre-releases and local builds such as ``2.13.0+cpu`` included);
    a version that does not parse lies in no range."""
    try:
        return spec.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def range_text(spec: SpecifierSet) -> str:
    """``spec`` as one writes it, lower bounds first: ``>=0.12.0,<0.13`` (packaging would write ``<0.13,>=0.12.0``)."""
    return ",".join(sorted(map(str, spec), key=lambda s: (not s.startswith((">", "=", "~")), s)))


def _pin(package: str, spec: SpecifierSet) -> str:
    return f'pip install "{package}{range_text(spec)}"'


def check_transformers_kernels(transformers: str | None, transformers_requires: list[str] | None,
                               kernels: str | None) -> Check:
    """transformers' declared requirement on kernels (its ``kernels`` extra or a plain dependency) against the
    installed kernels. transformers imports kernels whenever it is installed, so a kernels outside that range
    breaks transformers even when nobody asked for the extra."""
    name = "transformers and kernels"
    if transformers is None or kernels is None:
        missing = "transformers" if transformers is None else "kernels"
        return name, None, f"{missing} is not installed"
    wanted = declared_range(transformers_requires, "kernels", extra="kernels")
    if wanted is None:
        return name, True, f"transformers {transformers} declares no requirement on kernels; kernels {kernels}"
    said = f"transformers {transformers} wants kernels{range_text(wanted)}"
    if allows(wanted, kernels):
        return name, True, f"{said}; kernels {kernels}"
    return name, False, (f"{said}, but kernels {kernels} is installed (transformers then fails at import): "
                         f"{_pin('kernels', wanted)}")


def check_transformers_verl_extra(transformers: str | None, verl: str | None,
                                  ktae_requires: list[str] | None) -> Check:
    """The installed transformers against the range that ktae's ``verl`` extra pins (when verl is installed)."""
    name = "transformers for verl"
    if verl is None:
        return name, None, "verl is not installed: the verl extra's range does not apply"
    if transformers is None:
        return name, None, "transformers is not installed"
    wanted = declared_range(ktae_requires, "transformers", extra="verl")
    if wanted is None:
        return name, None, "ktae's metadata declares no transformers range for the verl extra (ktae not installed?)"
    if allows(wanted, transformers):
        return name, True, f"ktae[verl] wants transformers{range_text(wanted)}; transformers {transformers}"
    return name, False, (f"ktae[verl] (verl {verl}) wants transformers{range_text(wanted)}, but transformers "
                         f"{transformers} is installed: {_pin('transformers', wanted)}")


def check_transformers_vllm(transformers: str | None, vllm: str | None, vllm_requires: list[str] | None) -> Check:
    """vLLM's declared requirement on transformers against the installed transformers."""
    name = "vllm and transformers"
    if vllm is None:
        return name, None, 'vllm is not installed (optional): pip install "ktae[vllm]"'
    if transformers is None:
        return name, None, "transformers is not installed"
    wanted = declared_range(vllm_requires, "transformers")
    if wanted is None:
        return name, True, f"vllm {vllm} declares no requirement on transformers; transformers {transformers}"
    said = f"vllm {vllm} wants transformers{range_text(wanted)}"
    if allows(wanted, transformers):
        return name, True, f"{said}; transformers {transformers}"
    return name, False, f"{said}, but transformers {transformers} is installed: {_pin('transformers', wanted)}"


def check_torch_build(torch: str | None, cuda: str | None, cuda_available: bool, nvidia_driver: bool) -> Check:
    """A CUDA build of torch on a machine without an NVIDIA driver: it works, on the CPU, but the CPU wheel is
    a fraction of its size (a warning, not a failure). ``torch``: its version, None when it cannot be imported;
    ``cuda``: ``torch.version.cuda``."""
    name = "torch build"
    if torch is None:
        return name, None, "torch is not importable"
    if cuda is None:
        return name, True, f"torch {torch}, a CPU build"
    if cuda_available:
        return name, True, f"torch {torch}, CUDA {cuda}, a GPU is visible"
    try:
        release = Version(torch).public  # 2.13.0+cu130 -> 2.13.0
    except InvalidVersion:
        release = torch
    if nvidia_driver:
        return name, WARN, (f"torch {torch} is built for CUDA {cuda} and an NVIDIA driver is present, but "
                            "torch.cuda.is_available() is False: check that the driver supports CUDA "
                            f"{cuda} (nvidia-smi) and what CUDA_VISIBLE_DEVICES says")
    return name, WARN, (f"torch {torch} is built for CUDA {cuda}, but this machine has no NVIDIA driver: it runs "
                        f"on the CPU, and a CPU wheel is much smaller: pip install \"torch=={release}\" "
                        f"--index-url {CPU_INDEX}")


# ---------------------------------------------------------------------------------------------- the installed ones
def declared_requirements(package: str) -> list[str] | None:
    """The ``Requires-Dist`` lines of the installed ``package`` (markers included); None if it is absent."""
    name = distribution(package)
    return (metadata.requires(name) or []) if name else None


def torch_build() -> tuple[str | None, str | None, bool]:
    """``(torch version, torch.version.cuda, torch.cuda.is_available())``; ``(None, None, False)`` when torch
    cannot be imported."""
    try:
        import torch
    except Exception:  # a broken torch is reported as "not importable", not raised
        return None, None, False
    return torch.__version__, torch.version.cuda, bool(torch.cuda.is_available())


def nvidia_driver_present() -> bool:
    """Whether an NVIDIA kernel driver is loaded (Linux) or ``nvidia-smi`` is on the PATH."""
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def compatibility_checks() -> list[Check]:
    """The four checks on the installed packages, in the order their fixes should be applied."""
    transformers = installed_version("transformers")
    return [
        check_transformers_verl_extra(transformers, installed_version("verl"), declared_requirements("ktae")),
        check_transformers_vllm(transformers, installed_version("vllm"), declared_requirements("vllm")),
        check_transformers_kernels(transformers, declared_requirements("transformers"),
                                   installed_version("kernels")),
        check_torch_build(*torch_build(), nvidia_driver_present()),
    ]
