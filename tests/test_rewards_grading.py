"""Hand-written grading table for ktae.rewards.grade_math: equivalent forms, reference formats and traps."""
from __future__ import annotations

import pytest

from ktae.rewards import grade_batch, grade_math

R = True
W = False

# (response, reference, expected verdict, what the case checks)
CASES = [
    # --- fractions, decimals, roots
    (r"so $\boxed{\frac{23}{7}}$", "23/7", R, "frac vs slash"),
    (r"\boxed{23/7}", r"\frac{23}{7}", R, "slash vs frac"),
    (r"\boxed{0.5}", r"\frac{1}{2}", R, "decimal vs fraction"),
    (r"\boxed{\dfrac12}", "0.5", R, "dfrac without braces"),
    (r"\boxed{\frac{1}{\frac{1}{2}}}", "2", R, "nested fraction"),
    (r"\boxed{2\sqrt{2}}", r"\sqrt{8}", R, "simplified root"),
    (r"\boxed{\frac{\sqrt3}{2}}", r"\frac{\sqrt{3}}{2}", R, "sqrt without braces"),
    (r"\boxed{\frac{1}{\sqrt{2}}}", r"\frac{\sqrt{2}}{2}", R, "rationalised denominator"),
    (r"\boxed{0.50001}", r"\frac12", W, "close decimal is not equal"),
    (r"\boxed{2.0001}", "2", W, "close number is not equal"),
    (r"\boxed{\sqrt{2}}", "2", W, "root vs number"),
    (r"\boxed{-5}", "5", W, "sign"),
    # --- integers and numbers as references
    (r"\boxed{142}", 142.0, R, "float reference (AMC)"),
    (r"\boxed{25}", "025", R, "leading zero (AIME)"),
    (r"\boxed{0.25}", 0.25, R, "numeric reference"),
    (r"\boxed{\frac14}", 0.25, R, "fraction vs numeric reference"),
    (r"\boxed{1001}", "1000", W, "off by one"),
    (r"\boxed{3}", "4", W, "plain wrong"),
    # --- thousands separators
    (r"\boxed{10080}", "10,080", R, "comma separator in reference"),
    (r"\boxed{10,080}", "10080", R, "comma separator in answer"),
    (r"\boxed{1{,}000{,}000}", "1000000", R, "braced comma separators"),
    (r"\boxed{1\,000}", "1000", R, "thin-space separator"),
    (r"\boxed{10,081}", "10080", W, "separator does not hide a wrong digit"),
    # --- intervals, sets, tuples, matrices
    (r"\boxed{[0, 1)}", "[0,1)", R, "half-open interval"),
    (r"\boxed{(-\infty, 2]}", r"(-\infty,2]", R, "unbounded interval"),
    (r"\boxed{(2,12)\cup(12,102)}", r"(2,12) \cup (12,102)", R, "union of intervals"),
    (r"\boxed{(1, 2)}", "[1, 2]", W, "open vs closed interval"),
    (r"\boxed{\{2, 1\}}", r"\{1,2\}", R, "set order"),
    (r"\boxed{1, -2}", "-2,1", R, "comma list order"),
    (r"\boxed{\{1,2,3\}}", r"\{1,2\}", W, "extra element"),
    (r"\boxed{(3, \frac{\pi}{2})}", r"\left( 3, \frac{\pi}{2} \right)", R, "point with left/right"),
    (r"\boxed{(15,-29)}", "(15,-29)", R, "point"),
    (r"\boxed{(-29,15)}", "(15,-29)", W, "point order matters"),
    (r"\boxed{\begin{pmatrix} -1 \\ 2 \end{pmatrix}}", r"\begin{pmatrix}-1\\2\end{pmatrix}", R, "vector"),
    (r"\boxed{\begin{pmatrix}1\\2\end{pmatrix}}", r"\begin{pmatrix}2\\1\end{pmatrix}", W, "vector order"),
    # --- algebra
    (r"\boxed{x^2+1}", "1+x^2", R, "commuted polynomial"),
    (r"\boxed{x^2-1}", "x^2+1", W, "different polynomial"),
    (r"\boxed{6+9i}", "6+9i", R, "complex number"),
    (r"\boxed{\pi/3}", r"\frac{\pi}{3}", R, "pi fraction"),
    (r"\boxed{4\pi}", "4", W, "missing pi"),
    (r"\boxed{x}", "5", W, "variable vs number"),
    (r"\boxed{\frac{1}{4p^2}}", "\\frac{1}{4p^2}\n", R, "reference with trailing newline"),
    # --- equations vs values
    (r"\boxed{x = 5}", "5", R, "assignment in answer"),
    (r"\boxed{5}", "x=5", R, "assignment in reference"),
    (r"\boxed{y = 2x + 3}", "2x+3", R, "line equation vs expression"),
    (r"\boxed{k = 2n - 1}", "$k=2 n-1$", R, "dollar-wrapped reference (OlympiadBench)"),
    # --- degrees, percent, units, money
    (r"\boxed{30^\circ}", "30", R, "degrees in answer"),
    (r"\boxed{30}", r"30^\circ", R, "degrees in reference"),
    (r"\boxed{31^\circ}", r"30^\circ", W, "wrong degrees"),
    (r"\boxed{50\%}", "50", R, "percent in answer"),
    (r"\boxed{10\%}", r"10\%", R, "percent both"),
    (r"\boxed{5}", r"5 \text{ cm}", R, "unit in reference"),
    (r"\boxed{5\text{ cm}}", "5", R, "unit in answer"),
    (r"\boxed{\$18.90}", "18.90", R, "dollar sign"),
    (r"The temperature is $\boxed{1950}$.", "1950^\\circ C\n", R, "degree Celsius reference (Minerva)"),
    (r"\boxed{1950}", r"1960^\circ C", W, "wrong temperature"),
    # --- scientific notation and Minerva/OlympiadBench list references
    (r"\boxed{9.6}", "['9.6\\n']", R, "stringified list reference"),
    (r"\boxed{9.7}", "['9.6\\n']", W, "stringified list, wrong"),
    (r"\boxed{3.3\times 10^{12}}", ["3.3e12\n"], R, "e-notation reference"),
    (r"\boxed{3.89 \times 10^{-10}}", ["3.89e-10\n", "3.89e-10"], R, "negative exponent"),
    (r"\boxed{1e11}", "10^{11}", R, "e-notation answer"),
    (r"\boxed{1/2}", [r"\frac{1}{2}", "0.5"], R, "list of acceptable answers"),
    (r"\boxed{3}", ["1", "2"], W, "none of the acceptable answers"),
    # --- text answers
    (r"\boxed{\text{Evelyn}}", r"\text{Evelyn}", R, "text answer"),
    (r"\boxed{Evelyn}", r"\text{Evelyn}", R, "text answer without text{}"),
    (r"\boxed{Nyleve}", r"\text{Evelyn}", W, "anagram is not the word"),
    (r"\boxed{\text{Bob}}", r"\text{Evelyn}", W, "other name"),
    (r"\boxed{\text{(C)}}", r"\text{(C)}", R, "choice letter"),
    (r"\boxed{C}", r"\text{(C)}", R, "bare choice letter"),
    (r"\boxed{D}", r"\text{(C)}", W, "wrong choice letter"),
    (r"\boxed{\text{odd}}", r"\text{even}", W, "wrong word"),
    (r"\boxed{\textbf{(C) }12}", r"\text{(C)}", R, "choice letter followed by its value"),
    (r"\boxed{\textbf{(B) }12}", r"\text{(C)}", W, "wrong choice letter followed by a value"),
    # --- inequalities, several values
    (r"\boxed{k \geq 2}", r"[2, \infty)", R, "inequality vs interval"),
    (r"\boxed{x > 2}", r"[2, \infty)", W, "strict inequality vs closed interval"),
    (r"\boxed{2 \text{ and } 3}", "2,3", R, "values joined by text"),
    (r"\boxed{\pm 2}", "-2,2", R, "plus-minus"),
    (r"\boxed{1.33}", r"\frac43", W, "rounded decimal is not the fraction"),
    # --- box syntax
    (r"\fbox{7}", "7", R, "fbox"),
    (r"the answer is \boxed 5", "5", R, "brace-less box"),
    (r"\boxed{\infty}", r"\infty", R, "infinity"),
    # --- traps
    (r"The answer is 7. \boxed{8}", "7", W, "right number outside, wrong in box"),
    (r"\boxed{}", "7", W, "empty box"),
    (r"First \boxed{7}, but wait, actually \boxed{8}", "7", W, "several boxes: last is wrong"),
    (r"First \boxed{8}, but wait, actually \boxed{7}", "7", R, "several boxes: last is right"),
    (r"The answer is 7.", "7", W, "answer only in text"),
    (r"$7$", "7", W, "answer only in math mode, no box"),
    (r"so the answer is \boxed{\frac{1}{2}", r"\frac12", W, "unclosed box (truncated)"),
    (r"I think \boxed{5} is wrong; the answer is 6", "6", W, "box holds the rejected answer"),
    (r"\boxed{7} \boxed{}", "7", W, "last box empty"),
]


def test_table_is_large_and_balanced():
    assert len(CASES) >= 60
    assert sum(1 for c in CASES if c[2]) >= 25 and sum(1 for c in CASES if not c[2]) >= 25


@pytest.mark.parametrize("response,reference,expected,why", CASES, ids=[c[3] for c in CASES])
def test_grade_math_table(response, reference, expected, why):
    assert grade_math(response, reference) is expected, why


def test_grade_batch_agrees_with_grade_math():
    responses = [c[0] for c in CASES]
    references = [c[1] for c in CASES]
    assert grade_batch(responses, references, workers=2, progress=False) == [c[2] for c in CASES]
