"""Does a targeting measure order the credit rules as their measured learning effects do?

    python benchmarks/targeting_validation.py docs/data/targeting/word-easy-grpo.json \\
        --study docs/data/study-learning-3.csv [--study docs/data/study-learning-4-pilots.csv] [--gains GAINS.csv] \\
        [--out FILE.md]

The first argument is the JSON of ``ktae targeting CORPUS --json OUT`` (the measures of every rule). The gains are
each rule's paired held-out AUC difference from GRPO (points, mean over seeds):

* from a ``ktae compare`` curves CSV (``--study``): for every arm of :data:`ARM_RULES` (study 3: KTAE, tuned KTAE,
  the gate, both oracles) the mean over seeds of its held-out AUC minus GRPO's on the same seed, with the AUC of
  ``benchmarks/study_tables.py`` (trapezoids); GRPO itself is a point with gain 0;
* and from a small table (``--gains``, CSV with the columns ``rule,gain,source``) for rules measured elsewhere, e.g.
  pilots: ``prefix,1.42,issue 30 pilot (10 seeds)``. A rule in both takes the table's value.

For every measure of :data:`ktae.targeting.score.MEASURES` it prints Spearman's rank correlation between the
measure and the gains over the rules that have both, with its exact two-sided p-value (all orderings enumerated:
with n = 6 rules only |rho| >= 0.89 reaches p < 0.05), the same without the blame oracle (the reference that the
agreement measures compare with: it agrees with itself by construction), and the table of values.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from study_tables import heldout_areas, runs_of, seed_differences  # noqa: E402

from ktae.core.label_free import LABEL_FREE_CREDITS  # noqa: E402
from ktae.experiments.compare import read_curves_csv  # noqa: E402
from ktae.targeting.rules import REFERENCE_RULE  # noqa: E402
from ktae.targeting.score import MEASURES  # noqa: E402

#: study arm -> the targeting rule that gives its token advantages (grpo-entropy20 has none: it gates the gradient
#: by the policy's entropy, which frozen rollouts do not hold)
ARM_RULES = {"grpo": "grpo", "grpo-ktae": "ktae", "grpo-ktae-tuned": "ktae-tuned", "grpo-ktae-gate": "gate",
             "grpo-oracle": "oracle", "grpo-oracle-blame": "oracle-blame",
             **{f"grpo-{credit}": credit for credit in LABEL_FREE_CREDITS}}


def study_gains(csv_path: str | Path, study: str | None = None) -> dict[str, float]:
    """Rule -> mean over seeds of the arm's held-out AUC minus GRPO's (same seed), in points."""
    aucs = heldout_areas(runs_of(read_curves_csv(csv_path), study))
    out = {}
    for arm, rule in ARM_RULES.items():
        diffs = list(seed_differences(aucs, arm, "grpo").values())
        if diffs:
            out[rule] = sum(diffs) / len(diffs)
    return out


def table_gains(path: str | Path) -> dict[str, float]:
    """Rule -> gain of a CSV with the columns ``rule,gain`` (and any others, e.g. ``source``)."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not {"rule", "gain"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: expected the columns rule,gain[,source], got {reader.fieldnames}")
        rows = list(reader)
    return {row["rule"]: float(row["gain"]) for row in rows}


def ranks(values: list[float]) -> list[float]:
    """1-based ranks of ``values``, ties given their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            out[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return out


def pearson(x: list[float], y: list[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else float("nan")


def spearman(x: list[float], y: list[float]) -> tuple[float, float]:
    """Spearman's rho of ``x`` and ``y`` and its exact two-sided p-value (every ordering of ``y``'s ranks; n <= 9)."""
    rx, ry = ranks(x), ranks(y)
    rho = pearson(rx, ry)
    if math.isnan(rho) or len(x) > 9:
        return rho, float("nan")
    null = [pearson(rx, list(p)) for p in itertools.permutations(ry)]
    return rho, sum(1 for r in null if abs(r) >= abs(rho) - 1e-12) / len(null)


def validate(measures: dict[str, dict[str, float]], gains: dict[str, float],
             leave_out: tuple[str, ...] = ()) -> dict[str, dict[str, float]]:
    """Measure -> ``{"rho", "p", "n"}`` over the rules in both ``measures`` (rule -> measures) and ``gains``, but
    ``leave_out``."""
    rules = [r for r in gains if r in measures and r not in leave_out]
    out = {}
    for name in MEASURES:
        pairs = [(measures[r][name], gains[r]) for r in rules if not math.isnan(measures[r][name])]
        rho, p = spearman(*map(list, zip(*pairs))) if len(pairs) >= 3 else (float("nan"), float("nan"))
        out[name] = {"rho": rho, "p": p, "n": len(pairs)}
    return out


def report(measures: dict[str, dict[str, float]], gains: dict[str, float]) -> str:
    """The Markdown table: per measure, rho and its exact p over every rule with a gain, the same without the blame
    oracle (the reference of the agreement measures, which it meets by construction), and the values."""
    rules = sorted((r for r in gains if r in measures), key=lambda r: gains[r])
    every, without = validate(measures, gains), validate(measures, gains, leave_out=(REFERENCE_RULE,))
    lines = [f"| measure | rho | exact p | rho without {REFERENCE_RULE} | exact p | " + " | ".join(rules) + " |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(rules),
             f"| *gain (held-out AUC points; n = {len(rules)})* | | | | | "
             + " | ".join(f"{gains[r]:+.2f}" for r in rules) + " |"]
    for name in MEASURES:
        a, b = every[name], without[name]
        lines.append(f"| {name} | {a['rho']:+.2f} | {a['p']:.3f} | {b['rho']:+.2f} | {b['p']:.3f} | "
                     + " | ".join(f"{measures[r][name]:.3f}" for r in rules) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targeting_json", help="the JSON of ktae targeting CORPUS --json OUT")
    parser.add_argument("--study", action="append", default=[],
                        help="a ktae compare curves CSV (study 3's arms, label-free arms); several: the first that "
                             "has a rule gives its gain")
    parser.add_argument("--study_name", default=None, help="only the rows of this study in the CSV")
    parser.add_argument("--gains", default=None, help="CSV rule,gain[,source] of rules measured elsewhere")
    parser.add_argument("--out", default=None, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    measures = json.loads(Path(args.targeting_json).read_text())["rules"]
    gains: dict[str, float] = {}
    for path in args.study:
        for rule, gain in study_gains(path, args.study_name).items():
            gains.setdefault(rule, gain)
    gains.update(table_gains(args.gains) if args.gains else {})
    if len([r for r in gains if r in measures]) < 3:
        print("error: fewer than 3 rules have both a gain and targeting measures", file=sys.stderr)
        return 2
    text = report(measures, gains)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
