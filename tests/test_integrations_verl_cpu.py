"""verl's own trainer loop with KTAE, on this CPU (``ktae verl --cpu``): main_ppo for 3 steps in each trainer (v1:
DAPO+KTAE with a rehearsal model; legacy: GRPO+KTAE), and a GRPO baseline resumed from the legacy run's step-2
checkpoint. Three runs of about 1.5 minutes each on 2 idle cores. A tiny Qwen2 and the parquet files are built
here (tests/verl_cpu_job.py); nothing comes from the Hub.

Each run is a subprocess (``python -m ktae verl --cpu ...``: Ray, TransferQueue, FSDP2 on gloo, the ``hf`` rollout),
shared by the assertions through module-scoped fixtures. ``tests/verl_cpu_capture.py`` rides along in the Ray
workers (``VERL_USE_EXTERNAL_MODULES``) and records the advantages verl's actor receives for its update, which are
compared with ``ktae.ktae_advantages`` on the rollouts of the same step (the key-token dump).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("verl")
pytest.importorskip("ray")

import ktae  # noqa: E402
import verl_cpu_job as job  # noqa: E402
from ktae.integrations import verl_launch  # noqa: E402

pytestmark = pytest.mark.verl_loop
TESTS = Path(__file__).parent
SRC = Path(ktae.__file__).parent.parent
STEP_LINE = re.compile(r"step:(\d+) - (.*)$")
#: ray/_private/node.py: the raylet did not register within its fixed 30 s (seen when the machine is overloaded)
RAY_START_TIMEOUT = "The current node timed out during startup"


class Run:
    """One finished ``ktae verl --cpu`` run: exit status, log, metrics per step, folders."""

    def __init__(self, folder: Path, rc: int, log: str):
        self.folder, self.rc, self.log = folder, rc, log
        self.steps: dict[int, dict[str, float]] = {}
        for line in log.splitlines():
            match = STEP_LINE.search(line)
            if match:
                items = (item.split(":", 1) for item in match.group(2).split(" - ") if ":" in item)
                self.steps[int(match.group(1))] = {k.strip(): _number(v) for k, v in items}

    def explain(self) -> str:
        return f"rc={self.rc}, steps={sorted(self.steps)}; log tail:\n{self.log[-4000:]}"


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def run_verl(folder: Path, model: str, data: tuple[str, str], *extra: str, v1: bool = True,
             estimator: str = "ktae", reward: str = "parity_score", options: tuple[str, ...] = (),
             timeout: int = 420) -> Run:
    folder.mkdir(parents=True, exist_ok=True)
    args = job.overrides(model, *data, folder, steps=3, estimator=estimator, v1=v1)
    args = [a.replace("name=parity_score", f"name={reward}") for a in args]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS), env.get("PYTHONPATH", "")])
    env["VERL_USE_EXTERNAL_MODULES"] = "verl_cpu_capture"
    env["KTAE_TEST_CAPTURE_DIR"] = str(folder / "capture")
    env["KTAE_CACHE"] = str(folder.parent / "cache")
    env.pop("VERL_PLATFORM", None)
    command = [sys.executable, "-m", "ktae", "verl", "--cpu", *options, *args, *extra]
    for attempt in range(2):  # a second try only when Ray's own start-up timed out (a crowded machine)
        with open(folder / "log.txt", "w") as log:
            rc = subprocess.run(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                                timeout=timeout).returncode
        text = (folder / "log.txt").read_text(errors="replace")
        if rc == 0 or RAY_START_TIMEOUT not in text:
            break
    return Run(folder, rc, text)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("verl_cpu")
    return root, job.build_model(root / "model"), job.build_data(root / "data")


DUMP = ("+algorithm.ktae.dump_every=1",)
#: DAPO as the paper runs it, scaled to 16 tokens: +1/-1 rewards with verl's dapo reward manager and its overlong
#: penalty, dynamic sampling on acc (filter_groups), clip-higher, token-mean
DAPO = (
    "reward.reward_manager.name=dapo", "++reward.reward_kwargs.max_resp_len=16",
    "++reward.reward_kwargs.overlong_buffer_cfg.enable=True", "++reward.reward_kwargs.overlong_buffer_cfg.len=8",
    "++reward.reward_kwargs.overlong_buffer_cfg.penalty_factor=0.5",
    "++reward.reward_kwargs.overlong_buffer_cfg.log=False",
    "algorithm.filter_groups.enable=True", "algorithm.filter_groups.metric=acc",
    "algorithm.filter_groups.max_inflight_gen_batches=3",
    "actor_rollout_ref.actor.clip_ratio_low=0.2", "actor_rollout_ref.actor.clip_ratio_high=0.28",
    "actor_rollout_ref.actor.loss_agg_mode=token-mean",
)


@pytest.fixture(scope="module")
def v1_run(toy):
    """v1 trainer (verl's default), DAPO+KTAE, 3 steps, rehearsal: the toy Qwen2 plays the user's model and is
    swapped for a tiny random model of its family with its tokenizer and chat template."""
    root, model, data = toy
    folder = root / "v1_dapo"
    return run_verl(folder, model, data, *DUMP, f"+algorithm.ktae.dump_dir={folder / 'dump'}", *DAPO,
                    reward="dapo_parity_score", options=("--rehearse",))


@pytest.fixture(scope="module")
def legacy_run(toy):
    """Legacy trainer (trainer.use_v1=false), GRPO+KTAE, 3 steps, checkpoints at steps 2 and 3, greedy validation
    after step 3."""
    root, model, data = toy
    folder = root / "legacy_grpo"
    return run_verl(folder, model, data, *DUMP, f"+algorithm.ktae.dump_dir={folder / 'dump'}", "trainer.test_freq=3",
                    v1=False)


def _ktae_steps(run: Run) -> None:
    assert run.rc == 0, run.explain()
    assert sorted(run.steps) == [1, 2, 3], run.explain()
    for step, metrics in run.steps.items():
        assert {"ktae/abs_mean", "ktae/mixed_group_fraction", "ktae/mean_in_correct"} <= set(metrics), step
    assert max(m["ktae/mixed_group_fraction"] for m in run.steps.values()) > 0
    assert max(m["ktae/abs_mean"] for m in run.steps.values()) > 0


def _trained_on_ktae(run: Run) -> None:
    """The advantages verl's actor received equal ktae.ktae_advantages on the rollouts of each dumped step."""
    dumps = sorted((run.folder / "dump").glob("step_*.jsonl"))
    assert [int(p.stem.split("_")[1]) for p in dumps] == [1, 2, 3]
    expected: dict[tuple[int, ...], list[torch.Tensor]] = {}
    for path in dumps:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        width = max(len(r["token_ids"]) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width)
        for i, r in enumerate(rows):
            ids[i, : len(r["token_ids"])] = torch.tensor(r["token_ids"])
            mask[i, : len(r["token_ids"])] = 1
        config = dict(rows[0]["ktae_config"], ignore_token_ids=tuple(rows[0]["ktae_config"]["ignore_token_ids"]))
        advantages, _ = ktae.ktae_advantages(ids, mask, torch.tensor([r["reward"] for r in rows]),
                                             [r["group"] for r in rows], ktae.KTAEConfig(**config))
        for i, r in enumerate(rows):
            expected.setdefault(tuple(r["token_ids"]), []).append(advantages[i, : len(r["token_ids"])])
    captured = sorted((run.folder / "capture").glob("update_*.pt"))
    assert len(captured) == 3, captured  # one PPO update per step
    checked = 0
    for path in captured:
        record = torch.load(path)
        for adv, ids, mask in zip(record["advantages"], record["responses"], record["response_mask"]):
            keep = mask.bool()
            key = tuple(ids[keep].tolist())
            assert key in expected, "the actor trained on a rollout that is not in the key-token dump"
            assert any(torch.allclose(adv[keep].float(), e.float(), atol=1e-5) for e in expected[key])
            checked += 1
    assert checked == 3 * 2 * 4  # 3 steps x 2 prompts x 4 responses


def test_v1_trainer_runs_dapo_ktae_steps(v1_run):
    _ktae_steps(v1_run)
    log = v1_run.log
    assert "ktae verl: ok: CPU runtime" in log
    assert "CPU setting: trainer.n_gpus_per_node=8 -> 1" in log  # the user's GPU value, replaced and said
    assert "ktae verl: ok: rehearsal: actor_rollout_ref.model.path=" in log and "built now" in log


def test_v1_trainer_trains_on_ktae_advantages(v1_run):
    _trained_on_ktae(v1_run)


def test_dapo_rewards_are_shaped_and_groups_filtered(v1_run):
    assert v1_run.rc == 0, v1_run.explain()
    rewards = [json.loads(line)["reward"] for path in (v1_run.folder / "dump").glob("*.jsonl")
               for line in path.read_text().splitlines()]
    assert any(r not in (-1.0, 1.0) for r in rewards)  # the overlong penalty shaped some (+1/-1 minus up to 0.5)
    assert any(r > 0 for r in rewards) and any(r < 0 for r in rewards)
    # dynamic sampling kept only groups with both right and wrong answers
    assert all(m["ktae/mixed_group_fraction"] == 1.0 for m in v1_run.steps.values()), v1_run.steps


def test_rollout_samples_from_the_trained_weights(v1_run):
    # the actor and the hf rollout agree on the log-probs of the sampled tokens after every update: the rollout
    # got the new weights through verl's sync (stale weights would drift apart with lr 1e-3)
    assert v1_run.rc == 0, v1_run.explain()
    for metrics in v1_run.steps.values():
        assert metrics["training/rollout_probs_diff_max"] < 0.01, metrics


def test_legacy_trainer_runs_ktae_steps(legacy_run):
    _ktae_steps(legacy_run)
    _trained_on_ktae(legacy_run)
    assert any(key.startswith("val-core/") for key in legacy_run.steps[3]), legacy_run.steps[3]  # validated


def test_checkpoint_resumes_with_grpo_baseline(toy, legacy_run):
    """The legacy run's step-2 checkpoint, continued to step 3 with trainer.resume_mode=auto, as plain GRPO."""
    assert legacy_run.rc == 0, legacy_run.explain()
    root, model, data = toy
    folder = root / "resumed_grpo"
    checkpoints = folder / "checkpoints"
    shutil.copytree(legacy_run.folder / "checkpoints" / "global_step_2", checkpoints / "global_step_2")
    (checkpoints / "latest_checkpointed_iteration.txt").write_text("2")
    run = run_verl(folder, model, data, "trainer.resume_mode=auto", v1=False, estimator="grpo")
    assert run.rc == 0, run.explain()
    assert sorted(run.steps) == [3], run.explain()  # resumed after step 2, trained step 3 only
    assert not any(key.startswith("ktae/") for key in run.steps[3])  # the baseline: KTAE is off
    assert "global_step_2" in run.log


def test_cpu_settings_as_hydra_overrides():
    """``python -m ktae.integrations.verl_cpu`` prints overrides that verl's Hydra config accepts (the plain
    main_ppo route). In a subprocess: importing the runtime selects verl's cpu platform for the whole process."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    printed = subprocess.run([sys.executable, "-m", "ktae.integrations.verl_cpu"], env=env, capture_output=True,
                             text=True, check=True, timeout=120).stdout.split()
    assert "actor_rollout_ref.rollout.name=hf" in printed and "+ray_kwargs.ray_init.num_gpus=1" in printed
    with initialize_config_dir(config_dir=verl_launch._verl_config_dir(), version_base=None):
        config = compose(config_name="ppo_trainer", overrides=printed)
    assert OmegaConf.select(config, "actor_rollout_ref.rollout.name") == "hf"
    assert OmegaConf.select(config, "actor_rollout_ref.actor.strategy") == "fsdp2"
    assert OmegaConf.select(config, "actor_rollout_ref.model.override_config.attn_implementation") == "sdpa"
    assert OmegaConf.select(config, "ray_kwargs.ray_init.num_gpus") == 1


def test_rehearse_needs_cpu(capsys):
    assert verl_launch.main(["--rehearse", "algorithm.adv_estimator=ktae"]) == 2
    assert "--rehearse goes with --cpu" in capsys.readouterr().err


def test_rehearsal_model_keeps_architecture_tokenizer_and_template(toy, tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    from ktae.integrations.verl_rehearsal import tiny_model

    _, model, _ = toy
    folder, note = tiny_model(model, cache=tmp_path)
    assert "built now" in note
    again, note = tiny_model(model, cache=tmp_path)
    assert again == folder and "cached" in note
    source, tiny = AutoConfig.from_pretrained(model), AutoConfig.from_pretrained(folder)
    assert tiny.model_type == source.model_type and tiny.vocab_size == source.vocab_size
    assert tiny.num_hidden_layers == 2 and tiny.hidden_size == 64
    user, rehearsal = AutoTokenizer.from_pretrained(model), AutoTokenizer.from_pretrained(folder)
    chat = [{"role": "user", "content": "what is 2 + 3"}]
    assert rehearsal.chat_template == user.chat_template
    assert rehearsal.apply_chat_template(chat, add_generation_prompt=True) == user.apply_chat_template(
        chat, add_generation_prompt=True)
    with pytest.raises(OSError, match="actor_rollout_ref.model.path"):
        tiny_model(str(tmp_path / "no_such_model"), cache=tmp_path)


def test_user_error_unwraps_ray_errors():
    from ray.exceptions import RayTaskError

    cause = KeyError("answer")
    wrapped = RayTaskError("TaskRunner.run", "Traceback ...", RayTaskError("reward", "Traceback ...", cause))
    assert verl_launch.user_error(wrapped) is cause
    assert verl_launch.user_error(wrapped.as_instanceof_cause()) is cause
    plain = ValueError("x")
    assert verl_launch.user_error(plain) is plain


def test_worker_user_error_finds_the_users_exception(tmp_path):
    """verl's v1 agent loop logs a failing reward function and fails later with its own error: the launcher reads
    the cause from the Ray workers' logs."""
    logs = tmp_path / "logs"
    logs.mkdir()
    reward = str(tmp_path / "my_reward.py")
    site = "/usr/lib/python3.11/site-packages/verl/experimental/agent_loop/agent_loop.py"
    (logs / "worker-aa-01-1.err").write_text(
        "Traceback (most recent call last):\n"
        f'  File "{site}", line 1026, in _compute_score\n    result = await handle.compute_score.remote(data)\n'
        "ray.exceptions.RayTaskError(KeyError): ray::RewardLoopWorker.compute_score()\n"
        f'  File "{reward}", line 2, in compute_score\n    return extra_info["answer"]\n'
        "KeyError: 'answer'\n"
    )
    (logs / "worker-bb-01-2.err").write_text(f'Traceback (most recent call last):\n  File "{site}", line 9, in f\n'
                                             "RuntimeError: verl's own\n")
    assert verl_launch.worker_user_error(tmp_path) == f"KeyError: 'answer' (raised in {reward}, line 2, in compute_score)"
    (logs / "worker-aa-01-1.err").unlink()
    assert verl_launch.worker_user_error(tmp_path) is None  # verl's own errors are not the user's
