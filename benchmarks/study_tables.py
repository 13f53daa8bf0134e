"""The tables and figures of a ``ktae compare`` study, from its curves CSV alone (no re-running).

    python benchmarks/study_tables.py docs/data/study-learning.csv --target 0.35 \\
        --figure docs/images/study_learning.png [--study NAME] [--out runs/study-learning/tables.md]

The CSV is the one ``ktae compare`` writes (``--csv``): one row per (arm, seed, step) with the columns
``study, arm, seed, step, rollout_accuracy, heldout_accuracy, response_length``. For every run (arm, seed)
this script computes the outcomes of ``docs/study-learning.md``:

* **AUC**: the area under the held-out accuracy curve (trapezoids over the evaluation steps) divided by the
  steps it spans, i.e. the run's mean held-out accuracy over training, in percent;
* **steps to target**: the first evaluation step whose held-out accuracy is at least ``--target`` (runs that
  never reach it are counted and left out of the mean, not imputed);
* **final length**: the mean sampled (rollout) response length over the last ``--last`` steps;
* and, as secondary read-outs, the final held-out accuracy, the rollout accuracy over the first and the
  last ``--last`` steps and (where the CSV has the column) the share of mixed groups per ``--last`` steps.

Per arm it reports mean ± 95% CI over seeds (Student t), and for each pair (KTAE arm, its baseline:
``grpo-ktae`` - ``grpo``, ``dapo-ktae`` - ``dapo``, ``grpo-ktae-no-gamma`` - ``grpo`` ...) the paired
same-seed difference with its 95% t-interval over the seeds both arms finished (more pairs by name with
``--pair ARM:BASELINE``, e.g. ``--pair grpo-ktae-gate:grpo-oracle-blame``). ``--per_seed`` adds each run's AUC
per seed and its difference from the baseline on that seed, with their mean: the table of a sweep or pilot with
two seeds, e.g. study 3's (``--study study-learning-3-sweep`` on ``docs/data/study-learning-3-pilots.csv``). Runs
that did not reach the last step of the study are reported as unfinished and left out.

``--primary ARM,ARM,...`` adds the pre-registered test of held-out AUC for those arms against their baselines: mean,
95% t-interval, seeds ahead, the two-sided paired t-test's p, Holm's adjusted p over the arms named, the standard
deviation of the differences and the minimum detectable effect (α 0.05 two-sided, power 0.8). ``--share_of REF``
adds, for every other primary arm, the share of REF's gain it recovers, ``mean(arm − baseline) / mean(REF −
baseline)`` over the seeds all three finished, with a 95% percentile interval of a paired bootstrap over seeds
(10,000 resamples, seed 0; scipy's ``bootstrap``): study 4's share of the blame oracle's gain.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from ktae.core.label_free import LABEL_FREE_CREDITS
from ktae.experiments.compare import first_step_reaching, mean_ci, read_curves_csv
from ktae.experiments.plot import moving_average

#: arm -> its baseline (paired differences are arm minus baseline, same seed)
PAIRS = {"grpo-ktae": "grpo", "dapo-ktae": "dapo", "grpo-ktae-no-gamma": "grpo", "grpo-ktae-no-alpha": "grpo",
         "grpo-ktae-no-beta": "grpo"}
LABELS = {"grpo": "GRPO", "grpo-ktae": "GRPO+KTAE", "dapo": "DAPO", "dapo-ktae": "DAPO+KTAE",
          "grpo-ktae-no-gamma": "GRPO+KTAE (γ=0)", "grpo-ktae-no-alpha": "GRPO+KTAE (α=0)",
          "grpo-ktae-no-beta": "GRPO+KTAE (β=0)", "grpo-ktae-tuned": "GRPO+KTAE tuned", "grpo-oracle": "GRPO+oracle",
          "grpo-oracle-blame": "GRPO+oracle (blame)", "grpo-entropy20": "GRPO (top-20% entropy)",
          "grpo-ktae-gate": "GRPO+KTAE gate", **{f"grpo-{credit}": f"GRPO+{credit}" for credit in LABEL_FREE_CREDITS}}
ORDER = ("grpo", "grpo-ktae", "dapo", "dapo-ktae", "grpo-ktae-no-gamma", "grpo-ktae-no-alpha", "grpo-ktae-no-beta",
         "grpo-ktae-tuned", "grpo-oracle", "grpo-oracle-blame", "grpo-entropy20", "grpo-ktae-gate",
         *(f"grpo-{credit}" for credit in LABEL_FREE_CREDITS))


def pair_of(arm: str) -> str | None:
    """The baseline an arm is paired with: :data:`PAIRS`, else ``grpo`` for another ``grpo-*`` arm (study 3's arms,
    the KTAE sweep's ``grpo-ktae-top0.5-beta0``) and ``dapo`` for a ``dapo-*`` arm."""
    if arm in PAIRS:
        return PAIRS[arm]
    return next((base for base in ("grpo", "dapo") if arm.startswith(base + "-")), None)


def ordered_arms(runs: dict[tuple[str, int], Any]) -> list[str]:
    """The arms of ``runs`` (keyed by ``(arm, seed)``) in :data:`ORDER`, then any others alphabetically."""
    present = {arm for arm, _ in runs}
    return [a for a in ORDER if a in present] + sorted(present - set(ORDER))


def runs_of(rows: list[dict], study: str | None) -> dict[tuple[str, int], list[dict]]:
    """The rows of each run ``(arm, seed)``, sorted by step (only the rows of ``study`` when given)."""
    out: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        if study is None or r["study"] == study:
            out.setdefault((r["arm"], r["seed"]), []).append(r)
    return {k: sorted(v, key=lambda r: r["step"]) for k, v in out.items()}


def curve(run: list[dict], column: str) -> list[tuple[int, float]]:
    """``(step, value)`` of one column where it was measured."""
    return [(r["step"], r[column]) for r in run if r[column] is not None]


def auc(points: list[tuple[int, float]]) -> float:
    """Trapezoid area under ``points`` divided by the steps they span (the curve's mean height)."""
    if len(points) < 2:
        return float("nan")
    area = sum((t1 - t0) * (v0 + v1) / 2 for (t0, v0), (t1, v1) in zip(points, points[1:]))
    return area / (points[-1][0] - points[0][0])


def outcomes(run: list[dict], target: float, last: int) -> dict[str, float | None]:
    """The outcomes of one run (see the module docstring); accuracies in percent."""
    held = curve(run, "heldout_accuracy")
    roll = curve(run, "rollout_accuracy")
    length = curve(run, "response_length")
    return {
        "auc": 100 * auc(held),
        "steps_to_target": first_step_reaching(dict(held), target),
        "final_length": sum(v for _, v in length[-last:]) / len(length[-last:]),
        "final_heldout": 100 * held[-1][1],
        "first_rollout": 100 * sum(v for _, v in roll[:last]) / len(roll[:last]),
        "final_rollout": 100 * sum(v for _, v in roll[-last:]) / len(roll[-last:]),
    }


OUTCOMES = {"auc": ("AUC of held-out accuracy (mean %)", 1), "steps_to_target": ("steps to target", 1),
            "final_length": ("final sampled length (tokens)", 1), "final_heldout": ("final held-out accuracy (%)", 1),
            "first_rollout": ("rollout accuracy, first steps (%)", 1),
            "final_rollout": ("rollout accuracy, last steps (%)", 1)}


def fmt(values: list[float]) -> str:
    mean, ci = mean_ci(values)
    if not values:
        return "–"
    return f"{mean:.1f} ± {ci:.1f}" if len(values) > 1 else f"{mean:.1f}"


def finished_runs(runs: dict[tuple[str, int], list[dict]]) -> tuple[int, dict[tuple[str, int], list[dict]]]:
    """The study's last step and the runs that reached it with a held-out evaluation there."""
    final_step = max(r[-1]["step"] for r in runs.values())
    return final_step, {k: v for k, v in runs.items()
                        if v[-1]["step"] == final_step and v[-1]["heldout_accuracy"] is not None}


def tables(runs: dict[tuple[str, int], list[dict]], target: float, last: int,
           extra_pairs: tuple[tuple[str, str], ...] = ()) -> str:
    """The markdown tables: per arm, then paired differences (each arm against :func:`pair_of`, then
    ``extra_pairs``: ``(arm, baseline)`` comparisons asked for by name)."""
    final_step, finished = finished_runs(runs)
    unfinished = sorted(set(runs) - set(finished))
    per = {k: outcomes(v, target, last) for k, v in finished.items()}
    arms = ordered_arms(per)
    lines = [f"Runs finished ({final_step} steps): " + ", ".join(
        f"{LABELS.get(a, a)} {sum(1 for k in per if k[0] == a)}" for a in arms) + "."]
    if unfinished:
        lines.append("Unfinished (left out): " + ", ".join(f"{a} s{s} (step {runs[a, s][-1]['step']})"
                                                           for a, s in unfinished) + ".")
    lines += ["", "| arm | seeds | " + " | ".join(name for name, _ in OUTCOMES.values()) + " |",
              "|---|---:|" + "---:|" * len(OUTCOMES)]
    for a in arms:
        seeds = sorted(s for arm, s in per if arm == a)
        cells = []
        for key in OUTCOMES:
            vals = [per[a, s][key] for s in seeds if per[a, s][key] is not None]
            cell = fmt(vals)
            if key == "steps_to_target":
                cell += f" ({len(vals)}/{len(seeds)} reached)"
            cells.append(cell)
        lines.append(f"| {LABELS.get(a, a)} | {len(seeds)} | " + " | ".join(cells) + " |")
    lines += ["", f"Paired same-seed differences (arm − baseline), mean ± 95% t-interval (n = seeds both finished; "
                  f"steps to {100 * target:.0f}%: seeds where both reached it):", "",
              "| arm − baseline | n | " + " | ".join(name for name, _ in OUTCOMES.values()) + " |",
              "|---|---:|" + "---:|" * len(OUTCOMES)]
    pairs = [(a, pair_of(a)) for a in arms] + list(extra_pairs)
    for a, base in pairs:
        if base is None or base not in arms or a not in arms:
            continue
        seeds = sorted(s for arm, s in per if arm == a and (base, s) in per)
        cells = []
        for key in OUTCOMES:
            diffs = [per[a, s][key] - per[base, s][key] for s in seeds
                     if per[a, s][key] is not None and per[base, s][key] is not None]
            cells.append(fmt(diffs) + (" *" if significant(diffs) else ""))
        lines.append(f"| {LABELS.get(a, a)} − {LABELS.get(base, base)} | {len(seeds)} | " + " | ".join(cells) + " |")
    lines += ["", "`*`: the 95% interval excludes 0."]
    return "\n".join(lines) + "\n"


def significant(diffs: list[float]) -> bool:
    mean, ci = mean_ci(diffs)
    return len(diffs) > 1 and math.isfinite(ci) and abs(mean) > ci


def heldout_areas(runs: dict[tuple[str, int], list[dict]]) -> dict[tuple[str, int], float]:
    """``{(arm, seed): held-out AUC}`` in points (:func:`auc` of each run's held-out curve)."""
    return {key: 100 * auc(curve(rows, "heldout_accuracy")) for key, rows in runs.items()}


def seed_differences(area: dict[tuple[str, int], float], arm: str, base: str) -> dict[int, float]:
    """``{seed: area[arm, seed] − area[base, seed]}`` over the seeds that have both, in seed order."""
    return {s: area[arm, s] - area[base, s] for arm_, s in sorted(area) if arm_ == arm and (base, s) in area}


def auc_differences(runs: dict[tuple[str, int], list[dict]], arm: str, base: str) -> dict[int, float]:
    """``{seed: AUC(arm) − AUC(base)}`` in points over the seeds where both runs finished."""
    _, finished = finished_runs(runs)
    return seed_differences(heldout_areas({k: v for k, v in finished.items() if k[0] in (arm, base)}), arm, base)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the k-th smallest p times (m − k + 1), made
    non-decreasing in that order and capped at 1; a comparison is significant at level α when its adjusted p < α."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def primary_table(runs: dict[tuple[str, int], list[dict]], arms: list[str]) -> str:
    """The primary comparisons of held-out AUC (each arm against :func:`pair_of`): mean, 95% t-interval, seeds
    ahead, paired t-test p, Holm's adjusted p over ``arms``, SD of the differences, minimum detectable effect."""
    from scipy import stats

    rows = []
    for arm in arms:
        diffs = list(auc_differences(runs, arm, pair_of(arm)).values())
        n = len(diffs)
        mean, ci = mean_ci(diffs)
        sd = stats.tstd(diffs) if n > 1 else float("nan")
        p = float(stats.ttest_1samp(diffs, 0.0).pvalue) if n > 1 else float("nan")
        mde = (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * sd / math.sqrt(n) if n > 1 else float("nan")
        rows.append((arm, n, mean, ci, sum(d > 0 for d in diffs), p, sd, mde))
    adjusted = holm([r[5] for r in rows])
    lines = ["| arm − baseline, held-out AUC | n | mean | 95% interval | seeds ahead | p | Holm p | SD of the "
             "differences | MDE |", "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for (arm, n, mean, ci, ahead, p, sd, mde), adj in zip(rows, adjusted):
        lines.append(f"| {LABELS.get(arm, arm)} − {LABELS.get(pair_of(arm), pair_of(arm))} | {n} | {mean:+.2f} | "
                     f"{mean - ci:+.2f} to {mean + ci:+.2f} | {ahead}/{n} | {p:.3f} | {adj:.3f} | {sd:.2f} | {mde:.2f} |")
    return "\n".join(lines) + "\n"


def share_table(runs: dict[tuple[str, int], list[dict]], arms: list[str], reference: str,
                resamples: int = 10_000) -> str:
    """Per arm, the share of ``reference``'s AUC gain it recovers, ``mean(arm − base) / mean(reference − base)`` over
    the seeds all three finished, with the 95% percentile interval of a paired bootstrap over those seeds."""
    import numpy as np
    from scipy import stats

    ref_diffs = auc_differences(runs, reference, pair_of(reference))
    lines = [f"| arm | n | share of {LABELS.get(reference, reference)}'s gain | 95% bootstrap interval |",
             "|---|---:|---:|---|"]
    for arm in arms:
        diffs = auc_differences(runs, arm, pair_of(arm))
        seeds = sorted(set(diffs) & set(ref_diffs))
        a, r = np.array([diffs[s] for s in seeds]), np.array([ref_diffs[s] for s in seeds])
        share = a.mean() / r.mean()
        low = high = float("nan")
        if len(seeds) > 1:
            ci = stats.bootstrap((a, r), lambda x, y, axis=-1: x.mean(axis) / y.mean(axis), paired=True,
                                 vectorized=True, n_resamples=resamples, method="percentile",
                                 random_state=np.random.default_rng(0)).confidence_interval
            low, high = ci.low, ci.high
        lines.append(f"| {LABELS.get(arm, arm)} | {len(seeds)} | {100 * share:.0f}% | {100 * low:.0f}% to "
                     f"{100 * high:.0f}% |")
    return "\n".join(lines) + "\n"


def per_seed_table(runs: dict[tuple[str, int], list[dict]]) -> str:
    """Each finished run's held-out AUC (trapezoids, as :func:`outcomes`) per seed, its difference from the arm's
    baseline (:func:`pair_of`) on the same seed, and the mean of those differences: the table of a sweep or pilot
    with few seeds, where the intervals of :func:`tables` say little."""
    _, finished = finished_runs(runs)
    area = heldout_areas(finished)
    seeds = sorted({s for _, s in finished})
    lines = ["| arm | baseline | " + " | ".join(f"AUC s{s}" for s in seeds) + " | "
             + " | ".join(f"− baseline s{s}" for s in seeds) + " | mean − baseline |",
             "|---|---|" + "---:|" * (2 * len(seeds) + 1)]
    for a in ordered_arms(finished):
        base = pair_of(a)
        diffs = seed_differences(area, a, base) if base else {}
        lines.append(f"| {LABELS.get(a, a)} | {LABELS.get(base, base) if base else '–'} | "
                     + " | ".join(f"{area[a, s]:.1f}" if (a, s) in area else "–" for s in seeds) + " | "
                     + " | ".join(f"{diffs[s]:+.2f}" if s in diffs else "–" for s in seeds) + " | "
                     + (f"{sum(diffs.values()) / len(diffs):+.2f}" if diffs else "–") + " |")
    return "\n".join(lines) + "\n"


def step_table(runs: dict[tuple[str, int], list[dict]], column: str, scale: float = 100.0) -> str:
    """Mean ± 95% CI of ``column`` per arm at the evaluation steps (held-out accuracy) — the curve as a table."""
    steps = sorted({r["step"] for v in runs.values() for r in v if r[column] is not None})
    arms = ordered_arms(runs)
    lines = ["| step | " + " | ".join(LABELS.get(a, a) for a in arms) + " |", "|---:|" + "---:|" * len(arms)]
    for t in steps:
        cells = []
        for a in arms:
            vals = [scale * r[column] for (arm, _), v in runs.items() if arm == a for r in v
                    if r["step"] == t and r[column] is not None]
            cells.append(fmt(vals))
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def window_table(runs: dict[tuple[str, int], list[dict]], column: str, width: int, scale: float = 100.0) -> str:
    """Per arm, the mean ± 95% CI over seeds of each run's mean of ``column`` over steps 1..width, width+1..2·width,
    ... (a per-step series too noisy to read step by step, e.g. the share of mixed groups)."""
    last = max(r["step"] for v in runs.values() for r in v)
    windows = [(lo, min(lo + width - 1, last)) for lo in range(1, last + 1, width)]
    arms = ordered_arms(runs)
    lines = ["| steps | " + " | ".join(LABELS.get(a, a) for a in arms) + " |", "|---|" + "---:|" * len(arms)]
    for lo, hi in windows:
        cells = []
        for a in arms:
            means = []
            for run in (run for (arm, _), run in runs.items() if arm == a):
                vals = [r[column] for r in run if lo <= r["step"] <= hi and r[column] is not None]
                if vals:
                    means.append(scale * sum(vals) / len(vals))
            cells.append(fmt(means))
        lines.append(f"| {lo}-{hi} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(runs: dict[tuple[str, int], list[dict]], path: Path, smooth: int, title: str) -> Path:
    """Held-out accuracy, rollout accuracy (moving average) and sampled length: mean and 95% band per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("heldout_accuracy", "held-out accuracy (greedy)", 1),
              ("rollout_accuracy", f"rollout accuracy ({smooth}-step mean)", smooth),
              ("response_length", f"sampled response length ({smooth}-step mean)", smooth))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    arms = ordered_arms(runs)
    for color, a in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], arms):
        seeds = [s for arm, s in runs if arm == a]
        for ax, (column, name, window) in zip(axes, panels):
            per_step: dict[int, list[float]] = {}
            for s in seeds:
                pts = curve(runs[a, s], column)
                vals = moving_average([v for _, v in pts], window) if window > 1 else [v for _, v in pts]
                for (t, _), v in zip(pts, vals):
                    per_step.setdefault(t, []).append(v)
            steps = sorted(per_step)
            stats = [mean_ci(per_step[t]) for t in steps]
            mean = [m for m, _ in stats]
            ax.plot(steps, mean, color=color, lw=1.6, marker="o" if column == "heldout_accuracy" else None, ms=3,
                    label=f"{LABELS.get(a, a)} ({len(seeds)} seeds)")
            ax.fill_between(steps, [m - c for m, c in stats], [m + c for m, c in stats], color=color, alpha=0.15, lw=0)
            ax.set_title(name, fontsize=10)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("csv", type=Path, help="curves CSV written by ktae compare")
    p.add_argument("--study", default=None, help="only the rows of this study (default: every row)")
    p.add_argument("--target", type=float, required=True, help="held-out accuracy target of 'steps to target' (share)")
    p.add_argument("--last", type=int, default=5, help="steps averaged for the final sampled length and rollout accuracy")
    p.add_argument("--smooth", type=int, default=5, help="moving-average window of the figure's rollout curves")
    p.add_argument("--figure", type=Path, default=None, help="write the figure here (PNG)")
    p.add_argument("--title", default="mean over seeds, 95% band", help="figure title")
    p.add_argument("--out", type=Path, default=None, help="also write the tables to this markdown file")
    p.add_argument("--pair", action="append", default=[], metavar="ARM:BASELINE",
                   help="also give the paired differences ARM - BASELINE (repeatable), e.g. grpo-ktae-gate:grpo-oracle-blame")
    p.add_argument("--per_seed", action="store_true",
                   help="also give each run's AUC per seed and its difference from the baseline (a sweep's table)")
    p.add_argument("--primary", default="", metavar="ARM,ARM,...",
                   help="the primary comparisons of held-out AUC (each arm against its baseline): p, Holm, MDE")
    p.add_argument("--share_of", default="", metavar="ARM",
                   help="with --primary: the share of this arm's gain each other primary arm recovers (bootstrap)")
    args = p.parse_args(argv)
    extra_pairs = []
    for spec in args.pair:
        arm, sep, base = spec.partition(":")
        if not (sep and arm and base):
            p.error(f"--pair: expected ARM:BASELINE (two arm names and a colon), got {spec!r}")
        extra_pairs.append((arm, base))
    if not 0 < args.target <= 1:
        p.error(f"--target: expected a share in (0, 1], got {args.target}")
    if args.last < 1:
        p.error(f"--last: expected an integer >= 1, got {args.last}")
    try:
        runs = runs_of(read_curves_csv(args.csv), args.study)
    except (OSError, ValueError) as exc:
        p.error(str(exc))
    if not runs:
        p.error(f"{args.csv}: no rows" + (f" of study {args.study!r}" if args.study else ""))
    arms = {a for a, _ in runs}
    unknown = sorted({name for pair in extra_pairs for name in pair} - arms)
    primary = [a for a in args.primary.split(",") if a]
    if args.share_of and not primary:
        p.error("--share_of: give the arms to compare with --primary")
    for option, names in (("--primary", primary), ("--share_of", [args.share_of] if args.share_of else [])):
        missing = [a for a in names if a not in arms or pair_of(a) not in arms]
        if missing:
            p.error(f"{option}: no arm {', '.join(map(repr, missing))} with its baseline in {args.csv} "
                    f"(arms: {', '.join(sorted(arms))})")
    if unknown:
        p.error(f"--pair: no arm {', '.join(map(repr, unknown))} in {args.csv} (arms: {', '.join(sorted(arms))})")
    text = tables(runs, args.target, args.last, tuple(extra_pairs)) \
        + "\nHeld-out accuracy (%) at the evaluation steps, mean ± 95% CI:\n\n" + step_table(runs, "heldout_accuracy")
    if primary:
        text += "\nPrimary comparisons (held-out AUC, points; p: two-sided paired t-test; Holm over the arms " \
                "listed; MDE: the effect found with power 0.8 at α 0.05 given that SD):\n\n" + primary_table(runs, primary)
    if args.share_of:
        others = [a for a in primary if a != args.share_of]
        text += f"\nShare of {LABELS.get(args.share_of, args.share_of)}'s AUC gain recovered (paired bootstrap over " \
                "seeds, 10,000 resamples, percentile):\n\n" + share_table(runs, others, args.share_of)
    if args.per_seed:
        text += "\nHeld-out AUC per seed (trapezoids, mean %) and its difference from the baseline on the same seed " \
                "(points):\n\n" + per_seed_table(runs)
    if any(r.get("mixed_group_fraction") is not None for v in runs.values() for r in v):
        text += f"\nShare of mixed groups (%: groups with right and wrong rollouts), each run's mean over " \
                f"{args.last} steps, mean ± 95% CI over seeds:\n\n" + window_table(runs, "mixed_group_fraction", args.last)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    if args.figure:
        print(f"figure: {figure(runs, args.figure, args.smooth, args.title)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
