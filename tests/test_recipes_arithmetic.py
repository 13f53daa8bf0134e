"""The embedded task and the tiny model's tokenizer."""
import random

import pytest

from ktae.rewards import grade_batch
from ktae.train.data import EMBEDDED_EVAL_POOL, PromptSampler, embedded_problems
from ktae.recipes.arithmetic import ArithmeticTask, answer_of, left_to_right_solution, parse, worked_solution
from ktae.recipes.arithmetic import build_tokenizer


def test_problems_need_the_order_of_operations():
    task = ArithmeticTask()
    rng = random.Random(0)
    for _ in range(200):
        expr = task.sample(rng)
        assert int(answer_of(expr)) == eval(expr)            # Python's precedence agrees
        assert worked_solution(expr) != left_to_right_solution(expr)
        numbers, ops = parse(expr)
        assert 3 <= len(numbers) <= 4 and "*" in ops and all(1 <= x <= 9 for x in numbers)
    assert worked_solution("3+4*2-5") == "4*2=8\n3+8=11\n11-5=6\n\\boxed{6}"
    assert left_to_right_solution("3+4*2-5") == "3+4=7\n7*2=14\n14-5=9\n\\boxed{9}"


def test_the_project_grader_grades_the_task():
    exprs = ["3+4*2-5", "9*3+5*2", "1+4*6"]
    responses = [worked_solution(e) for e in exprs] + [left_to_right_solution(e) for e in exprs]
    verdicts = grade_batch(responses, [answer_of(e) for e in exprs] * 2, workers=0, progress=False)
    assert verdicts == [True] * 3 + [False] * 3


def test_held_out_problems_never_in_training_and_reproducible():
    task = ArithmeticTask()
    train_a, held_a = embedded_problems(task, seed=0)
    train_b, held_b = embedded_problems(task, seed=1)
    assert len(held_a) == EMBEDDED_EVAL_POOL and held_a == held_b          # same held-out set for every run
    assert not {p["problem"] for p in held_a} & {p["problem"] for p in train_a}
    assert train_a != train_b and len({p["problem"] for p in train_a}) == len(train_a)
    assert embedded_problems(task, seed=0)[0][:50] == train_a[:50]


def test_tokenizer_round_trip():
    tok = build_tokenizer()
    text = "3+4*2-5\n" + worked_solution("3+4*2-5")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert tok.convert_ids_to_tokens(ids).count("\\boxed{") == 1      # one token
    assert len(tok) < 40 and tok.pad_token_id != tok.eos_token_id


def test_sampler_resumes_exactly():
    a = PromptSampler(10, seed=5)
    first = a.next(7)
    state = a.state()
    rest = a.next(12)                                   # crosses an epoch boundary
    b = PromptSampler(10, seed=5)
    b.load_state(state)
    assert b.next(12) == rest
    assert sorted(first + rest[:3]) == list(range(10))  # an epoch is a permutation
    with pytest.raises(ValueError, match="data changed"):
        PromptSampler(11, seed=5).load_state(state)


@pytest.mark.parametrize("kwargs", [dict(min_operands=2), dict(max_operands=2), dict(max_operand=12)])
def test_bad_task_settings(kwargs):
    with pytest.raises(ValueError, match="ArithmeticTask"):
        ArithmeticTask(**kwargs)
