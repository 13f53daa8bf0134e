"""KTAEGRPOTrainer takes every call GRPOTrainer takes: the scenarios of TRL's own GRPO tests (trl 1.16's
``tests/test_grpo_trainer.py``) of the methods the subclass overrides — ``__init__``, ``_calculate_rewards``,
``_generate_and_score_completions``, ``_compute_loss`` — and of the static methods TRL calls from the loss, run
against the subclass, with the same arguments and the same checks.

TRL's tests load tiny models from the Hub (``trl-internal-testing/tiny-Qwen2ForCausalLM-2.5`` and its reward
model); here a tiny Qwen2, a tiny Qwen2 reward model and a byte-level BPE tokenizer with a ChatML template are
built locally once, so nothing is downloaded.
"""
from __future__ import annotations

from unittest.mock import patch

import pytest
import torch
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM, Qwen2ForSequenceClassification)
from trl import GRPOTrainer

from ktae.integrations.trl import KTAEGRPOConfig, KTAEGRPOTrainer

PROMPTS = ["The sun rises in the", "Two plus three is", "Write a word that rhymes with cat:"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    corpus = PROMPTS * 20 + ["the quick brown fox jumps over the lazy dog 0123456789 user assistant system"] * 20
    core.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<|endoftext|>", eos_token="<|im_end|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Folders of a tiny Qwen2 causal LM and a tiny Qwen2 reward model (the roles of TRL's Hub test models)."""
    root = tmp_path_factory.mktemp("tiny-qwen2")
    tokenizer = build_tokenizer()
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=None, tie_word_embeddings=True)
    torch.manual_seed(0)
    for name, cls, extra in (("policy", Qwen2ForCausalLM, {}), ("reward", Qwen2ForSequenceClassification,
                                                                  {"num_labels": 1})):
        model = cls(Qwen2Config(**{**config.to_dict(), **extra}))
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    return {"policy": str(root / "policy"), "reward": str(root / "reward"), "tokenizer": tokenizer}


def dataset(kind: str = "standard") -> Dataset:
    if kind == "conversational":
        return Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in PROMPTS]})
    return Dataset.from_dict({"prompt": PROMPTS})


def config(tmp_path, **options) -> KTAEGRPOConfig:
    """The arguments of TRL's tests (high lr, 3 completions a prompt, 8 tokens), on the CPU, for 2 steps."""
    base = dict(output_dir=str(tmp_path), learning_rate=0.1, per_device_train_batch_size=3, num_generations=3,
                max_steps=2,
                max_completion_length=8, report_to="none", use_cpu=True, disable_tqdm=True, save_strategy="no")
    return KTAEGRPOConfig(**{**base, **options})


def longer(completions, **kwargs):
    return [float(len(c)) for c in completions]


def distinct_letters(completions, **kwargs):
    return [float(len(set(c))) for c in completions]


async def distinct_letters_async(completions, **kwargs):
    return [float(len(set(c))) for c in completions]


def longer_message(completions, **kwargs):  # conversational completions: a list of messages each
    return [float(len(c[0]["content"])) for c in completions]


def not_applicable(completions, **kwargs):
    return [None] * len(completions)


def closer_to_value(completions, some_values, **kwargs):
    return [float(abs(len(c) - v)) for c, v in zip(completions, some_values, strict=True)]


def train(tiny, args, reward_funcs="reward", data=None, **kwargs) -> tuple[KTAEGRPOTrainer, dict]:
    """Train, returning the trainer and the parameters before training."""
    given = reward_funcs if isinstance(reward_funcs, list) else [reward_funcs]
    rewards = [tiny["reward"] if r == "reward" else r for r in given]
    trainer = KTAEGRPOTrainer(model=tiny["policy"], reward_funcs=rewards if len(rewards) > 1 else rewards[0],
                              args=args, train_dataset=data if data is not None else dataset(), **kwargs)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    return trainer, before


def assert_trained(trainer, before) -> None:
    assert trainer.state.log_history[-1]["train_loss"] is not None
    for name, param in before.items():
        assert not torch.equal(param, trainer.model.get_parameter(name)), f"parameter {name} has not changed"


# ---- __init__ ----------------------------------------------------------------------------------------------------

def test_init_minimal_with_model_and_reward_model_names(tiny):
    """Only model, reward model and data: the subclass does what GRPOTrainer does (on a machine without bf16
    both refuse TRL's default bf16=True with the same error; elsewhere both build a trainer)."""
    outcomes = []
    for cls in (GRPOTrainer, KTAEGRPOTrainer):
        try:
            trainer = cls(model=tiny["policy"], reward_funcs=tiny["reward"], train_dataset=dataset())
            outcomes.append(("built", trainer.args.output_dir.rsplit("-", 1)[0]))
        except Exception as err:  # noqa: BLE001 - the comparison is the test
            outcomes.append((type(err).__name__, str(err)))
    assert outcomes[0][0] == outcomes[1][0]
    if outcomes[0][0] != "built":
        assert outcomes[0] == outcomes[1]
    else:
        assert outcomes[1][1] == "policy-KTAE"  # KTAE's default output folder: policy-KTAE-GRPO


def test_init_with_a_plain_grpo_config(tiny, tmp_path):
    from trl import GRPOConfig

    args = GRPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, per_device_train_batch_size=3,
                      num_generations=3)
    trainer = KTAEGRPOTrainer(model=tiny["policy"], reward_funcs=longer, args=args, train_dataset=dataset())
    assert trainer.use_ktae and trainer.ktae_config.alpha == 1.0


# ---- training: _generate_and_score_completions, _calculate_rewards, _compute_loss ---------------------------------

SCENARIOS = {
    # TRL test name: (GRPOConfig options, reward functions, dataset kind)
    "test_train": ({}, "reward", "standard"),
    "test_train_dataset_format[conversational]": ({}, "reward", "conversational"),
    "test_train_loss_types[bnpo]": (dict(loss_type="bnpo", gradient_accumulation_steps=2), "reward", "standard"),
    "test_train_loss_types[dr_grpo]": (dict(loss_type="dr_grpo"), "reward", "standard"),
    "test_train_loss_types[dapo]": (dict(loss_type="dapo", gradient_accumulation_steps=2), "reward", "standard"),
    "test_train_loss_types[cispo]": (dict(loss_type="cispo"), "reward", "standard"),
    "test_train_loss_types[sapo]": (dict(loss_type="sapo"), "reward", "standard"),
    "test_train_loss_types[luspo]": (dict(loss_type="luspo", importance_sampling_level="sequence"), "reward",
                                     "standard"),
    "test_train_loss_types[vespo]": (dict(loss_type="vespo"), "reward", "standard"),
    "test_train_multiple_iterations": (dict(num_iterations=2), "reward", "standard"),
    "test_train_beta_non_zero": (dict(beta=0.1), "reward", "standard"),
    "test_train_with_off_policy_mask": (dict(off_policy_mask_threshold=0.5), "reward", "standard"),
    "test_train_delta_clipping": (dict(delta=2.0), "reward", "standard"),
    "test_train_sequence_importance_sampling": (dict(importance_sampling_level="sequence"), "reward", "standard"),
    "test_train_scale_rewards[batch]": (dict(scale_rewards="batch"), "reward", "standard"),
    "test_train_scale_rewards[none]": (dict(scale_rewards="none"), "reward", "standard"),
    "test_train_reward_func_standard": ({}, distinct_letters, "standard"),
    "test_train_reward_func_conversational": ({}, longer_message, "conversational"),
    "test_train_multiple_reward_funcs": ({}, [longer, distinct_letters], "standard"),
    "test_train_sync_and_async_reward_funcs": ({}, [longer, distinct_letters_async], "standard"),
    "test_train_multiple_reward_funcs_with_None_output": ({}, [longer, not_applicable], "standard"),
    "test_train_multiple_reward_funcs_with_weights": (dict(reward_weights=[0.7, 0.3]), [longer, distinct_letters],
                                                      "standard"),
    "test_train_multiple_mixed_reward_funcs": ({}, [longer, "reward"], "standard"),
    "test_train_normalize_then_sum_aggregation": (dict(multi_objective_aggregation="normalize_then_sum"),
                                                  [longer, distinct_letters], "standard"),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_trains_as_trl_tests_train(tiny, tmp_path, name):
    options, reward_funcs, kind = SCENARIOS[name]
    trainer, before = train(tiny, config(tmp_path, **options), reward_funcs, dataset(kind))
    assert_trained(trainer, before)


def test_train_reward_func_additional_column(tiny, tmp_path):
    data = dataset().add_column("some_values", list(range(len(PROMPTS))))
    trainer, before = train(tiny, config(tmp_path), closer_to_value, data)
    assert_trained(trainer, before)


@pytest.mark.parametrize("aggregation", ["sum_then_normalize", "normalize_then_sum"])
def test_reward_metric_reflects_reward_weights(tiny, tmp_path, aggregation):
    def one(completions, **kwargs):
        return [1.0] * len(completions)

    def zero(completions, **kwargs):
        return [0.0] * len(completions)

    args = config(tmp_path, reward_weights=[0.7, 0.3], multi_objective_aggregation=aggregation)
    trainer, _ = train(tiny, args, [one, zero])
    assert abs(trainer.state.log_history[-1]["reward"] - 0.7) < 1e-5


def test_train_with_num_generations_eval(tiny, tmp_path):
    args = config(tmp_path, per_device_eval_batch_size=3, num_generations_eval=1, eval_strategy="steps",
                  eval_steps=2)
    trainer = KTAEGRPOTrainer(model=tiny["policy"], reward_funcs=tiny["reward"], args=args,
                              train_dataset=dataset(), eval_dataset=dataset())
    trainer.train()
    assert any("eval_loss" in row for row in trainer.state.log_history)


def test_train_with_mask_truncated_completions(tiny, tmp_path):
    """Generation is faked, as in TRL's test, so that two of three completions end with EOS within the limit."""
    eos, pad = tiny["tokenizer"].eos_token_id, tiny["tokenizer"].pad_token_id

    def fake_generate(input_ids, **kwargs):
        completions = torch.tensor([[10, 11, 12, 13, 14, 15, 16, 17],        # truncated
                                    [18, 19, 20, eos, pad, pad, pad, pad],  # ends with EOS
                                    [21, 22, 23, 24, 25, 26, 27, eos]])     # EOS just within the limit
        return torch.cat([input_ids, completions.to(input_ids.device)], dim=1)

    args = config(tmp_path, mask_truncated_completions=True, loss_type="dapo")
    with patch("transformers.generation.utils.GenerationMixin.generate", side_effect=fake_generate):
        trainer, before = train(tiny, args)
    assert_trained(trainer, before)


def test_train_with_mask_truncated_completions_all_masked(tiny, tmp_path):
    """No completion of the random model ends within 8 tokens: every one is masked, nothing is learnt."""
    eos = tiny["tokenizer"].eos_token_id

    def never_eos(input_ids, **kwargs):
        completions = torch.full((input_ids.shape[0], 8), eos + 1 if eos + 1 < 300 else 5)
        return torch.cat([input_ids, completions.to(input_ids.device)], dim=1)

    args = config(tmp_path, mask_truncated_completions=True, loss_type="dapo")
    with patch("transformers.generation.utils.GenerationMixin.generate", side_effect=never_eos):
        trainer, before = train(tiny, args)
    assert trainer.state.log_history[-1]["train_loss"] == pytest.approx(0.0)
    for name, param in before.items():
        assert torch.equal(param, trainer.model.get_parameter(name)), f"parameter {name} has changed"


def test_warning_raised_all_rewards_none(tiny, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="trl.trainer.grpo_trainer"):
        train(tiny, config(tmp_path, max_steps=1), not_applicable)
    assert "All reward functions returned None for the following kwargs:" in caplog.text


# ---- the static methods TRL's loss calls through self ---------------------------------------------------------------

@pytest.mark.parametrize("owner", ["class", "instance"])
def test_get_off_policy_mask(tiny, tmp_path, owner):
    """Keep if A >= 0 or KL <= threshold; drop if A < 0 and KL > threshold (called as TRL's tests call it)."""
    trainer_cls = KTAEGRPOTrainer if owner == "class" else KTAEGRPOTrainer(
        model=tiny["policy"], reward_funcs=longer, args=config(tmp_path), train_dataset=dataset())
    mask = torch.ones((3, 4))
    advantages = torch.tensor([1.0, -1.0, -1.0]).unsqueeze(-1)
    sampling = torch.zeros((3, 4))
    current = torch.zeros((3, 4))
    current[0], current[1], current[2] = -2.0, -0.5, -2.0
    out = trainer_cls.get_off_policy_mask(advantages, current, sampling, mask, 1.0)
    torch.testing.assert_close(out, torch.tensor([[1.0], [1.0], [0.0]]))
    assert torch.equal(out, GRPOTrainer.get_off_policy_mask(advantages, current, sampling, mask, 1.0))


def test_get_off_policy_mask_padding():
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    advantages = torch.tensor([[-1.0]])
    sampling = torch.zeros((1, 4))
    current = torch.tensor([[-2.0, -2.0, -10_000.0, 10_000.0]])  # padding's values must not count
    torch.testing.assert_close(KTAEGRPOTrainer.get_off_policy_mask(advantages, current, sampling, mask, 1.0),
                               torch.tensor([[0.0]]))
    current[0, :2] = -0.5
    torch.testing.assert_close(KTAEGRPOTrainer.get_off_policy_mask(advantages, current, sampling, mask, 1.0),
                               torch.tensor([[1.0]]))


def test_get_gamma_weights_as_trl_calls_it():
    """VESPO's weight is 1 at w = 1 and picks k/lambda by the sign of the advantage; keywords as the loss passes."""
    advantages = torch.tensor([[0.5], [-0.5]])
    log_ratio = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.1, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    ours = KTAEGRPOTrainer.get_gamma_weights(advantages=advantages, log_ratio_per_token=log_ratio, mask=mask,
                                             importance_sampling_ratio=None)
    theirs = GRPOTrainer.get_gamma_weights(advantages, log_ratio, mask, None)
    assert torch.equal(ours, theirs)
    torch.testing.assert_close(ours[0], torch.tensor([1.0]))
    w = torch.exp(torch.tensor(0.2))
    torch.testing.assert_close(ours[1, 0], torch.exp(2.0 + 3.0 * torch.log(w) - 2.0 * w))
