"""The exact equation checker that labels the SmolLM2 corpus (ktae.targeting.equations) and its builder's helpers."""
import random
import re
from fractions import Fraction

import pytest

from ktae.targeting.build import label_equations, smollm2_prompt
from ktae.targeting.equations import evaluate, false_equation_spans, find_equations, token_flags


def chains(text):
    return [(text[e.start:e.end], e.true) for e in find_equations(text)]


@pytest.mark.parametrize("text, expected", [
    ("7 + 8 = 15", [("7 + 8 = 15", True)]),
    ("6 + 10 = 9\n9 + 0 = 9", [("6 + 10 = 9", False), ("9 + 0 = 9", True)]),
    ("61 * 7 - 2 = 422 - 2 = 422", [("61 * 7 - 2 = 422 - 2 = 422", False)]),
    ("Step 1) 5 + 3 = 8 (yes)", [("5 + 3 = 8", True)]),
    ("11 = 9 + 9", [("11 = 9 + 9", False)]),
    ("6\\*8 = 48, 6 × 8 = 49", [("6\\*8 = 48", True), ("6 × 8 = 49", False)]),
    ("5 / 0 = 0", [("5 / 0 = 0", False)]),
    ("2 - -3 * -8 = -22", [("2 - -3 * -8 = -22", True)]),
    ("1.5 * 2 = 3.", [("1.5 * 2 = 3", True)]),
    ("(2 + 3) * 4 = 20 and 7 ÷ 2 = 3.5", [("(2 + 3) * 4 = 20", True), ("7 ÷ 2 = 3.5", True)]),
    ("3 = 4 = x = 5 = 5", [("3 = 4", False), ("5 = 5", True)]),
    ("x = 5, so the answer is 5", []),
    ("no equation here: 3 + 4", []),
])
def test_equation_chains_by_hand(text, expected):
    assert chains(text) == expected


def test_evaluate_agrees_with_python_on_random_expressions():
    rng = random.Random(0)
    for _ in range(500):
        n = rng.randint(1, 5)
        parts = [str(rng.randint(0, 30))]
        for _ in range(n - 1):
            parts += [rng.choice("+-*/"), str(rng.randint(0, 30))]
        expression = " ".join(parts)
        python = re.sub(r"(\d+)", r"Fraction(\1)", expression)
        try:
            want = eval(python, {"Fraction": Fraction})                  # the reference: Python's own arithmetic
        except ZeroDivisionError:
            want = None
        assert evaluate(expression.split()) == want, expression


def test_evaluate_refuses_what_is_no_expression():
    for items in (["3", "+"], ["(", "3"], ["+", "3"], [], ["3", "4"]):
        with pytest.raises(ValueError):
            evaluate(items)


def test_false_spans_become_token_flags():
    text = "4 + 7 = 12\n12 - 2 = 10\n\\boxed{10}"
    assert false_equation_spans(text) == [(0, 10)]
    pieces = ["4", " +", " 7", " =", " 12", "\n", "12", " -", " 2", " =", " 10", "\n", "\\boxed{10}"]
    assert "".join(pieces) == text
    assert token_flags(pieces, false_equation_spans(text)) == [True] * 5 + [False] * 8
    assert label_equations(pieces) == [True] * 5 + [False] * 8
    assert token_flags(["", "ab"], [(0, 1)]) == [False, True]               # an empty token overlaps nothing


def test_the_smollm2_prompt_shows_equations_then_asks():
    prompt = smollm2_prompt("Calculate 1 + 2 + 3.")
    assert prompt.count("<|im_start|>user") == 4 and prompt.endswith("<|im_start|>assistant\n")
    examples = re.findall(r"assistant\n(.*?)<\|im_end\|>", prompt, re.DOTALL)
    assert len(examples) == 3
    for solution in examples:                       # the worked examples are right, one true equation per line
        assert all(e.true for e in find_equations(solution)) and len(find_equations(solution)) >= 2
