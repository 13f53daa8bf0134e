"""ktae train's configuration: defaults, presets, YAML, --key value overrides, --help, bad input."""
import pytest

from ktae.core.config import KTAEConfig
from ktae.recipes.tiny_model import TinyModelConfig
from ktae.train.cli import main
from ktae.train.config import (COMMON_OPTIONS, FLAT_ALIASES, TrainConfig, help_topics, load_run_config, make_config,
                               option_values, options, parse_args, read_values, resume_config, save_yaml,
                               with_options)
from ktae.train.presets import PRESETS


def test_help_all_lists_every_option_by_path_and_flat_name_with_its_default(capsys):
    assert main(["--help", "all"]) == 0
    text = capsys.readouterr().out
    for path, opt in options().items():
        assert opt.help, path
        assert f"--{path}," in text or f"--{path} " in text, path
        for flat in opt.aliases:
            assert f"--{flat} " in text or f"--{flat}," in text, flat
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
    for path in COMMON_OPTIONS + ("preset", "config", "resume"):
        assert f"--{path} " in text or f"--{path}," in text, path
    assert "--tiny_layers" not in text and "--adam_beta1" not in text
    for topic in help_topics():
        assert f"\n  {topic} " in text, topic


@pytest.mark.parametrize("argv", [["--help", "ppo"], ["--help=ppo"], ["-h", "ppo"], ["--lr", "1", "--help", "ppo"]])
def test_help_section_shows_that_section_only(argv, capsys):
    assert main(argv) == 0
    text = capsys.readouterr().out
    ppo = [o for o in options().values() if o.section == "ppo"]
    for opt in ppo:
        assert f"--{opt.path}" in text, opt.path
    assert "--tiny_layers" not in text and "Start:" not in text and "Update (PPO):" in text


def test_every_section_has_a_help_topic_and_together_they_list_every_option(capsys):
    shown = ""
    for topic in help_topics():
        if topic not in ("presets", "all"):
            assert main(["--help", topic]) == 0
            shown += capsys.readouterr().out
    for path in options():
        assert f"--{path}" in shown, path
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
    assert {"ktae.alpha", "ppo.lr", "eval.every", "tiny.num_layers", "model.path", "task.name"} <= set(options())
    assert "ktae.rollout" not in options() and "preset" not in options()   # set by the trainer / by --preset


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


#: the rule that named the options before the sections (the flat names users have in scripts and YAML files)
OLD_PREFIX = {"task": "task_", "tiny": "tiny_", "ktae": "ktae_", "eval": "eval_"}
OLD_EXCEPTIONS = {"model.path": "model", "model.cache_dir": "cache_dir", "data.path": "data",
                  "data.subset": "data_config", "task.name": "task", "tiny.num_layers": "tiny_layers",
                  "tiny.num_heads": "tiny_heads", "ppo.epochs": "ppo_epochs", "eval.path": "eval_data",
                  "eval.subset": "eval_data_config"}


def test_the_alias_table_has_every_flat_name_of_earlier_versions():
    old = {}
    for path, opt in options().items():
        flat = OLD_EXCEPTIONS.get(path, OLD_PREFIX.get(opt.section, "") + path.rpartition(".")[2])
        if flat != path:
            old[flat] = path
    assert FLAT_ALIASES == old


def _as_text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else ",".join(value) if isinstance(value, list) else str(value)


@pytest.mark.parametrize("flat, path", sorted(FLAT_ALIASES.items()))
def test_every_old_flag_sets_its_option_in_both_spellings(flat, path):
    from ktae.train.config import read_options

    value = option_values(TrainConfig())[path]
    text = _as_text(value) or "x"
    expected = read_options([f"--{path}={text}"])
    assert list(expected) == [path]
    assert read_options([f"--{flat}={text}"]) == read_options([f"--{flat.replace('_', '-')}={text}"]) == expected


def test_old_negative_flags_still_switch_a_default_on_option_off():
    assert parse_args(["--no_save_model"]).log.save_model is False
    assert parse_args(["--no-save-model"]).log.save_model is False
    assert parse_args(["--no_log.save_model"]).log.save_model is False
    assert parse_args(["--save_model", "false"]) == parse_args(["--log.save_model=false"])


def test_old_yaml_files_with_flat_keys_give_the_config_of_their_nested_form(tmp_path):
    import yaml

    cfg = make_config("dapo-ktae", steps=7, seed=3, lr=3e-5, ktae_gamma=0.5, eval_every=2, tiny_layers=2,
                      task_max_operand=7, filter_field="level", filter_values=["Level 3"], quiet=True,
                      save_model=False, data_config="main", template="r1", cache_dir="/tmp/c")
    flat_of = {path: flat for flat, path in FLAT_ALIASES.items()}
    flat = {"preset": cfg.preset, **{flat_of.get(path, path): value for path, value in option_values(cfg).items()}}
    (tmp_path / "flat.yaml").write_text(yaml.safe_dump(flat))
    save_yaml(cfg, tmp_path / "nested.yaml")
    flat_text = (tmp_path / "flat.yaml").read_text()
    assert "\nlr: " in flat_text and "ppo:" not in flat_text and "\nppo:" in (tmp_path / "nested.yaml").read_text()
    assert parse_args(["--config", str(tmp_path / "flat.yaml")]) == cfg
    assert parse_args(["--config", str(tmp_path / "nested.yaml")]) == cfg


def test_yaml_and_python_values_are_converted_to_the_option_type():
    read = read_values({"steps": "3", "lr": "1e-4", "quiet": "yes", "save_model": 0, "ppo.clip_high": 1,
                        "data_config": 2020, "filter_values": "Level 3,Level 4", "tokenizer": None}, "test")
    assert read == {"steps": 3, "ppo.lr": 1e-4, "log.quiet": True, "log.save_model": False, "ppo.clip_high": 1.0,
                    "data.subset": "2020", "data.filter_values": ["Level 3,Level 4"], "model.tokenizer": ""}
    assert isinstance(read["ppo.clip_high"], float)
    bad = [("steps", 3.5, "--steps: expected an integer"), ("lr", [1, 2], "--lr: expected a number"),
           ("quiet", "maybe", "--quiet: expected true or false"), ("ktae.alpha", True, "--ktae_alpha: expected a number"),
           ("rollout", {"top_p": "x"}, "--top_p: expected a number")]
    for key, value, expected in bad:
        with pytest.raises(ValueError, match=f"test: {expected}, got"):
            read_values({key: value}, "test")


def test_an_unknown_key_inside_a_section_is_named_with_its_section():
    with pytest.raises(ValueError, match=r"unknown option 'ppo.lrr' \(did you mean --ppo.lr"):
        make_config(ppo={"lrr": 1e-5})


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
    (["--estimator", "grpo+divergence"], "--estimator: expected one of"),
    (["--algorithm.ngram", "0"], "--ngram: expected an integer >= 1"),
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
