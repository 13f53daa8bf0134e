"""The shared front-end layer: a KTAEConfig field or a key-token metric is written once and reaches ``ktae train``,
the verl plug-in and the TRL trainer; options from every source meet one validation; estimator spellings."""
from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from ktae.frontend import metrics as shared_metrics
from ktae.frontend.metrics import key_token_metrics, upgrade_record
from ktae.frontend.options import ktae_config, parse_estimator
from ktae.frontend.outcomes import as_verdict, is_correct, mixed_groups

SRC = str(Path(__file__).resolve().parents[1] / "src")

NEW_FIELD = '''
import dataclasses
import ktae.core.config as core_config


@dataclasses.dataclass(frozen=True)
class Extended(core_config.KTAEConfig):
    delta: float = dataclasses.field(default=0.5, metadata={"help": "a field added for this test"})


core_config.KTAEConfig = Extended  # as if the field had been written in ktae/core/config.py

from ktae.train.config import make_config, parse_args
assert parse_args(["--ktae.delta", "0.25"]).ktae.delta == 0.25
assert make_config(**{"ktae": {"delta": 0.125}}).ktae_config().delta == 0.125
import ktae.integrations.verl as kv
assert kv.ktae_config_from_verl({"ktae": {"delta": 0.3}}, "grpo_ktae").delta == 0.3
from ktae.integrations.trl import KTAEGRPOConfig
args = KTAEGRPOConfig(output_dir=%(out)r, use_cpu=True, report_to="none", ktae_delta=0.75)
assert args.ktae_config(()).delta == 0.75
print("reached all three")
'''


def test_a_new_ktae_field_reaches_trainer_verl_and_trl(tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC, "VERL_USE_EXTERNAL_PLUGINS": "none"}
    out = subprocess.run([sys.executable, "-c", NEW_FIELD % {"out": str(tmp_path)}], capture_output=True, text=True,
                         env=env, timeout=600)
    assert "reached all three" in out.stdout, out.stderr[-3000:]


def _batch():
    responses = torch.tensor([[5, 6, 1], [5, 7, 1], [8, 6, 1], [8, 9, 1]])
    mask = torch.ones_like(responses)
    return responses, mask, torch.tensor([1.0, 0.0, 1.0, 0.0]), torch.tensor([0, 0, 1, 1])


def test_a_new_metric_reaches_trainer_verl_and_trl(monkeypatch, tmp_path):
    from verl import DataProto
    from verl.trainer.ppo import ray_trainer

    import ktae
    import ktae.integrations.verl as kv
    from ktae.train.loop import step_record

    monkeypatch.setitem(shared_metrics.KEY_TOKEN_METRICS, "test_metric", lambda batch: float(batch.values.numel()))
    responses, mask, scores, group = _batch()
    values = ktae.key_token_values(responses, mask, scores, group)
    # ktae train: the step's record (metrics.jsonl and the console)
    batch = types.SimpleNamespace(response_mask=mask, rewards=scores, group=group)
    run = types.SimpleNamespace(ktae_config=ktae.KTAEConfig(), skipped_total=0)
    record = step_record(1, {}, {}, values, batch, dict.fromkeys(("generation", "reward", "advantage", "update"), 0.0),
                         1.0, run)
    assert record["ktae/test_metric"] == 12.0 and record["ktae/mixed_group_fraction"] == 1.0
    # verl: the metrics the legacy trainer adds to its step's
    state = kv.state_of(ray_trainer.compute_advantage)
    monkeypatch.setattr(state, "pending_metrics", {})
    data = DataProto.from_dict(tensors={"responses": responses, "response_mask": mask,
                                        "token_level_rewards": torch.nn.functional.pad(scores[:, None], (2, 0))},
                               non_tensors={"uid": __import__("numpy").array(["a", "a", "b", "b"], dtype=object)})
    ray_trainer.compute_advantage(data, adv_estimator="grpo_ktae", config={"ktae": {"ignore_token_ids": []}})
    assert state.pending_metrics["ktae/test_metric"] == 12.0
    # TRL: what the trainer appends to its logged metrics
    from datasets import Dataset

    from ktae.integrations.trl import KTAEGRPOConfig, KTAEGRPOTrainer
    from test_integrations_trl import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    args = KTAEGRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_steps=1,
                          per_device_train_batch_size=8, num_generations=4, max_completion_length=4,
                          logging_steps=1, save_strategy="no", seed=0, disable_tqdm=True)
    trainer = KTAEGRPOTrainer(model=tiny_model(tokenizer), reward_funcs=lambda completions, **kw: [1.0, 0.0] * 4,
                              args=args, train_dataset=Dataset.from_dict({"prompt": ["1+2=", "3-1="] * 4}),
                              processing_class=tokenizer)
    trainer.train()
    assert any(entry.get("ktae/test_metric") for entry in trainer.state.log_history)


def test_options_from_every_source_meet_one_validation():
    from omegaconf import OmegaConf

    from ktae.core.config import KTAEConfig

    assert ktae_config(OmegaConf.create({"alpha": 0.5})) == KTAEConfig(alpha=0.5)
    assert ktae_config(KTAEConfig(beta=2.0), where="x") == KTAEConfig(beta=2.0)
    assert ktae_config({"ignore_token_ids": "3, 4", "top": "0.5"}).ignore_token_ids == (3, 4)
    assert ktae_config({"ignore_token_ids": None}, defaults={"ignore_token_ids": (1,)}).ignore_token_ids == (1,)
    with pytest.raises(ValueError, match=r"^algorithm.ktae: unknown option\(s\) \['alpah'\]"):
        ktae_config({"alpah": 1}, where="algorithm.ktae")
    with pytest.raises(ValueError, match=r"^--config: KTAEConfig.alpha must be >= 0"):
        ktae_config({"alpha": -1}, where="--config")
    with pytest.raises(ValueError, match=r"^--config.beta: expected a number, got 'x'"):
        ktae_config({"beta": "x"}, where="--config")
    assert ktae_config({"warn_after": 3}, extra=("warn_after",)) == KTAEConfig()


def test_estimator_spellings():
    assert parse_estimator("grpo+ktae") == parse_estimator("grpo_ktae") == ("grpo", True)
    assert parse_estimator("ktae") == (None, True) and parse_estimator("rloo") == ("rloo", False)
    with pytest.raises(ValueError, match="estimator: expected one of"):
        parse_estimator("ppo")
    from ktae.train.config import make_config

    cfg = make_config(estimator="dr_grpo_ktae")
    assert cfg.uses_ktae and cfg.ktae_config().rollout == "dr_grpo"
    assert not make_config(estimator="rloo").uses_ktae


def test_outcomes_and_metric_names():
    assert is_correct([0.5, 0.0], 0.0).tolist() == [True, False]
    assert [as_verdict(v) for v in (True, "No", -1, 1, "2")] == [True, False, False, True, None]
    responses, mask, scores, group = _batch()
    assert mixed_groups(scores, group) == (2, 2)
    only_rate = key_token_metrics(None, mask, scores, group, 0.0)
    assert only_rate == {"ktae/mixed_group_fraction": 1.0}
    old = {"step": 3, "ktae_abs_mean": 0.1, "ktae_pos_frac": 0.4, "ktae_neg_frac": 0.5, "mixed_groups": 0.25}
    assert upgrade_record(old) == {"step": 3, "ktae/abs_mean": 0.1, "ktae/positive_fraction": 0.4,
                                   "ktae/negative_fraction": 0.5, "ktae/mixed_group_fraction": 0.25}
