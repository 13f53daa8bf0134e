"""The embedded task: procedurally generated multi-step arithmetic, answers in ``\\boxed{}``.

Everything here is generated locally from a seed, so ``ktae train`` needs no download.
A problem is an expression such as ``3+4*2-5`` (operands 1..9, operators ``+ - *``, the
usual order of operations, every intermediate value in 0..99) chosen so that the order
matters: evaluating it strictly left to right gives a different answer. A worked
solution performs one operation per line and ends with the answer::

    4*2=8
    3+8=11
    11-5=6
    \\boxed{6}

:func:`left_to_right_solution` writes the same kind of solution with the classic
mistake (``3+4=7``, ``7*2=14``, ``14-5=9``). The warm-start data of the tiny model
(:mod:`ktae.recipes.tiny_model`) mixes both, the mistaken kind in the majority, so the model
starts out mostly wrong when decoding greedily but sometimes right when sampling:
reinforcement learning on the final answer alone has to teach it the order of
operations (and to make its arithmetic reliable).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

#: prompt format of the embedded task: the expression, then a newline (no chat template)
PROMPT_SUFFIX = "\n"
BOXED = "\\boxed{"
#: intermediate values stay in 0..MAX_VALUE
MAX_VALUE = 99
PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
#: every symbol the embedded task writes; anything else maps to <unk>
ALPHABET = list("0123456789+-*=()\n ?")


@dataclass(frozen=True)
class ArithmeticTask:
    """Generator of arithmetic problems; every field changes the task (and the cached model)."""

    min_operands: int = field(default=3, metadata={"help": "fewest operands of an expression"})
    max_operands: int = field(default=4, metadata={"help": "most operands of an expression"})
    max_operand: int = field(default=9, metadata={"help": "operands are drawn from 1..max_operand"})

    def __post_init__(self) -> None:
        if not (isinstance(self.min_operands, int) and self.min_operands >= 3):
            raise ValueError(f"ArithmeticTask.min_operands must be an int >= 3, got {self.min_operands!r}")
        if not (isinstance(self.max_operands, int) and self.min_operands <= self.max_operands <= 6):
            raise ValueError(
                f"ArithmeticTask.max_operands must be an int in [min_operands ({self.min_operands}), 6], "
                f"got {self.max_operands!r}"
            )
        if not (isinstance(self.max_operand, int) and 2 <= self.max_operand <= 9):
            raise ValueError(f"ArithmeticTask.max_operand must be an int in [2, 9], got {self.max_operand!r}")

    # ------------------------------------------------------------------ problems
    def sample(self, rng: random.Random) -> str:
        """One expression whose value depends on the order of operations (all intermediates in 0..99)."""
        table = _valid_expressions(self) if self.count_upper_bound() <= _ENUMERATE_LIMIT else None
        if table is not None:
            return table[rng.randrange(len(table))]
        while True:
            n = rng.randint(self.min_operands, self.max_operands)
            numbers = [rng.randint(1, self.max_operand) for _ in range(n)]
            ops = [rng.choice("+-*") for _ in range(n - 1)]
            if _valid(numbers, ops):
                return _join(numbers, ops)

    def size(self) -> int:
        """Number of distinct problems (exact when enumerable, else an upper bound)."""
        if self.count_upper_bound() <= _ENUMERATE_LIMIT:
            return len(_valid_expressions(self))
        return self.count_upper_bound()

    def count_upper_bound(self) -> int:
        """Number of distinct expressions before filtering (an upper bound on distinct problems)."""
        return sum(self.max_operand ** n * 3 ** (n - 1) for n in range(self.min_operands, self.max_operands + 1))

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

    def warm_start_pair(self, rng: random.Random, careful_fraction: float) -> tuple[str, str]:
        """One (prompt, response) pair of the warm-start data: the right order of operations with probability
        ``careful_fraction``, else strictly left to right."""
        expr = self.sample(rng)
        solve = worked_solution if rng.random() < careful_fraction else left_to_right_solution
        return format_problem(expr), solve(expr)

    def build_tokenizer(self):
        """The task's character-level tokenizer (:func:`build_tokenizer`)."""
        return build_tokenizer()


# ---------------------------------------------------------------------- solving
#: tasks with at most this many candidate expressions are enumerated once and sampled from a table
_ENUMERATE_LIMIT = 400_000
_TABLES: dict = {}


def _join(numbers: list[int], ops: list[str]) -> str:
    return str(numbers[0]) + "".join(op + str(x) for op, x in zip(ops, numbers[1:]))


def _valid(numbers: list[int], ops: list[str]) -> bool:
    right = _steps(numbers, ops, precedence=True)
    wrong = _steps(numbers, ops, precedence=False)
    return right is not None and wrong is not None and right[1] != wrong[1]


def _valid_expressions(task: "ArithmeticTask") -> list[str]:
    """Every valid expression of ``task``, in a fixed order (computed once per process)."""
    import itertools

    if task not in _TABLES:
        table = []
        digits = range(1, task.max_operand + 1)
        for n in range(task.min_operands, task.max_operands + 1):
            for ops in itertools.product("+-*", repeat=n - 1):
                if "*" not in ops:
                    continue
                for numbers in itertools.product(digits, repeat=n):
                    if _valid(list(numbers), list(ops)):
                        table.append(_join(list(numbers), list(ops)))
        if not table:
            raise ValueError(f"{task} has no valid problems")
        _TABLES[task] = table
    return _TABLES[task]


def apply_operator(a: int, op: str, b: int) -> int:
    """``a op b`` for ``op`` in ``+ - *`` (also used by the word-problem task)."""
    return a + b if op == "+" else a - b if op == "-" else a * b


def _steps(numbers: list[int], ops: list[str], precedence: bool) -> tuple[list[str], int] | None:
    """Worked lines and result, multiplications first (``precedence``) or strictly left to right.

    ``None`` when an intermediate value leaves 0..99.
    """
    numbers, ops = list(numbers), list(ops)
    lines: list[str] = []

    def reduce_at(i: int) -> bool:
        a, op, b = numbers[i], ops[i], numbers[i + 1]
        c = apply_operator(a, op, b)
        if not 0 <= c <= MAX_VALUE:
            return False
        lines.append(f"{a}{op}{b}={c}")
        numbers[i : i + 2] = [c]
        del ops[i]
        return True

    if precedence:
        while "*" in ops:
            if not reduce_at(ops.index("*")):
                return None
    while ops:
        if not reduce_at(0):
            return None
    return lines, numbers[0]


def parse(expr: str) -> tuple[list[int], list[str]]:
    """``3+4*2`` -> ``([3, 4, 2], ["+", "*"])`` (ValueError on anything else)."""
    numbers: list[int] = []
    ops: list[str] = []
    current = ""
    for ch in expr:
        if ch.isdigit():
            current += ch
        elif ch in "+-*" and current:
            numbers.append(int(current))
            ops.append(ch)
            current = ""
        else:
            raise ValueError(f"malformed expression {expr!r}")
    if not current:
        raise ValueError(f"malformed expression {expr!r}")
    numbers.append(int(current))
    return numbers, ops


def _solve(expr: str, precedence: bool) -> tuple[list[str], int]:
    result = _steps(*parse(expr), precedence=precedence)
    if result is None:
        raise ValueError(f"expression {expr!r} has an intermediate value outside 0..{MAX_VALUE}")
    return result


def answer_of(expr: str) -> str:
    """The value of ``expr`` (multiplication first) as a string."""
    return str(_solve(expr, True)[1])


def worked_solution(expr: str) -> str:
    """The correct worked solution of ``expr`` (without the end-of-sequence token)."""
    lines, value = _solve(expr, True)
    return "\n".join(lines) + "\n" + BOXED + str(value) + "}"


def left_to_right_solution(expr: str) -> str:
    """The worked solution with the order-of-operations mistake: strictly left to right."""
    lines, value = _solve(expr, False)
    return "\n".join(lines) + "\n" + BOXED + str(value) + "}"


def format_problem(problem: str) -> str:
    """The embedded task's prompt: the expression and a newline."""
    return problem + PROMPT_SUFFIX


# ---------------------------------------------------------------------- tokenizer
def build_tokenizer():
    """A character-level ``PreTrainedTokenizerFast`` (``\\boxed{`` and ``}`` are single tokens)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab_list = [PAD, EOS, UNK] + ALPHABET + [BOXED, "}"]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"\\boxed\{|[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,
        padding_side="left",
    )
    return tok
