"""A toy verl job for the CPU runtime's tests and benchmark: a tiny Qwen2 (2 layers, width 64) with a BPE
tokenizer trained here and a chat template, a parquet of arithmetic prompts, and a reward that gives mixed 1/0
within groups to a random model (the parity of the response's characters). Nothing comes from the Hub.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _corpus(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = "what is the sum of and product answer please think step by step boxed number".split()
    return [" ".join(rng.choice(words) for _ in range(8)) + f" {rng.randint(0, 99)} + {rng.randint(0, 99)}"
            for _ in range(n)]


def build_model(folder: str | os.PathLike) -> str:
    """A tiny random Qwen2 with a locally trained byte-level BPE tokenizer and a chat template, saved to folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    folder = Path(folder)
    if (folder / "config.json").exists():
        return str(folder)
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(_corpus(), trainers.BpeTrainer(vocab_size=320, special_tokens=SPECIAL,
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        bos_token=None, additional_special_tokens=["<|im_start|>"])
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    model = Qwen2ForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def build_data(folder: str | os.PathLike, n_train: int = 16, n_val: int = 4, seed: int = 0) -> tuple[str, str]:
    """verl parquet files (train, val) of chat prompts 'what is a + b' with the sum as ground truth."""
    import pandas as pd

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for split, n in (("train", n_train), ("val", n_val)):
        rows = []
        for i in range(n):
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            rows.append({"data_source": "toy_parity", "ability": "math",
                         "prompt": [{"role": "user", "content": f"what is {a} + {b}"}],
                         "reward_model": {"style": "rule", "ground_truth": str(a + b)},
                         "extra_info": {"split": split, "index": i}})
        path = folder / f"{split}.parquet"
        pd.DataFrame(rows).to_parquet(path)
        paths.append(str(path))
    return paths[0], paths[1]


def parity_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """Toy verl reward: 1 when the response's characters have an even code-point sum, else 0 (``acc`` alike); a
    random model gets both within most groups."""
    right = sum(map(ord, solution_str)) % 2 == 0
    return {"score": 1.0 if right else 0.0, "acc": 1.0 if right else 0.0}


def dapo_parity_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """The same, +1/-1, for verl's ``dapo`` reward manager (which adds the overlong penalty)."""
    right = sum(map(ord, solution_str)) % 2 == 0
    return {"score": 1.0 if right else -1.0, "acc": 1.0 if right else 0.0}


def overrides(model: str, train: str, val: str, out: str | os.PathLike, steps: int = 3, estimator: str = "ktae",
              v1: bool = True) -> list[str]:
    """The main_ppo arguments of the toy job, as a user would write them for a GPU (the CPU settings come from
    ``ktae verl --cpu``)."""
    out = Path(out)
    return [
        f"algorithm.adv_estimator={estimator}",
        f"data.train_files={train}", f"data.val_files={val}",
        "data.train_batch_size=2", "data.max_prompt_length=32", "data.max_response_length=16",
        f"actor_rollout_ref.model.path={model}",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8",
        "actor_rollout_ref.actor.optim.lr=1e-3", "actor_rollout_ref.actor.use_kl_loss=false",
        "actor_rollout_ref.rollout.n=4", "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8",
        "algorithm.use_kl_in_reward=false",
        f"reward.custom_reward_function.path={__file__}", "reward.custom_reward_function.name=parity_score",
        "trainer.logger=[console]", "trainer.val_before_train=false", "trainer.test_freq=-1",
        f"trainer.total_training_steps={steps}", "trainer.save_freq=2",
        f"trainer.default_local_dir={out / 'checkpoints'}", "trainer.project_name=ktae_cpu",
        "trainer.experiment_name=toy", f"trainer.use_v1={'true' if v1 else 'false'}",
        f"hydra.run.dir={out / 'hydra'}",
    ]
