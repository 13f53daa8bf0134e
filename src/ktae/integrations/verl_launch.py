"""``ktae verl``: verl's ``main_ppo`` with the KTAE plug-in checked in seconds, before Ray starts.

    ktae verl algorithm.adv_estimator=ktae +algorithm.ktae.beta=1.0 data.train_files=... ...   # verl's Hydra args
    ktae verl --check algorithm.adv_estimator=ktae ...    # only the checks: exit 0 when the run would start
    ktae verl --cpu [--rehearse] ...                       # the same job on this machine's CPU (docs/verl-cpu.md)
    python -m ktae.integrations.verl_launch ...            # the same

Before handing the composed configuration to ``verl.trainer.main_ppo`` (in this process: same Hydra arguments,
same outputs), it

1. checks the installed verl against the supported range and imports the plug-in here (an import error is
   raised, not logged at debug level as verl's plug-in loader does);
2. imports verl's two trainer modules and checks that the KTAE wrappers are in place (they fail loudly if a
   wrapped private verl name changed);
3. validates ``algorithm.ktae.*`` with the estimator named by ``algorithm.adv_estimator``;
4. makes every Ray worker import the plug-in when it imports verl (``VERL_USE_EXTERNAL_MODULES`` in this process
   and in ``ray_kwargs.ray_init.runtime_env.env_vars``), whatever ``VERL_USE_EXTERNAL_PLUGINS`` says.

With ``--cpu`` it also loads ``ktae.integrations.verl_cpu`` (here and in every Ray worker), applies its CPU
settings to the composed config (printing each value of yours it replaces) and, with ``--rehearse``, swaps the
model for a tiny random one of its architecture with its tokenizer (``ktae.integrations.verl_rehearsal``). An
error inside Ray is reported as the user's exception (``user_error``), not as Ray's wrapper.

The plain ``python -m verl.trainer.main_ppo ...`` route keeps working; this one only fails earlier and clearer.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any

PLUGIN = "ktae.integrations.verl"
CPU_RUNTIME = "ktae.integrations.verl_cpu"
ENV = "VERL_USE_EXTERNAL_MODULES"


def _with_plugin(value: str | None, plugins: tuple[str, ...] = (PLUGIN,)) -> str:
    """A ``VERL_USE_EXTERNAL_MODULES`` value that also names ``plugins``."""
    modules = [m for m in (value or "").split(",") if m.strip()]
    return ",".join([*modules, *(p for p in plugins if p not in modules)])


def preflight(config: Any, cpu: bool = False, rehearse: bool = False) -> list[str]:
    """Run the checks on a composed verl config; edit it so that Ray workers load the plug-in.

    Args:
        config: verl's composed ``ppo_trainer`` DictConfig (changed in place: runtime env variables; with ``cpu``,
            the settings of :mod:`ktae.integrations.verl_cpu`; with ``rehearse``, the model path).
        cpu: run on the CPU runtime (loaded by the Ray workers too).
        rehearse: swap the model for a tiny random one of its architecture (:mod:`ktae.integrations.verl_rehearsal`).

    Returns:
        One line per check passed, for the console.

    Raises:
        ImportError / UnsupportedVerlError: verl missing, outside the supported range, or its wrapped names changed.
        ValueError: a bad ``algorithm.ktae`` option or estimator combination.
    """
    from omegaconf import open_dict

    from ktae.integrations import verl as plugin

    lines = [f"verl {plugin.check_verl_version()} is in the supported range verl{plugin.SUPPORTED_VERL}"]
    plugins: tuple[str, ...] = (PLUGIN,)
    if cpu:
        lines += _cpu_runtime(config, rehearse)
        plugins = (PLUGIN, CPU_RUNTIME)
    report = plugin.installation_report()
    if not (report["legacy_wrapped"] and report["v1_wrapped"]):
        raise plugin.UnsupportedVerlError(f"the KTAE wrappers did not install into verl's trainers: {report}")
    lines.append(f"plug-in loaded: estimators {report['estimators']}, legacy and v1 trainer wrappers in place")
    estimator = str(getattr(config.algorithm.adv_estimator, "value", config.algorithm.adv_estimator))
    if plugin.is_ktae_estimator(estimator):
        with warnings.catch_warnings():  # the tokenizer's pad/EOS ids are only known inside the run
            warnings.simplefilter("ignore")
            ktae_config = plugin.ktae_config_from_verl(config.algorithm, estimator)
        plugin.warn_after(config.algorithm)
        lines.append(f"algorithm.adv_estimator={estimator}, algorithm.ktae valid: {ktae_config}")
    else:
        lines.append(f"algorithm.adv_estimator={estimator} is not a KTAE estimator: KTAE is off in this run")
    with open_dict(config):  # the workers' value overrides what they inherit: keep the modules named in either
        runtime_env = config.ray_kwargs.ray_init.runtime_env
        if runtime_env.get("env_vars") is None:
            runtime_env.env_vars = {}
        runtime_env.env_vars[ENV] = _with_plugin(runtime_env.env_vars.get(ENV) or os.environ.get(ENV), plugins)
    os.environ[ENV] = _with_plugin(os.environ.get(ENV), plugins)
    lines.append(f"Ray workers will import {', '.join(plugins)} with verl ({ENV}={os.environ[ENV]})")
    return [f"ok: {line}" for line in lines]


def _cpu_runtime(config: Any, rehearse: bool) -> list[str]:
    """Apply the CPU settings (and the rehearsal model) to ``config``; what changed, for the console."""
    import importlib

    from omegaconf import open_dict

    runtime = importlib.import_module(CPU_RUNTIME)  # verl imported it already (VERL_USE_EXTERNAL_MODULES)
    from verl.utils.device import get_device_name

    if get_device_name() != "cpu":
        raise ImportError(f"{CPU_RUNTIME} is loaded but verl's platform is {get_device_name()!r}: unset "
                          "VERL_PLATFORM (or set it to 'cpu')")
    lines = [f"CPU runtime {CPU_RUNTIME}: verl platform 'cpu', rollout 'hf' (transformers)"]
    lines += [f"CPU setting: {change}" for change in runtime.apply(config)]
    if rehearse:
        from ktae.integrations import verl_rehearsal

        model = config.actor_rollout_ref.model
        tiny, note = verl_rehearsal.tiny_model(model.path, tokenizer_path=model.get("tokenizer_path"),
                                               trust_remote_code=bool(model.get("trust_remote_code", False)))
        with open_dict(config):
            model.path = tiny
            if model.get("tokenizer_path"):
                model.tokenizer_path = tiny
        lines.append(f"rehearsal: actor_rollout_ref.model.path={tiny} ({note})")
    return lines


_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+), in (\S+)')
_RAISED = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): ?(.*)$")


def _is_user_file(path: str) -> bool:
    """Whether a traceback frame's file is the user's code (not Python's, an installed package's, or ktae's)."""
    import ktae

    return not (path.startswith("<") or "site-packages" in path or "/lib/python3" in path
                or path.startswith(os.path.dirname(ktae.__file__)))


def worker_user_error(session_dir: str | os.PathLike) -> str | None:
    """The first exception raised in the user's own code (reward function, dataset code, ...) that the Ray workers
    of a session logged, as ``"KeyError: 'answer' (raised in FILE, line N, in FUNCTION)"``; None when none was.

    verl's v1 agent loop logs a failing reward function and goes on, then stops with an error of its own
    (``Sync replay buffer selected terminal groups with no materializable trajectories``): this finds the cause.
    """
    found: list[tuple[float, str]] = []
    for path in Path(session_dir, "logs").glob("worker-*.err"):
        frame = None
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("Traceback (most recent call last)"):
                frame = None
            elif (match := _FRAME.match(line)) and _is_user_file(match.group(1)):
                frame = match.groups()
            elif frame is not None and (match := _RAISED.match(line)):
                found.append((path.stat().st_mtime, f"{line} (raised in {frame[0]}, line {frame[1]}, in {frame[2]})"))
                break  # the first one of this worker
    return min(found)[1] if found else None


def _ray_session_dir() -> str | None:
    try:
        import ray

        return ray._private.worker._global_node.get_session_dir_path() if ray.is_initialized() else None
    except (ImportError, AttributeError):
        return None


def user_error(err: BaseException) -> BaseException:
    """The user's own exception inside a Ray error (a failed task or actor wraps it, often several times)."""
    seen = set()
    while id(err) not in seen:
        seen.add(id(err))
        cause = getattr(err, "cause", None)
        if isinstance(cause, BaseException):
            err = cause
            continue
        if type(err).__module__.startswith("ray.") and err.__cause__ is not None:
            err = err.__cause__
            continue
        break
    return err


def _verl_config_dir() -> str:
    import verl.trainer.main_ppo as main_ppo

    return os.path.join(os.path.dirname(main_ppo.__file__), "config")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ktae verl", formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
        usage="ktae verl [--check] [--cpu [--rehearse]] <main_ppo Hydra overrides ...>",
        description=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--check", action="store_true",
                        help="only run the checks (exit status 0 when the run would start)")
    parser.add_argument("--cpu", action="store_true",
                        help="run verl on this machine's CPU with ktae.integrations.verl_cpu (FSDP2 on gloo, the "
                        "'hf' transformers rollout); replaces the device settings of your overrides and says which")
    parser.add_argument("--rehearse", action="store_true",
                        help="with --cpu: train a tiny random model of your model's architecture family, with your "
                        "tokenizer and chat template, instead of actor_rollout_ref.model.path (built once, cached "
                        "under $KTAE_CACHE or ~/.cache/ktae)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args, overrides = _parser().parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if args.rehearse and not args.cpu:
        print("ktae verl: error: --rehearse goes with --cpu (a rehearsal runs on this machine's CPU)", file=sys.stderr)
        return 2
    if args.check:  # no Hydra output folder for a check
        overrides += ["hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=none",
                      "hydra/hydra_logging=none"]
    if args.cpu:  # before verl is imported: verl imports VERL_USE_EXTERNAL_MODULES when it is first imported
        os.environ[ENV] = _with_plugin(os.environ.get(ENV), (PLUGIN, CPU_RUNTIME))
    start = time.time()
    try:
        import hydra
        import verl.trainer.main_ppo as main_ppo
    except ImportError as err:
        print(f"ktae verl: verl is not installed ({err}); pip install \"ktae[verl]\"", file=sys.stderr)
        return 1

    outcome: dict[str, Any] = {}

    @hydra.main(config_path=_verl_config_dir(), config_name="ppo_trainer", version_base=None)
    def run(config: Any) -> None:
        try:
            lines = preflight(config, cpu=args.cpu, rehearse=args.rehearse)
        except (ImportError, ValueError, TypeError, OSError) as err:
            outcome["error"] = err
            return
        for line in lines:
            print(f"ktae verl: {line}", flush=True)
        print(f"ktae verl: checks passed in {time.time() - start:.1f} s", flush=True)
        if not args.check:
            try:
                main_ppo.main(config)  # Hydra hands a composed config straight to verl's task function
            except Exception as err:  # noqa: BLE001 - a Ray stack is turned into the user's error below
                outcome["error"] = user_error(err)
                outcome["trace"] = err
                session = _ray_session_dir()
                outcome["cause"] = worker_user_error(session) if session else None

    saved = sys.argv
    sys.argv = ["ktae verl", *overrides]
    try:
        run()
    finally:
        sys.argv = saved
    if "error" in outcome:
        err = outcome["error"]
        if "trace" in outcome and os.environ.get("KTAE_VERL_TRACEBACK"):
            import traceback

            traceback.print_exception(outcome["trace"])
        if outcome.get("cause"):
            print(f"ktae verl: error in your code, in a Ray worker: {outcome['cause']}", file=sys.stderr)
            print(f"ktae verl: verl then stopped with {type(err).__name__}: {err}", file=sys.stderr)
        else:
            print(f"ktae verl: error: {type(err).__name__}: {err}", file=sys.stderr)
        if "trace" in outcome:
            print("ktae verl: (set KTAE_VERL_TRACEBACK=1 for the whole Ray stack)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
