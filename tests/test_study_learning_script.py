"""benchmarks/study_learning.sh: every ``ktae compare`` command it would run parses and plans (nothing trains)."""

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from ktae.experiments import compare

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "study_learning.sh"


def commands(tmp_path, study: str, part: str, **env_extra: str) -> list[list[str]]:
    """The argument lists the script hands to ``ktae compare`` (KTAE set to a command that prints them)."""
    echo = tmp_path / "echo-args"
    echo.write_text('#!/usr/bin/env python3\nimport shlex, sys\nprint("compare", shlex.join(sys.argv[2:]))\n')
    echo.chmod(0o755)
    env = {**os.environ, "STUDY": study, "KTAE": str(echo), **env_extra}
    if "TUNED" not in env_extra:
        env.pop("TUNED", None)
    out = subprocess.run(["bash", str(SCRIPT), part, str(tmp_path / "out"), "2"], env=env, check=True,
                         capture_output=True, text=True).stdout
    return [shlex.split(line)[1:] for line in out.splitlines() if line.startswith("compare ")]


@pytest.mark.parametrize("study", ["1", "2"])
@pytest.mark.parametrize("part", ["grpo", "dapo", "gamma", "tables"])
def test_every_command_of_the_study_plans(tmp_path, study, part):
    cmds = commands(tmp_path, study, part)
    assert len(cmds) == 2  # two seeds, or the two tables' comparisons
    for argv in cmds:
        config, train_options = compare.parse_args(argv)
        runs = compare.plan(config, train_options)
        assert {cfg.task.name for _, _, cfg in runs} == {"word"}
        assert config.csv == str(tmp_path / "out" / "curves.csv")


def test_studies_differ_in_testbed(tmp_path):
    (first,), (second,) = (commands(tmp_path, s, "grpo")[:1] for s in ("1", "2"))
    plans = [compare.plan(*compare.parse_args(argv)) for argv in (first, second)]
    counts = [{cfg.task.max_count for _, _, cfg in p} for p in plans]
    assert counts == [{50}, {30}]


STUDY3_ARMS = ["grpo", "grpo-ktae", "grpo-ktae-tuned", "grpo-oracle", "grpo-oracle-blame", "grpo-ktae-gate",
               "grpo-entropy20"]
SWEEP_ARMS = ["grpo", "grpo-ktae"] + [f"grpo-ktae-top{t}-beta{b}" for t in ("0.25", "0.5", "1", "2") for b in (0, 1)
                                      if (t, b) != ("1", 1)] + ["grpo-ktae-alpha0"]


def plan_of(argv):
    config, train_options = compare.parse_args(argv)
    return config, compare.plan(config, train_options)


@pytest.mark.parametrize("part, arms, seeds, study", [
    ("pilot", ["grpo", "grpo-ktae", "grpo-oracle", "grpo-oracle-blame"], [100, 101], "study-learning-3-pilot"),
    ("sweep", SWEEP_ARMS, [100, 101], "study-learning-3-sweep"),
    ("study", STUDY3_ARMS, [0, 1], "study-learning-3"),
])
def test_study_3_parts_plan_their_arms_one_seed_at_a_time(tmp_path, part, arms, seeds, study):
    cmds = commands(tmp_path, "3", part, TUNED="top0.5-beta0")
    per_seed = cmds[:len(seeds)]
    summary = cmds[len(seeds):]
    assert len(summary) == (0 if part == "study" else 1)
    for seed, argv in zip(seeds, per_seed):
        config, runs = plan_of(argv)
        assert [m.key for m, _, _ in runs] == arms and {s for _, s, _ in runs} == {seed}
        assert config.study == study and config.csv == str(tmp_path / "out" / "curves.csv")
        assert {cfg.tiny.seed for _, _, cfg in runs} == {compare.PER_SEED_WARM_START + seed}   # own warm start
        assert {cfg.task.max_count for _, _, cfg in runs} == {30} and config.steps == 30
        assert config.runs_dir == str(tmp_path / "out" / "runs")
    for argv in summary:   # one comparison over every seed of the part: its tables, every run reused
        config, runs = plan_of(argv)
        assert {m.key for m, _, _ in runs} == set(arms) and {s for _, s, _ in runs} == set(seeds)
        assert config.output == str(tmp_path / "out" / part)
    if part == "study":
        tuned = {m.key: cfg for m, _, cfg in plan_of(per_seed[0])[1]}["grpo-ktae-tuned"]
        assert (tuned.ktae.top, tuned.ktae.beta, tuned.ktae.alpha) == (0.5, 0.0, 1.0)


def test_study_3_tables_and_the_tuned_point(tmp_path):
    (argv,) = commands(tmp_path, "3", "tables", TUNED="top2-beta0")
    config, runs = plan_of(argv)
    assert [m.key for m, s, _ in runs if s == 0] == STUDY3_ARMS and {s for _, s, _ in runs} == {0, 1}
    for part in ("study", "tables"):
        done = subprocess.run(["bash", str(SCRIPT), part, str(tmp_path)], check=False, capture_output=True, text=True,
                              env={k: v for k, v in {**os.environ, "STUDY": "3"}.items() if k != "TUNED"})
        assert done.returncode == 2 and "needs the tuned KTAE point" in done.stderr


def test_unknown_study_or_part_is_refused(tmp_path):
    for env, part in (({"STUDY": "5"}, "grpo"), ({}, "nope"), ({"STUDY": "3"}, "grpo"), ({"STUDY": "4"}, "grpo")):
        done = subprocess.run(["bash", str(SCRIPT), part, str(tmp_path)], env={**os.environ, **env}, check=False,
                              capture_output=True, text=True)
        assert done.returncode == 2 and "study_learning.sh: unknown" in done.stderr


def test_study_3_seeds_can_be_split_between_processes(tmp_path):
    cmds = commands(tmp_path, "3", "study", TUNED="top0.5-beta0", FIRST_SEED="6")
    assert [{s for _, s, _ in plan_of(argv)[1]} for argv in cmds] == [{6}, {7}]


@pytest.mark.parametrize("part, arms, seeds, own_warm_start", [
    ("pilot", ["grpo", "grpo-ktae", "grpo-oracle", "grpo-oracle-blame", "grpo-prefix", "grpo-line"], [300, 301], False),
    ("study", ["grpo", "grpo-ktae", "grpo-oracle", "grpo-oracle-blame", "grpo-first-novel", "grpo-tree"], [0, 1], True),
])
def test_study_4_parts_plan_their_arms(tmp_path, part, arms, seeds, own_warm_start):
    cmds = commands(tmp_path, "4", part, RULES="first-novel,tree")
    for seed, argv in zip(seeds, cmds):
        config, runs = plan_of(argv)
        assert [m.key for m, _, _ in runs] == arms and {s for _, s, _ in runs} == {seed}
        assert {cfg.task.max_count for _, _, cfg in runs} == {30} and config.steps == 30
        warm = {cfg.tiny.seed for _, _, cfg in runs}
        assert warm == ({compare.PER_SEED_WARM_START + seed} if own_warm_start else {1234})
    assert len(cmds) == len(seeds) + (part == "pilot")      # the pilot ends with its summary
    done = subprocess.run(["bash", str(SCRIPT), "study", str(tmp_path)], check=False, capture_output=True, text=True,
                          env={k: v for k, v in {**os.environ, "STUDY": "4"}.items() if k != "RULES"})
    assert done.returncode == 2 and "RULES=a,b" in done.stderr
