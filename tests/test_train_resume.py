"""Stopping and resuming a run gives the same metrics as never stopping it (CPU, fixed seed)."""
import json
import os
import signal

import pytest

from ktae.train import loop as loop_module
from ktae.train import rollouts as rollouts_module
from ktae.train.checkpoint import list_checkpoints
from ktae.train.config import make_config
from ktae.train.loop import train
from ktae.train.logger import read_metrics

TINY = dict(tiny_hidden_size=32, tiny_layers=2, tiny_heads=2, tiny_intermediate_size=64, tiny_sft_steps=40,
            tiny_sft_batch_size=32, prompts_per_step=4, rollouts_per_prompt=4, max_new_tokens=24, eval_size=8,
            eval_every=2, save_every=0, mini_batch_prompts=2, threads=1, grader_workers=0, quiet=True, seed=3, steps=4, lr=5e-3)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("ktae_cache"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache):
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    return comparable(read_metrics(train(make_config(**TINY, cache_dir=cache, run_dir=str(run)))))


def comparable(records):
    """The records without wall-clock timings."""
    return [{k: v for k, v in r.items() if not k.startswith(("time_", "share_"))} for r in records]


def test_stop_after_k_steps_then_resume(tmp_path, cache, reference):
    run = tmp_path / "run"
    train(make_config(**{**TINY, "steps": 2}, cache_dir=cache, run_dir=str(run)))
    assert [s for s, _ in list_checkpoints(run)] == [2]
    train(resume=run, steps=4)
    assert comparable(read_metrics(run)) == reference
    assert any(r.get("accuracy") is not None for r in reference)
    environment = json.loads((run / "environment.json").read_text())  # the first start, then each resume
    assert environment["start"]["packages"]["ktae"] == environment["resumes"][0]["environment"]["packages"]["ktae"]
    assert [r["step"] for r in environment["resumes"]] == [2]


def test_ctrl_c_while_generating_saves_and_resumes_exactly(tmp_path, cache, reference, monkeypatch):
    real = rollouts_module.score
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:          # step 3, before its update
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(rollouts_module, "score", interrupted)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(make_config(**TINY, cache_dir=cache, run_dir=str(run)))
    assert [s for s, _ in list_checkpoints(run)] == [2]      # the last completed step
    monkeypatch.setattr(rollouts_module, "score", real)
    train(resume=run)
    assert comparable(read_metrics(run)) == reference


def test_a_crash_outside_an_update_saves_the_last_step(tmp_path, cache, reference, monkeypatch):
    real = rollouts_module.score
    calls = {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("grader exploded")
        return real(*args, **kwargs)

    monkeypatch.setattr(rollouts_module, "score", crashing)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="exploded"):
        train(make_config(**TINY, cache_dir=cache, run_dir=str(run)))
    assert [s for s, _ in list_checkpoints(run)] == [3]
    monkeypatch.setattr(rollouts_module, "score", real)
    train(resume=run)
    assert comparable(read_metrics(run)) == reference


def test_sigterm_during_an_update_finishes_it_then_saves(tmp_path, cache, reference, monkeypatch):
    real = loop_module.ppo_update
    calls = {"n": 0}

    def update_then_term(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)     # arrives mid-update: must not cut it short
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_module, "ppo_update", update_then_term)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(make_config(**TINY, cache_dir=cache, run_dir=str(run)))
    assert [s for s, _ in list_checkpoints(run)] == [3]      # step 3 completed and saved
    monkeypatch.setattr(loop_module, "ppo_update", real)
    train(resume=run)
    assert comparable(read_metrics(run)) == reference


def test_resume_needs_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="not a run folder"):
        train(resume=tmp_path)
