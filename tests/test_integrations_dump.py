"""Key-token dumps from inside verl (both trainers) and TRL: the writer, the hooks, and `ktae analyze` reproducing
exactly the K values the trainer used. Also: the legacy verl trainer logs the ktae/* metrics."""
from __future__ import annotations

import json
import threading
import time
import types

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import ktae
from ktae.analysis import analyze
from ktae.analysis.cli import main as analyze_main
from ktae.analysis.sources import load_source
from ktae.integrations import verl as kv
from ktae.frontend.records import KeyTokenDumper
from ktae.integrations.verl.options import dump_options

from test_analysis_report import byte_level_tokenizer
from test_analysis_sources import PROMPTS, RESPONSES, ANSWERS
from test_integrations_verl import FakeTransferQueue, _Meta


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    """The byte-level tokenizer loaded from a folder, as a trainer's is: the dumps record where it loads from."""
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tokenizer")
    byte_level_tokenizer().save_pretrained(folder)
    return PreTrainedTokenizerFast.from_pretrained(folder)


def text_batch(tok, shift: int = 0):
    """Two interleaved groups of tokenised responses (EOS at the end), right-padded; 1/0 rewards in verl's layout."""
    ids, scores, uids, prompts, gts = [], [], [], [], []
    for k in range(4):
        for p in (0, 1):
            text, ok = RESPONSES[p][(k + shift) % 4]
            ids.append(tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
            scores.append(ok)
            uids.append(f"uid-{p}-{shift}")
            prompts.append(tok(PROMPTS[p], add_special_tokens=False)["input_ids"])
            gts.append(ANSWERS[p])
    length = max(map(len, ids))
    responses = torch.full((8, length), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros(8, length, dtype=torch.long)
    rewards = torch.zeros(8, length)
    for i, row in enumerate(ids):
        responses[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
        rewards[i, len(row) - 1] = scores[i]
    return responses, mask, torch.tensor(scores), np.array(uids, dtype=object), rewards, prompts, gts


def algorithm(folder, every=2, **ktae_options):
    return OmegaConf.create({"adv_estimator": "ktae", "gamma": 1.0, "lam": 1.0, "norm_adv_by_std_in_grpo": True,
                             "use_kl_in_reward": False, "rollout_correction": None,
                             "ktae": {"dump_every": every, "dump_dir": str(folder), **ktae_options}})


def check_dump_reproduces(tok, folder, expected_steps, batches, cfg):
    """Every dumped step: ids and K equal the core's on the trainer's batch; `ktae analyze` recomputes them exactly."""
    source = load_source(folder)
    assert source.format == "ktae" and source.steps == expected_steps
    analysis = analyze(source.rollouts, tok, progress=False)
    assert analysis.config == cfg  # the dump's options, not the analysis defaults
    assert analysis.dump_check is not None and analysis.dump_check.exact and analysis.dump_check.max_abs_diff == 0
    assert analysis.dump_check.config_from_dump
    for step in expected_steps:
        responses, mask, scores, uids = batches[step]
        rows = [r for r in source.rollouts if r.step == step]
        expected = ktae.key_token_values(responses, mask, scores, uids, cfg)
        for i, r in enumerate(rows):
            n = int(mask[i].sum())
            assert r.token_ids == responses[i, :n].tolist() and r.group == str(uids[i])
            assert r.key_token_values == expected[i, :n].tolist()
            assert r.reward == float(scores[i]) and r.prompt in PROMPTS and r.reference in ANSWERS
    assert any(v != 0 for r in source.rollouts for v in r.key_token_values)
    return source


def test_v1_trainer_dumps_exact_key_tokens(tok, tmp_path, monkeypatch):
    from verl.trainer.ppo.v1 import trainer_base
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    folder = tmp_path / "dumps"
    trainer = object.__new__(PPOTrainerSync)
    trainer.config = OmegaConf.create({"algorithm": algorithm(folder, every=2, beta=0.5),
                                       "actor_rollout_ref": {"rollout": {"n": 4}}})
    trainer.tokenizer = tok
    batches = {}
    for step in (1, 2, 3, 4, 5):
        responses, mask, scores, uids, rewards, prompts, gts = text_batch(tok, shift=step)
        keys, rows = [], {}
        for i in range(8):
            n = int(mask[i].sum())
            keys.append(f"{uids[i]}_{i}_0")
            rows[keys[-1]] = {"uid": uids[i], "response_mask": mask[i, :n].clone(), "rm_scores": rewards[i, :n].clone(),
                              "responses": responses[i, :n].clone(), "prompts": torch.tensor(prompts[i]),
                              "reward_model": {"ground_truth": gts[i], "style": "rule"}}
        fake = FakeTransferQueue(rows)
        monkeypatch.setattr(trainer_base, "tq", fake)
        trainer.global_steps = step
        metrics: dict[str, float] = {}
        trainer._compute_advantage(_Meta(keys=keys, partition_id="train"), metrics)
        assert "ktae/abs_mean" in metrics
        assert (["prompts"] in fake.requests and ["reward_model"] in fake.requests) == (step in (1, 2, 4))
        batches[step] = (responses, mask, scores, uids)
    kv.state_of(trainer_base.PPOTrainer._compute_advantage).dumper(trainer.config.algorithm).flush()
    assert sorted(p.name for p in folder.iterdir()) == ["step_000001.jsonl", "step_000002.jsonl", "step_000004.jsonl"]
    cfg = ktae.KTAEConfig(beta=0.5, ignore_token_ids=(tok.pad_token_id, tok.eos_token_id))
    check_dump_reproduces(tok, folder, [1, 2, 4], batches, cfg)
    assert analyze_main([str(folder), "--quiet"]) == 0  # the records say which tokenizer and which options


def test_legacy_trainer_dumps_and_logs_metrics(tok, tmp_path, monkeypatch):
    from verl import DataProto
    from verl.trainer.ppo import ray_trainer

    folder = tmp_path / "legacy"
    config = algorithm(folder, every=3)
    state = kv.state_of(ray_trainer.compute_advantage)
    monkeypatch.setattr(state, "tokenizer", tok)
    step_owner = types.SimpleNamespace(global_steps=0)
    monkeypatch.setattr(state, "trainer", lambda: step_owner)
    monkeypatch.setattr(state, "pending_metrics", {})
    batches = {}
    for step in (3, 4, 6):
        responses, mask, scores, uids, rewards, prompts, gts = text_batch(tok, shift=step)
        width = max(map(len, prompts))
        prompt_ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompts])  # left-padded
        data = DataProto.from_dict(
            tensors={"responses": responses, "response_mask": mask, "token_level_rewards": rewards,
                     "prompts": prompt_ids},
            non_tensors={"uid": uids, "reward_model": np.array([{"ground_truth": g, "style": "rule"} for g in gts],
                                                               dtype=object)},
        )
        step_owner.global_steps = step
        ray_trainer.compute_advantage(data, adv_estimator="ktae", num_repeat=4, config=config)
        logged = ray_trainer.compute_data_metrics.__ktae_wrapped__  # the real one stays underneath
        assert callable(logged)
        assert "ktae/abs_mean" in state.pending_metrics and state.pending_metrics["ktae/mixed_group_fraction"] == 1.0
        batches[step] = (responses, mask, scores, uids)
    state.dumper(config).flush()
    cfg = ktae.KTAEConfig(ignore_token_ids=(tok.pad_token_id, tok.eos_token_id))
    check_dump_reproduces(tok, folder, [3, 6], batches, cfg)


def test_legacy_metrics_reach_the_step_metrics():
    """The legacy trainer logs compute_data_metrics(batch=...) each step: the wrapper adds the ktae/* metrics once."""
    class Trainer:  # stands in for RayPPOTrainer
        def __init__(self):
            self.tokenizer = None

    stub = types.SimpleNamespace(compute_advantage=lambda data, adv_estimator, **kw: data, RayPPOTrainer=Trainer,
                                 compute_data_metrics=lambda batch, use_critic: {"critic/score/mean": 1.0})
    kv.patch_ray_trainer(stub)
    kv.state_of(stub.compute_data_metrics).pending_metrics.update({"ktae/abs_mean": 0.25})
    assert stub.compute_data_metrics(batch=None, use_critic=False) == {"critic/score/mean": 1.0, "ktae/abs_mean": 0.25}
    assert stub.compute_data_metrics(batch=None, use_critic=False) == {"critic/score/mean": 1.0}
    from verl.trainer.ppo import ray_trainer

    assert hasattr(ray_trainer.compute_data_metrics, "__ktae_wrapped__")


def test_dump_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"add \+algorithm.ktae.dump_dir=DIR"):
        dump_options(OmegaConf.create({"ktae": {"dump_every": 5}}))
    with pytest.raises(ValueError, match="dump_every must be an integer >= 0"):
        dump_options(OmegaConf.create({"ktae": {"dump_every": "often", "dump_dir": str(tmp_path)}}))
    assert dump_options(OmegaConf.create({"ktae": {"beta": 2.0}})) == (0, None)
    # the dump keys are not KTAE options
    cfg = kv.ktae_config_from_verl(OmegaConf.create({"ktae": {"dump_every": 5, "dump_dir": "x", "beta": 2.0}}))
    assert cfg.beta == 2.0


def test_writer_runs_in_the_background_and_writes_whole_files(tmp_path, tok):
    started, release = threading.Event(), threading.Event()

    class SlowTokenizer:
        def decode(self, ids, skip_special_tokens=True):
            started.set()
            release.wait(5)
            return tok.decode(ids, skip_special_tokens=skip_special_tokens)

    dumper = KeyTokenDumper(tmp_path, every=1, tokenizer=SlowTokenizer())
    responses, mask, scores, uids, *_ = text_batch(tok)
    values = ktae.key_token_values(responses, mask, scores, uids, ktae.KTAEConfig())
    begin = time.perf_counter()
    dumper.submit(7, responses, mask, scores, list(uids), values, ktae.KTAEConfig())
    assert time.perf_counter() - begin < 1.0 and started.wait(5)
    assert not (tmp_path / "step_000007.jsonl").exists()  # still writing: no partial file under the real name
    release.set()
    dumper.close()
    lines = (tmp_path / "step_000007.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 8 and json.loads(lines[0])["step"] == 7
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    with pytest.raises(ValueError, match="dump_every must be a positive"):
        KeyTokenDumper(tmp_path, every=0)


def test_trl_trainer_dumps_exact_key_tokens(tmp_path, capsys):
    from datasets import Dataset

    from ktae.integrations.trl import KTAEGRPOConfig, KTAEGRPOTrainer
    from test_integrations_trl import tiny_model, tiny_tokenizer

    from transformers import AutoTokenizer

    folder_tok = tmp_path / "tok"
    tiny_tokenizer().save_pretrained(folder_tok)
    tokenizer = AutoTokenizer.from_pretrained(folder_tok)  # loaded from a folder: the dumps say which
    model = tiny_model(tokenizer)

    def even_digits(completions, **kwargs):
        return [float(sum(ch.isdigit() for ch in text) % 2 == 0) for text in completions]

    args = KTAEGRPOConfig(
        output_dir=str(tmp_path), use_cpu=True, report_to="none", max_steps=3, per_device_train_batch_size=8,
        num_generations=4, max_completion_length=8, logging_steps=1, save_strategy="no", learning_rate=1e-2,
        seed=0, disable_tqdm=True, temperature=1.0, ktae_dump_every=2, ktae_gamma=0.5, log_completions=True,
    )
    dataset = Dataset.from_dict({"prompt": ["12+3=", "4-1=", "5+5=", "9-2=", "7+a=", "b-3="],
                                 "answer": ["15", "3", "10", "7", "x", "y"]})
    trainer = KTAEGRPOTrainer(model=model, reward_funcs=even_digits, args=args, train_dataset=dataset,
                              processing_class=tokenizer)
    trainer.train()
    trainer._ktae_dumper.flush()
    folder = tmp_path / "key_tokens"
    assert sorted(p.name for p in folder.iterdir()) == ["step_000000.jsonl", "step_000002.jsonl"]
    source = load_source(folder)
    cfg = ktae.KTAEConfig(gamma=0.5, ignore_token_ids=(tokenizer.pad_token_id, tokenizer.eos_token_id))
    analysis = analyze(source.rollouts, tokenizer, progress=False)
    assert analysis.config == cfg and analysis.dump_check.exact and analysis.dump_check.tokens > 0
    for r in source.rollouts:
        assert r.prompt in dataset["prompt"] and r.reference == dataset["answer"][dataset["prompt"].index(r.prompt)]
        assert r.reward == float(sum(ch.isdigit() for ch in r.response) % 2 == 0)
    assert len({r.group for r in source.rollouts if r.step == 0}) == 2
    assert analyze_main([str(tmp_path), "--quiet"]) == 0  # the run folder (output_dir): no flag needed
    out = capsys.readouterr().out
    assert "recomputed with the dump's KTAE options, equal to the trainer's dumped values" in out

    # what TRL itself writes (log_completions): <output_dir>/completions/completions_<step>.parquet
    logged = load_source(tmp_path / "completions")
    assert logged.format == "trl" and logged.steps == [1, 2, 3] and any("TRL completions log" in n for n in logged.notes)
    step2 = [r for r in logged.rollouts if r.step == 2]
    assert len(step2) == 8 and len({r.group for r in step2}) == 2 and all(r.prompt in dataset["prompt"] for r in step2)
    for r in step2:
        assert r.score == float(sum(ch.isdigit() for ch in r.response) % 2 == 0)  # the even_digits column
    assert analyze_main([str(tmp_path / "completions"), "--tokenizer", str(folder_tok), "--quiet"]) == 0
    assert "re-tokenising the completion text" in capsys.readouterr().out
