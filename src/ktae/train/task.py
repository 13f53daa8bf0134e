"""The embedded task: procedurally generated multi-step arithmetic, answers in ``\\boxed{}``.

Everything here is generated locally from a seed, so ``ktae train`` needs no download.
A problem is an expression such as ``7*3-4+8`` (operands 1..9, operators ``+ - *``,
usual precedence, no intermediate result below zero). Two kinds of solution exist:

* a *worked* solution that evaluates one operator per line and ends with the answer::

      7*3=21
      21-4=17
      17+8=25
      \\boxed{25}

* a *direct* solution that states the answer at once (``\\boxed{25}``).

The warm-start data of the tiny model mixes both (see :mod:`ktae.train.tiny`). A tiny
model cannot compute a four-operand expression in one go, so its direct answers are
mostly wrong while its worked solutions are mostly right: reinforcement learning has
to discover that working the problem out pays, and then to make the arithmetic of the
worked lines reliable.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

#: prompt format of the embedded task: the expression, then a newline (no chat template)
PROMPT_SUFFIX = "\n"
BOXED = "\\boxed{"


@dataclass(frozen=True)
class ArithmeticTask:
    """Generator of arithmetic problems; every field changes the task (and the cached model)."""

    min_operands: int = field(default=3, metadata={"help": "fewest operands of an expression"})
    max_operands: int = field(default=4, metadata={"help": "most operands of an expression"})
    max_operand: int = field(default=9, metadata={"help": "operands are drawn from 1..max_operand"})
    operators: str = field(default="+-*", metadata={"help": "operators to draw from (subset of '+-*')"})

    def __post_init__(self) -> None:
        if not (isinstance(self.min_operands, int) and self.min_operands >= 2):
            raise ValueError(f"ArithmeticTask.min_operands must be an int >= 2, got {self.min_operands!r}")
        if not (isinstance(self.max_operands, int) and self.max_operands >= self.min_operands):
            raise ValueError(
                f"ArithmeticTask.max_operands must be an int >= min_operands ({self.min_operands}), "
                f"got {self.max_operands!r}"
            )
        if not (isinstance(self.max_operand, int) and 1 <= self.max_operand <= 99):
            raise ValueError(f"ArithmeticTask.max_operand must be an int in [1, 99], got {self.max_operand!r}")
        if not self.operators or any(op not in "+-*" for op in self.operators):
            raise ValueError(f"ArithmeticTask.operators must be a non-empty subset of '+-*', got {self.operators!r}")

    # ------------------------------------------------------------------ problems
    def sample(self, rng: random.Random) -> str:
        """One expression (no spaces), with every intermediate result >= 0."""
        while True:
            n = rng.randint(self.min_operands, self.max_operands)
            numbers = [rng.randint(1, self.max_operand) for _ in range(n)]
            ops = [rng.choice(self.operators) for _ in range(n - 1)]
            expr = str(numbers[0]) + "".join(op + str(x) for op, x in zip(ops, numbers[1:]))
            steps = solve_steps(expr)
            if steps is not None:
                return expr

    def count_upper_bound(self) -> int:
        """Number of distinct expressions before the no-negative filter (an upper bound on distinct problems)."""
        ops = len(set(self.operators))
        return sum(self.max_operand ** n * ops ** (n - 1) for n in range(self.min_operands, self.max_operands + 1))

    def problems(self, count: int, seed: int, exclude: set[str] | frozenset[str] = frozenset()) -> list[dict]:
        """``count`` distinct problems as ``{"problem", "answer"}`` records, reproducible from ``seed``."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count!r}")
        rng = random.Random(seed)
        seen: set[str] = set(exclude)
        out: list[dict] = []
        attempts = 0
        while len(out) < count:
            expr = self.sample(rng)
            attempts += 1
            if expr in seen:
                if attempts > 100 * (count + 10):
                    raise ValueError(f"the task has too few distinct problems for count={count}")
                continue
            seen.add(expr)
            out.append({"problem": expr, "answer": answer_of(expr)})
        return out


# ---------------------------------------------------------------------- solving
def _tokens(expr: str) -> tuple[list[int], list[str]]:
    numbers: list[int] = []
    ops: list[str] = []
    current = ""
    for ch in expr:
        if ch.isdigit():
            current += ch
        elif ch in "+-*":
            if not current:
                raise ValueError(f"malformed expression {expr!r}")
            numbers.append(int(current))
            ops.append(ch)
            current = ""
        else:
            raise ValueError(f"unexpected character {ch!r} in expression {expr!r}")
    if not current:
        raise ValueError(f"malformed expression {expr!r}")
    numbers.append(int(current))
    return numbers, ops


def solve_steps(expr: str) -> list[str] | None:
    """The worked lines ``a<op>b=c``: multiplications first, then left to right.

    Returns ``None`` when an intermediate result would be negative (such problems are
    not generated).
    """
    numbers, ops = _tokens(expr)
    steps: list[str] = []
    # multiplications, left to right
    i = 0
    while i < len(ops):
        if ops[i] == "*":
            a, b = numbers[i], numbers[i + 1]
            c = a * b
            steps.append(f"{a}*{b}={c}")
            numbers[i : i + 2] = [c]
            del ops[i]
        else:
            i += 1
    # additions and subtractions, left to right
    while ops:
        a, b, op = numbers[0], numbers[1], ops[0]
        c = a + b if op == "+" else a - b
        if c < 0:
            return None
        steps.append(f"{a}{op}{b}={c}")
        numbers[0:2] = [c]
        del ops[0]
    return steps


def answer_of(expr: str) -> str:
    """The value of ``expr`` as a string (same precedence rules as the worked solution)."""
    numbers, ops = _tokens(expr)
    value = eval_expression(numbers, ops)
    return str(value)


def eval_expression(numbers: list[int], ops: list[str]) -> int:
    terms: list[int] = [numbers[0]]
    signs: list[str] = []
    for op, x in zip(ops, numbers[1:]):
        if op == "*":
            terms[-1] = terms[-1] * x
        else:
            signs.append(op)
            terms.append(x)
    value = terms[0]
    for op, x in zip(signs, terms[1:]):
        value = value + x if op == "+" else value - x
    return value


def worked_solution(expr: str) -> str:
    """The worked solution text of ``expr`` (without the end-of-sequence token)."""
    steps = solve_steps(expr)
    if steps is None:
        raise ValueError(f"expression {expr!r} has a negative intermediate result")
    return "\n".join(steps) + "\n" + BOXED + answer_of(expr) + "}"


def direct_solution(expr: str) -> str:
    """The direct (answer-only) solution text of ``expr``."""
    return BOXED + answer_of(expr) + "}"


def format_problem(problem: str) -> str:
    """The embedded task's prompt: the expression and a newline."""
    return problem + PROMPT_SUFFIX
