"""The verl adapter on CPU: registration through the entry point, both trainer paths, config plumbing, errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import ktae
from ktae.integrations import verl as kv
from verl import DataProto
from verl.trainer.ppo import core_algos, ray_trainer
from verl.trainer.ppo.v1 import trainer_base
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils.tensordict_utils import list_of_dict_to_tensordict

PAD, EOS = 0, 2


def make_batch(seed: int = 0, groups: int = 5, per_group: int = 4, vocab: int = 12, max_len: int = 9):
    """Rollouts of interleaved groups, right-padded, EOS at the end of most, 0/1 scores with mixed groups."""
    g = torch.Generator().manual_seed(seed)
    batch = groups * per_group
    uids = np.array([f"prompt-{i % groups}" for i in range(batch)], dtype=object)  # interleaved groups
    lengths = torch.randint(2, max_len + 1, (batch,), generator=g)
    responses = torch.full((batch, max_len), PAD, dtype=torch.long)
    mask = torch.zeros(batch, max_len, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        responses[i, :n] = torch.randint(3, vocab, (n,), generator=g)
        if i % 3:
            responses[i, n - 1] = EOS
        mask[i, :n] = 1
    scores = (torch.rand(batch, generator=g) < 0.5).float()
    scores[0], scores[groups] = 1.0, 0.0  # group 0 is mixed
    rewards = torch.zeros(batch, max_len)
    rewards[torch.arange(batch), lengths - 1] = scores
    return responses, mask, scores, uids, rewards, lengths


def algorithm(estimator: str = "ktae", **ktae_options):
    cfg = {"adv_estimator": estimator, "gamma": 1.0, "lam": 1.0, "norm_adv_by_std_in_grpo": True,
           "use_kl_in_reward": False}
    if ktae_options:
        cfg["ktae"] = ktae_options
    return OmegaConf.create(cfg)


def test_entry_point_registers_on_import_verl():
    code = (
        "import json, sys, verl\n"
        "from verl.trainer.ppo import core_algos\n"
        "names = sorted(n for n in core_algos.ADV_ESTIMATOR_REGISTRY if 'ktae' in n)\n"
        "print(json.dumps({'names': names, 'loaded': 'ktae.integrations.verl' in sys.modules}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "VERL_USE_EXTERNAL_PLUGINS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"names": ["dr_grpo_ktae", "grpo_ktae", "ktae", "rloo_ktae"], "loaded": True}


@pytest.mark.parametrize(
    "estimator, options, norm, rollout",
    [
        ("ktae", {}, True, "grpo"),
        ("ktae", {}, False, "dr_grpo"),
        ("ktae", {"rollout": "rloo", "alpha": 0.5, "gamma": 0.0}, True, "rloo"),
        ("grpo_ktae", {"beta": 2.0, "fisher_at_one": "zero"}, True, "grpo"),
        ("dr_grpo_ktae", {}, True, "dr_grpo"),
        ("rloo_ktae", {"top": 0.5}, True, "rloo"),
    ],
)
def test_legacy_compute_advantage_equals_core(estimator, options, norm, rollout):
    responses, mask, scores, uids, rewards, _ = make_batch(seed=len(estimator) + len(options))
    data = DataProto.from_dict(
        tensors={"responses": responses, "response_mask": mask, "token_level_rewards": rewards},
        non_tensors={"uid": uids},
    )
    config = algorithm(estimator, ignore_token_ids=[PAD, EOS], **options)
    config.norm_adv_by_std_in_grpo = norm
    out = ray_trainer.compute_advantage(
        data, adv_estimator=estimator, norm_adv_by_std_in_grpo=norm, config=config
    )
    extra = {k: v for k, v in options.items() if k != "rollout"}
    cfg = ktae.KTAEConfig(rollout=rollout, ignore_token_ids=(PAD, EOS), **extra)
    expected, _ = ktae.ktae_advantages(responses, mask, scores, uids, cfg)
    torch.testing.assert_close(out.batch["advantages"], expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.batch["returns"], expected, rtol=0, atol=1e-6)
    # KTAE really is token level here: some rollout has different advantages on its unmasked positions
    assert any(len(set(expected[i][mask[i].bool()].tolist())) > 1 for i in range(len(uids)))


class FakeTransferQueue:
    """Stand-in for verl's TransferQueue client: per-key fields, jagged tensors like the real one."""

    def __init__(self, rows: dict[str, dict]):
        self.rows = rows
        self.requests: list[list[str]] = []

    def kv_batch_get(self, keys, partition_id, select_fields):
        self.requests.append(list(select_fields))
        return list_of_dict_to_tensordict(
            [{f: self.rows[k][f] for f in select_fields if f in self.rows[k]} for k in keys]
        )

    def kv_batch_put(self, keys, partition_id, fields):
        for i, key in enumerate(keys):
            for name in fields.keys():
                self.rows[key][name] = fields[name][i]
        return types.SimpleNamespace(keys=keys, partition_id=partition_id)


class _Meta(types.SimpleNamespace):
    """Stand-in for TransferQueue's KVBatchMeta: keys, partition and a length."""

    def __len__(self):
        return len(self.keys)


def v1_setup(monkeypatch, estimator: str, with_responses: bool = True):
    responses, mask, scores, uids, rewards, lengths = make_batch(seed=7)
    rows = {}
    keys = []
    for i, n in enumerate(lengths.tolist()):
        key = f"{uids[i]}_{i}_0"
        keys.append(key)
        rows[key] = {"uid": uids[i], "response_mask": mask[i, :n].clone(), "rm_scores": rewards[i, :n].clone()}
        if with_responses:
            rows[key]["responses"] = responses[i, :n].clone()
    fake = FakeTransferQueue(rows)
    monkeypatch.setattr(trainer_base, "tq", fake)
    trainer = object.__new__(PPOTrainerSync)
    trainer.config = OmegaConf.create(
        {"algorithm": {**OmegaConf.to_container(algorithm(estimator)), "rollout_correction": None},
         "actor_rollout_ref": {"rollout": {"n": 4}}}
    )
    trainer.tokenizer = types.SimpleNamespace(pad_token_id=PAD, eos_token_id=EOS)
    return trainer, _Meta(keys=keys, partition_id="train"), fake, (responses, mask, scores, uids)


def test_v1_trainer_fetches_response_ids(monkeypatch):
    trainer, meta, fake, (responses, mask, scores, uids) = v1_setup(monkeypatch, "ktae")
    metrics: dict[str, float] = {}
    trainer._compute_advantage(meta, metrics)
    assert ["responses"] in fake.requests
    cfg = ktae.KTAEConfig(ignore_token_ids=(PAD, EOS))  # pad/EOS from the trainer's tokenizer
    expected, _ = ktae.ktae_advantages(responses, mask, scores, uids, cfg)
    for i, key in enumerate(meta.keys):
        n = int(mask[i].sum())
        torch.testing.assert_close(fake.rows[key]["advantages"], expected[i, :n], rtol=0, atol=1e-6)
    assert {"ktae/abs_mean", "ktae/mixed_group_fraction", "ktae/mean_in_correct"} <= set(metrics)
    assert 0 < metrics["ktae/mixed_group_fraction"] <= 1 and metrics["ktae/abs_mean"] > 0


def test_v1_trainer_leaves_other_estimators_alone(monkeypatch):
    trainer, meta, fake, (responses, mask, scores, uids) = v1_setup(monkeypatch, "grpo", with_responses=False)
    trainer._compute_advantage(meta, {})
    assert all("responses" not in request for request in fake.requests)
    expected = ktae.grpo_advantages(scores, uids)
    first = fake.rows[meta.keys[0]]["advantages"]
    torch.testing.assert_close(first, expected[0].expand_as(first).float(), rtol=0, atol=1e-5)


def test_v1_trainer_without_stored_ids_fails_clearly(monkeypatch):
    trainer, meta, fake, _ = v1_setup(monkeypatch, "ktae", with_responses=False)
    with pytest.raises(ValueError, match="needs the 'responses' field"):
        trainer._compute_advantage(meta, {})


def test_missing_ids_give_a_clear_error():
    responses, mask, scores, uids, rewards, _ = make_batch()
    fn = core_algos.get_adv_estimator_fn("ktae")
    with pytest.raises(ValueError, match="needs the response token ids"):
        fn(token_level_rewards=rewards, response_mask=mask, index=uids, config=algorithm())
    data = DataProto.from_dict(tensors={"response_mask": mask, "token_level_rewards": rewards},
                               non_tensors={"uid": uids})
    with pytest.raises(ValueError, match="external_lib=ktae.integrations.verl"):
        ray_trainer.compute_advantage(data, adv_estimator="ktae", config=algorithm())


def test_legacy_trainer_tokenizer_gives_the_ignored_ids(monkeypatch):
    class Trainer:  # stands in for RayPPOTrainer: the wrapper records the tokenizer its __init__ stores
        def __init__(self, tokenizer):
            self.tokenizer = tokenizer

    stub = types.SimpleNamespace(compute_advantage=lambda data, adv_estimator, **kw: data, RayPPOTrainer=Trainer)
    kv.patch_ray_trainer(stub)
    tokenizer = types.SimpleNamespace(pad_token_id=PAD, eos_token_id=EOS)
    Trainer(tokenizer)
    assert kv.state_of(stub.compute_advantage).tokenizer is tokenizer  # each patched trainer holds its own state
    assert kv.state_of(stub.compute_advantage) is not kv.state_of(ray_trainer.compute_advantage)
    monkeypatch.setattr(kv.state_of(ray_trainer.compute_advantage), "tokenizer", tokenizer)
    responses, mask, scores, uids, rewards, _ = make_batch(seed=11)
    data = DataProto.from_dict(
        tensors={"responses": responses, "response_mask": mask, "token_level_rewards": rewards},
        non_tensors={"uid": uids},
    )
    out = ray_trainer.compute_advantage(data, adv_estimator="ktae", config=algorithm())
    expected, _ = ktae.ktae_advantages(responses, mask, scores, uids, ktae.KTAEConfig(ignore_token_ids=(PAD, EOS)))
    torch.testing.assert_close(out.batch["advantages"], expected, rtol=0, atol=1e-6)
    assert hasattr(ray_trainer.RayPPOTrainer.__init__, "__ktae_wrapped__")


def test_direct_call_and_tokenizer_default():
    responses, mask, scores, uids, rewards, _ = make_batch(seed=3)
    tokenizer = types.SimpleNamespace(pad_token_id=PAD, eos_token_id=[EOS, 11])
    adv, ret = kv.compute_ktae_advantage(rewards, mask, uids, algorithm(), responses=responses, tokenizer=tokenizer)
    expected, _ = ktae.ktae_advantages(responses, mask, scores, uids, ktae.KTAEConfig(ignore_token_ids=(PAD, EOS, 11)))
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-6)
    assert adv.dtype == torch.float32


def test_config_plumbing_errors():
    with pytest.raises(ValueError, match="unknown option"):
        kv.ktae_config_from_verl(algorithm(alpah=1.0), "ktae")
    with pytest.raises(ValueError, match="composes KTAE with 'rloo'"):
        kv.ktae_config_from_verl(algorithm("rloo_ktae", rollout="grpo"), "rloo_ktae")
    with pytest.raises(ValueError, match="must be one of"):
        kv.ktae_config_from_verl(algorithm(), "grpo")
    with pytest.raises(ValueError, match="alpha"):
        kv.ktae_config_from_verl(algorithm(alpha=-1.0, ignore_token_ids=[]), "ktae")
    cfg = kv.ktae_config_from_verl(algorithm(ignore_token_ids=[]), "ktae", types.SimpleNamespace(pad_token_id=5))
    assert cfg.ignore_token_ids == () and cfg.rollout == "grpo"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert kv.ktae_config_from_verl(None, "dr_grpo_ktae").rollout == "dr_grpo"


def test_install_is_idempotent():
    wrapped = ray_trainer.compute_advantage
    v1 = trainer_base.PPOTrainer._compute_advantage
    kv.install()
    kv.patch_ray_trainer(ray_trainer)
    kv.patch_v1_trainer(trainer_base)
    assert ray_trainer.compute_advantage is wrapped and trainer_base.PPOTrainer._compute_advantage is v1
    assert not hasattr(wrapped.__ktae_wrapped__, "__ktae_wrapped__")
    assert core_algos.get_adv_estimator_fn("ktae").__ktae_estimator__ == "ktae"


def test_reward_functions():
    good, bad = "so the answer is $\\boxed{\\frac{1}{2}}$", "I think it is \\boxed{3}"
    assert kv.math_score("math", good, "0.5") == {"score": 1.0, "acc": 1.0}
    assert kv.math_score("math", bad, "0.5") == {"score": 0.0, "acc": 0.0}
    assert kv.dapo_score("math", bad, "1/2") == {"score": -1.0, "acc": 0.0}
    assert kv.dapo_score("math", good, "1/2")["score"] == 1.0


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples", "verl")


def script_overrides(script: str, tmp_path, *extra: str) -> list[str]:
    """The Hydra overrides a launch script passes to verl's main_ppo (a stand-in python3 records them)."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir(exist_ok=True)
    fake = fake_bin / "python3"
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}", "DATA_DIR": str(tmp_path),
           "MODEL_PATH": "/models/Qwen2.5-Math-7B"}
    out = subprocess.run(["bash", os.path.join(EXAMPLES, script), *extra], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    args = out.stdout.splitlines()
    assert args[:2] == ["-m", "verl.trainer.main_ppo"]
    return args[2:]


def test_launch_scripts_compose_valid_verl_configs(tmp_path):
    from hydra import compose, initialize_config_dir

    import verl.trainer.main_ppo as main_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.import_utils import load_extern_object

    config_dir = os.path.join(os.path.dirname(main_ppo.__file__), "config")
    configs = {}
    for name in ("grpo_ktae", "dapo_ktae"):
        overrides = script_overrides(f"{name}.sh", tmp_path, "algorithm.ktae.beta=2.0")
        with initialize_config_dir(config_dir=config_dir, version_base=None):
            configs[name] = compose(config_name="ppo_trainer", overrides=overrides)
    for name, cfg in configs.items():
        validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
        assert cfg.algorithm.adv_estimator == "ktae" and not need_critic(cfg)
        assert kv.ktae_config_from_verl(cfg.algorithm, "ktae") == ktae.KTAEConfig(beta=2.0)
        assert cfg.data.train_batch_size == 1024 and cfg.actor_rollout_ref.rollout.n == 16
        assert cfg.actor_rollout_ref.actor.ppo_mini_batch_size == 128 and cfg.actor_rollout_ref.actor.optim.lr == 1e-6
        assert (cfg.data.max_prompt_length, cfg.data.max_response_length) == (1024, 3072)
        assert cfg.actor_rollout_ref.actor.loss_agg_mode == "token-mean"
        assert cfg.data.train_files == os.path.join(str(tmp_path), "train.parquet")
        score = load_extern_object(cfg.reward.custom_reward_function.path, cfg.reward.custom_reward_function.name)
        assert score is (kv.math_score if name == "grpo_ktae" else kv.dapo_score)
    grpo, dapo = configs["grpo_ktae"], configs["dapo_ktae"]
    assert need_reference_policy(grpo) and grpo.actor_rollout_ref.actor.kl_loss_type == "low_var_kl"
    assert grpo.actor_rollout_ref.actor.kl_loss_coef == 0.001 and grpo.actor_rollout_ref.actor.clip_ratio_high == 0.2
    assert not dapo.actor_rollout_ref.actor.use_kl_loss and dapo.actor_rollout_ref.actor.clip_ratio_high == 0.24
    assert dapo.reward.reward_manager.name == "dapo" and dapo.algorithm.filter_groups.enable
    assert dapo.algorithm.filter_groups.metric == "acc"
    buffer = dapo.reward.reward_kwargs
    assert (buffer.max_resp_len, buffer.overlong_buffer_cfg.len, buffer.overlong_buffer_cfg.penalty_factor) == (
        3072, 512, 1.0)


def test_prepare_data_writes_verl_parquet(tmp_path):
    import importlib.util

    import datasets
    import pandas as pd

    train = datasets.Dataset.from_dict({
        "problem": ["What is 1+1?", "What is 2+3?", "Hard one", "No answer here"],
        "level": ["Level 3", "Level 1", "Level 5", "Level 4"],
        "solution": ["So $\\boxed{2}$.", "It is $\\boxed{5}$.", "We get $\\boxed{\\frac{1}{2}}$.", "unknown"],
    })
    train.save_to_disk(str(tmp_path / "train_src"))
    spec = importlib.util.spec_from_file_location("prepare_data", os.path.join(EXAMPLES, "prepare_data.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shared = os.path.join(REPO, "..", "shared", "data", "evaluation_suite")
    val_args = ["--val", shared, "--val-split", "all"] if os.path.isdir(shared) else ["--val", str(tmp_path / "train_src"), "--val-split", "train"]
    assert module.main(["--out", str(tmp_path / "out"), "--train", str(tmp_path / "train_src"), *val_args]) == 0
    rows = pd.read_parquet(tmp_path / "out" / "train.parquet")
    assert [r["ground_truth"] for r in rows["reward_model"]] == ["2", "\\frac{1}{2}"]  # levels 3-5 with an answer
    prompt = list(rows["prompt"][0])
    assert prompt[0]["role"] == "system" and "\\boxed{}" in prompt[0]["content"]
    assert prompt[1] == {"role": "user", "content": "What is 1+1?"}
    val = pd.read_parquet(tmp_path / "out" / "val.parquet")
    assert len(val) > 0 and set(val.columns) >= {"data_source", "prompt", "ability", "reward_model", "extra_info"}
