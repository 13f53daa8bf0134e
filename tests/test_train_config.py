"""ktae train's configuration: defaults, presets, YAML, --key value overrides, --help, bad input."""
import pytest

from ktae.core.config import KTAEConfig
from ktae.recipes.tiny_model import TinyModelConfig
from ktae.train.cli import main
from ktae.train.config import (COMMON_OPTIONS, TrainConfig, help_topics, load_run_config, make_config, options,
                               parse_args, resume_config, save_yaml, with_options)
from ktae.train.presets import PRESETS


def test_help_all_lists_every_option_in_both_spellings_with_its_default(capsys):
    assert main(["--help", "all"]) == 0
    text = capsys.readouterr().out
    for flat, opt in options().items():
        assert opt.help, flat
        assert f"--{flat} " in text or f"--{flat}," in text, flat
        assert f"--{opt.dotted}" in text, opt.dotted
    assert "(default: 150)" in text and "(default: grpo+ktae)" in text
    for title in ("Model:", "Rollouts:", "KTAE (the core's KTAEConfig", "Update (PPO):", "Held-out evaluation:"):
        assert title in text
    for name in PRESETS:
        assert name in text


def test_help_fits_a_screen_with_the_common_options_and_the_sections(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # argparse wraps to the terminal's width
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert len(text.splitlines()) < 70
    for flat in COMMON_OPTIONS + ("preset", "config", "resume"):
        assert f"--{flat} " in text or f"--{flat}," in text, flat
    assert "--tiny_layers" not in text and "--adam_beta1" not in text
    for topic in help_topics():
        assert f"\n  {topic} " in text, topic


@pytest.mark.parametrize("argv", [["--help", "ppo"], ["--help=ppo"], ["-h", "ppo"], ["--lr", "1", "--help", "ppo"]])
def test_help_section_shows_that_section_only(argv, capsys):
    assert main(argv) == 0
    text = capsys.readouterr().out
    ppo = [o for o in options().values() if o.section == "ppo"]
    for opt in ppo:
        assert f"--{opt.dotted}" in text, opt.dotted
    assert "--tiny_layers" not in text and "Start:" not in text and "Update (PPO):" in text


def test_every_section_has_a_help_topic_and_together_they_list_every_option(capsys):
    shown = ""
    for topic in help_topics():
        if topic not in ("presets", "all"):
            assert main(["--help", topic]) == 0
            shown += capsys.readouterr().out
    for opt in options().values():
        assert f"--{opt.dotted}" in shown, opt.dotted
    assert main(["--help", "presets"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in PRESETS)


def test_help_of_an_unknown_section_names_the_sections(capsys):
    assert main(["--help", "optimizer"]) == 2
    err = capsys.readouterr().err
    assert "--help: expected a section" in err and "'optimizer'" in err and "ppo" in err


def test_sections_are_typed_and_ktae_is_the_core_config():
    cfg = TrainConfig()
    assert isinstance(cfg.ktae, KTAEConfig) and isinstance(cfg.tiny, TinyModelConfig)
    assert cfg.ktae_config((0, 2)) == KTAEConfig(rollout="grpo", ignore_token_ids=(0, 2))
    assert {o.flat for o in options().values()} >= {"ktae_alpha", "lr", "eval_every", "tiny_layers", "model", "task"}


@pytest.mark.parametrize("argv", [["--ktae_alpha", "0", "--lr", "2e-5", "--eval_every", "3", "--tiny_layers", "2"],
                                  ["--ktae.alpha", "0", "--ppo.lr", "2e-5", "--eval.every", "3", "--tiny.num_layers",
                                   "2"],
                                  ["--ktae-alpha=0", "--lr=2e-5", "--eval-every=3", "--tiny-layers=2"]])
def test_dotted_and_flat_names_are_the_same_option(argv):
    cfg = parse_args(argv)
    assert (cfg.ktae.alpha, cfg.ppo.lr, cfg.eval.every, cfg.tiny.num_layers) == (0.0, 2e-5, 3, 2)


def test_python_api_takes_flat_dotted_and_section_values():
    a = make_config(ktae_alpha=0, lr=1e-5)
    b = make_config(**{"ktae.alpha": 0, "ppo.lr": "1e-5"})
    c = make_config(ktae=KTAEConfig(alpha=0), ppo={"lr": 1e-5})
    assert a == b == c and a.ktae.alpha == 0.0 and a.ppo.lr == 1e-5
    assert with_options(a, "test", steps=3).steps == 3


def test_yaml_values_are_read_like_the_command_line(tmp_path):
    flat = tmp_path / "flat.yaml"
    flat.write_text("lr: 1e-4\nktae_alpha: 0\nfilter_field: level\nfilter_values: [Level 3, Level 4]\n")
    nested = tmp_path / "nested.yaml"
    nested.write_text("ppo: {lr: 1e-4}\nktae: {alpha: 0}\ndata: {filter_field: level, filter_values: 'Level 3,Level 4'}\n")
    a, b = parse_args(["--config", str(flat)]), parse_args(["--config", str(nested)])
    assert a == b and a.ppo.lr == 1e-4 and isinstance(a.ppo.lr, float)   # YAML reads 1e-4 as a string
    assert a.data.filter_values == ["Level 3", "Level 4"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("ppo: {lr: fast}\n")
    with pytest.raises(ValueError, match=r"bad.yaml.*--lr.*fast"):
        parse_args(["--config", str(bad)])


def test_saved_config_round_trips_nested_and_old_flat_files_still_load(tmp_path):
    cfg = make_config("dapo-ktae", steps=5, ktae_gamma=0)
    save_yaml(cfg, tmp_path / "config.yaml")
    assert "ktae:" in (tmp_path / "config.yaml").read_text()
    assert load_run_config(tmp_path) == cfg
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.yaml").write_text("preset: dapo\nsteps: 5\nreward: dapo\nktae_gamma: 0.0\nlr: 1e-4\n")
    loaded = load_run_config(old)
    assert (loaded.preset, loaded.steps, loaded.algorithm.reward, loaded.ktae.gamma) == ("dapo", 5, "dapo", 0.0)


def test_defaults_are_the_embedded_grpo_ktae_run():
    cfg = parse_args([])
    assert cfg.model.path == "embedded" and cfg.data.path == "embedded"
    assert cfg.algorithm.estimator == "grpo+ktae" and cfg.preset == "default"


def test_overrides_types_and_forms():
    cfg = parse_args(["--steps", "7", "--lr=3e-4", "--estimator", "rloo+ktae", "--dynamic-sampling",
                      "--filter_values", "Level 3,Level 4", "--quiet", "false"])
    assert cfg.steps == 7 and isinstance(cfg.steps, int)
    assert cfg.ppo.lr == pytest.approx(3e-4)
    assert cfg.algorithm.estimator == "rloo+ktae" and cfg.rollout_estimator == "rloo" and cfg.uses_ktae
    assert cfg.rollout.dynamic_sampling is True and cfg.log.quiet is False
    assert cfg.data.filter_values == ["Level 3", "Level 4"]


def test_preset_then_yaml_then_command_line(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("preset: dapo\nclip_high: 0.3\nsteps: 11\n")
    cfg = parse_args(["--config", str(yaml_file), "--steps", "12"])
    assert cfg.preset == "dapo"
    assert cfg.algorithm.reward == "dapo" and cfg.rollout.dynamic_sampling and cfg.ppo.kl_coef == 0.0   # from the preset
    assert cfg.ppo.clip_high == 0.3                                                     # from the file
    assert cfg.steps == 12                                                          # from the command line


def test_paper_presets_follow_the_spec():
    g = make_config("paper-grpo-ktae")
    assert (g.model.path, g.rollout.prompts_per_step, g.rollout.rollouts_per_prompt, g.ppo.mini_batch_prompts) == (
        "Qwen/Qwen2.5-Math-7B", 1024, 16, 128)
    assert (g.ppo.lr, g.ppo.clip_low, g.ppo.clip_high, g.ppo.kl_coef, g.ppo.kl_kind) == (
        1e-6, 0.2, 0.2, 0.001, "low_var_kl")
    assert g.data.filter_values == ["Level 3", "Level 4", "Level 5"] and g.algorithm.estimator == "grpo+ktae"
    d = make_config("paper-dapo")
    assert (d.ppo.clip_high, d.ppo.kl_coef, d.algorithm.overlong_buffer, d.algorithm.reward,
            d.rollout.dynamic_sampling) == (0.24, 0.0, 512, "dapo", True)
    assert d.algorithm.estimator == "grpo" and d.rollout.max_new_tokens == 3072 and d.ppo.grad_clip == 1.0


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds(name):
    assert make_config(name).preset == name


@pytest.mark.parametrize("argv, needle", [
    (["--estimator", "ppo"], "--estimator"),
    (["--steps", "many"], "--steps"),
    (["--stepz", "3"], "unknown option"),
    (["--preset", "nope"], "unknown preset"),
    (["--temperature", "0"], "--temperature"),
    (["--data", "my.jsonl"], "--data"),                 # the tiny model only knows the embedded task
    (["steps", "3"], "unexpected argument"),
    (["--lr"], "--lr.*expected one argument"),
    (["--ktae.alpha", "-1"], "alpha"),
    (["--tiny_heads", "5"], "divisible"),
    (["--clip_low", "1.5"], "--clip_low"),
    (["--overlong_buffer", "100"], "--overlong_buffer"),
    (["--eval.every", "-1"], "--eval_every"),
    (["--estimator", "grpo+oracle"], "--estimator grpo.oracle: .*expected --task word with --data embedded"),
    (["--estimator", "rloo+oracle-blame", "--task", "arithmetic"], "--estimator rloo.oracle-blame: .*--task word"),
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
    assert cfg.steps == 9 and cfg.algorithm.reward == "dapo" and cfg.run_dir == str(tmp_path)
    with pytest.raises(ValueError, match="--preset"):
        resume_config(tmp_path, {"preset": "grpo"})
    with pytest.raises(ValueError, match="not a run folder"):
        resume_config(tmp_path / "missing", {})
