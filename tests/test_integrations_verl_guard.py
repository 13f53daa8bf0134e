"""verl: the version and signature guard, the `ktae verl` launcher, `ktae doctor`, and the K-is-zero warning."""
from __future__ import annotations

import os
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from ktae.integrations import doctor, verl_launch
from ktae.integrations import verl as kv
from ktae.monitoring import NoMixedGroupsWarning
from verl import DataProto
from verl.trainer.ppo import ray_trainer
from test_integrations_verl import EOS, PAD, algorithm, make_batch

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def test_version_range_is_checked():
    assert kv.check_verl_version("0.9.1") == "0.9.1"
    for bad in ("0.8.5", "0.10.0", "1.0", "not-a-version"):
        with pytest.raises(kv.UnsupportedVerlError, match=rf"verl>=0.9,<0.10.*verl {bad} is installed"):
            kv.check_verl_version(bad)


def test_import_refuses_an_unsupported_verl():
    code = ("import verl\nverl.__version__ = '0.10.2'\n"
            "try:\n    import ktae.integrations.verl\nexcept ImportError as err:\n"
            "    print(type(err).__name__, err)\nelse:\n    print('imported')\n")
    env = {**os.environ, "VERL_USE_EXTERNAL_PLUGINS": "none", "PYTHONPATH": SRC}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "UnsupportedVerlError" in out.stdout and "verl 0.10.2 is installed" in out.stdout, out.stdout + out.stderr


def test_changed_private_names_are_refused_before_any_wrapping():
    def compute_advantage(data, estimator):  # renamed parameter: verl changed
        return data

    legacy = types.SimpleNamespace(compute_advantage=compute_advantage, RayPPOTrainer=type("T", (), {}))
    with pytest.raises(kv.UnsupportedVerlError, match=r"ray_trainer.compute_advantage\(data, adv_estimator"):
        kv.patch_ray_trainer(legacy)
    assert legacy.compute_advantage is compute_advantage  # untouched

    class PPOTrainer:
        def _compute_advantage(self, batch):  # lost its metrics argument
            return batch

    v1 = types.SimpleNamespace(PPOTrainer=PPOTrainer, tq=types.SimpleNamespace())
    with pytest.raises(kv.UnsupportedVerlError) as err:
        kv.patch_v1_trainer(v1)
    assert "_compute_advantage(self, batch, metrics)" in str(err.value) and "tq.kv_batch_get" in str(err.value)
    assert "verl 0.9.1" in str(err.value) and "verl>=0.9,<0.10" in str(err.value)
    assert not hasattr(PPOTrainer._compute_advantage, "__ktae_wrapped__")
    with pytest.raises(kv.UnsupportedVerlError, match="register_adv_est"):
        kv.check_core_algos(types.SimpleNamespace(ADV_ESTIMATOR_REGISTRY={}))
    kv.check_core_algos()  # the installed verl passes


def test_a_failed_check_fails_the_import_of_the_trainer_module():
    code = (
        "import ktae.integrations.verl as kv\n"
        "from ktae.integrations.verl.version import require\n"
        "import ktae.integrations.verl.patches as patches\n"
        "patches.check_v1_trainer = lambda module: require({'PPOTrainer._compute_advantage(self, batch, metrics)': False})\n"
        "try:\n    import verl.trainer.ppo.v1.trainer_base\nexcept kv.UnsupportedVerlError as err:\n    print('refused', err)\n"
    )
    env = {**os.environ, "VERL_USE_EXTERNAL_PLUGINS": "none", "PYTHONPATH": SRC}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "refused" in out.stdout and "verl>=0.9,<0.10" in out.stdout, out.stdout + out.stderr[-3000:]


def test_installation_report():
    report = kv.installation_report()
    assert report["estimators"] == ["dr_grpo_ktae", "grpo_ktae", "ktae", "rloo_ktae"]
    assert report["legacy_wrapped"] and report["v1_wrapped"]


def test_launcher_check_fails_fast_on_bad_options(capsys):
    assert verl_launch.main(["--check", "algorithm.adv_estimator=ktae", "+algorithm.ktae.alpah=0.5"]) == 1
    err = capsys.readouterr().err
    assert "unknown option(s) ['alpah']" in err
    assert verl_launch.main(["--check", "algorithm.adv_estimator=grpo_ktae", "+algorithm.ktae.rollout=rloo"]) == 1
    assert "composes KTAE with 'grpo'" in capsys.readouterr().err
    assert verl_launch.main(["--check", "algorithm.adv_estimator=ktae", "+algorithm.ktae.warn_after=-2"]) == 1
    assert "warn_after" in capsys.readouterr().err


def test_launcher_hands_a_checked_config_to_verl(monkeypatch, capsys):
    import verl.trainer.main_ppo as main_ppo

    received = []
    monkeypatch.setattr(main_ppo, "main", received.append)
    monkeypatch.setenv("VERL_USE_EXTERNAL_MODULES", "my.module")
    code = verl_launch.main(["algorithm.adv_estimator=ktae", "+algorithm.ktae.beta=2.0", "trainer.total_epochs=3",
                             "hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=none",
                             "hydra/hydra_logging=none"])
    assert code == 0 and len(received) == 1
    config = received[0]
    assert config.algorithm.ktae.beta == 2.0 and config.trainer.total_epochs == 3
    modules = "my.module,ktae.integrations.verl"
    assert config.ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES == modules
    assert os.environ["VERL_USE_EXTERNAL_MODULES"] == modules
    out = capsys.readouterr().out
    assert "algorithm.ktae valid" in out and "checks passed" in out
    assert verl_launch._with_plugin(modules) == modules  # not added twice


def test_cli_lists_the_commands(capsys):
    from ktae.cli import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "verl" in out and "doctor" in out


def test_doctor_without_ray(capsys):
    checks = {name: ok for name, ok, _ in doctor.run_checks(ray_worker=False)}
    assert checks["verl version"] and checks["entry point verl.plugins:ktae"] and checks["trainer wrappers (legacy, v1)"]
    assert checks["inside a Ray worker"] is None and checks["trl version and adapter"]
    assert doctor._supported_verl() == kv.SUPPORTED_VERL
    assert doctor.main(["--no-ray"]) == 0
    assert "KTAE is ready" in capsys.readouterr().out


def test_doctor_reports_disabled_plugins(monkeypatch):
    monkeypatch.setenv("VERL_USE_EXTERNAL_PLUGINS", "none")
    checks = {name: (ok, detail) for name, ok, detail in doctor.run_checks(ray_worker=False)}
    ok, detail = checks["VERL_USE_EXTERNAL_PLUGINS"]
    assert ok is False and "ktae verl" in detail and "external_lib" in detail


def test_verl_warns_when_no_group_is_mixed():
    responses, mask, scores, uids, rewards, lengths = make_batch(seed=3)
    rewards = rewards.clone()
    rewards[torch.arange(len(uids)), lengths - 1] = 0.5  # a [0, 1] reward that is positive for every response
    data = DataProto.from_dict(tensors={"responses": responses, "response_mask": mask, "token_level_rewards": rewards},
                               non_tensors={"uid": uids})
    config = algorithm("ktae", ignore_token_ids=[PAD, EOS], warn_after=2, threshold=0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            out = ray_trainer.compute_advantage(data, adv_estimator="ktae", config=config)
    messages = [str(w.message) for w in caught if issubclass(w.category, NoMixedGroupsWarning)]
    assert len(messages) == 1 and "+algorithm.ktae.threshold" in messages[0] and "last 2 steps" in messages[0]
    assert "is > 0.0" in messages[0]
    # K is indeed 0: advantages are the rollout ones (all 0 here: every score equal)
    assert torch.count_nonzero(out.batch["advantages"]) == 0
    # with the threshold between wrong and right (no right answer has 0.5 here), no warning
    config = algorithm("ktae", ignore_token_ids=[PAD, EOS], warn_after=1, threshold=0.5)
    data.batch["token_level_rewards"] = make_batch(seed=3)[4]
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoMixedGroupsWarning)
        ray_trainer.compute_advantage(data, adv_estimator="ktae", config=config)


def test_bad_warn_after_is_refused():
    with pytest.raises(ValueError, match="warn_after"):
        kv.ktae_config_from_verl(OmegaConf.create({"ktae": {"warn_after": "x"}}), "ktae")
    assert kv.warn_after(OmegaConf.create({"ktae": {"warn_after": 0}})) == 0
    assert kv.warn_after(OmegaConf.create({})) == 5
    assert np.isclose(kv.ktae_config_from_verl(OmegaConf.create({"ktae": {"warn_after": 3, "top": 0.5}}), "ktae",
                                               tokenizer=types.SimpleNamespace(pad_token_id=0, eos_token_id=1)).top, 0.5)


BUILD_MODEL = '''
import sys
if sys.argv[1] == "plugin":
    import ktae.integrations.verl  # noqa: F401 - what verl's plug-in entry point loads in every process
import trl, torch
from transformers import LlamaConfig, LlamaForCausalLM
from verl.models.transformers.monkey_patch import apply_monkey_patch
assert int(trl.__version__.split(".")[0]) >= 1 and not hasattr(trl, "AutoModelForCausalLMWithValueHead")
config = LlamaConfig(vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                     num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)
apply_monkey_patch(LlamaForCausalLM(config), use_remove_padding=False)
print("model built")
'''


@pytest.mark.parametrize("plugin", [True, False])
def test_verl_builds_a_model_with_trl_1_installed_only_with_the_plugin(plugin):
    """verl 0.9's apply_monkey_patch (the model-building path of its FSDP engine) imports a class trl >= 1 lacks;
    the plug-in makes it build, on any device; without the plug-in it fails (the control)."""
    env = {**os.environ, "VERL_USE_EXTERNAL_PLUGINS": "none", "PYTHONPATH": SRC}
    out = subprocess.run([sys.executable, "-c", BUILD_MODEL, "plugin" if plugin else "bare"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert ("model built" in out.stdout) == plugin, out.stdout + out.stderr[-3000:]
    if not plugin:
        assert "AutoModelForCausalLMWithValueHead" in out.stderr
