"""One or two RL steps of a tiny model on the embedded task: GRPO, GRPO+KTAE, DAPO; non-finite steps skipped."""
import json
import math

import pytest
import torch

from ktae.train import loop as loop_module
from ktae.train import update as update_module
from ktae.train.config import make_config
from ktae.train.loop import train
from ktae.train.logger import read_metrics

# a model small enough to build in a second; the warm start is cached per test session
TINY = dict(tiny_hidden_size=32, tiny_layers=2, tiny_heads=2, tiny_intermediate_size=64, tiny_sft_steps=40,
            tiny_sft_batch_size=32, prompts_per_step=4, rollouts_per_prompt=4, max_new_tokens=24, eval_size=8,
            eval_every=2, threads=1, grader_workers=0, quiet=True)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("ktae_cache"))


def tiny_config(tmp_path, cache, **kw):
    return make_config(**{**TINY, "cache_dir": cache, "run_dir": str(tmp_path / "run"), **kw})


@pytest.mark.parametrize("preset", ["grpo", "grpo-ktae", "dapo"])
def test_steps_run_and_log_every_metric(tmp_path, cache, preset):
    cfg = make_config(preset, **TINY, cache_dir=cache, run_dir=str(tmp_path / "run"), steps=2, dump_key_tokens_every=2)
    run_dir = train(cfg)
    records = read_metrics(run_dir)
    steps = [r for r in records if "reward" in r]
    evals = [r for r in records if "eval_accuracy" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert [r["step"] for r in evals] == [0, 2]          # before training and on schedule
    for r in steps:
        for key in ("reward", "accuracy", "response_length", "response_length_max", "clipped_fraction", "lr",
                    "share_generation", "share_reward", "share_advantage", "share_update", "time_step"):
            assert isinstance(r[key], (int, float)) and math.isfinite(r[key]), key
        assert 0.0 <= r["accuracy"] <= 1.0
        if r["groups"]:
            for key in ("entropy", "clip_fraction", "approx_kl", "grad_norm", "loss"):
                assert math.isfinite(r[key]), key
    if preset == "grpo":
        assert all(r["kl"] >= 0 for r in steps if r["groups"])     # GRPO: KL loss against the reference
        assert all("ktae/abs_mean" not in r and "ktae/mixed_group_fraction" in r for r in steps)
    if preset == "grpo-ktae":
        assert all(0 <= r["ktae/positive_fraction"] + r["ktae/negative_fraction"] <= 1 for r in steps)
    if preset == "dapo":
        assert all("kl" not in r for r in steps)
        assert all(r["generation_batches"] >= 1 for r in steps)
        assert all(-3 <= r["reward"] <= 1 for r in steps)
    # checkpoint, final model and the rollout dump
    assert (run_dir / "checkpoints" / "step_000002" / "trainer_state.pt").is_file()
    assert (run_dir / "final" / "config.json").is_file()
    dump = run_dir / "key_tokens" / "step_000002.jsonl"
    assert (run_dir / "key_tokens" / "step_000001.jsonl").is_file() == bool(steps[0]["groups"])  # the first step too
    if steps[-1]["groups"]:
        rows = [json.loads(line) for line in dump.read_text().splitlines()]
        assert len(rows) == steps[-1]["groups"] * 4
        assert set(rows[0]) >= {"group", "prompt", "response", "token_ids", "reward", "correct", "reference",
                                "key_token_values", "ktae_config", "tokenizer"}


def test_update_changes_the_policy(tmp_path, cache):
    """With a mixed group the update moves the weights (the tiny model samples rights and wrongs)."""
    cfg = tiny_config(tmp_path, cache, steps=1, eval_every=0, estimator="grpo+ktae", lr=1e-2)
    run_dir = train(cfg)
    rec = [r for r in read_metrics(run_dir) if "reward" in r][0]
    assert rec["optimizer_steps"] == 1 and rec["skipped_updates"] == 0
    assert rec["grad_norm"] > 0 or rec["ktae/mixed_group_fraction"] == 0


def test_the_run_folder_records_its_environment(tmp_path, cache):
    """environment.json beside config.yaml: versions, the checkout's commit, the CPU and the threads the run used."""
    from ktae.train.config import load_run_config

    run_dir = train(tiny_config(tmp_path, cache, steps=1, eval_every=0, save_every=0, save_model=False))
    record = json.loads((run_dir / "environment.json").read_text())
    assert record["resumes"] == []
    env = record["start"]
    assert env["packages"]["torch"] == torch.__version__ and env["python"].count(".") == 2
    assert set(env["packages"]) == {"torch", "transformers", "vllm", "verl", "trl", "ktae"}
    assert env["torch_threads"] == 1                      # what the run set (threads=1), not the process default
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["cpu_count"] >= 1 and env["cpu_model"]
    assert env["git"] is None or len(env["git"]["commit"]) == 40
    assert load_run_config(run_dir).steps == 1           # config.yaml is still the options alone


def test_non_finite_step_is_skipped_and_reported(tmp_path, cache, monkeypatch, capsys):
    real = update_module.policy_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        loss, metrics = real(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 1 else loss), metrics

    monkeypatch.setattr(update_module, "policy_loss", poisoned)
    snapshots = []
    real_update = loop_module.ppo_update

    def watched(model, *args, **kwargs):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        out = real_update(model, *args, **kwargs)
        snapshots.append(all(torch.equal(before[k], v) for k, v in model.state_dict().items()))
        return out

    monkeypatch.setattr(loop_module, "ppo_update", watched)
    cfg = tiny_config(tmp_path, cache, steps=2, eval_every=0, quiet=False)
    run_dir = train(cfg)
    steps = [r for r in read_metrics(run_dir) if "reward" in r]
    assert steps[0]["skipped_updates"] == 1 and steps[0]["optimizer_steps"] == 0
    assert snapshots[0] is True                      # the poisoned update left the weights untouched
    assert steps[1]["skipped_updates"] == 0 and steps[1]["skipped_updates_total"] == 1
    assert "skipped" in capsys.readouterr().out


def test_top_entropy_quantile_restricts_the_update(tmp_path, cache):
    runs = {}
    for q in (1.0, 0.2):
        cfg = tiny_config(tmp_path / str(q), cache, estimator="grpo", steps=1, eval_every=0, save_model=False,
                          reward="dapo", overlong_buffer=12,  # rewards vary with the length: no zero advantages
                          top_entropy_quantile=q)
        runs[q] = [r for r in read_metrics(train(cfg)) if "reward" in r][0]
    assert runs[1.0]["reward"] == runs[0.2]["reward"]                # same rollouts (same seed, same model)
    assert runs[0.2]["grad_norm"] < runs[1.0]["grad_norm"]          # a fifth of the tokens carry a gradient
    for bad in (0.0, 1.2):
        with pytest.raises(ValueError, match="top_entropy_quantile"):
            make_config(top_entropy_quantile=bad)


def test_mixed_groups_and_the_k_is_zero_warning_follow_ktae_threshold_not_the_grader(tmp_path, cache, monkeypatch):
    """DAPO rewards (-1 for a wrong answer, down to -2 when it runs long) and --ktae_threshold -1.5: the short wrong
    answers are "correct" to KTAE, so groups are mixed and K is not 0 although the grader found no right answer;
    the metric says so, and the "K is 0" warning, which would fire at step 5 on the grader's verdicts, stays quiet."""
    graded = []   # the grader's verdicts of each step's rollouts

    def collect(*args, **kwargs):
        batch, generated = collect_rollouts(*args, **kwargs)
        graded.extend(bool(c) for c in batch.correct)
        return batch, generated

    collect_rollouts = loop_module.collect_rollouts
    monkeypatch.setattr(loop_module, "collect_rollouts", collect)
    lines = []
    cfg = tiny_config(tmp_path, cache, steps=5, eval_every=0, save_every=0, save_model=False, reward="dapo",
                      overlong_buffer=12, ktae_threshold=-1.5)
    run_dir = train(cfg, log=lines.append)
    steps = [r for r in read_metrics(run_dir) if "reward" in r]
    assert len(steps) == 5 and not any(graded), "the grader found a right answer: pick another seed"
    mixed = [r["ktae/mixed_group_fraction"] for r in steps]
    assert any(m > 0 for m in mixed)
    assert all((r["ktae/nonzero_fraction"] > 0) == (m > 0) for r, m in zip(steps, mixed))
    assert not [line for line in lines if "no group had both" in line]


def test_ktae_analyze_reads_a_trainer_run_folder_with_no_flag(tmp_path, cache):
    """The run folder's own files (config.yaml, environment.json) are no rollouts: analyze reads key_tokens/."""
    from ktae.analysis.cli import main as analyze_main

    run_dir = train(tiny_config(tmp_path, cache, steps=1, eval_every=0, save_every=0, dump_key_tokens_every=1))
    assert (run_dir / "environment.json").is_file() and any((run_dir / "key_tokens").glob("*.jsonl"))
    html = tmp_path / "report.html"
    assert analyze_main([str(run_dir), "--quiet", "--html", str(html)]) == 0
    assert html.stat().st_size > 0


def test_rollouts_drawn_by_race_train(tmp_path, cache):
    """--draw race: the same run, other rollouts on the seed (the held-out evaluation before training is greedy:
    the same); the vLLM backend takes only its own draw."""
    evals, rewards = {}, {}
    for draw in ("inverse", "race"):
        records = read_metrics(train(tiny_config(tmp_path / draw, cache, steps=2, eval_every=2, save_model=False,
                                                 draw=draw)))
        evals[draw] = [r["eval_accuracy"] for r in records if "eval_accuracy" in r]
        rewards[draw] = [(r["reward"], r["response_length"]) for r in records if "reward" in r]
    assert evals["race"][0] == evals["inverse"][0] and len(evals["race"]) == 2
    assert rewards["race"] != rewards["inverse"]
    with pytest.raises(ValueError, match="--draw"):
        make_config(draw="race", backend="vllm")
