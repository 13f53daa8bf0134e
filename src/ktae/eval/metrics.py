"""Accuracy, pass@k and mean response length per benchmark, and the paper's two tables."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable

from ktae.eval.benchmarks import BENCHMARKS

__all__ = ["pass_at_k", "summarize", "format_tables", "skipped_note", "PAPER_RESULTS"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with ``c`` correct among ``n`` samples: ``1 - C(n-c, k) / C(n, k)``."""
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _ks(n: int) -> list[int]:
    ks, k = [], 1
    while k <= n:
        ks.append(k)
        k *= 2
    if ks[-1] != n:
        ks.append(n)
    return ks


def summarize(records: Iterable[dict], order: list[str] | None = None) -> dict[str, Any]:
    """Per-benchmark metrics from generation records and their unweighted average.

    Each record needs ``benchmark``, ``correct`` and a problem key (``index``,
    else ``problem``); ``tokens`` is optional. Accuracy is the mean over all
    samples (so with ``n`` samples per problem it is the mean accuracy);
    ``pass@k`` (unbiased estimator) is reported for k = 1, 2, 4, ... n when
    problems have ``n > 1`` samples. Percentages are in [0, 100].
    """
    by_bench: dict[str, dict[Any, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        key = r.get("index", r.get("problem"))
        by_bench[str(r["benchmark"])][key].append(r)
    names = list(order) if order else sorted(by_bench)
    names = [b for b in names if b in by_bench] + [b for b in sorted(by_bench) if b not in (order or [])]
    per: dict[str, dict[str, Any]] = {}
    for bench in names:
        problems = by_bench[bench]
        samples = [r for rs in problems.values() for r in rs]
        correct = [bool(r["correct"]) for r in samples]
        tokens = [r["tokens"] for r in samples if isinstance(r.get("tokens"), (int, float))]
        finished = [bool(r["finished"]) for r in samples if "finished" in r]
        entry: dict[str, Any] = {
            "label": BENCHMARKS[bench].label if bench in BENCHMARKS else bench,
            "problems": len(problems),
            "samples": len(samples),
            "correct": sum(correct),
            "accuracy": 100.0 * sum(correct) / len(samples),
            "mean_tokens": (sum(tokens) / len(tokens)) if tokens else None,
            "finished_rate": (100.0 * sum(finished) / len(finished)) if finished else None,
        }
        n_min = min(len(rs) for rs in problems.values())
        if n_min > 1:
            entry["pass@k"] = {
                str(k): 100.0
                * sum(pass_at_k(len(rs), sum(bool(r["correct"]) for r in rs), k) for rs in problems.values())
                / len(problems)
                for k in _ks(n_min)
            }
        per[bench] = entry
    accs = [e["accuracy"] for e in per.values()]
    lens = [e["mean_tokens"] for e in per.values() if e["mean_tokens"] is not None]
    average = {
        "accuracy": sum(accs) / len(accs) if accs else None,
        "mean_tokens": sum(lens) / len(lens) if len(lens) == len(per) and lens else None,
    }
    return {"benchmarks": per, "average": average}


#: Reported numbers (spec section 7) for comparison rows: accuracy per benchmark (%) and avg mean length.
PAPER_RESULTS: dict[str, dict[str, Any]] = {
    "GRPO+KTAE-7B (paper)": {
        "accuracy": {"aime": 33.3, "math": 82.4, "amc": 65.1, "minerva": 33.8, "olympiad_bench": 43.7},
        "avg_accuracy": 51.7,
        "avg_tokens": 718.6,
    },
    "DAPO+KTAE-7B (paper)": {
        "accuracy": {"aime": 36.7, "math": 83.2, "amc": 63.9, "minerva": 35.3, "olympiad_bench": 43.7},
        "avg_accuracy": 52.5,
        "avg_tokens": 777.2,
    },
    "GRPO-7B (paper)": {"accuracy": {}, "avg_accuracy": 50.3, "avg_tokens": 771.0},
    "DAPO-7B (paper)": {"accuracy": {}, "avg_accuracy": 51.7, "avg_tokens": 897.2},
}


def _fmt(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([title, line(header), sep, *(line(r) for r in rows)])


def skipped_note(skipped: dict[str, list]) -> str:
    """One line naming how many problems of each benchmark were skipped (prompts too long for the model)."""
    counts = ", ".join(f"{BENCHMARKS[b].label if b in BENCHMARKS else b} {len(indices)}"
                       for b, indices in skipped.items())
    return (f"Skipped (prompt leaves no room for a response in the model's positions): {counts}; the tables "
            "are over the other problems")


def format_tables(
    summary: dict[str, Any],
    model_label: str,
    *,
    show_paper: bool = False,
    note: str | None = None,
) -> str:
    """The paper's Table 1 (accuracy %, per benchmark and average) and Table 2 (mean response length).

    ``show_paper`` adds the reported rows of the KTAE paper for comparison
    (only meaningful for full benchmarks, greedy decoding and the paper's template).
    A pass@k table follows when samples per problem > 1. Problems skipped for prompts too long for the model
    (the summary's ``skipped``) are named above the tables: the numbers are over the other problems.
    """
    per = summary["benchmarks"]
    names = list(per)
    labels = [per[b]["label"] for b in names]
    header = ["model", *labels, "Avg"]
    acc_rows = [[model_label, *(_fmt(per[b]["accuracy"]) for b in names), _fmt(summary["average"]["accuracy"])]]
    len_rows = [[model_label, *(_fmt(per[b]["mean_tokens"]) for b in names), _fmt(summary["average"]["mean_tokens"])]]
    if show_paper:
        full = set(names) == set(BENCHMARKS)
        for label, reported in PAPER_RESULTS.items():
            acc_rows.append(
                [label, *(_fmt(reported["accuracy"].get(b)) for b in names),
                 _fmt(reported["avg_accuracy"] if full else None)]
            )
            len_rows.append([label, *("-" for _ in names), _fmt(reported["avg_tokens"] if full else None)])
    parts = [note] if note else []
    if summary.get("skipped"):
        parts.append(skipped_note(summary["skipped"]))
    parts.append(_table("Table 1: accuracy (%)", header, acc_rows))
    parts.append(_table("Table 2: mean response length (tokens)", header, len_rows))
    pass_keys = sorted(
        {k for b in names for k in per[b].get("pass@k", {})}, key=int
    )
    if pass_keys:
        rows = [[f"pass@{k}", *(_fmt(per[b].get("pass@k", {}).get(k)) for b in names), _fmt(
            sum(per[b]["pass@k"][k] for b in names) / len(names)
            if all(k in per[b].get("pass@k", {}) for b in names) else None)] for k in pass_keys]
        rows.insert(0, ["mean accuracy", *(_fmt(per[b]["accuracy"]) for b in names), _fmt(summary["average"]["accuracy"])])
        parts.append(_table(f"Sampling: mean accuracy and pass@k (%) of {model_label}", ["metric", *labels, "Avg"], rows))
    return "\n\n".join(parts)
