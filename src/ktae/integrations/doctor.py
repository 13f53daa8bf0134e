"""``ktae doctor``: can KTAE run inside verl and TRL on this machine, in this process and in a Ray worker?

    ktae doctor            # every check, a Ray worker included (~10-30 s: starts a local Ray instance)
    ktae doctor --no-ray   # skip the Ray worker

Each line says ok / FAIL / warn / skip and what to do about a failure or a warning; the exit status is 1 when a
check failed. Checks: installed versions that do not go together (transformers and kernels, transformers and the
``verl`` extra's range, vLLM and transformers, a CUDA build of torch on a machine without CUDA; read from the
packages' metadata, see :mod:`ktae.integrations.compatibility`); the verl version against the supported range;
the ``verl.plugins`` entry point ``ktae`` and ``VERL_USE_EXTERNAL_PLUGINS``; that ``import verl`` loads the
plug-in and registers the estimators; that the trainer wrappers install (legacy and v1); the same inside a Ray
worker; the TRL version and adapter.
"""
from __future__ import annotations

import importlib
import importlib.metadata as metadata
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet

from ktae.environment import installed_version
from ktae.integrations.compatibility import WARN, allows, compatibility_checks
from ktae.options import make_parser, option, parse

SUPPORTED_TRL = ">=1.16,<2"
PLUGIN = "ktae.integrations.verl"

#: (name, ok: True / False / None for skipped / WARN, detail)
Check = tuple[str, Any, str]


def _verl_state() -> dict[str, Any]:
    """What ``import verl`` did in this process about the plug-in (run before importing the plug-in itself)."""
    state: dict[str, Any] = {"loaded_by_verl": PLUGIN in sys.modules}
    import verl  # noqa: F401 - runs verl's plug-in discovery
    from verl.trainer.ppo import core_algos

    state["loaded_by_verl"] = state["loaded_by_verl"] or PLUGIN in sys.modules
    state["estimators"] = sorted(n for n in core_algos.ADV_ESTIMATOR_REGISTRY if "ktae" in str(n))
    return state


def _worker_probe() -> dict[str, Any]:
    """Runs inside a Ray worker: import verl as verl's own workers do, then the trainer modules."""
    try:
        state = _verl_state()
        if not state["loaded_by_verl"]:
            return state
        from ktae.integrations.verl import installation_report

        state.update(installation_report())
    except Exception as err:  # reported, not raised: the driver prints it
        state = {"error": f"{type(err).__name__}: {err}"}
    return state


def run_checks(ray_worker: bool = True) -> list[Check]:
    """Every check, in order: installed versions first (from metadata, so that a package whose import is broken
    is named before anything imports it), then verl and TRL. Imports verl (and the plug-in) into this process."""
    checks: list[Check] = compatibility_checks()
    version = installed_version("verl")
    if version is None:
        checks.append(("verl installed", False, 'not installed: pip install "ktae[verl]"'))
    else:
        spec = _supported_verl()
        ok = allows(SpecifierSet(spec), version)
        checks.append(("verl version", ok, f"verl {version}; supported verl{spec}" + ("" if ok else
                                                                                     f': pip install "verl{spec}"')))
        points = [ep for ep in metadata.entry_points(group="verl.plugins") if ep.name == "ktae"]
        checks.append(("entry point verl.plugins:ktae", bool(points) and points[0].value == PLUGIN,
                       f"-> {points[0].value}" if points else "missing: reinstall ktae (pip install -e . / \"ktae[verl]\")"))
        policy = os.environ.get("VERL_USE_EXTERNAL_PLUGINS", "auto").strip().lower()
        allowed = policy == "auto" or "ktae" in {p.strip() for p in policy.split(",")}
        checks.append(("VERL_USE_EXTERNAL_PLUGINS", allowed,
                       f"{policy!r}" + ("" if allowed else ": verl will not load ktae; unset it, add 'ktae', "
                                        f"use `ktae verl`, or add actor_rollout_ref.model.external_lib={PLUGIN}")))
        try:
            state = _verl_state()
            checks.append(("import verl loads the plug-in", state["loaded_by_verl"] and len(state["estimators"]) == 4,
                           f"estimators {state['estimators']}"))
        except Exception as err:
            checks.append(("import verl loads the plug-in", False, f"{type(err).__name__}: {err}"))
        try:
            from ktae.integrations.verl import installation_report

            report = installation_report()
            ok = report["legacy_wrapped"] and report["v1_wrapped"]
            checks.append(("trainer wrappers (legacy, v1)", ok, f"{report}"))
        except Exception as err:  # the plug-in's own import error, shown instead of verl's debug log line
            checks.append(("trainer wrappers (legacy, v1)", False, f"{type(err).__name__}: {err}"))
        checks.append(_ray_check() if ray_worker else ("inside a Ray worker", None, "skipped (--no-ray)"))
    trl = installed_version("trl")
    if trl is None:
        checks.append(("trl", None, 'not installed (optional): pip install "ktae[trl]"'))
    else:
        ok = allows(SpecifierSet(SUPPORTED_TRL), trl)
        detail = f"trl {trl}; supported trl{SUPPORTED_TRL}"
        if ok:
            try:
                importlib.import_module("ktae.integrations.trl")
            except Exception as err:
                ok, detail = False, f"{detail}; ktae.integrations.trl: {type(err).__name__}: {err}"
        checks.append(("trl version and adapter", ok, detail))
    return checks


def _supported_verl() -> str:
    """The supported verl range, read from the plug-in's ``version.py`` without importing the plug-in (which refuses
    other versions, and imports verl and transformers: a broken install must be reported, not crash the doctor)."""
    import ast

    source = Path(__file__).with_name("verl") / "version.py"   # ktae/integrations/verl/version.py
    tree = ast.parse(source.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "SUPPORTED_VERL":
            return ast.literal_eval(node.value)
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "SUPPORTED_VERL" for t in node.targets):
            return ast.literal_eval(node.value)
    raise RuntimeError(f"{source} does not define SUPPORTED_VERL")


def _ray_check() -> Check:
    name = "inside a Ray worker"
    try:
        import ray
    except ImportError as err:
        return (name, False, f"ray is not importable: {err}")
    started = not ray.is_initialized()
    try:
        if started:
            ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        state = ray.get(ray.remote(num_cpus=0)(_worker_probe).remote(), timeout=600)
    except Exception as err:
        return (name, False, f"could not run a Ray task: {type(err).__name__}: {err}")
    finally:
        if started and ray.is_initialized():
            ray.shutdown()
    if "error" in state:
        return (name, False, state["error"])
    ok = bool(state.get("loaded_by_verl")) and bool(state.get("legacy_wrapped")) and bool(state.get("v1_wrapped"))
    hint = "" if ok else (f": the worker's verl did not load ktae; install ktae in the workers' environment or "
                          f"launch with `ktae verl`, which sets VERL_USE_EXTERNAL_MODULES={PLUGIN}")
    return (name, ok, f"{state}{hint}")


@dataclass
class DoctorOptions:
    """Options of ``ktae doctor``."""

    no_ray: bool = option(False, "skip the check inside a Ray worker", action="store_true")


def build_parser():
    """The command-line parser of ``ktae doctor``: :class:`DoctorOptions`."""
    return make_parser([DoctorOptions], prog="ktae doctor", description=__doc__.split("\n\n")[0])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        (args,) = parse(parser, sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        print(f"ktae doctor: error: {exc}", file=sys.stderr)
        return 2
    print(f"ktae {installed_version('ktae') or '(source tree)'}, python {sys.version.split()[0]}, "
          f"torch {installed_version('torch')}", flush=True)
    failed = False
    for name, ok, detail in run_checks(ray_worker=not args.no_ray):
        label = "skip" if ok is None else "warn" if ok == WARN else ("ok" if ok else "FAIL")
        failed |= ok is False
        print(f"  [{label:>4}] {name}: {detail}", flush=True)
    print("KTAE is ready in verl and TRL" if not failed else "some checks failed: see FAIL above", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
