#!/usr/bin/env bash
# GRPO+KTAE with verl, the paper's setting (docs: docs/verl.md; spec section 6):
# Qwen2.5-Math-7B, MATH train levels 3-5, 1024 prompts x 16 rollouts per step, PPO mini-batch 128 prompts,
# lr 1e-6, clip 0.2/0.2, low-variance KL loss 0.001, token-mean loss, 1024/3072 prompt/response tokens, T = 1.0.
#
#   python examples/verl/prepare_data.py --out ~/data/ktae_math        # once
#   bash examples/verl/grpo_ktae.sh                                    # one node, 8 GPUs
#   NNODES=4 bash examples/verl/grpo_ktae.sh                           # on the head of a Ray cluster (multinode.sh)
#   ESTIMATOR=grpo bash examples/verl/grpo_ktae.sh                     # the GRPO baseline, same settings
#
# Extra Hydra overrides go at the end, e.g. `algorithm.ktae.beta=2.0 trainer.total_epochs=5` (the KTAE keys
# exist once this script has added them, so no leading `+`). `--cfg job` prints the composed config and exits.
set -euo pipefail

MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-Math-7B}
DATA_DIR=${DATA_DIR:-$HOME/data/ktae_math}
NNODES=${NNODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
ROLLOUT_TP=${ROLLOUT_TP:-2}                  # vLLM tensor parallel size per rollout replica
ESTIMATOR=${ESTIMATOR:-ktae}                 # ktae | dr_grpo_ktae | rloo_ktae | grpo (baseline)
PROJECT=${PROJECT:-ktae}
EXPERIMENT=${EXPERIMENT:-grpo_${ESTIMATOR}_$(basename "$MODEL_PATH")}
TOTAL_EPOCHS=${TOTAL_EPOCHS:-30}
SAVE_FREQ=${SAVE_FREQ:-20}
TEST_FREQ=${TEST_FREQ:-10}
LOGGER=${LOGGER:-"['console','tensorboard']"}

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
    data.train_files="$DATA_DIR/train.parquet" \
    data.val_files="$DATA_DIR/val.parquet" \
    data.train_batch_size=1024 \
    data.max_prompt_length=1024 \
    data.max_response_length=3072 \
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
    actor_rollout_ref.actor.clip_ratio_high=0.2 \
    actor_rollout_ref.actor.use_kl_loss=True \
    actor_rollout_ref.actor.kl_loss_coef=0.001 \
    actor_rollout_ref.actor.kl_loss_type=low_var_kl \
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
    reward.custom_reward_function.path=pkg://ktae.integrations.verl \
    reward.custom_reward_function.name=math_score \
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
