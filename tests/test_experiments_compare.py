"""``ktae compare``: options, statistics, and a real 2-method x 2-seed x 2-step comparison of a tiny model,
interrupted and continued (finished runs reused, the interrupted one resumed from its checkpoint)."""
import json
import math
import platform

import pytest
import torch

from ktae.experiments import compare
from ktae.train import loop as loop_module

# the tiny model of the trainer's tests: builds in seconds, warm start cached per module
TINY = ["--tiny_hidden_size", "32", "--tiny_layers", "2", "--tiny_heads", "2", "--tiny_intermediate_size", "64",
        "--tiny_sft_steps", "40", "--tiny_sft_batch_size", "32", "--prompts_per_step", "4", "--rollouts_per_prompt",
        "4", "--max_new_tokens", "24", "--eval_size", "8", "--threads", "1", "--grader_workers", "0", "--quiet",
        "--save_every", "1", "--save_model", "false"]


def test_mean_ci_is_the_student_t_interval():
    scipy_stats = pytest.importorskip("scipy.stats")
    for values in ([0.2, 0.4], [1.0, 2.0, 4.0], [0.5, 0.1, 0.3, 0.9, 0.7], list(range(40))):
        mean, half = compare.mean_ci(values)
        n = len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        expected = scipy_stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) if n <= 31 else 1.96 * sd / math.sqrt(n)
        assert mean == pytest.approx(sum(values) / n)
        assert half == pytest.approx(expected, rel=2e-3)
    assert compare.mean_ci([0.5]) == (0.5, 0.0)
    assert all(math.isnan(x) for x in compare.mean_ci([]))


def test_methods_and_ablations():
    ms = compare.methods(dapo=False, ablations=["alpha", "gamma"])
    assert [m.label for m in ms] == ["GRPO", "GRPO+KTAE", "GRPO+KTAE (α=0)", "GRPO+KTAE (γ=0)"]
    assert [m.preset for m in ms] == ["grpo", "grpo-ktae", "grpo-ktae", "grpo-ktae"]
    assert dict(ms[2].overrides) == {"ktae_alpha": 0.0} and dict(ms[3].overrides) == {"ktae_gamma": 0.0}
    assert [m.preset for m in compare.methods(dapo=True)] == ["dapo", "dapo-ktae"]
    with pytest.raises(ValueError, match="ablations"):
        compare.methods(ablations=["delta"])


def test_study_arms_plan_their_estimators_and_ktae_values(tmp_path):
    argv = ["--task", "word-easy", "--oracle_arms", "--gate_arm", "--entropy_arm", "--ktae_tuned", "top0.5-beta0",
            "--ktae_points", "top0.25-beta0,alpha0", "--output", str(tmp_path)]
    runs = compare.plan(*compare.parse_args(argv))
    by_arm = {m.key: cfg for m, _, cfg in runs}
    assert list(by_arm) == ["grpo", "grpo-ktae", "grpo-ktae-tuned", "grpo-ktae-top0.25-beta0", "grpo-ktae-alpha0",
                            "grpo-oracle", "grpo-oracle-blame", "grpo-ktae-gate", "grpo-entropy20"]
    assert {k: c.algorithm.estimator for k, c in by_arm.items() if "ktae" not in k or "gate" in k} == {
        "grpo": "grpo", "grpo-oracle": "grpo+oracle", "grpo-oracle-blame": "grpo+oracle-blame",
        "grpo-ktae-gate": "grpo+ktae-gate", "grpo-entropy20": "grpo"}
    ktae_values = {k: (c.ktae.alpha, c.ktae.beta, c.ktae.gamma, c.ktae.top) for k, c in by_arm.items()}
    assert ktae_values["grpo-ktae"] == (1.0, 1.0, 1.0, 1.0)
    assert ktae_values["grpo-ktae-tuned"] == (1.0, 0.0, 1.0, 0.5)
    assert ktae_values["grpo-ktae-top0.25-beta0"] == (1.0, 0.0, 1.0, 0.25)
    assert ktae_values["grpo-ktae-alpha0"] == (0.0, 1.0, 1.0, 1.0)
    assert by_arm["grpo-entropy20"].ppo.top_entropy_quantile == 0.2
    assert {c.tiny.seed for c in by_arm.values()} == {1234}              # the shared warm start by default
    assert {c.task.max_count for c in by_arm.values()} == {30}


def test_label_free_arms_plan_their_estimators(tmp_path):
    argv = ["--task", "word-easy", "--label_free_arms", "prefix,line-ktae-blame", "tree",
            "--gate_arm", "--output", str(tmp_path), "--algorithm.ngram", "2"]
    runs = compare.plan(*compare.parse_args(argv))
    by_arm = {m.key: cfg for m, _, cfg in runs}
    assert list(by_arm) == ["grpo", "grpo-ktae", "grpo-ktae-gate", "grpo-prefix", "grpo-line-ktae-blame", "grpo-tree"]
    assert {k: c.algorithm.estimator for k, c in by_arm.items()} == {
        "grpo": "grpo", "grpo-ktae": "grpo+ktae", "grpo-ktae-gate": "grpo+ktae-gate", "grpo-prefix": "grpo+prefix",
        "grpo-line-ktae-blame": "grpo+line-ktae-blame", "grpo-tree": "grpo+tree"}
    assert {c.task.max_count for c in by_arm.values()} == {30} and {c.algorithm.ngram for c in by_arm.values()} == {2}
    dapo = compare.methods(dapo=True, task="word", label_free_arms=["first-novel"])
    assert [(m.key, m.preset, m.overrides) for m in dapo][-1] == ("dapo-first-novel", "word-dapo",
                                                                  (("estimator", "grpo+first-novel"),))
    # every rule is a compare arm on every task, the arithmetic one included (no labels needed)
    assert [m.key for m in compare.methods(label_free_arms=compare.LABEL_FREE_CREDITS)][2:] == [
        f"grpo-{rule}" for rule in compare.LABEL_FREE_CREDITS]
    for bad, match in ((["--label_free_arms", "prefix,oracle"], "--label_free_arms: unknown rule 'oracle'"),
                       (["--label_free_arms", "line,line"], "--label_free_arms: expected distinct rules")):
        with pytest.raises(ValueError, match=match):
            compare.parse_args(bad)


def test_ktae_points_and_oracle_arms_are_checked():
    assert compare.ktae_point("top0.5-beta0") == (("top", 0.5), ("beta", 0.0))
    for bad, match in ((["--ktae_points", "top-1"], "--ktae_points: expected points such as"),
                       (["--ktae_points", "delta1"], "--ktae_points: expected points"),
                       (["--ktae_points", "top1-top2"], "top is given twice"),
                       (["--ktae_points", "top1,top1"], "--ktae_points: expected distinct points"),
                       (["--ktae_tuned", "top0"], "--ktae_tuned: KTAEConfig.top must be > 0"),
                       (["--ktae_tuned", "alpha0-beta0"], "--ktae_tuned: .*alpha \\+ beta > 0"),
                       (["--oracle_arms"], "--oracle_arms: expected a word task")):
        with pytest.raises(ValueError, match=match):
            compare.parse_args(bad)
    assert compare.main(["--oracle_arms", "--output", "unused"]) == 2


def test_warm_start_per_seed_gives_each_seed_its_own_model(tmp_path):
    argv = ["--task", "word-easy", "--seeds", "2", "--first_seed", "3", "--warm_start_per_seed", "--output",
            str(tmp_path)]
    runs = compare.plan(*compare.parse_args(argv))
    seeds = {(m.key, seed): cfg.tiny.seed for m, seed, cfg in runs}
    assert seeds == {(arm, s): compare.PER_SEED_WARM_START + s for arm in ("grpo", "grpo-ktae") for s in (3, 4)}
    with pytest.raises(ValueError, match="--warm_start_per_seed sets tiny_seed"):
        compare.plan(*compare.parse_args(argv + ["--tiny_seed", "7"]))


def test_parse_args_splits_compare_and_train_options():
    config, train_options = compare.parse_args(["--dapo", "--seeds", "2", "--ablations", "beta", "--lr", "1e-3",
                                                "--table_steps", "0,5", "--steps", "5", "--output=x"])
    assert config.dapo and config.seeds == 2 and config.ablations == ["beta"] and config.table_steps == [0, 5]
    assert config.output == "x" and config.steps == 5
    assert train_options == {"ppo.lr": 1e-3}   # by path, whichever name was written
    assert compare.parse_args(["--ppo.lr", "1e-3"])[1] == {"ppo.lr": 1e-3}
    for bad, match in ((["--seed", "3"], "set by ktae compare"), (["--eval.every", "3"], "set by ktae compare"),
                       (["--preset", "dapo"], "set by ktae compare"), (["--seeds", "0"], "--seeds"),
                       (["--ablations", "x"], "--ablations"), (["--seeds", "two"], "--seeds"),
                       (["--steps", "4", "--table_steps", "9"], "--table_steps")):
        with pytest.raises(ValueError, match=match):
            compare.parse_args(bad)
    # a bad trainer option is reported before anything runs
    assert compare.main(["--output", "unused", "--lr", "-1"]) == 2


def test_compare_runs_resumes_and_summarises(tmp_path, monkeypatch, capsys):
    out = tmp_path / "cmp"
    args = ["--seeds", "2", "--steps", "2", "--eval_every", "2", "--output", str(out), "--cache_dir",
            str(tmp_path / "cache"), *TINY]
    real_train = loop_module.train
    real_update = loop_module.ppo_update
    calls = []

    def interrupting_update(*a, **k):  # the 3rd run (GRPO+KTAE, seed 0) is stopped in its 2nd update
        if len(calls) == 3 and interrupting_update.seen == 1:
            raise KeyboardInterrupt
        if len(calls) == 3:
            interrupting_update.seen += 1
        return real_update(*a, **k)

    interrupting_update.seen = 0

    def recording_train(config=None, **kwargs):
        calls.append(kwargs.get("resume") or config.run_dir)
        return real_train(config, **kwargs)

    monkeypatch.setattr(loop_module, "train", recording_train)
    monkeypatch.setattr(loop_module, "ppo_update", interrupting_update)
    assert compare.main(args) == 130
    assert "run the same command again" in capsys.readouterr().err
    runs = out / "runs"
    assert (runs / "grpo-s0" / "metrics.jsonl").is_file() and (runs / "grpo-s1" / "metrics.jsonl").is_file()
    assert (runs / "grpo-ktae-s0" / "checkpoints" / "step_000001").is_dir()  # saved on the interruption

    calls.clear()
    monkeypatch.setattr(loop_module, "ppo_update", real_update)
    assert compare.main(args) == 0
    # the finished GRPO runs were reused, the interrupted run resumed, the last one trained
    assert calls == [runs / "grpo-ktae-s0", str(runs / "grpo-ktae-s1")]
    printed = capsys.readouterr()
    assert "reused" in printed.err + printed.out
    assert (out / "compare.png").stat().st_size > 10_000
    table = (out / "compare.md").read_text()
    assert "GRPO acc" in table and "GRPO+KTAE acc" in table and "Paired difference" in table
    summary = json.loads((out / "compare.json").read_text())
    assert [m["label"] for m in summary["methods"]] == ["GRPO", "GRPO+KTAE"]
    assert summary["table_steps"] == [0, 2]
    for key in ("grpo", "grpo-ktae"):
        cell = summary["table"][key]["2"]["accuracy"]
        assert cell["n"] == 2 and 0.0 <= cell["mean"] <= 1.0 and cell["ci95"] >= 0.0
        assert [row[0] for row in summary["curves"][key]["accuracy"]] == [1, 2]
    # step 0 is the same model for both methods (same seed, same warm start): a zero paired difference
    assert summary["paired"]["grpo-ktae"]["0"]["accuracy"]["mean"] == 0.0
    # what made the summary, and each run's own record beside its config.yaml
    assert summary["environment"]["python"] == platform.python_version()
    assert summary["environment"]["packages"]["torch"] == torch.__version__
    assert summary["environment"]["cpu_count"] >= 1 and summary["environment"]["torch_threads"] >= 1
    assert all(json.loads((runs / name / "environment.json").read_text())["start"]["python"]
               for name in ("grpo-s0", "grpo-s1", "grpo-ktae-s1"))

    # running it again reuses everything; other options for the same folder are refused
    calls.clear()
    assert compare.main(args) == 0 and calls == []
    assert compare.main([*args, "--lr", "0.01"]) == 2
    assert "other options" in capsys.readouterr().err


def test_word_task_entropy_arm_and_shared_runs_folder():
    ms = compare.methods(dapo=False, ablations=["beta"], entropy_arm=True, task="word")
    assert [m.preset for m in ms] == ["word-grpo", "word-grpo-ktae", "word-grpo-ktae", "word-grpo"]
    assert ms[-1].label == "GRPO (top-20% entropy tokens)" and dict(ms[-1].overrides) == {"top_entropy_quantile": 0.2}
    assert [m.preset for m in compare.methods(dapo=True, task="word")] == ["word-dapo", "word-dapo-ktae"]
    assert [m.preset for m in compare.methods(dapo=True, task="word-small")] == ["word-small-dapo", "word-small-dapo-ktae"]
    small = compare.plan(*compare.parse_args(["--task", "word-small", "--seeds", "1"]))
    assert all(cfg.task.name == "word" and (cfg.task.max_count, cfg.task.max_change) == (50, 9) for _, _, cfg in small)
    config, options = compare.parse_args(["--task", "word", "--entropy_arm", "--runs_dir", "shared", "--seeds", "2"])
    jobs = compare.plan(config, options)
    assert [(m.key, s) for m, s, _ in jobs][:2] == [("grpo", 0), ("grpo", 1)] and len(jobs) == 6
    assert all(cfg.task.name == "word" and cfg.run_dir.startswith("shared/") for _, _, cfg in jobs)
    assert jobs[-1][2].ppo.top_entropy_quantile == 0.2 and jobs[0][2].ppo.top_entropy_quantile == 1.0
    with pytest.raises(ValueError, match="--task"):
        compare.parse_args(["--task", "poems"])
    assert [m.preset for m in compare.methods(task="smollm2")] == ["smollm2-cpu-grpo", "smollm2-cpu"]
    with pytest.raises(ValueError, match="no DAPO"):
        compare.methods(dapo=True, task="smollm2")


# the word task's tiny model: a few warm-start steps, short responses
WORD_TINY = [*TINY, "--max_new_tokens", "48"]


def test_word_study_command_runs_two_steps_two_seeds(tmp_path):
    out = tmp_path / "study"
    args = ["--task", "word", "--entropy_arm", "--seeds", "2", "--steps", "2", "--eval_every", "2", "--output",
            str(out), "--cache_dir", str(tmp_path / "cache"), "--target_accuracy", "0.5", *WORD_TINY,
            "--tiny_sft_steps", "10"]
    assert compare.main(args) == 0
    summary = json.loads((out / "compare.json").read_text())
    assert [m["label"] for m in summary["methods"]] == ["GRPO", "GRPO+KTAE", "GRPO (top-20% entropy tokens)"]
    assert summary["table"]["grpo-entropy20"]["2"]["accuracy"]["n"] == 2
    assert set(summary["paired"]) == {"grpo-ktae", "grpo-entropy20"}
    target = summary["steps_to_target"]
    assert target["target"] == 0.5 and target["methods"]["grpo"]["runs"] == 2
    assert "Steps to reach 50% held-out accuracy" in (out / "compare.md").read_text()
    # the data behind the tables: one row per arm, seed and step, held-out accuracy only where evaluated
    rows = compare.read_curves_csv(out / "curves.csv")
    assert (out / "curves.csv").read_text().splitlines()[0] == \
        "study,arm,seed,step,rollout_accuracy,heldout_accuracy,response_length,mixed_group_fraction"
    assert {(r["arm"], r["seed"]) for r in rows} == {(a, s) for a in ("grpo", "grpo-ktae", "grpo-entropy20")
                                                     for s in (0, 1)}
    assert all(r["study"] == "study" for r in rows)
    by_step = {(r["arm"], r["seed"], r["step"]): r for r in rows}
    assert sorted(s for a, seed, s in by_step if (a, seed) == ("grpo", 1)) == [0, 1, 2]
    assert by_step["grpo", 1, 0]["rollout_accuracy"] is None and by_step["grpo", 1, 0]["response_length"] is None
    assert by_step["grpo", 1, 1]["heldout_accuracy"] is None
    assert by_step["grpo", 1, 0]["heldout_accuracy"] == by_step["grpo-ktae", 1, 0]["heldout_accuracy"]
    assert summary["table"]["grpo"]["2"]["accuracy"]["values"] == [by_step["grpo", s, 2]["heldout_accuracy"]
                                                                   for s in (0, 1)]
    metrics = [json.loads(line) for line in (out / "runs" / "grpo-ktae-s0" / "metrics.jsonl").read_text().splitlines()]
    step1 = next(m for m in metrics if m.get("step") == 1 and "accuracy" in m)
    assert by_step["grpo-ktae", 0, 1]["rollout_accuracy"] == step1["accuracy"]
    assert by_step["grpo-ktae", 0, 1]["response_length"] == step1["response_length"]
    assert by_step["grpo-ktae", 0, 1]["mixed_group_fraction"] == step1["ktae/mixed_group_fraction"]
    assert by_step["grpo-ktae", 0, 0]["mixed_group_fraction"] is None


def test_mixed_group_fraction_comes_from_old_and_new_run_folders(tmp_path):
    """The CSV column is the trainer's ktae/mixed_group_fraction, read through read_metrics: a run folder written
    before the shared metric names (``mixed_groups``) fills it as well as a new one."""
    from ktae.train.config import make_config, save_yaml

    runs = {}
    for arm, name, seed in (("old", "mixed_groups", 1), ("new", "ktae/mixed_group_fraction", 2)):
        run_dir = tmp_path / arm
        run_dir.mkdir()
        save_yaml(make_config(seed=seed), run_dir / "config.yaml")
        records = [{"step": 0, "eval_accuracy": 0.25},
                   {"step": 1, "accuracy": 0.5, "response_length": 12.0, name: 0.75}]
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        runs[arm] = [run_dir]
    rows = {(r["arm"], r["step"]): r for r in compare.curve_rows(runs, "s")}
    assert rows["old", 1]["mixed_group_fraction"] == rows["new", 1]["mixed_group_fraction"] == 0.75
    assert rows["old", 0]["mixed_group_fraction"] is None and rows["new", 1]["seed"] == 2


def test_curves_csv_keeps_the_rows_of_other_arms_and_studies(tmp_path):
    path = tmp_path / "curves.csv"
    row = {"study": "s", "arm": "grpo", "seed": 0, "step": 0, "rollout_accuracy": None, "heldout_accuracy": 0.125,
           "response_length": None}
    compare.write_curves_csv(path, [row, {**row, "step": 1, "rollout_accuracy": 0.5, "heldout_accuracy": None,
                                          "response_length": 40.25}])
    dapo = {**row, "arm": "dapo", "heldout_accuracy": 0.25}
    compare.write_curves_csv(path, [dapo])  # a second comparison of the same study: its arm is added
    compare.write_curves_csv(path, [{**row, "heldout_accuracy": 0.375}])  # rerun of the grpo arm: replaced
    compare.write_curves_csv(path, [{**row, "study": "other"}])
    compare.write_curves_csv(path, [{**row, "seed": 1}])  # another seed of the same arm: added
    rows = compare.read_curves_csv(path)
    assert [(r["study"], r["arm"], r["seed"], r["step"], r["heldout_accuracy"]) for r in rows] == [
        ("other", "grpo", 0, 0, 0.125), ("s", "dapo", 0, 0, 0.25), ("s", "grpo", 0, 0, 0.375),
        ("s", "grpo", 1, 0, 0.125)]
    assert "s,grpo,0,0,,0.375," in path.read_text()
    # a file written before the mixed_group_fraction column: read as empty, kept (with the column) on the next write
    (tmp_path / "old.csv").write_text("study,arm,seed,step,rollout_accuracy,heldout_accuracy,response_length\n"
                                      "s,grpo,0,1,0.5,,40.0\n")
    old = compare.read_curves_csv(tmp_path / "old.csv")
    assert old == [{"study": "s", "arm": "grpo", "seed": 0, "step": 1, "rollout_accuracy": 0.5,
                    "heldout_accuracy": None, "response_length": 40.0, "mixed_group_fraction": None}]
    compare.write_curves_csv(tmp_path / "old.csv", [{**old[0], "arm": "dapo", "mixed_group_fraction": 0.25}])
    assert compare.read_curves_csv(tmp_path / "old.csv") == [{**old[0], "arm": "dapo", "mixed_group_fraction": 0.25},
                                                             old[0]]
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a curves CSV"):
        compare.read_curves_csv(tmp_path / "bad.csv")


def test_first_step_reaching():
    assert compare.first_step_reaching({0: 0.1, 10: 0.5, 20: 0.4, 30: 0.7}, 0.5) == 10
    assert compare.first_step_reaching({20: 0.6, 0: 0.1}, 0.5) == 20
    assert compare.first_step_reaching({0: 0.1}, 0.5) is None
