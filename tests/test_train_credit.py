"""The trainer's token credit: of study 3 (oracle, oracle-blame, ktae-gate) and the label-free rules of issue 30
(prefix, line, ...): labels, newline tokens, routing and real steps."""
import random

import pytest
import torch

from ktae.core.credit import gate_advantages, oracle_advantages
from ktae.core.label_free import LABEL_FREE_CREDITS, label_free_advantages
from ktae.frontend.metrics import MIXED_GROUP_FRACTION
from ktae.frontend.options import parse_estimator, token_credit
from ktae.recipes.word_problems import WordProblemTask, label_lines
from ktae.train.config import ESTIMATORS, make_config
from ktae.train.logger import read_metrics
from ktae.special_tokens import newline_token_ids
from ktae.train.loop import compute_advantages, train
from ktae.train.rollouts import Rollouts, mistake_tokens, pad
from test_train_loop import TINY


@pytest.fixture(scope="module")
def word_batch():
    """Two groups of word problems, each with a careful (right) and two sloppy solutions, tokenized."""
    task = WordProblemTask(max_count=50, max_change=9)
    tokenizer = task.build_tokenizer()
    rng = random.Random(3)
    stories, texts, rewards = [], [], []
    for _ in range(2):
        story = task.sample(rng)
        for careful in (True, False, False):
            text, labels = task.solution(story, rng, careful=careful)
            stories.append(story)
            texts.append(text)
            rewards.append(1.0 if careful else 0.0)
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in texts]
    responses, mask = pad(ids, tokenizer.pad_token_id)
    batch = Rollouts(prompt_ids=[[0]] * 6, responses=responses, response_mask=mask,
                     group=torch.arange(2).repeat_interleave(3), rewards=torch.tensor(rewards),
                     correct=torch.tensor(rewards) > 0, finished=torch.ones(6, dtype=torch.bool), texts=texts,
                     problems=stories, references=[""] * 6)
    return batch, tokenizer


def test_mistake_tokens_follow_the_labelled_lines(word_batch):
    batch, tokenizer = word_batch
    mistake = mistake_tokens(batch, tokenizer)
    assert mistake.shape == batch.responses.shape and not (mistake & ~batch.response_mask.bool()).any()
    for i, (story, text) in enumerate(zip(batch.problems, batch.texts)):
        wrong_lines = [text[s:e] for s, e, label in label_lines(story, text) if label == "mistake"]
        ids = batch.responses[i][mistake[i]].tolist()
        marked = tokenizer.decode(ids)
        assert bool(wrong_lines) == bool(ids)
        for line in wrong_lines:
            assert line.replace("\n", "") in marked.replace("\n", "")
    assert not mistake[batch.correct].any() and mistake.any()


@pytest.mark.parametrize("credit", ["oracle", "oracle-blame", "ktae-gate"])
def test_compute_advantages_routes_each_credit(word_batch, credit):
    batch, tokenizer = word_batch
    cfg = make_config("word-easy-grpo-" + credit)
    ktae_config = cfg.ktae_config((tokenizer.pad_token_id, tokenizer.eos_token_id))
    times = {"advantage": 0.0}
    advantages, key_values = compute_advantages(batch, cfg, ktae_config, times, tokenizer)
    if credit == "ktae-gate":
        expected = gate_advantages(batch.responses, batch.response_mask, batch.rewards, batch.group, ktae_config)
    else:
        expected = oracle_advantages(batch.response_mask, batch.rewards, batch.group,
                                     mistake_tokens(batch, tokenizer), ktae_config,
                                     blame_only=credit == "oracle-blame")
    assert key_values is None and torch.equal(advantages, expected)
    grpo, _ = compute_advantages(batch, make_config("word-easy-grpo"), ktae_config, times, tokenizer)
    assert not torch.equal(advantages, grpo)


def test_newline_tokens_of_the_word_tokenizer(word_batch):
    batch, tokenizer = word_batch
    ids = newline_token_ids(tokenizer)
    assert ids and all("\n" in tokenizer.decode([i]) for i in ids)
    assert set(tokenizer("a\nb", add_special_tokens=False)["input_ids"]) & set(ids)
    lines_in_batch = sum(text.count("\n") for text in batch.texts)
    assert int(torch.isin(batch.responses, torch.tensor(ids)).sum()) == lines_in_batch


@pytest.mark.parametrize("credit", LABEL_FREE_CREDITS)
def test_compute_advantages_routes_each_label_free_rule(word_batch, credit):
    batch, tokenizer = word_batch
    cfg = make_config("word-easy-grpo-" + credit, **{"algorithm.ngram": 2})
    ktae_config = cfg.ktae_config((tokenizer.pad_token_id, tokenizer.eos_token_id))
    times = {"advantage": 0.0}
    advantages, key_values = compute_advantages(batch, cfg, ktae_config, times, tokenizer)
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
    expected = label_free_advantages(credit, batch.responses, batch.response_mask, batch.rewards, batch.group,
                                     ktae_config, newline_ids=newline, n=2)
    assert key_values is None and torch.equal(advantages, expected)
    grpo, _ = compute_advantages(batch, make_config("word-easy-grpo"), ktae_config, times, tokenizer)
    assert not torch.equal(advantages, grpo)


def test_the_line_rules_need_newline_tokens(word_batch):
    batch, tokenizer = word_batch

    class OneLineTokenizer:       # a vocabulary without a newline token
        def __len__(self):
            return 3

        def batch_decode(self, ids):
            return ["a", "b", "c"][: len(ids)]

    cfg = make_config("word-easy-grpo-line")
    times = {"advantage": 0.0}
    with pytest.raises(ValueError, match="--estimator grpo.line: the tokenizer has no token whose text holds a newline"):
        compute_advantages(batch, cfg, cfg.ktae_config(), times, OneLineTokenizer())
    with pytest.raises(ValueError, match="--estimator grpo.line: the line rules need the tokenizer"):
        compute_advantages(batch, cfg, cfg.ktae_config(), times, None)
    prefix = make_config("word-easy-grpo-prefix")       # the prefix rule reads no lines
    assert compute_advantages(batch, prefix, prefix.ktae_config(), times, None)[0] is not None


@pytest.mark.parametrize("preset", ["word-easy-grpo-prefix", "word-easy-grpo-line-ktae-blame"])
def test_label_free_rules_train_and_log(tmp_path, preset):
    options = {**TINY, "tiny_max_positions": 192, "max_new_tokens": 48, "eval_every": 0, "save_model": False,
               "cache_dir": str(tmp_path / "cache"), "run_dir": str(tmp_path / "run"), "steps": 2}
    run_dir = train(make_config(preset, **options))
    steps = [r for r in read_metrics(run_dir) if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(MIXED_GROUP_FRACTION in r and "ktae/abs_mean" not in r and r["time_advantage"] > 0 for r in steps)
    assert "estimator: grpo+" + preset.removeprefix("word-easy-grpo-") in (run_dir / "config.yaml").read_text()


def test_one_oracle_step_trains(tmp_path):
    options = {**TINY, "tiny_max_positions": 192, "max_new_tokens": 48, "eval_every": 0, "save_model": False,
               "cache_dir": str(tmp_path / "cache"), "run_dir": str(tmp_path / "run"), "steps": 1}
    cfg = make_config("word-easy-grpo-oracle-blame", **options)
    steps = [r for r in read_metrics(train(cfg)) if "reward" in r]
    # no key-token values (no ktae/abs_mean), the mixed groups under the shared name
    assert len(steps) == 1 and "ktae/abs_mean" not in steps[0] and MIXED_GROUP_FRACTION in steps[0]


@pytest.mark.parametrize("estimator, credit, uses_ktae", [
    ("grpo", "", False), ("grpo+ktae", "ktae", True), ("grpo_ktae", "ktae", True), ("ktae", "ktae", True),
    ("grpo+ktae-gate", "ktae-gate", False), ("rloo+oracle", "oracle", False),
    ("dr_grpo+oracle-blame", "oracle-blame", False), ("grpo+prefix", "prefix", False),
    ("rloo+line-ktae-blame", "line-ktae-blame", False), ("dr_grpo+tree", "tree", False),
])
def test_the_credits_are_estimators_of_the_shared_schema(estimator, credit, uses_ktae):
    """The study's estimators are names of the shared list (``parse_estimator``): the gate is KTAE's family (it
    counts tokens) but gives no A_i + K, the oracles are not KTAE; ``token_credit`` says which credit."""
    assert estimator in ESTIMATORS and token_credit(estimator) == credit
    assert parse_estimator(estimator)[1] is uses_ktae
    options = {"task": "word"} if "oracle" in credit else {}
    cfg = make_config(estimator=estimator, rollouts_per_prompt=4, **options)
    assert cfg.token_credit == credit and cfg.uses_ktae is uses_ktae
    assert cfg.rollout_estimator == (parse_estimator(estimator)[0] or "grpo")
    assert make_config(**{"algorithm.estimator": estimator, **options}).algorithm.estimator == estimator
