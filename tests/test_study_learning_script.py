"""benchmarks/study_learning.sh: every ``ktae compare`` command it would run parses and plans (nothing trains)."""

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from ktae.experiments import compare

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "study_learning.sh"


def commands(tmp_path, study: str, part: str) -> list[list[str]]:
    """The argument lists the script hands to ``ktae compare`` (KTAE set to a command that prints them)."""
    echo = tmp_path / "echo-args"
    echo.write_text('#!/usr/bin/env python3\nimport shlex, sys\nprint("compare", shlex.join(sys.argv[2:]))\n')
    echo.chmod(0o755)
    env = {**os.environ, "STUDY": study, "KTAE": str(echo)}
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


def test_unknown_study_or_part_is_refused(tmp_path):
    for env, part in (({"STUDY": "3"}, "grpo"), ({}, "nope")):
        done = subprocess.run(["bash", str(SCRIPT), part, str(tmp_path)], env={**os.environ, **env}, check=False,
                              capture_output=True, text=True)
        assert done.returncode == 2 and "study_learning.sh: unknown" in done.stderr
