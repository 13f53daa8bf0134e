"""Answer extraction, reference normalisation, reward functions and argument checks."""
from __future__ import annotations

import pytest

from ktae.rewards import (
    MathGrader,
    dapo_reward,
    dapo_rewards,
    extract_boxed,
    grade_batch,
    grade_math,
    math_reward,
    math_rewards,
    overlong_penalty,
    reference_answers,
)
from ktae.rewards.answers import normalize_answer, text_answer


@pytest.mark.parametrize(
    "text,expected",
    [
        (r"so \boxed{42}.", "42"),
        (r"\boxed{\frac{1}{2}} then \boxed{\frac{3}{4}}", r"\frac{3}{4}"),
        (r"\boxed{\{1, \frac{1}{2}\}}", r"\{1, \frac{1}{2}\}"),
        (r"\boxed{\begin{pmatrix}1\\2\end{pmatrix}}", r"\begin{pmatrix}1\\2\end{pmatrix}"),
        (r"\fbox{7} and later \boxed{8}", "8"),
        (r"\boxed{8} and later \fbox{7}", "7"),
        (r"answer: \boxed 5$ done", "5"),
        (r"\boxedfoo \boxed{3}", "3"),
        (r"\boxed{ 12 }", "12"),
        (r"no box here", None),
        (r"\boxed{}", None),
        (r"\boxed{\frac{1}{2}", None),
        (r"\boxed{3} then cut \boxed{", None),
        ("", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


def test_extract_boxed_is_linear_on_huge_text():
    text = "{" * 2_000_000 + r"\boxed{1}"
    assert extract_boxed(text) == "1"
    assert extract_boxed(r"\boxed{" + "{" * 1_000_000) is None


@pytest.mark.parametrize(
    "reference,expected",
    [
        ("42", ["42"]),
        ("  $\\frac{1}{2}$ ", ["\\frac{1}{2}"]),
        ("['9.6\\n']", ["9.6"]),
        ("['3.89e-10\\n', '3.89e-10']", ["3.89e-10"]),
        ("[0, 1]", ["[0, 1]"]),  # an interval, not a list
        ("[0, 1)", ["[0, 1)"]),
        (["9.6\n"], ["9.6"]),
        (("1", "2"), ["1", "2"]),
        (142.0, ["142"]),
        (7, ["7"]),
        (0.25, ["0.25"]),
        (["$5$", 5], ["5"]),
    ],
)
def test_reference_answers(reference, expected):
    assert reference_answers(reference) == expected


@pytest.mark.parametrize("bad", [None, "", "   ", [], ["", "  "]])
def test_reference_answers_rejects_empty(bad):
    with pytest.raises(ValueError, match="reference"):
        reference_answers(bad)


@pytest.mark.parametrize("bad", [True, {"a": 1}, object()])
def test_reference_answers_rejects_other_types(bad):
    with pytest.raises(TypeError, match="reference"):
        reference_answers(bad)


def test_normalize_answer():
    assert normalize_answer("3.3e12") == r"3.3\times10^{12}"
    assert normalize_answer("1e-5") == r"1\times10^{-5}"
    assert normalize_answer("10,080") == "10080"
    assert normalize_answer(r"1\,000\,000") == "1000000"
    assert normalize_answer("1,2") == "1,2"  # a list, not a number
    assert normalize_answer("$5$.") == "5"


def test_text_answer_detection():
    assert text_answer(r"\text{Evelyn}") == "evelyn"
    assert text_answer(r"\text{(C)}") == "c"
    assert text_answer("no solution") == "nosolution"
    assert text_answer("x^2") is None
    assert text_answer(r"\sin x") is None
    assert text_answer("5") is None


def test_math_reward():
    assert math_reward(r"... \boxed{\frac{3}{6}}", "0.5") == 1.0
    assert math_reward(r"... \boxed{3}", "0.5") == 0.0
    assert math_reward("no box 0.5", "0.5") == 0.0


@pytest.mark.parametrize(
    "length,expected",
    [(100, 0.0), (2560, 0.0), (2816, -0.5), (3072, -1.0)],
)
def test_overlong_penalty(length, expected):
    # Lmax = 3072, Lbuf = 512: the spec's min(0, (Lmax - Lbuf - l) / Lbuf) * factor
    assert overlong_penalty(length, 3072, 512) == pytest.approx(expected)
    assert overlong_penalty(length, 3072, 512, penalty_factor=2.0) == pytest.approx(2 * expected)


def test_dapo_reward():
    assert dapo_reward(r"\boxed{4}", "4", 100, 3072, 512) == 1.0
    assert dapo_reward(r"\boxed{5}", "4", 100, 3072, 512) == -1.0
    assert dapo_reward(r"\boxed{4}", "4", 2816, 3072, 512) == pytest.approx(0.5)
    assert dapo_reward(r"\boxed{5}", "4", 3072, 3072, 512) == pytest.approx(-2.0)
    assert dapo_reward(r"\boxed{4}", "4", 5000, 3072, 0) == 1.0  # no buffer: no shaping


def test_batched_rewards():
    responses = [r"\boxed{1}", r"\boxed{2}", r"\boxed{\frac{6}{2}}"]
    references = ["1", "3", "3"]
    assert math_rewards(responses, references, workers=1) == [1.0, 0.0, 1.0]
    got = dapo_rewards(responses, references, [10, 2816, 3072], 3072, 512, workers=1)
    assert got == pytest.approx([1.0, -1.5, 0.0])


@pytest.mark.parametrize(
    "args,match",
    [
        ((-1, 3072, 512), "response_length"),
        ((10, 0, 0), "max_response_length"),
        ((10, 3072, 4000), "overlong_buffer"),
        ((10, 3072, 1.5), "overlong_buffer"),
    ],
)
def test_overlong_penalty_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        overlong_penalty(*args)


def test_bad_inputs_are_named():
    with pytest.raises(TypeError, match="response"):
        grade_math(5, "5")
    with pytest.raises(ValueError, match="same length"):
        grade_batch([r"\boxed{1}"], ["1", "2"], workers=1)
    with pytest.raises(TypeError, match="responses"):
        grade_batch(r"\boxed{1}", ["1"], workers=1)
    with pytest.raises(ValueError, match="timeout"):
        MathGrader(timeout=0)
    with pytest.raises(ValueError, match="workers"):
        MathGrader(workers=-1)
    with pytest.raises(ValueError, match="penalty_factor"):
        overlong_penalty(10, 100, 10, penalty_factor=-1)


def test_grade_batch_progress_bar(capsys):
    verdicts = grade_batch([r"\boxed{1}"] * 5, ["1"] * 5, workers=1, progress=True)
    assert verdicts == [True] * 5
    assert "grading" in capsys.readouterr().err


def test_closed_grader_refuses_work():
    g = MathGrader(workers=1)
    g.close()
    with pytest.raises(RuntimeError, match="closed"):
        g.grade(r"\boxed{x+y}", "y+x")


def test_plain_integers_are_decided_without_math_verify():
    from ktae.rewards.grader import MathGrader

    grader = MathGrader(workers=1)
    try:
        verdicts = grader.grade_batch([r"\boxed{13}", r"\boxed{007}", r"\boxed{-4}", r"\boxed{12}"],
                                      ["12", "7", "-4", ["13", "12"]])
        assert verdicts == [False, True, True, True]
        assert grader.stats.fast_path == 4
    finally:
        grader.close()
