"""``ktae verl``: verl's ``main_ppo`` with the KTAE plug-in checked in seconds, before Ray starts.

    ktae verl algorithm.adv_estimator=ktae +algorithm.ktae.beta=1.0 data.train_files=... ...   # verl's Hydra args
    ktae verl --check algorithm.adv_estimator=ktae ...    # only the checks: exit 0 when the run would start
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

The plain ``python -m verl.trainer.main_ppo ...`` route keeps working; this one only fails earlier and clearer.
"""
from __future__ import annotations

import os
import sys
import time
import warnings
from typing import Any

PLUGIN = "ktae.integrations.verl"
ENV = "VERL_USE_EXTERNAL_MODULES"


def _with_plugin(value: str | None) -> str:
    """A ``VERL_USE_EXTERNAL_MODULES`` value that also names the plug-in."""
    modules = [m for m in (value or "").split(",") if m.strip()]
    return ",".join(modules if PLUGIN in modules else [*modules, PLUGIN])


def preflight(config: Any) -> list[str]:
    """Run the checks on a composed verl config; edit it so that Ray workers load the plug-in.

    Args:
        config: verl's composed ``ppo_trainer`` DictConfig (changed in place: runtime env variables).

    Returns:
        One line per check passed, for the console.

    Raises:
        ImportError / UnsupportedVerlError: verl missing, outside the supported range, or its wrapped names changed.
        ValueError: a bad ``algorithm.ktae`` option or estimator combination.
    """
    from omegaconf import open_dict

    from ktae.integrations import verl as plugin

    lines = [f"verl {plugin.check_verl_version()} is in the supported range verl{plugin.SUPPORTED_VERL}"]
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
        runtime_env.env_vars[ENV] = _with_plugin(runtime_env.env_vars.get(ENV) or os.environ.get(ENV))
    os.environ[ENV] = _with_plugin(os.environ.get(ENV))
    lines.append(f"Ray workers will import {PLUGIN} with verl ({ENV}={os.environ[ENV]})")
    return lines


def _verl_config_dir() -> str:
    import verl.trainer.main_ppo as main_ppo

    return os.path.join(os.path.dirname(main_ppo.__file__), "config")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help") and len(argv) == 1:
        print(__doc__)
        return 0
    check_only = "--check" in argv
    argv = [a for a in argv if a != "--check"]
    if check_only:  # no Hydra output folder for a check
        argv += ["hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=none", "hydra/hydra_logging=none"]
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
            for line in preflight(config):
                print(f"ktae verl: ok: {line}", flush=True)
        except (ImportError, ValueError, TypeError) as err:
            outcome["error"] = err
            return
        print(f"ktae verl: checks passed in {time.time() - start:.1f} s", flush=True)
        if not check_only:
            main_ppo.main(config)  # Hydra hands a composed config straight to verl's task function

    saved = sys.argv
    sys.argv = ["ktae verl", *argv]
    try:
        run()
    finally:
        sys.argv = saved
    if "error" in outcome:
        err = outcome["error"]
        print(f"ktae verl: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
