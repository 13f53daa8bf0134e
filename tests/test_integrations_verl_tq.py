"""verl's v1 trainer against a real TransferQueue (controller + 2 SimpleStorage units as Ray actors, on CPU), and
the plug-in inside real Ray workers.

TransferQueue's controller and each storage unit reserve one logical Ray CPU, so the local Ray instance declares
3 logical CPUs; the 2 physical cores of a small machine are enough (about 20 s to start everything).
"""
from __future__ import annotations

import types

import pytest
import torch
from omegaconf import OmegaConf

ray = pytest.importorskip("ray")
tq = pytest.importorskip("transfer_queue")

import ktae  # noqa: E402
from ktae.integrations import doctor  # noqa: E402
from ktae.integrations import verl as kv  # noqa: E402
from test_integrations_verl import EOS, PAD, algorithm, make_batch  # noqa: E402
from verl.trainer.ppo.v1 import trainer_base  # noqa: E402
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync  # noqa: E402
from verl.utils.tensordict_utils import list_of_dict_to_tensordict  # noqa: E402


@pytest.fixture(scope="module")
def transfer_queue():
    assert not ray.is_initialized()
    ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        tq.init(OmegaConf.create({"backend": {"storage_backend": "SimpleStorage",
                                              "SimpleStorage": {"num_data_storage_units": 2}}}))
        yield tq
    finally:
        try:
            tq.close()
        finally:
            ray.shutdown()


def put_rollouts(client, seed: int, partition: str):
    """Rollouts stored the way verl's agent loop stores them: one key per response, jagged fields."""
    responses, mask, scores, uids, rewards, lengths = make_batch(seed=seed)
    keys = [f"{uids[i]}_{i}_0" for i in range(len(uids))]  # verl's {uid}_{session}_{turn} key format
    rows = [{"uid": uids[i], "responses": responses[i, :n].clone(), "response_mask": mask[i, :n].clone(),
             "rm_scores": rewards[i, :n].clone()} for i, n in enumerate(lengths.tolist())]
    meta = client.kv_batch_put(keys=keys, partition_id=partition, fields=list_of_dict_to_tensordict(rows))
    return meta, keys, (responses, mask, scores, uids)


def v1_trainer(estimator: str, **ktae_options):
    trainer = object.__new__(PPOTrainerSync)  # only what _compute_advantage reads: config and tokenizer
    trainer.config = OmegaConf.create(
        {"algorithm": {**OmegaConf.to_container(algorithm(estimator, **ktae_options)), "rollout_correction": None},
         "actor_rollout_ref": {"rollout": {"n": 4}}}
    )
    trainer.tokenizer = types.SimpleNamespace(pad_token_id=PAD, eos_token_id=EOS)
    return trainer


def test_real_transfer_queue_v1_compute_advantage(transfer_queue):
    assert trainer_base.tq is transfer_queue  # the trainer talks to the real client, no stand-in
    meta, keys, (responses, mask, scores, uids) = put_rollouts(transfer_queue, seed=11, partition="train")
    metrics: dict[str, float] = {}
    out = v1_trainer("ktae", beta=2.0)._compute_advantage(meta, metrics)
    assert {"advantages", "returns"} <= set(out.fields)
    stored = transfer_queue.kv_batch_get(keys=keys, partition_id="train", select_fields=["advantages", "returns"])
    expected, _ = ktae.ktae_advantages(responses, mask, scores, uids,
                                       ktae.KTAEConfig(beta=2.0, ignore_token_ids=(PAD, EOS)))
    for i in range(len(keys)):
        n = int(mask[i].sum())
        torch.testing.assert_close(stored["advantages"][i], expected[i, :n], rtol=0, atol=1e-6)
        torch.testing.assert_close(stored["returns"][i], expected[i, :n], rtol=0, atol=1e-6)
    assert int((expected != 0).sum()) and any(len(set(expected[i][mask[i].bool()].tolist())) > 1
                                              for i in range(len(keys)))
    values = expected - ktae.grpo_advantages(scores, uids)[:, None] * mask
    assert metrics["ktae/abs_mean"] == pytest.approx(float(values[mask.bool()].abs().mean()), rel=1e-5)
    assert 0 < metrics["ktae/mixed_group_fraction"] <= 1
    # another estimator goes straight through verl, without asking for the response ids
    meta, keys, (_, _, scores, uids) = put_rollouts(transfer_queue, seed=12, partition="grpo")
    v1_trainer("grpo")._compute_advantage(meta, {})
    stored = transfer_queue.kv_batch_get(keys=keys, partition_id="grpo", select_fields=["advantages"])
    torch.testing.assert_close(stored["advantages"][0][0], ktae.grpo_advantages(scores, uids)[0], rtol=0, atol=1e-5)


def test_ray_workers_load_the_plugin(transfer_queue):
    probe = ray.remote(num_cpus=0)(doctor._worker_probe)
    env = {"VERL_USE_EXTERNAL_PLUGINS": "none"}
    off = ray.get(probe.options(runtime_env={"env_vars": env}).remote(), timeout=600)
    assert off["loaded_by_verl"] is False and off["estimators"] == []
    # what `ktae verl` sets: the workers import the plug-in with verl even with plug-ins switched off
    on = ray.get(probe.options(runtime_env={"env_vars": {**env, "VERL_USE_EXTERNAL_MODULES": kv.__name__}}).remote(),
                 timeout=600)
    assert on["loaded_by_verl"] and on["legacy_wrapped"] and on["v1_wrapped"]
    assert on["estimators"] == ["dr_grpo_ktae", "grpo_ktae", "ktae", "rloo_ktae"]
    name, ok, detail = doctor._ray_check()  # the plain route: the entry point
    assert ok, detail
