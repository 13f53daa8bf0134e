"""Generation files of other harnesses, recognised by their field names, as a flat list of samples to grade.

Known layouts (a record is one response, or one problem with a list of ``n`` responses):

* ``ktae``: ``ktae eval``'s own ``generations.jsonl`` (``benchmark``, ``index``, ``sample``, ``problem``,
  ``reference``, ``response``, ``tokens``, ``correct``), or any file with such fields;
* ``understand-r1-zero``: the Dr. GRPO evaluation harness (``evaluate_model.py``), a JSON list of
  ``{task_name, prompt, gt: [answer], model_output: [n responses], reward: [n rewards]}``;
* ``qwen2.5-math``: the Qwen2.5-Math evaluation harness jsonl (``idx``, ``question``, ``gt``, ``code``: the
  responses, ``pred``: the extracted answers, ``score``: the verdicts), one file per benchmark in a folder named
  after it;
* ``verl``: verl's ``rollout_data_dir`` / ``validation_data_dir`` files (``input``, ``output``, ``gts``,
  ``score``, ``step`` and reward extras such as ``acc`` and ``data_source``).

Explicit field names (``--response-field`` ...) override what a layout says.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ktae.eval.benchmarks import canonical_benchmark

RESPONSE_FIELDS = ("response", "output", "completion", "generation", "text", "model_output", "responses",
                   "completions", "outputs")
REFERENCE_FIELDS = ("reference", "answer", "ground_truth", "gt", "gts", "final_answer", "target")
PROBLEM_FIELDS = ("problem", "prompt", "question", "input")
BENCHMARK_FIELDS = ("benchmark", "data_source", "dataset", "task_name", "task")
VERDICT_FIELDS = ("correct", "is_correct", "verdict")
TOKEN_FIELDS = ("tokens", "num_tokens", "response_length", "length")


@dataclass(frozen=True)
class Layout:
    """Which field holds what in one harness's records (None: absent)."""

    name: str
    signature: tuple[str, ...]
    response: str
    reference: str
    problem: str | None
    benchmark: str | None
    verdict: str | None
    tokens: str | None = None


LAYOUTS = (
    Layout("understand-r1-zero", ("task_name", "model_output", "gt"), "model_output", "gt", "prompt", "task_name",
           "reward"),
    Layout("qwen2.5-math", ("question", "code", "gt"), "code", "gt", "question", None, "score"),
    Layout("verl", ("input", "output", "gts", "score"), "output", "gts", "input", "data_source", "acc"),
)


@dataclass
class Sample:
    """One response to grade: where it is in the file and what it is compared with."""

    record: int
    sample: int | None  # position in the record's list of responses; None for a one-response record
    benchmark: str
    problem: Any
    response: str
    reference: Any
    previous: Any
    tokens: Any


def detect_layout(records: list[dict], path: str) -> Layout | None:
    """The known layout whose fields every record has; None when none matches.

    Raises:
        ValueError: the records fit several layouts (the message lists the fields and the flags to use).
    """
    matches = [layout for layout in LAYOUTS if all(all(f in r for f in layout.signature) for r in records)]
    if len(matches) > 1:
        raise ValueError(
            f"{path}: the fields {sorted(records[0])} fit several layouts ({', '.join(m.name for m in matches)}); "
            "name the fields with --response-field, --reference-field, --benchmark-field and --verdict-field"
        )
    return matches[0] if matches else None


def _resolve(records: list[dict], wanted: str | None, candidates: tuple[str, ...], what: str, required: bool,
             path: str) -> str | None:
    keys = sorted(records[0].keys())
    if wanted is not None:
        missing = [i for i, r in enumerate(records) if wanted not in r]
        if missing:
            raise ValueError(f"{path}: record {missing[0]} has no {what} field {wanted!r}; its fields are {keys}")
        return wanted
    present = [c for c in candidates if all(c in r for r in records)]
    if what == "response" and len(present) > 1:
        raise ValueError(
            f"{path}: several fields could hold the responses ({', '.join(present)}); fields are {keys}. "
            "Name it with --response-field"
        )
    if present:
        return present[0]
    if required:
        raise ValueError(
            f"{path}: no {what} field found (looked for {list(candidates)}); fields are {keys}. "
            f"Name it with --{what}-field"
        )
    return None


def _benchmark_name(value: Any, default: str) -> str:
    name = default if value is None else str(value)
    try:
        return canonical_benchmark(name)
    except ValueError:
        return name  # an unknown benchmark keeps its own name


def _file_benchmark(path: str, layout: Layout | None) -> str:
    """A benchmark named by the file's folder or name when it is a known one; for the Qwen harness, whose files
    sit in ``<out>/<benchmark>/``, the folder's name even when unknown; else ``"all"``."""
    folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
    stem = os.path.splitext(os.path.basename(path))[0]
    for name in (folder, stem):
        try:
            return canonical_benchmark(name)
        except (ValueError, TypeError):
            continue
    return folder if layout is not None and layout.name == "qwen2.5-math" and folder else "all"


def _one(value: Any) -> Any:
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def expand_samples(records: list[dict], path: str, fields: dict[str, str | None]) -> tuple[str, list[Sample], dict]:
    """Every response of every record as a `Sample`, in file order.

    Args:
        records: the file's records.
        path: for messages.
        fields: explicit names from the command line (``response``, ``reference``, ``problem``, ``benchmark``,
            ``verdict``, ``tokens``; None: find it).

    Returns:
        (layout name, samples, the field names used).

    Raises:
        ValueError: a missing or ambiguous field, a response that is neither text nor a list of texts, or a
            verdict list whose length differs from the response list's.
    """
    layout = None if fields.get("response") else detect_layout(records, path)
    chosen: dict[str, str | None] = {}
    table = (("response", RESPONSE_FIELDS, True), ("reference", REFERENCE_FIELDS, True),
             ("problem", PROBLEM_FIELDS, False), ("benchmark", BENCHMARK_FIELDS, False),
             ("verdict", VERDICT_FIELDS, False), ("tokens", TOKEN_FIELDS, False))
    for what, candidates, required in table:
        wanted = fields.get(what)
        if wanted is None and layout is not None:
            named = getattr(layout, what)
            if what == "verdict" and layout.name == "verl" and not all(named in r for r in records):
                named = "score"
            chosen[what] = named if named is not None and all(named in r for r in records) else None
            continue
        chosen[what] = _resolve(records, wanted, candidates, what, required, path)
    default_bench = _file_benchmark(path, layout)
    samples: list[Sample] = []
    for i, r in enumerate(records):
        response = r[chosen["response"]]
        bench = _benchmark_name(r.get(chosen["benchmark"]) if chosen["benchmark"] else None, default_bench)
        problem = r.get("idx", r.get("index", r.get(chosen["problem"]) if chosen["problem"] else i))
        if isinstance(problem, (list, dict)):
            problem = str(problem)
        reference = _one(r[chosen["reference"]])
        previous = r.get(chosen["verdict"]) if chosen["verdict"] else None
        tokens = r.get(chosen["tokens"]) if chosen["tokens"] else None
        if isinstance(response, str):
            samples.append(Sample(i, None, bench, problem, response, reference, previous, tokens))
            continue
        if not isinstance(response, list) or not all(isinstance(x, str) for x in response):
            raise ValueError(
                f"{path}: record {i}: field {chosen['response']!r} must be a string or a list of strings, "
                f"got {type(response).__name__}"
            )
        if not response:
            raise ValueError(f"{path}: record {i}: field {chosen['response']!r} holds no response")
        for name, value in (("verdict", previous), ("tokens", tokens)):
            if isinstance(value, list) and len(value) != len(response):
                raise ValueError(
                    f"{path}: record {i}: {len(response)} responses in {chosen['response']!r} but {len(value)} "
                    f"values in {chosen[name]!r}"
                )
        problem = problem if "idx" in r or "index" in r else i  # one record per problem
        for j, text in enumerate(response):
            samples.append(Sample(
                i, j, bench, problem, text, reference,
                previous[j] if isinstance(previous, list) else previous,
                tokens[j] if isinstance(tokens, list) else tokens,
            ))
    return (layout.name if layout is not None else "ktae"), samples, chosen
