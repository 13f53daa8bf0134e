"""The word-problem task: short stories with several steps, subword tokens, solutions of varying length.

The arithmetic task (:mod:`ktae.recipes.arithmetic`) cannot show what KTAE does: its 24-symbol tokenizer puts
nearly every token in every rollout and its solutions have a fixed shape. Here a problem is a story::

    Mia has 3 boxes of 4 pens. Then Mia buys 7 more pens. Then Mia gives away 5 pens.
    How many pens does Mia have now?

and a worked solution takes one line per operation, each line naming the event it works out::

    3 boxes of 4: 3*4=12
    buys 7: 12+7=19
    gives away 5: 19-5=14
    \\boxed{14}

The warm-start teacher (:meth:`WordProblemTask.solution`) is careful in a share of its solutions and
sloppy in the rest. The sloppy habits are the task's wrong and long paths:

* *boxes added*: ``3 boxes of 4: 3+4=7`` (a wrong step);
* *giving adds*: ``gives away 5: 19+5=24`` (a wrong step);
* *counting on in pieces*: ``buys 7: 12+3=15, 15+4=19`` — longer, and with a slip in the second piece
  (``15+4=20``, a wrong step) some of the time;
* *re-checking*: ``check: 12+7=19`` after a step — right but redundant.

So wrong habits give wrong intermediate results, detours and re-checks; the right habit gives the shorter
path. The tokenizer (:func:`build_tokenizer`) is a byte-level BPE learned on the task's own text with the
``tokenizers`` library, so numbers and words become multi-character tokens as in GPT-4- or Llama-3-style
tokenizers. :func:`label_lines` labels every line of any response — the teacher's or a model's — as a
right ``step``, a ``mistake`` (a false equation or an operation that does not match the event), a
``detour`` (a right but redundant check, or a right step done in pieces), the ``answer`` line or
``other`` text; :func:`token_labels` carries the labels over to the response's tokens.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from ktae.recipes.arithmetic import BOXED, PROMPT_SUFFIX, apply_operator

NAMES = ("Ann", "Ben", "Cara", "Dan", "Eva", "Finn", "Gia", "Hugo", "Ivy", "Jack", "Kim", "Leo", "Mia", "Noah",
         "Olga", "Paul")
ITEMS = ("apples", "pens", "coins", "books", "cards", "eggs", "shells", "stamps", "marbles", "stickers",
         "cookies", "beads")
ADD_VERBS = ("buys", "finds", "gets", "wins")
SUB_VERBS = ("gives away", "loses", "sells")
#: line labels of :func:`label_lines`
LABELS = ("step", "mistake", "detour", "answer", "other")
#: counts stay in 0..MAX_VALUE (the default of ``WordProblemTask.max_count``)
MAX_VALUE = 200

_EQUATION = re.compile(r"^\s*(-?\d+)\s*([+\-*])\s*(\d+)\s*=\s*(-?\d+)\s*$")


@dataclass(frozen=True)
class Op:
    """One operation of a problem's right solution: ``tag: left <op> operand = result``.

    ``left`` -1 stands for the running total and ``operand`` -1 for the boxes worked out on the line
    before (an ``adds`` step); the result becomes the running total, or with ``aside`` is kept for the
    ``adds`` step that follows (boxes bought later in the story).
    """

    tag: str
    op: str                # "+", "-" or "*"
    operand: int
    left: int = -1
    aside: bool = False


@dataclass(frozen=True)
class WordProblemTask:
    """Generator of word problems and of their worked solutions, careful or sloppy."""

    min_events: int = field(default=2, metadata={"help": "fewest events after the start of a story"})
    max_events: int = field(default=3, metadata={"help": "most events after the start of a story"})
    box_mistake: float = field(default=0.8, metadata={"help": "sloppy teacher: chance to add box counts"})
    give_mistake: float = field(default=0.7, metadata={"help": "sloppy teacher: chance that giving away adds"})
    pieces: float = field(default=0.7, metadata={"help": "sloppy teacher: chance to count on in two pieces"})
    slip: float = field(default=0.5, metadata={"help": "sloppy teacher: chance of a slip in the second piece"})
    recheck: float = field(default=0.5, metadata={"help": "sloppy teacher: chance of a check line after a step"})
    max_count: int = field(default=MAX_VALUE, metadata={"help": "every count of a story stays in 0..max_count"})
    max_change: int = field(default=19, metadata={"help": "items bought, found or given away in one event: "
                                                          "2..max_change (a plain start: 5..2*max_change+2)"})

    def __post_init__(self) -> None:
        if not (isinstance(self.min_events, int) and 1 <= self.min_events <= self.max_events <= 5):
            raise ValueError(f"WordProblemTask: need 1 <= min_events <= max_events <= 5, got "
                             f"{self.min_events!r}, {self.max_events!r}")
        if not (isinstance(self.max_change, int) and isinstance(self.max_count, int) and self.max_change >= 2
                and self.max_count >= 2 * self.max_change + 2):
            raise ValueError(f"WordProblemTask: need max_change >= 2 and max_count >= 2 * max_change + 2, got "
                             f"max_change {self.max_change!r}, max_count {self.max_count!r}")
        for name in ("box_mistake", "give_mistake", "pieces", "slip", "recheck"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"WordProblemTask.{name} must be in [0, 1], got {getattr(self, name)!r}")

    # ------------------------------------------------------------------ problems
    def sample(self, rng: random.Random) -> str:
        """One story whose every intermediate value stays in 0..max_count."""
        return self.sample_counted(rng)[0]

    def sample_counted(self, rng: random.Random) -> tuple[str, int]:
        """One story (as :meth:`sample`, the same draws) and its right answer, the count at its end."""
        while True:
            name, item = rng.choice(NAMES), rng.choice(ITEMS)
            if rng.random() < 0.5:
                a, b = rng.randint(2, 9), rng.randint(2, 9)
                sentences, value = [f"{name} has {a} boxes of {b} {item}."], a * b
            else:
                value = rng.randint(5, 2 * self.max_change + 2)
                sentences = [f"{name} has {value} {item}."]
            ok = value <= self.max_count
            for _ in range(rng.randint(self.min_events, self.max_events)):
                kind = rng.choice(("add", "sub", "boxes"))
                if kind == "add":
                    k = rng.randint(2, self.max_change)
                    sentences.append(f"Then {name} {rng.choice(ADD_VERBS)} {k} more {item}.")
                    value += k
                elif kind == "boxes":
                    k, m = rng.randint(2, 5), rng.randint(2, 9)
                    sentences.append(f"Then {name} buys {k} boxes of {m} more {item}.")
                    value += k * m
                else:
                    k = rng.randint(2, self.max_change)
                    sentences.append(f"Then {name} {rng.choice(SUB_VERBS)} {k} {item}.")
                    value -= k
                ok = ok and 0 <= value <= self.max_count
            if ok:
                sentences.append(f"How many {item} does {name} have now?")
                return " ".join(sentences), value

    def problems(self, count: int, seed: int, exclude: set[str] | frozenset[str] = frozenset()) -> list[dict]:
        """``count`` distinct problems as ``{"problem", "answer"}`` records, reproducible from ``seed``."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count!r}")
        rng = random.Random(seed)
        seen, out = set(exclude), []
        while len(out) < count:
            story, value = self.sample_counted(rng)
            if story not in seen:
                seen.add(story)
                out.append({"problem": story, "answer": str(value)})
        return out

    def size(self) -> int:
        """A lower bound on the number of distinct problems (far more than any run draws)."""
        return 10 ** 7

    # ------------------------------------------------------------------ solutions
    def solution(self, story: str, rng: random.Random, careful: bool) -> tuple[str, list[str]]:
        """A worked solution of ``story`` and the label of each of its lines (see :data:`LABELS`)."""
        lines: list[tuple[str, str]] = []
        total, aside = start_value(story), 0
        for op in operations(story):
            left, operand = (total if op.left < 0 else op.left), (aside if op.operand < 0 else op.operand)
            tag = f"adds {aside}" if op.operand < 0 else op.tag
            if careful:
                line, label, result = f"{tag}: {_eq(left, op.op, operand)}", "step", apply_operator(left, op.op, operand)
            else:
                line, label, result = self._sloppy_line(tag, op.op, left, operand, rng)
            lines.append((line, label))
            if not careful and rng.random() < self.recheck:
                eq = line.split(": ", 1)[1].split(", ")[-1]
                lines.append((f"check: {eq}", "detour" if _true(eq) else "mistake"))
            total, aside = (total, result) if op.aside else (result, aside)
        lines.append((BOXED + str(total) + "}", "answer"))
        return "\n".join(text for text, _ in lines), [label for _, label in lines]

    def _sloppy_line(self, tag: str, op: str, left: int, operand: int, rng: random.Random) -> tuple[str, str, int]:
        """One line of the sloppy teacher: ``(text, label, value it states)``."""
        if op == "*" and rng.random() < self.box_mistake:
            return f"{tag}: {_eq(left, '+', operand)}", "mistake", left + operand
        if op == "-" and tag.startswith("gives away") and rng.random() < self.give_mistake:
            return f"{tag}: {_eq(left, '+', operand)}", "mistake", left + operand
        if op in "+-" and operand >= 4 and rng.random() < self.pieces:
            first = operand // 2
            middle = apply_operator(left, op, first)
            result = apply_operator(middle, op, operand - first)
            slipped = rng.random() < self.slip
            shown = result + rng.choice((-1, 1)) if slipped else result
            text = f"{tag}: {_eq(left, op, first)}, {middle}{op}{operand - first}={shown}"
            return text, "mistake" if slipped else "detour", shown
        return f"{tag}: {_eq(left, op, operand)}", "step", apply_operator(left, op, operand)

    def warm_start_pair(self, rng: random.Random, careful_fraction: float) -> tuple[str, str]:
        """One (prompt, response) pair of the warm-start data: careful with probability ``careful_fraction``."""
        story = self.sample(rng)
        text, _ = self.solution(story, rng, careful=rng.random() < careful_fraction)
        return format_problem(story), text

    def build_tokenizer(self):
        """The task's byte-level BPE tokenizer (see :func:`build_tokenizer`)."""
        return build_tokenizer(self)


# ---------------------------------------------------------------------- reading a story
_START_BOXES = re.compile(r"^\w+ has (\d+) boxes of (\d+) \w+\.")
_START_PLAIN = re.compile(r"^\w+ has (\d+) \w+\.")
_EVENT = re.compile(r"Then \w+ (buys (\d+) boxes of (\d+) more|(" + "|".join(ADD_VERBS) + r") (\d+) more|("
                    + "|".join(SUB_VERBS) + r") (\d+)) \w+\.")


def start_value(story: str) -> int:
    """The count at the start of the story before any operation (the box count A for ``A boxes of B``)."""
    boxes = _START_BOXES.match(story)
    if boxes:
        return int(boxes.group(1))
    plain = _START_PLAIN.match(story)
    if not plain:
        raise ValueError(f"not a story of the word-problem task: {story[:80]!r}")
    return int(plain.group(1))


def operations(story: str) -> list[Op]:
    """The operations of the right solution of ``story``, in order."""
    ops: list[Op] = []
    boxes = _START_BOXES.match(story)
    if boxes:
        ops.append(Op(f"{boxes.group(1)} boxes of {boxes.group(2)}", "*", int(boxes.group(2)),
                      left=int(boxes.group(1))))
    else:
        start_value(story)  # raises on a malformed story
    for m in _EVENT.finditer(story):
        if m.group(2):
            ops.append(Op(f"{m.group(2)} boxes of {m.group(3)}", "*", int(m.group(3)), left=int(m.group(2)),
                          aside=True))
            ops.append(Op("adds", "+", -1))
        elif m.group(4):
            ops.append(Op(f"{m.group(4)} {m.group(5)}", "+", int(m.group(5))))
        else:
            ops.append(Op(f"{m.group(6)} {m.group(7)}", "-", int(m.group(7))))
    return ops


def answer_of(story: str) -> str:
    """The right answer of ``story`` as a string."""
    return WordProblemTask().solution(story, random.Random(0), careful=True)[0].rsplit(BOXED, 1)[1].rstrip("}")


def worked_solution(story: str) -> str:
    """The careful teacher's solution of ``story``."""
    return WordProblemTask().solution(story, random.Random(0), careful=True)[0]


def format_problem(story: str) -> str:
    """The task's prompt: the story and a newline."""
    return story + PROMPT_SUFFIX


def _eq(a: int, op: str, b: int) -> str:
    return f"{a}{op}{b}={apply_operator(a, op, b)}"


def _true(equation: str) -> bool:
    m = _EQUATION.match(equation)
    return bool(m) and apply_operator(int(m.group(1)), m.group(2), int(m.group(3))) == int(m.group(4))


# ---------------------------------------------------------------------- labelling any response
def label_lines(story: str, response: str) -> list[tuple[int, int, str]]:
    """``(start, end, label)`` character spans of every line of ``response`` (see :data:`LABELS`).

    A step line ``tag: a<op>b=c[, c<op>d=e]`` is matched to the next operation of the right solution.
    It is a ``mistake`` when an equation is false, when its operation differs from the event's, when its
    left operand is not the value carried from the line before (or the event's box count), when its
    operands do not add up to the event's number, or when its tag names another event; a right step done
    in one equation is a ``step``, in several pieces a ``detour``. Values carried on are the ones the line
    states, so an error counts once, where it is made. ``check: <equation>`` lines are a ``detour`` when
    true, else a ``mistake``; the ``\\boxed{}`` line is the ``answer``; empty lines are ``other``; any
    other line is a ``mistake``.
    """
    ops = operations(story)
    state = {"total": start_value(story), "aside": 0}
    k = 0
    spans: list[tuple[int, int, str]] = []
    pos = 0
    for line in response.split("\n"):
        start, end = pos, pos + len(line)
        pos = end + 1
        text = line.strip()
        if not text:
            label = "other"
        elif text.startswith(BOXED):
            label = "answer"
        elif text.startswith("check:"):
            label = "detour" if _true(text[len("check:"):]) else "mistake"
        else:
            label = _label_step(text, ops[k] if k < len(ops) else None, state)
            k += 1
        spans.append((start, end, label))
    return spans


def _label_step(text: str, op: Op | None, state: dict[str, int]) -> str:
    """Label of one step line against the operation ``op`` it should carry out; updates ``state``
    (the running ``total`` and the boxes kept ``aside``) with the value the line states."""
    tag, colon, rest = text.partition(": ")
    parts = [_EQUATION.match(p) for p in rest.split(",")] if colon else [None]
    if op is None or any(p is None for p in parts):
        return "mistake"
    eqs = [(int(p.group(1)), p.group(2), int(p.group(3)), int(p.group(4))) for p in parts]
    left = state["total"] if op.left < 0 else op.left
    operand = state["aside"] if op.operand < 0 else op.operand
    expected_tag = f"adds {state['aside']}" if op.operand < 0 else op.tag
    state["aside" if op.aside else "total"] = eqs[-1][3]
    chained = all(eqs[i][0] == eqs[i - 1][3] for i in range(1, len(eqs)))
    right = (tag == expected_tag and eqs[0][0] == left and all(e[1] == op.op for e in eqs) and chained
             and all(apply_operator(a, o, b) == c for a, o, b, c in eqs)
             and (sum(e[2] for e in eqs) == operand if op.op in "+-" else len(eqs) == 1 and eqs[0][2] == operand))
    if not right:
        return "mistake"
    return "step" if len(eqs) == 1 else "detour"


def token_labels(story: str, token_texts: list[str]) -> list[str]:
    """The label of each response token, given the decoded text of each token in order.

    A token takes the label of the line its first character lies in (a newline token: the line it ends).
    """
    response = "".join(token_texts)
    spans = label_lines(story, response)
    out, pos, line = [], 0, 0
    for piece in token_texts:
        while line < len(spans) - 1 and pos > spans[line][1]:
            line += 1
        out.append(spans[line][2] if spans else "other")
        pos += len(piece)
    return out


# ---------------------------------------------------------------------- tokenizer
#: vocabulary size of the learned BPE (bytes included)
VOCAB_SIZE = 640
#: stories and solutions the tokenizer is learned on
TOKENIZER_CORPUS = 4000


def build_tokenizer(task: WordProblemTask | None = None, seed: int = 0):
    """A byte-level BPE ``PreTrainedTokenizerFast`` learned on generated stories and solutions.

    Pre-tokenisation splits words, numbers and punctuation as GPT-2/GPT-4-style tokenizers do
    (``" pens"``, ``"12"``, ``"+"``), then BPE merges frequent pieces up to :data:`VOCAB_SIZE` tokens.
    ``<pad>``, ``<eos>`` and ``<unk>`` are ids 0, 1, 2. Deterministic for a given task and seed.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    task = task or WordProblemTask()
    rng = random.Random(seed)
    corpus = []
    for i in range(TOKENIZER_CORPUS):
        prompt, response = task.warm_start_pair(rng, careful_fraction=0.5)
        corpus.append(prompt + response)
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=["<pad>", "<eos>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>",
                                   clean_up_tokenization_spaces=False, padding_side="left")
