"""Exact checking of the equations a model writes, and the tokens of the false ones.

A model solving arithmetic writes lines such as ``7 + 8 = 15``, ``18 + 18 + 9 = 32`` or ``61 * 7 - 2 = 422 - 2 =
422``. :func:`find_equations` finds every such *equation chain* in a text: two or more arithmetic expressions joined
by ``=``, each made of numbers (integers or decimals such as ``2.5``), the operators ``+ - * / × ÷`` (a leading
``-`` is a sign), parentheses and spaces. The chain is *true* when every expression has the same value, computed
exactly with :class:`fractions.Fraction` (usual precedence, ``/`` exact; a division by zero makes the chain false).
Markdown's escaped star ``\\*`` is a product. Anything else (a letter, a comma, a newline, ``^``, a backslash) ends a
chain: in ``Step 1) 5 + 3 = 8`` the chain is ``5 + 3 = 8``. A chain with fewer than two sides is no equation.

:func:`false_equation_spans` gives the character spans of the false chains and :func:`token_flags` carries spans over
to tokens, given each token's text: a token is flagged when its characters overlap a span.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

__all__ = ["Equation", "evaluate", "find_equations", "false_equation_spans", "token_flags"]

#: one lexical item of arithmetic text: a number, an operator, a parenthesis, '=', spaces, or anything else
_ITEM = re.compile(r"(?P<num>\d+(?:\.\d+)?)|(?P<op>[+\-*/×÷])|(?P<paren>[()])|(?P<eq>=)|(?P<space>[ \t]+)"
                   r"|(?P<other>.)", re.DOTALL)
_OPERATORS = {"×": "*", "÷": "/"}


@dataclass(frozen=True)
class Equation:
    """One equation chain: characters ``text[start:end]``, its sides' exact values (None: a division by zero) and
    whether they are all equal."""

    start: int
    end: int
    values: tuple[Fraction | None, ...]

    @property
    def true(self) -> bool:
        return None not in self.values and len(set(self.values)) == 1


def evaluate(items: Sequence[str]) -> Fraction | None:
    """The exact value of an expression given as items (numbers, ``+ - * /``, parentheses).

    Returns None for a division by zero. Raises ``ValueError`` when the items are no expression.
    """
    pos = 0

    def peek() -> str | None:
        return items[pos] if pos < len(items) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return items[pos - 1]

    def atom() -> Fraction | None:
        item = peek()
        if item == "-":
            take()
            value = atom()
            return None if value is None else -value
        if item == "(":
            take()
            value = expression()
            if peek() != ")":
                raise ValueError("unclosed parenthesis")
            take()
            return value
        if item is None or not item[0].isdigit():
            raise ValueError(f"expected a number, got {item!r}")
        return Fraction(take())

    def term() -> Fraction | None:
        value = atom()
        while peek() in ("*", "/"):
            op, right = take(), atom()
            if value is None or right is None or (op == "/" and right == 0):
                value = None
            else:
                value = value * right if op == "*" else value / right
        return value

    def expression() -> Fraction | None:
        value = term()
        while peek() in ("+", "-"):
            op, right = take(), term()
            value = None if value is None or right is None else value + right if op == "+" else value - right
        return value

    value = expression()
    if pos != len(items):
        raise ValueError(f"unexpected {items[pos]!r}")
    return value


def _runs(text: str) -> list[list[tuple[str, int, int]]]:
    """Maximal runs of arithmetic items (kind, start, end), spaces dropped, split where anything else stands."""
    runs: list[list[tuple[str, int, int]]] = [[]]
    for match in _ITEM.finditer(text.replace("\\*", " *")):     # Markdown's escaped star: a product
        kind = match.lastgroup
        if kind == "other":
            runs.append([])
        elif kind != "space":
            runs[-1].append((match.group(), match.start(), match.end()))
    return [run for run in runs if any(item == "=" for item, _, _ in run)]


def _parse(side: list[tuple[str, int, int]]) -> tuple[Fraction | None, int, int]:
    """``(value, start, end)`` of one side given as items; ``ValueError`` when it is no expression."""
    if not side:
        raise ValueError("an empty side")
    return evaluate([_OPERATORS.get(item, item) for item, _, _ in side]), side[0][1], side[-1][2]


def _longest(side: list[tuple[str, int, int]], suffix: bool) -> tuple[Fraction | None, int, int] | None:
    """The longest suffix (or prefix) of ``side`` that is an expression, parsed; None when none is."""
    for cut in range(len(side)):
        try:
            return _parse(side[cut:] if suffix else side[: len(side) - cut])
        except ValueError:
            continue
    return None


def find_equations(text: str) -> list[Equation]:
    """Every equation chain of ``text`` (see the module docstring), in order.

    Within a run of arithmetic items split at ``=``, the first side of a chain is the longest expression that ends
    at its ``=`` (``Step 1) 5 + 3 = 8``: ``5 + 3``), the last the longest that starts after its ``=``; a side in the
    middle that is no expression ends the chain before it (with its longest leading expression as the last side)
    and a new chain may start after it.
    """
    found: list[Equation] = []

    def close(chain: list) -> None:
        if len(chain) >= 2:
            found.append(Equation(chain[0][1], chain[-1][2], tuple(value for value, _, _ in chain)))

    for run in _runs(text):
        sides: list[list[tuple[str, int, int]]] = [[]]
        for item in run:
            if item[0] == "=":
                sides.append([])
            else:
                sides[-1].append(item)
        chain: list[tuple[Fraction | None, int, int]] = []
        for side in sides:
            try:
                parsed = _parse(side)
            except ValueError:
                head = _longest(side, suffix=False) if chain else None
                close(chain + [head] if head else chain)
                tail = _longest(side, suffix=True)
                chain = [tail] if tail else []
                continue
            chain.append(parsed)
        close(chain)
    return found


def false_equation_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character spans of the false equation chains of ``text``."""
    return [(e.start, e.end) for e in find_equations(text) if not e.true]


def token_flags(token_texts: Sequence[str], spans: Sequence[tuple[int, int]]) -> list[bool]:
    """For tokens whose texts, joined, make the text the ``spans`` index: whether each token overlaps a span."""
    flags, pos = [], 0
    for piece in token_texts:
        start, end = pos, pos + len(piece)
        flags.append(any(s < end and start < e for s, e in spans) if end > start else False)
        pos = end
    return flags
