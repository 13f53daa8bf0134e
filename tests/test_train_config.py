"""ktae train's configuration: defaults, presets, YAML, --key value overrides, --help, bad input."""
import dataclasses

import pytest

from ktae.train.cli import main
from ktae.train.config import TrainConfig, help_text, make_config, parse_args, resume_config, save_yaml
from ktae.train.presets import PRESETS


def test_every_option_has_help_and_default():
    text = help_text()
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata.get("help"), f.name
        assert f"--{f.name} " in text, f.name
    defaults = TrainConfig()
    assert f"(default: {defaults.steps!r})" in text
    for name in PRESETS:
        assert name in text


def test_cli_help_prints_options(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--estimator" in out and "--dump_key_tokens_every" in out and "paper-dapo-ktae" in out


def test_defaults_are_the_embedded_grpo_ktae_run():
    cfg = parse_args([])
    assert cfg.model == "embedded" and cfg.data == "embedded"
    assert cfg.estimator == "grpo+ktae" and cfg.preset == "default"


def test_overrides_types_and_forms():
    cfg = parse_args(["--steps", "7", "--lr=3e-4", "--estimator", "rloo+ktae", "--dynamic-sampling",
                      "--filter_values", "Level 3,Level 4", "--quiet", "false"])
    assert cfg.steps == 7 and isinstance(cfg.steps, int)
    assert cfg.lr == pytest.approx(3e-4)
    assert cfg.estimator == "rloo+ktae" and cfg.rollout_estimator == "rloo" and cfg.uses_ktae
    assert cfg.dynamic_sampling is True and cfg.quiet is False
    assert cfg.filter_values == ["Level 3", "Level 4"]


def test_preset_then_yaml_then_command_line(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("preset: dapo\nclip_high: 0.3\nsteps: 11\n")
    cfg = parse_args(["--config", str(yaml_file), "--steps", "12"])
    assert cfg.preset == "dapo"
    assert cfg.reward == "dapo" and cfg.dynamic_sampling and cfg.kl_coef == 0.0   # from the preset
    assert cfg.clip_high == 0.3                                                     # from the file
    assert cfg.steps == 12                                                          # from the command line


def test_paper_presets_follow_the_spec():
    g = make_config("paper-grpo-ktae")
    assert (g.model, g.prompts_per_step, g.rollouts_per_prompt, g.mini_batch_prompts) == (
        "Qwen/Qwen2.5-Math-7B", 1024, 16, 128)
    assert (g.lr, g.clip_low, g.clip_high, g.kl_coef, g.kl_kind) == (1e-6, 0.2, 0.2, 0.001, "low_var_kl")
    assert g.filter_values == ["Level 3", "Level 4", "Level 5"] and g.estimator == "grpo+ktae"
    d = make_config("paper-dapo")
    assert (d.clip_high, d.kl_coef, d.overlong_buffer, d.reward, d.dynamic_sampling) == (0.24, 0.0, 512, "dapo", True)
    assert d.estimator == "grpo" and d.max_new_tokens == 3072 and d.grad_clip == 1.0


@pytest.mark.parametrize("argv, needle", [
    (["--estimator", "ppo"], "--estimator"),
    (["--steps", "many"], "--steps"),
    (["--stepz", "3"], "unknown option"),
    (["--preset", "nope"], "unknown preset"),
    (["--temperature", "0"], "--temperature"),
    (["--data", "my.jsonl"], "--data"),                 # the tiny model only knows the embedded task
    (["steps", "3"], "unexpected argument"),
    (["--lr"], "expected a value"),
])
def test_bad_input_names_the_option(argv, needle):
    with pytest.raises(ValueError, match=needle):
        parse_args(argv)


def test_cli_reports_bad_input(capsys):
    assert main(["--estimator", "ppo"]) == 2
    assert "--estimator" in capsys.readouterr().err


def test_resume_config_reads_the_saved_file(tmp_path):
    save_yaml(make_config("dapo", steps=5), tmp_path / "config.yaml")
    cfg = resume_config(tmp_path, {"steps": "9"})
    assert cfg.steps == 9 and cfg.reward == "dapo" and cfg.run_dir == str(tmp_path)
    with pytest.raises(ValueError, match="--preset"):
        resume_config(tmp_path, {"preset": "grpo"})
    with pytest.raises(ValueError, match="not a run folder"):
        resume_config(tmp_path / "missing", {})
