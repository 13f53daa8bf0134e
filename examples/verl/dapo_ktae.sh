#!/usr/bin/env bash
# DAPO+KTAE with verl, the paper's setting (docs: docs/verl.md; spec section 6):
# Qwen2.5-Math-7B, MATH train levels 3-5, 1024 prompts x 16 rollouts per step, PPO mini-batch 128 prompts,
# lr 1e-6, grad clip 1.0, clip-higher 0.2/0.24, no KL, token-mean loss, 1024/3072 prompt/response tokens,
# +1/-1 rewards with DAPO's overlong penalty (buffer 512, factor 1.0), dynamic sampling that drops groups whose
# rollouts are all right or all wrong, T = 1.0, top-p 1.0.
#
# Dynamic sampling in verl 0.9's v1 trainer: algorithm.filter_groups.{enable,metric} turn it on and
# max_inflight_gen_batches bounds the generation in flight in units of the train batch (2 = the paper's
# generation batch of 2048 prompts); evicted groups are refilled until a full batch of 1024 mixed groups is
# ready (verl's v1 trainer ignores max_num_gen_batches, the paper's cap of 10 generation batches).
#
#   python examples/verl/prepare_data.py --out ~/data/ktae_math        # once
#   bash examples/verl/dapo_ktae.sh                                    # one node, 8 GPUs
#   NNODES=4 bash examples/verl/dapo_ktae.sh                           # on the head of a Ray cluster (multinode.sh)
#   ESTIMATOR=grpo bash examples/verl/dapo_ktae.sh                     # the DAPO baseline, same settings
#
# Extra Hydra overrides go at the end (KTAE keys without a leading `+`); `--cfg job` prints the config and exits.
set -euo pipefail

MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-Math-7B}
DATA_DIR=${DATA_DIR:-$HOME/data/ktae_math}
NNODES=${NNODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
ROLLOUT_TP=${ROLLOUT_TP:-2}
ESTIMATOR=${ESTIMATOR:-ktae}
PROJECT=${PROJECT:-ktae}
EXPERIMENT=${EXPERIMENT:-dapo_${ESTIMATOR}_$(basename "$MODEL_PATH")}
TOTAL_EPOCHS=${TOTAL_EPOCHS:-30}
SAVE_FREQ=${SAVE_FREQ:-20}
TEST_FREQ=${TEST_FREQ:-10}
LOGGER=${LOGGER:-"['console','tensorboard']"}
MAX_RESPONSE=3072
OVERLONG_BUFFER=512

python3 -m verl.trainer.main_ppo \
    algorithm.adv_estimator="$ESTIMATOR" \
    ++algorithm.ktae.alpha=1.0 \
    ++algorithm.ktae.beta=1.0 \
    ++algorithm.ktae.gamma=1.0 \
    ++algorithm.ktae.top=1.0 \
    ++algorithm.ktae.threshold=0.0 \
    ++algorithm.ktae.fisher_at_one=exp \
    algorithm.norm_adv_by_std_in_grpo=True \
    algorithm.use_kl_in_reward=False \
    algorithm.filter_groups.enable=True \
    algorithm.filter_groups.metric=acc \
    algorithm.filter_groups.max_inflight_gen_batches=2 \
    data.train_files="$DATA_DIR/train.parquet" \
    data.val_files="$DATA_DIR/val.parquet" \
    data.train_batch_size=1024 \
    data.max_prompt_length=1024 \
    data.max_response_length="$MAX_RESPONSE" \
    data.filter_overlong_prompts=True \
    data.truncation=error \
    actor_rollout_ref.model.path="$MODEL_PATH" \
    actor_rollout_ref.model.use_remove_padding=True \
    actor_rollout_ref.model.enable_gradient_checkpointing=True \
    actor_rollout_ref.actor.optim.lr=1e-6 \
    actor_rollout_ref.actor.grad_clip=1.0 \
    actor_rollout_ref.actor.ppo_mini_batch_size=128 \
    actor_rollout_ref.actor.use_dynamic_bsz=True \
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu=16384 \
    actor_rollout_ref.actor.clip_ratio_low=0.2 \
    actor_rollout_ref.actor.clip_ratio_high=0.24 \
    actor_rollout_ref.actor.use_kl_loss=False \
    actor_rollout_ref.actor.loss_agg_mode=token-mean \
    actor_rollout_ref.actor.entropy_coeff=0 \
    actor_rollout_ref.rollout.name=vllm \
    actor_rollout_ref.rollout.n=16 \
    actor_rollout_ref.rollout.temperature=1.0 \
    actor_rollout_ref.rollout.top_p=1.0 \
    actor_rollout_ref.rollout.tensor_model_parallel_size="$ROLLOUT_TP" \
    actor_rollout_ref.rollout.gpu_memory_utilization=0.6 \
    actor_rollout_ref.rollout.val_kwargs.temperature=0 \
    actor_rollout_ref.rollout.val_kwargs.do_sample=False \
    reward.reward_manager.name=dapo \
    reward.custom_reward_function.path=pkg://ktae.integrations.verl \
    reward.custom_reward_function.name=dapo_score \
    ++reward.reward_kwargs.max_resp_len="$MAX_RESPONSE" \
    ++reward.reward_kwargs.overlong_buffer_cfg.enable=True \
    ++reward.reward_kwargs.overlong_buffer_cfg.len="$OVERLONG_BUFFER" \
    ++reward.reward_kwargs.overlong_buffer_cfg.penalty_factor=1.0 \
    ++reward.reward_kwargs.overlong_buffer_cfg.log=True \
    trainer.project_name="$PROJECT" \
    trainer.experiment_name="$EXPERIMENT" \
    trainer.logger="$LOGGER" \
    trainer.nnodes="$NNODES" \
    trainer.n_gpus_per_node="$GPUS_PER_NODE" \
    trainer.total_epochs="$TOTAL_EPOCHS" \
    trainer.save_freq="$SAVE_FREQ" \
    trainer.test_freq="$TEST_FREQ" \
    trainer.val_before_train=True \
    "$@"
