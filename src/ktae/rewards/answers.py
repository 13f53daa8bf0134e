"""Pure string functions: find the final answer of a response and normalise references.

Nothing here imports ``math_verify`` or starts a process, so these functions are
cheap to call in the caller's process on every response. The symbolic comparison
itself lives in :mod:`ktae.rewards.verify` and runs in worker processes
(:mod:`ktae.rewards.grader`).
"""
from __future__ import annotations

import ast
import math
import numbers
import re
from typing import Any

__all__ = [
    "extract_boxed",
    "reference_answers",
    "normalize_answer",
    "canonical_string",
    "text_answer",
    "text_matches",
    "reference_variants",
]

_BOX_KEYWORD = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# Tokens that matter when matching braces: an escaped character (``\{``, ``\}``, ``\\``) or a brace.
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.DOTALL)


def extract_boxed(text: str) -> str | None:
    """Return the content of the last ``\\boxed{...}`` or ``\\fbox{...}`` in ``text``.

    Nested braces are matched and escaped braces (``\\{``, ``\\}``) do not count,
    so ``\\boxed{\\{1, \\frac{1}{2}\\}}`` gives ``\\{1, \\frac{1}{2}\\}``. The
    brace-less form ``\\boxed 5`` gives ``5``. Returns ``None`` when there is no
    box, when the last box is never closed (a truncated response), or when it is
    empty. Runs in time linear in ``len(text)``.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    last = None
    # Scan from the end: the last keyword is found without walking the whole string twice.
    for pos in (text.rfind("\\boxed"), text.rfind("\\fbox")):
        if pos >= 0 and (last is None or pos > last):
            last = pos
    if last is None:
        return None
    match = _BOX_KEYWORD.match(text, last)
    if match is None:  # e.g. "\boxedx": not the command; look further back
        return extract_boxed(text[:last])
    i = match.end()
    n = len(text)
    while i < n and text[i] in " \t":
        i += 1
    if i >= n:
        return None
    if text[i] != "{":
        if i == match.end():  # "\boxed5" is not valid LaTeX for a box
            return None
        end = i
        while end < n and not text[end].isspace() and text[end] not in "$":
            end += 1
        content = text[i:end].strip()
        return content or None
    depth = 0
    for token in _BRACE_TOKEN.finditer(text, i):
        t = token.group()
        if t == "{":
            depth += 1
        elif t == "}":
            depth -= 1
            if depth == 0:
                content = text[i + 1 : token.start()].strip()
                return content or None
    return None  # unbalanced: the response was cut inside the box


def _number_to_str(value: numbers.Number) -> str:
    if isinstance(value, bool):
        raise TypeError("reference must not be a bool")
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Rational):
        return f"\\frac{{{value.numerator}}}{{{value.denominator}}}"
    if isinstance(value, numbers.Real):
        f = float(value)
        if not math.isfinite(f):
            raise ValueError(f"reference must be a finite number, got {value!r}")
        if f.is_integer() and abs(f) < 1e16:
            return str(int(f))
        return repr(f)
    raise TypeError(f"unsupported numeric reference type {type(value).__name__}")


def _strip_dollars(s: str) -> str:
    s = s.strip()
    while len(s) >= 2 and s.startswith("$") and s.endswith("$"):
        s = s[1:-1].strip()
    if s.startswith("\\(") and s.endswith("\\)"):
        s = s[2:-2].strip()
    if s.startswith("\\[") and s.endswith("\\]"):
        s = s[2:-2].strip()
    return s


def reference_answers(reference: Any) -> list[str]:
    """Normalise a reference to the list of acceptable answer strings.

    ``reference`` may be a string (LaTeX or plain), a number, a list/tuple of
    acceptable answers, or a stringified Python list of strings as stored in the
    Minerva and OlympiadBench sets (``"['9.6\\n']"``). A string such as
    ``"[0, 1]"`` whose list has non-string items is an interval, not a list, and
    stays one answer. Surrounding ``$``/whitespace is removed. Raises
    ``ValueError`` when no non-empty answer remains and ``TypeError`` for other
    types.
    """
    out: list[str] = []

    def add(item: Any, depth: int) -> None:
        if item is None:
            return
        if isinstance(item, str):
            s = item.strip()
            if depth == 0 and len(s) >= 2 and s[0] == "[" and s[-1] == "]":
                try:
                    parsed = ast.literal_eval(s)
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    parsed = None
                if isinstance(parsed, list) and parsed and all(isinstance(x, str) for x in parsed):
                    for x in parsed:
                        add(x, depth + 1)
                    return
            s = _strip_dollars(s)
            if s:
                out.append(s)
            return
        if isinstance(item, numbers.Number):
            out.append(_number_to_str(item))
            return
        if isinstance(item, (list, tuple)) or type(item).__name__ == "ndarray":
            for x in list(item):
                add(x, depth + 1)
            return
        raise TypeError(
            "reference must be a str, a number, or a list of them, "
            f"got {type(item).__name__}"
        )

    add(reference, 0)
    unique = list(dict.fromkeys(out))
    if not unique:
        raise ValueError(f"reference has no non-empty answer: {reference!r}")
    return unique


_SCI = re.compile(r"^([-+]?\d+(?:\.\d*)?|[-+]?\.\d+)\s*[eE]\s*([-+]?\d+)$")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:(?:,|\{,\}|\\,|\\!|\\ |\\;|~| )\d{3})+(?:\.\d+)?$")
_THOUSANDS_SEP = re.compile(r"\{,\}|\\,|\\!|\\ |\\;|~|,| ")
_DEGREE_UNIT = re.compile(r"^(.*?\d)\s*\^\s*\{?\s*\\circ\s*\}?\s*(?:\\mathrm\{[CFK]\}|\\text\{\s*[CFK]\s*\}|[CFK])$")


def normalize_answer(answer: str) -> str:
    """Light, safe rewrites applied to answers and references before parsing.

    ``$``/``\\(...\\)`` wrappers, ``\\displaystyle`` and a trailing full stop are
    dropped; scientific ``3.3e12`` becomes ``3.3\\times10^{12}``; a number with
    thousands separators (``10,080``, ``1\\,000``, ``1{,}000``) loses them. The
    symbolic equivalences (fractions, sets, intervals, units, percent, degrees...)
    are left to ``math-verify``.
    """
    s = _strip_dollars(answer)
    s = s.replace("\\displaystyle", "").strip()
    if s.endswith(".") and not s.endswith(".."):
        s = _strip_dollars(s[:-1])
    m = _SCI.match(s)
    if m:
        mant, exp = m.group(1), int(m.group(2))
        s = f"{mant}\\times10^{{{exp}}}"
    elif _THOUSANDS.match(s):
        s = _THOUSANDS_SEP.sub("", s)
    return s


def reference_variants(reference: str) -> list[str]:
    """Equivalent readings of one reference string (the normalised reference first).

    Adds the bare number for a temperature written with its unit letter
    (``1950^\\circ C`` -> ``1950``), which ``math-verify`` would read as a
    product with a variable ``C``.
    """
    base = normalize_answer(reference)
    variants = [base]
    m = _DEGREE_UNIT.match(base)
    if m:
        variants.append(m.group(1).strip())
    return list(dict.fromkeys(v for v in variants if v))


_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_CANON_DROP = re.compile(r"\\left|\\right|\\!|\\,|\\;|\\:|\\ |\s+")


def canonical_string(answer: str) -> str:
    """A canonical spelling for the cheap exact-match fast path (no maths)."""
    s = normalize_answer(answer)
    s = _TEXT_WRAPPER.sub(r"\1", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _CANON_DROP.sub("", s)
    return s


_WORD = re.compile(r"[A-Za-z]{3,}")
_MATH_WORDS = {
    "sin", "cos", "tan", "cot", "sec", "csc", "log", "exp", "sqrt", "frac", "arcsin", "arccos",
    "arctan", "sinh", "cosh", "tanh", "infty", "pi", "dfrac", "tfrac", "cdot", "times", "circ",
    "left", "right", "begin", "end", "pmatrix", "bmatrix", "matrix", "cup", "cap", "mathbb",
    "emptyset", "varnothing", "pm", "mp", "ldots", "dots", "cdots", "min", "max", "gcd", "lcm",
    "det", "mod", "pmod", "bmod", "binom", "choose", "theta", "alpha", "beta", "gamma", "delta",
    "lambda", "sigma", "omega", "phi", "mu", "rho", "tau", "epsilon", "varepsilon",
}


def text_answer(reference: str) -> str | None:
    """The comparable text when ``reference`` is a word answer, else ``None``.

    Word answers (``\\text{Evelyn}``, ``\\text{(C)}``, ``odd``, ``no solution``)
    are compared as case-insensitive text: ``math-verify`` would read ``Evelyn``
    as the product ``E*v*e*l*y*n`` and accept any anagram.
    """
    s = _strip_dollars(reference).strip()
    wrapped = _TEXT_WRAPPER.fullmatch(s)
    if wrapped:
        inner = wrapped.group(1).strip()
        if inner and not re.search(r"\d", inner):
            return _text_key(inner)
        return None
    if re.fullmatch(r"[A-Za-z][A-Za-z '\-]*[A-Za-z]\.?", s):
        words = {w.lower() for w in _WORD.findall(s)}
        if words and not (words & _MATH_WORDS):
            return _text_key(s)
    return None


def _text_key(s: str) -> str:
    s = _TEXT_WRAPPER.sub(r"\1", s)
    return re.sub(r"[^0-9a-z]+", "", s.lower())


_CHOICE_PREFIX = re.compile(r"^\s*\(\s*([A-Za-z])\s*\)(?![A-Za-z])")


def text_matches(answer: str, key: str) -> bool:
    """Whether ``answer`` spells the word answer ``key`` (from :func:`text_answer`).

    A choice letter also matches an answer that starts with it in parentheses
    followed by the choice's value (``\\textbf{(C) }12`` for ``\\text{(C)}``).
    """
    if not key:
        return False
    answer = _strip_dollars(answer)
    if _text_key(answer) == key:
        return True
    if len(key) == 1 and key.isalpha():
        m = _CHOICE_PREFIX.match(_TEXT_WRAPPER.sub(r"\1", answer))
        return bool(m) and m.group(1).lower() == key
    return False
