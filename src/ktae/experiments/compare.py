"""``ktae compare``: GRPO vs GRPO+KTAE (or DAPO vs DAPO+KTAE, and KTAE ablations) over several seeds.

Every (method, seed) is one ordinary ``ktae train`` run, made through :func:`ktae.train.train` into
``<output>/runs/<method>-s<seed>``. Then the metrics of all runs are summarised:

* ``<output>/compare.png``: held-out accuracy (greedy), rollout accuracy, rollout response length and
  entropy against the step; per method the mean over seeds with a 95% confidence band (Student t);
* ``<output>/compare.md`` and ``compare.json``: held-out accuracy and mean response length at fixed
  steps (mean ± 95% CI over seeds), and the paired (same seed) difference of each KTAE variant to the
  baseline; ``compare.json`` also has the command, the options and the environment (versions, git commit, CPU);
* ``<output>/curves.csv`` (or ``--csv``): the data behind them, one row per (arm, seed, step) with the columns
  :data:`CSV_COLUMNS`; comparisons of one study (say GRPO arms, then DAPO arms, or one seed at a time) can
  write one file: rows of other runs (study, arm, seed) already there are kept.

A finished run is reused, an interrupted one resumed from its last checkpoint, so stopping
``ktae compare`` and running the same command again only does the missing work.

>>> main(["--seeds", "3"])                        # doctest: +SKIP
>>> main(["--dapo", "--ablations", "alpha,gamma"])  # doctest: +SKIP
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ktae.core.label_free import LABEL_FREE_CREDITS
from ktae.environment import describe_environment
from ktae.experiments.plot import moving_average, save_figure
from ktae.files import atomic_write, exclusive
from ktae.frontend.metrics import MIXED_GROUP_FRACTION
from ktae.options import answer_help, make_parser, option, parse, topic_help_parser
from ktae.train.config import TrainConfig, load_run_config, make_config, option_name, option_values, parse_command

__all__ = ["CompareConfig", "Method", "methods", "config_methods", "ktae_point", "run_compare", "summarise",
           "write_figure", "write_table", "curve_rows", "write_curves_csv", "read_curves_csv", "mean_ci", "main",
           "help_parser", "HELP_SECTIONS", "COMMON_OPTIONS"]

#: Student t quantiles t_{0.975, df} for df = 1..30 (beyond: the normal 1.96 is within 2%)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)
#: with --warm_start_per_seed, seed s warm-starts the embedded model with tiny_seed PER_SEED_WARM_START + s
PER_SEED_WARM_START = 10_000
#: run metrics summarised (key in metrics.jsonl -> panel title)
CURVES = {
    "eval_accuracy": "held-out accuracy (greedy)",
    "accuracy": "rollout accuracy",
    "response_length": "rollout response length (tokens)",
    "entropy": "entropy (nats / token)",
}
#: columns of the per-run curves CSV (one row per arm, seed and step; empty where not measured at that step)
CSV_COLUMNS = ("study", "arm", "seed", "step", "rollout_accuracy", "heldout_accuracy", "response_length",
               "mixed_group_fraction")
#: the columns every curves CSV has (the later ones are read as empty from files written before them)
CSV_REQUIRED = CSV_COLUMNS[:7]
#: CSV column -> key in metrics.jsonl as :func:`ktae.train.logger.read_metrics` reads it (older runs' names are
#: upgraded: ``mixed_groups`` is read as ``ktae/mixed_group_fraction``). Rollout values are the step's raw means, not
#: smoothed; mixed_group_fraction: the trainer's ``ktae/mixed_group_fraction``, the share of the step's groups (the
#: kept ones with dynamic sampling) with a rollout whose reward is above KTAE's threshold and one not above it (for
#: the word tasks' 'math' reward and the default threshold: with both right and wrong answers)
CSV_METRICS = {"rollout_accuracy": "accuracy", "heldout_accuracy": "eval_accuracy",
               "response_length": "response_length", "mixed_group_fraction": MIXED_GROUP_FRACTION}


@dataclass
class CompareConfig:
    """Options of ``ktae compare``; any other ``--key value`` is a ``ktae train`` option for every run."""

    output: str = option("runs/compare", "folder of the comparison: runs/, compare.png, compare.md, compare.json")
    dapo: bool = option(False, "compare DAPO vs DAPO+KTAE (presets dapo, dapo-ktae) instead of GRPO vs GRPO+KTAE")
    task: str = option("arithmetic", "task of the runs: 'arithmetic' (presets grpo, grpo-ktae, ...), 'word' (word "
                   "problems: word-grpo, word-grpo-ktae, ...), 'word-small' (word problems with small numbers: "
                   "word-small-grpo, ...), 'word-easy' (easy word problems: word-easy-grpo, ...) or 'smollm2' "
                   "(smollm2-cpu-grpo, smollm2-cpu; no --dapo)")
    entropy_arm: bool = option(False, "add the baseline trained only on its highest-entropy tokens (the top 20 percent, "
                                  "top_entropy_quantile 0.2, Wang et al. 2025): arm grpo-entropy20")
    ktae_tuned: str = option("", "add the arm grpo-ktae-tuned (dapo-ktae-tuned with --dapo) with these KTAE values, "
                             "written as a point of --ktae_points (e.g. top0.5-beta0); empty: no such arm")
    ktae_points: list[str] = option([], "add one KTAE arm per point, comma-separated; a point is '-'-joined "
                                    "<name><value> with name alpha, beta, gamma or top, e.g. top0.5-beta0,alpha0: "
                                    "arms grpo-ktae-top0.5-beta0, grpo-ktae-alpha0 (the other values: the preset's)")
    oracle_arms: bool = option(False, "add the oracle arms grpo-oracle (tokens of labelled wrong steps of wrong "
                               "rollouts of mixed groups get A_i - ktae_top) and grpo-oracle-blame (those rollouts put "
                               "A_i on their wrong steps only); word tasks only. A measuring instrument (a positive "
                               "control that knows the mistakes), not a method")
    gate_arm: bool = option(False, "add the exploratory label-free arm grpo-ktae-gate (A_i scaled per token by how "
                            "specific the token is to its side of a mixed group; ktae.core.credit)")
    label_free_arms: list[str] = option([], "add one arm per label-free rule, comma-separated subset of "
                                        f"{','.join(LABEL_FREE_CREDITS)} (ktae.core.label_free): arms grpo-prefix, "
                                        "grpo-line-ktae-blame, ... (dapo-... with --dapo)")
    warm_start_per_seed: bool = option(False, "give each seed its own warm start of the embedded model (tiny_seed = "
                                       f"{PER_SEED_WARM_START} + seed: warm-start data order and initialisation; "
                                       "cached per seed); default: one warm start shared by every seed")
    runs_dir: str = option("", "folder of the runs (empty: <output>/runs); comparisons that share it reuse each "
                           "other's finished runs")
    ablations: list[str] = option([], "KTAE ablations to add, comma-separated subset of alpha,beta,gamma "
                                  "(each sets that weight to 0)")
    seeds: int = option(3, "number of seeds per method (seeds first_seed .. first_seed+seeds-1)")
    first_seed: int = option(0, "first seed")
    steps: int = option(100, "RL steps of every run (ktae train runs 150 by default; the curves settle by ~100)")
    eval_every: int = option(10, "held-out evaluation every N steps (and at step 0 and the end)")
    table_steps: list[str] = option([], "steps reported in the table, comma-separated (empty: up to 7 of the "
                                    "evaluation steps: the first four, then evenly spread up to the last)")
    smooth: int = option(5, "moving-average window (steps) of the rollout curves before averaging over seeds")
    target_accuracy: float = option(0.0, "also report the steps each run took to reach this held-out accuracy "
                                     "(a share, e.g. 0.5; 0 = off)")
    figure: str = option("", "figure path (empty: <output>/compare.png)")
    study: str = option("", "name of the study in the curves CSV's 'study' column (empty: the --output folder's name)")
    csv: str = option("", "per-run curves CSV (empty: <output>/curves.csv); rows of other runs (study, arm, seed) "
                      "already in the file are kept, so the comparisons of one study can share one file")

    def __post_init__(self) -> None:
        # comma-separated on the command line ("--ablations alpha,beta"): one item per value
        self.ablations = [a.strip() for item in self.ablations for a in str(item).split(",") if a.strip()]
        self.ktae_points = [a.strip() for item in self.ktae_points for a in str(item).split(",") if a.strip()]
        self.label_free_arms = [a.strip() for item in self.label_free_arms for a in str(item).split(",") if a.strip()]
        steps = [t.strip() for item in self.table_steps for t in str(item).split(",") if t.strip()]
        try:
            self.table_steps = [int(t) for t in steps]
        except ValueError:
            raise ValueError(f"--table_steps: expected integers separated by commas, got {','.join(steps)!r}") from None

    def validate(self) -> "CompareConfig":
        def need(cond: bool, name: str, expected: str) -> None:
            if not cond:
                raise ValueError(f"--{name}: expected {expected}, got {getattr(self, name)!r}")

        need(isinstance(self.seeds, int) and self.seeds >= 1, "seeds", "an integer >= 1")
        need(isinstance(self.first_seed, int) and self.first_seed >= 0, "first_seed", "an integer >= 0")
        need(isinstance(self.steps, int) and self.steps >= 1, "steps", "an integer >= 1")
        need(isinstance(self.eval_every, int) and self.eval_every >= 0, "eval_every", "an integer >= 0")
        need(isinstance(self.smooth, int) and self.smooth >= 1, "smooth", "an integer >= 1")
        need(0 <= self.target_accuracy <= 1, "target_accuracy", "a share in [0, 1]")
        need(bool(self.output), "output", "a folder")
        need(self.task in TASK_PRESETS, "task", f"one of {tuple(TASK_PRESETS)}")
        need(all(a in ABLATIONS for a in self.ablations), "ablations", f"a subset of {','.join(ABLATIONS)}")
        need(all(isinstance(s, int) and 0 <= s <= self.steps for s in self.table_steps), "table_steps",
             f"steps between 0 and --steps ({self.steps})")
        need(len(set(self.ktae_points)) == len(self.ktae_points), "ktae_points", "distinct points")
        need(len(set(self.label_free_arms)) == len(self.label_free_arms), "label_free_arms", "distinct rules")
        for name, points in (("ktae_tuned", [self.ktae_tuned] if self.ktae_tuned else []),
                             ("ktae_points", self.ktae_points)):
            for point in points:
                try:
                    ktae_point(point)
                except ValueError as exc:
                    raise ValueError(f"--{name}: {exc}") from None
        config_methods(self)   # the arms' own checks (--oracle_arms needs a word task, --label_free_arms known rules)
        return self


@dataclass(frozen=True)
class Method:
    """One arm of the comparison: a trainer preset plus option values."""

    key: str          # folder-safe name, e.g. "grpo-ktae-no-alpha"
    label: str        # legend / table name, e.g. "GRPO+KTAE (α=0)"
    preset: str
    overrides: tuple[tuple[str, Any], ...] = ()


#: share of tokens the entropy baseline keeps (Wang et al. 2025: the top 20%)
ENTROPY_ARM_QUANTILE = 0.2
#: KTAE options a point of --ktae_points / --ktae_tuned may set (name -> (train option, symbol))
KTAE_POINT_OPTIONS = {"alpha": ("ktae_alpha", "α"), "beta": ("ktae_beta", "β"), "gamma": ("ktae_gamma", "γ"),
                      "top": ("ktae_top", "top")}
#: KTAE ablations (--ablations): one of the weights set to 0
ABLATIONS = {name: KTAE_POINT_OPTIONS[name] for name in ("alpha", "beta", "gamma")}
_POINT_PART = re.compile(rf"^({'|'.join(KTAE_POINT_OPTIONS)})(\d+(?:\.\d+)?)$")


def ktae_point(text: str) -> tuple[tuple[str, float], ...]:
    """The KTAE values of a point such as ``top0.5-beta0``: ``(("top", 0.5), ("beta", 0.0))``, checked.

    Raises:
        ValueError: a part is not ``<alpha|beta|gamma|top><number>``, a name repeats, or the values are not valid
        KTAE options (e.g. alpha = beta = 0, top = 0).
    """
    from ktae.core.config import KTAEConfig

    values: dict[str, float] = {}
    for part in str(text).split("-"):
        m = _POINT_PART.match(part)
        if not m:
            raise ValueError(f"expected points such as top0.5-beta0 ('-'-joined <name><number>, name one of "
                             f"{', '.join(KTAE_POINT_OPTIONS)}), got {text!r}")
        if m.group(1) in values:
            raise ValueError(f"{m.group(1)} is given twice in {text!r}")
        values[m.group(1)] = float(m.group(2))
    KTAEConfig(**values)  # alpha + beta > 0, top > 0, ...
    return tuple(values.items())


def point_key(point: tuple[tuple[str, float], ...]) -> str:
    """The arm-name suffix of a KTAE point: ``top0.5-beta0``."""
    return "-".join(f"{name}{value:g}" for name, value in point)


def point_label(point: tuple[tuple[str, float], ...]) -> str:
    return ", ".join(f"{KTAE_POINT_OPTIONS[name][1]}={value:g}" for name, value in point)


#: the trainer preset of each arm, per task
TASK_PRESETS = {
    "arithmetic": {"grpo": "grpo", "grpo-ktae": "grpo-ktae", "dapo": "dapo", "dapo-ktae": "dapo-ktae"},
    "word": {"grpo": "word-grpo", "grpo-ktae": "word-grpo-ktae", "dapo": "word-dapo", "dapo-ktae": "word-dapo-ktae"},
    "word-small": {"grpo": "word-small-grpo", "grpo-ktae": "word-small-grpo-ktae", "dapo": "word-small-dapo",
                   "dapo-ktae": "word-small-dapo-ktae"},
    "word-easy": {"grpo": "word-easy-grpo", "grpo-ktae": "word-easy-grpo-ktae", "dapo": "word-easy-dapo",
                  "dapo-ktae": "word-easy-dapo-ktae"},
    "smollm2": {"grpo": "smollm2-cpu-grpo", "grpo-ktae": "smollm2-cpu"},
}


def methods(dapo: bool = False, ablations: list[str] | tuple[str, ...] = (), entropy_arm: bool = False,
            task: str = "arithmetic", *, ktae_tuned: str = "", ktae_points: list[str] | tuple[str, ...] = (),
            oracle_arms: bool = False, gate_arm: bool = False,
            label_free_arms: list[str] | tuple[str, ...] = ()) -> list[Method]:
    """Baseline first, then KTAE, one KTAE variant per ablation, the tuned KTAE, one KTAE arm per point, the
    oracles, the gate, one arm per label-free rule, then the entropy baseline."""
    base, name = ("dapo", "DAPO") if dapo else ("grpo", "GRPO")
    if task not in TASK_PRESETS:
        raise ValueError(f"--task: expected one of {tuple(TASK_PRESETS)}, got {task!r}")
    presets = TASK_PRESETS[task]
    if base not in presets:
        raise ValueError(f"--dapo: the {task} task has no DAPO presets; compare GRPO vs GRPO+KTAE there")
    out = [Method(base, name, presets[base]), Method(f"{base}-ktae", f"{name}+KTAE", presets[f"{base}-ktae"])]
    for ab in ablations:
        if ab not in ABLATIONS:
            raise ValueError(f"--ablations: unknown ablation {ab!r}; expected a subset of {', '.join(ABLATIONS)}")
        option, symbol = ABLATIONS[ab]
        out.append(Method(f"{base}-ktae-no-{ab}", f"{name}+KTAE ({symbol}=0)", presets[f"{base}-ktae"],
                          ((option, 0.0),)))
    points = [("tuned", ktae_point(ktae_tuned))] if ktae_tuned else []
    points += [(point_key(point), point) for point in map(ktae_point, ktae_points)]
    for key, point in points:
        tuned = " tuned" if key == "tuned" else ""
        out.append(Method(f"{base}-ktae-{key}", f"{name}+KTAE{tuned} ({point_label(point)})", presets[f"{base}-ktae"],
                          tuple((KTAE_POINT_OPTIONS[n][0], v) for n, v in point)))
    if oracle_arms:
        if not task.startswith("word"):
            raise ValueError(f"--oracle_arms: expected a word task (--task word, word-small or word-easy: they label "
                             f"the wrong steps), got --task {task}")
        out.append(Method(f"{base}-oracle", f"{name}+oracle (wrong steps −c)", presets[base],
                          (("estimator", "grpo+oracle"),)))
        out.append(Method(f"{base}-oracle-blame", f"{name}+oracle (blame wrong steps only)", presets[base],
                          (("estimator", "grpo+oracle-blame"),)))
    if gate_arm:
        out.append(Method(f"{base}-ktae-gate", f"{name}+KTAE gate", presets[base], (("estimator", "grpo+ktae-gate"),)))
    for rule in label_free_arms:
        if rule not in LABEL_FREE_CREDITS:
            raise ValueError(f"--label_free_arms: unknown rule {rule!r}; expected a subset of "
                             f"{','.join(LABEL_FREE_CREDITS)}")
        out.append(Method(f"{base}-{rule}", f"{name}+{rule}", presets[base], (("estimator", f"grpo+{rule}"),)))
    if entropy_arm:
        share = round(100 * ENTROPY_ARM_QUANTILE)
        out.append(Method(f"{base}-entropy{share}", f"{name} (top-{share}% entropy tokens)", presets[base],
                          (("top_entropy_quantile", ENTROPY_ARM_QUANTILE),)))
    return out


def config_methods(config: CompareConfig) -> list[Method]:
    """The arms that ``config`` asks for (:func:`methods`)."""
    return methods(config.dapo, config.ablations, config.entropy_arm, config.task, ktae_tuned=config.ktae_tuned,
                   ktae_points=config.ktae_points, oracle_arms=config.oracle_arms, gate_arm=config.gate_arm,
                   label_free_arms=config.label_free_arms)


# ============================================================================ statistics
def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (Student t; 0 for one value, nan for none)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(vals)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(vals) / n
    if n == 1:
        return mean, 0.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    t = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
    return mean, t * sd / math.sqrt(n)


def _series(records: list[dict], key: str) -> dict[int, float]:
    out: dict[int, float] = {}
    for r in records:
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[int(r["step"])] = float(v)
    return out


# ============================================================================ running
def _read_metrics(run_dir: Path) -> list[dict]:
    from ktae.train.logger import read_metrics

    return read_metrics(run_dir)


def run_complete(run_dir: Path, cfg: TrainConfig) -> bool:
    """True when ``run_dir`` logged its last step (and its final evaluation when it evaluates)."""
    if not (run_dir / "metrics.jsonl").is_file():
        return False
    records = _read_metrics(run_dir)
    trained = any(r.get("step") == cfg.steps and "accuracy" in r for r in records)
    evaluated = not cfg.eval.every or any(r.get("step") == cfg.steps and "eval_accuracy" in r for r in records)
    return trained and evaluated


def _comparable(cfg: TrainConfig) -> dict:
    d = option_values(cfg)
    for key in ("run_dir", "log.quiet", "output_root"):
        d.pop(key, None)
    return d


def _saved_config(run_dir: Path) -> dict | None:
    if not (run_dir / "config.yaml").is_file():
        return None
    try:
        return _comparable(load_run_config(run_dir))
    except ValueError as exc:  # written by another version of ktae
        return {"config.yaml": str(exc)}


def plan(config: CompareConfig, train_options: dict) -> list[tuple[Method, int, TrainConfig]]:
    """Every (method, seed, trainer configuration) of the comparison, validated before anything runs."""
    out = []
    root = Path(config.runs_dir) if config.runs_dir else Path(config.output) / "runs"
    if config.warm_start_per_seed and "tiny.seed" in train_options:
        raise ValueError(f"--warm_start_per_seed sets tiny_seed per seed; leave out {option_name('tiny.seed')}")
    for method in config_methods(config):
        for seed in range(config.first_seed, config.first_seed + config.seeds):
            values = {**train_options, **dict(method.overrides), "seed": seed, "steps": config.steps,
                      "eval_every": config.eval_every, "run_dir": str(root / f"{method.key}-s{seed}")}
            if config.warm_start_per_seed:
                values["tiny.seed"] = PER_SEED_WARM_START + seed
            try:
                cfg = make_config(method.preset, **values)
            except ValueError as exc:
                raise ValueError(f"ktae train option for {method.label}: {exc}") from exc
            if config.warm_start_per_seed and cfg.model.path != "embedded":
                raise ValueError(f"--warm_start_per_seed: expected the embedded model, got --model {cfg.model.path}")
            out.append((method, seed, cfg))
    return out


def run_compare(config: CompareConfig, train_options: dict | None = None, log: Callable[[str], None] = print
                ) -> dict[str, list[Path]]:
    """Run (or reuse, or resume) every run of the comparison; returns ``{method key: [run folders]}``.

    One progress bar counts the RL steps of all runs: each run reports its records through the trainer's
    ``callbacks`` (a step advances the bar, an evaluation is written above it); the runs' own console rows
    are off (``quiet``), their warnings and errors are written above the bar with the run's name.
    """
    from ktae.progress import progress_bar
    from ktae.train.checkpoint import list_checkpoints
    from ktae.train.loop import train

    config.validate()
    jobs = plan(config, dict(train_options or {}))
    out: dict[str, list[Path]] = {}
    bar = progress_bar(total=len(jobs) * config.steps, desc="compare", unit="step", dynamic_ncols=True)
    try:
        for k, (method, seed, cfg) in enumerate(jobs):
            run_dir = Path(cfg.run_dir)
            out.setdefault(method.key, []).append(run_dir)
            tag = f"[{method.key} s{seed}] "
            bar.set_postfix_str(f"run {k + 1}/{len(jobs)}: {method.label}, seed {seed}")
            saved = _saved_config(run_dir)
            if saved is not None and saved != _comparable(cfg):
                changed = sorted(k for k in saved if saved.get(k) != _comparable(cfg).get(k))
                raise ValueError(f"{run_dir} was made with other options ({', '.join(changed)}); "
                                 "choose another --output or delete that folder")
            done_before = bar.n
            if run_complete(run_dir, cfg):
                bar.write(tag + "finished earlier: reused")
            else:
                def on_record(record: dict, tag: str = tag) -> None:
                    if "eval_accuracy" in record:
                        bar.write(f"{tag}eval @ step {record['step']}: held-out accuracy "
                                  f"{record['eval_accuracy']:.1%}, mean length {record['eval_response_length']:.1f}")
                    elif "reward" in record:
                        bar.update(1)

                def write(text: str, tag: str = tag) -> None:
                    for line in str(text).splitlines():
                        if line.strip():
                            bar.write(tag + line)

                saved_steps = list_checkpoints(run_dir)
                if saved_steps:
                    bar.write(tag + f"resuming from step {saved_steps[-1][0]}")
                    bar.update(saved_steps[-1][0])
                    train(resume=run_dir, log=write, callbacks=[on_record], quiet=True)
                else:
                    if run_dir.exists():  # started but stopped before its first checkpoint
                        shutil.rmtree(run_dir)
                    train(cfg, log=write, callbacks=[on_record], quiet=True)
            bar.update(done_before + config.steps - bar.n)
    finally:
        bar.close()
    return out


# ============================================================================ summarising
def default_table_steps(eval_steps: list[int], rows: int = 7) -> list[int]:
    """At most ``rows`` of the evaluation steps: the first four (the early rise), then evenly spread, the last."""
    if len(eval_steps) <= rows:
        return list(eval_steps)
    head = eval_steps[:4]
    rest = eval_steps[4:]
    picks = {rest[round(i * (len(rest) - 1) / (rows - 5))] for i in range(rows - 4)}
    return head + sorted(picks)


def summarise(runs: dict[str, list[Path]], method_list: list[Method], table_steps: list[int] | None = None,
              smooth: int = 5) -> dict:
    """Curves (mean, CI per step) and the fixed-step table of the runs' ``metrics.jsonl``."""
    summary: dict[str, Any] = {"methods": [], "curves": {}, "table": {}, "paired": {}}
    per_run: dict[str, list[dict[str, dict[int, float]]]] = {}
    for m in method_list:
        dirs = runs.get(m.key, [])
        series = []
        for d in dirs:
            records = _read_metrics(Path(d))
            s = {key: _series(records, key) for key in (*CURVES, "eval_response_length")}
            for key in ("accuracy", "response_length", "entropy"):
                steps = sorted(s[key])
                s[key] = dict(zip(steps, moving_average([s[key][t] for t in steps], smooth)))
            series.append(s)
        per_run[m.key] = series
        summary["methods"].append({"key": m.key, "label": m.label, "runs": [str(d) for d in dirs]})
        curves = {}
        for key in CURVES:
            steps = sorted(set().union(*(set(s[key]) for s in series))) if series else []
            rows = []
            for t in steps:
                vals = [s[key][t] for s in series if t in s[key]]
                mean, ci = mean_ci(vals)
                rows.append([t, mean, ci, len(vals)])
            curves[key] = rows
        summary["curves"][m.key] = curves
    if table_steps is None or not table_steps:
        found = set()
        for series in per_run.values():
            for s in series:
                found |= set(s["eval_accuracy"])
        table_steps = default_table_steps(sorted(found))
    summary["table_steps"] = list(table_steps)
    for m in method_list:
        rows = {}
        for t in table_steps:
            row = {}
            for key, name in (("eval_accuracy", "accuracy"), ("eval_response_length", "length"),
                              ("accuracy", "rollout_accuracy")):
                vals = [s[key][t] for s in per_run[m.key] if t in s[key]]
                mean, ci = mean_ci(vals)
                row[name] = {"mean": mean, "ci95": ci, "n": len(vals), "values": vals}
            rows[str(t)] = row
        summary["table"][m.key] = rows
    # paired by seed: each KTAE variant minus the baseline (same seed = same data order and initialisation)
    base = method_list[0]
    for m in method_list[1:]:
        paired = {}
        for t in table_steps:
            row = {}
            for key, name in (("eval_accuracy", "accuracy"), ("eval_response_length", "length")):
                diffs = [a[key][t] - b[key][t] for a, b in zip(per_run[m.key], per_run[base.key])
                         if t in a[key] and t in b[key]]
                mean, ci = mean_ci(diffs)
                row[name] = {"mean": mean, "ci95": ci, "n": len(diffs), "values": diffs}
            paired[str(t)] = row
        summary["paired"][m.key] = paired
    return summary


def first_step_reaching(accuracy: dict[int, float], target: float) -> int | None:
    """The first evaluated step whose held-out accuracy is at least ``target`` (None: never)."""
    return next((t for t in sorted(accuracy) if accuracy[t] >= target), None)


def steps_to_target(summary: dict, target: float) -> dict:
    """Per method, the steps each run (seed) took to reach ``target`` held-out accuracy; paired differences to
    the baseline over the seeds where both reached it. Runs that never reached it are counted, not imputed."""
    out: dict[str, Any] = {"target": target, "methods": {}, "paired": {}}
    per_method = {}
    for m in summary["methods"]:
        runs = []
        for run in m["runs"]:
            acc = _series(_read_metrics(Path(run)), "eval_accuracy")
            runs.append(first_step_reaching(acc, target))
        per_method[m["key"]] = runs
        reached = [r for r in runs if r is not None]
        mean, ci = mean_ci(reached)
        out["methods"][m["key"]] = {"steps": runs, "mean": mean, "ci95": ci, "reached": len(reached), "runs": len(runs)}
    base = summary["methods"][0]["key"]
    for m in summary["methods"][1:]:
        diffs = [a - b for a, b in zip(per_method[m["key"]], per_method[base]) if a is not None and b is not None]
        mean, ci = mean_ci(diffs)
        out["paired"][m["key"]] = {"mean": mean, "ci95": ci, "n": len(diffs), "values": diffs}
    return out


def curve_rows(runs: dict[str, list[Path]], study: str) -> list[dict]:
    """One row per (arm, seed, step) of the runs' ``metrics.jsonl``: :data:`CSV_COLUMNS`, ``None`` where a value
    was not measured at that step (held-out accuracy only at evaluation steps, rollout values not at step 0).

    ``runs`` maps the arm (method key, e.g. ``grpo-ktae``) to its run folders; the seed is read from each run's
    ``config.yaml``.
    """
    rows = []
    for arm, dirs in runs.items():
        for run_dir in dirs:
            seed = load_run_config(Path(run_dir)).seed
            records = _read_metrics(Path(run_dir))
            series = {column: _series(records, key) for column, key in CSV_METRICS.items()}
            for step in sorted(set().union(*(set(s) for s in series.values()))):
                rows.append({"study": study, "arm": arm, "seed": seed, "step": step,
                             **{column: series[column].get(step) for column in CSV_METRICS}})
    return rows


def read_curves_csv(path: Path) -> list[dict]:
    """The rows of a curves CSV (:data:`CSV_COLUMNS`): seed and step as ints, values as floats or ``None``.

    A file written before a column was added (it has the :data:`CSV_REQUIRED` columns) reads that column as ``None``.
    """
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not set(CSV_REQUIRED) <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: not a curves CSV of ktae compare (columns {reader.fieldnames}, expected "
                             f"{', '.join(CSV_COLUMNS)})")
        rows = []
        for row in reader:
            rows.append({"study": row["study"], "arm": row["arm"], "seed": int(row["seed"]), "step": int(row["step"]),
                         **{c: float(row[c]) if row.get(c) not in ("", None) else None for c in CSV_METRICS}})
    return rows


def write_curves_csv(path: Path, rows: list[dict]) -> Path:
    """Write ``rows`` to the curves CSV ``path``, keeping the rows already there of other runs (study, arm, seed).

    Rows are sorted by study, arm, seed and step. Written to a temporary file first, then moved into place,
    so an interruption leaves the old file whole.
    """
    path = Path(path)
    replaced = {(r["study"], r["arm"], r["seed"]) for r in rows}
    with exclusive(path):  # two compare processes may share one CSV (the studies' two seed ranges)
        kept = [r for r in read_curves_csv(path) if (r["study"], r["arm"], r["seed"]) not in replaced] \
            if path.is_file() else []
        rows = sorted(kept + rows, key=lambda r: (r["study"], r["arm"], r["seed"], r["step"]))
        with atomic_write(path, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, lineterminator="\n")
            writer.writeheader()
            for r in rows:
                values = {k: r.get(k) for k in CSV_COLUMNS}  # a column the row lacks is empty
                writer.writerow({k: "" if v is None else repr(v) if isinstance(v, float) else v
                                 for k, v in values.items()})
    return path


def _fmt(cell: dict, percent: bool) -> str:
    mean, ci, n = cell["mean"], cell["ci95"], cell["n"]
    if n == 0 or not math.isfinite(mean):
        return "–"
    if percent:
        return f"{100 * mean:.1f} ± {100 * ci:.1f}" if n > 1 else f"{100 * mean:.1f}"
    return f"{mean:.1f} ± {ci:.1f}" if n > 1 else f"{mean:.1f}"


def write_table(summary: dict, path_md: Path, path_json: Path, title: str = "") -> None:
    """The fixed-step table as markdown (``path_md``) and the whole summary as JSON (``path_json``)."""
    labels = {m["key"]: m["label"] for m in summary["methods"]}
    keys = [m["key"] for m in summary["methods"]]
    n_seeds = max((len(m["runs"]) for m in summary["methods"]), default=0)
    lines = []
    if title:
        lines += [f"**{title}**", ""]
    lines += [f"Held-out accuracy (%, greedy) and mean response length (tokens) at fixed steps: mean ± 95% CI over "
              f"{n_seeds} seeds (Student t).", ""]
    head = "| step | " + " | ".join(f"{labels[k]} acc" for k in keys) + " | " + \
        " | ".join(f"{labels[k]} len" for k in keys) + " |"
    lines += [head, "|" + "---:|" * (1 + 2 * len(keys))]
    for t in summary["table_steps"]:
        accs = [_fmt(summary["table"][k][str(t)]["accuracy"], True) for k in keys]
        lens = [_fmt(summary["table"][k][str(t)]["length"], False) for k in keys]
        lines.append(f"| {t} | " + " | ".join(accs) + " | " + " | ".join(lens) + " |")
    base = keys[0]
    if summary["paired"]:
        lines += ["", f"Paired difference to {labels[base]} (same seed), mean ± 95% CI:", ""]
        others = list(summary["paired"])
        lines += ["| step | " + " | ".join(f"{labels[k]} Δacc (pts)" for k in others) + " | " +
                  " | ".join(f"{labels[k]} Δlen" for k in others) + " |",
                  "|" + "---:|" * (1 + 2 * len(others))]
        for t in summary["table_steps"]:
            accs = [_fmt(summary["paired"][k][str(t)]["accuracy"], True) for k in others]
            lens = [_fmt(summary["paired"][k][str(t)]["length"], False) for k in others]
            lines.append(f"| {t} | " + " | ".join(accs) + " | " + " | ".join(lens) + " |")
    if "steps_to_target" in summary:
        target = summary["steps_to_target"]
        lines += ["", f"Steps to reach {100 * target['target']:.0f}% held-out accuracy (first evaluation at or above "
                      "it; mean ± 95% CI over the seeds that reached it; paired: same seed, both reached):", "",
                  "| method | steps | reached | paired Δ to " + labels[base] + " |", "|---|---:|---:|---:|"]
        for k in keys:
            row = target["methods"][k]
            paired = target["paired"].get(k)
            cell = _fmt({"mean": row["mean"], "ci95": row["ci95"], "n": row["reached"]}, False)
            diff = "–" if paired is None else _fmt({"mean": paired["mean"], "ci95": paired["ci95"],
                                                    "n": paired["n"]}, False)
            lines.append(f"| {labels[k]} | {cell} | {row['reached']}/{row['runs']} | {diff} |")
    path_md.parent.mkdir(parents=True, exist_ok=True)
    path_md.write_text("\n".join(lines) + "\n")
    path_json.write_text(json.dumps(summary, indent=1, allow_nan=True))


def write_figure(summary: dict, path: Path, title: str = "") -> Path:
    """Four panels (held-out accuracy, rollout accuracy, response length, entropy): mean and 95% band per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(4.4 * len(CURVES), 3.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, m in enumerate(summary["methods"]):
        color = colors[k % len(colors)]
        n = len(m["runs"])
        for ax, key in zip(axes, CURVES):
            rows = summary["curves"][m["key"]][key]
            if not rows:
                continue
            steps = [r[0] for r in rows]
            mean = [r[1] for r in rows]
            lo = [r[1] - r[2] for r in rows]
            hi = [r[1] + r[2] for r in rows]
            marker = "o" if key == "eval_accuracy" else None
            ax.plot(steps, mean, color=color, lw=1.8, marker=marker, ms=4, label=f"{m['label']} ({n} seeds)")
            ax.fill_between(steps, lo, hi, color=color, alpha=0.18, lw=0)
    for ax, key in zip(axes, CURVES):
        ax.set_title(CURVES[key], fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if key.endswith("accuracy"):
            ax.set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title or "mean over seeds, 95% confidence band", fontsize=11)
    return save_figure(fig, path)


# ============================================================================ command line
#: what ``ktae compare --help`` shows; the rest is one ``--help SECTION`` away
COMMON_OPTIONS = ("output", "task", "dapo", "ablations", "seeds", "steps")
#: ``ktae compare --help SECTION``: topic -> (title, options)
HELP_SECTIONS = {
    "arms": ("Arms (the methods compared)", ("dapo", "task", "entropy_arm", "ablations", "ktae_tuned", "ktae_points",
                                             "oracle_arms", "gate_arm", "label_free_arms")),
    "runs": ("Runs (one ktae train run per arm and seed)", ("seeds", "first_seed", "steps", "eval_every", "runs_dir",
                                                            "warm_start_per_seed")),
    "report": ("Figure, tables and curves", ("output", "figure", "table_steps", "smooth", "target_accuracy", "study",
                                             "csv")),
}
_USAGE = ("ktae compare [--key value ...] [ktae train options ...]\n"
          "       ktae compare --help [SECTION | all]")
_DESCRIPTION = ("Runs GRPO vs GRPO+KTAE (or DAPO vs DAPO+KTAE, KTAE ablations and points, the top-20%-entropy "
                "baseline,\nthe oracles, the gate, the label-free rules: --help arms) over several seeds, then writes "
                "<output>/compare.png\n(mean and 95% band per method) and compare.md / compare.json (fixed-step "
                "tables). Finished runs are "
                "reused and\ninterrupted ones resumed: run the same command again to continue.")
_TRAIN_OPTIONS = ("Every other --key value is passed to each 'ktae train' run (see 'ktae train --help'); --seed, "
                  "--steps,\n--eval_every, --run_dir and --preset are set by compare.")


def parser():
    """The command-line parser of ``ktae compare``: :class:`CompareConfig`'s fields (``transformers.HfArgumentParser``);
    any other ``--key value`` is left over for ``ktae train``."""
    return make_parser([CompareConfig], prog="ktae compare", usage=_USAGE, description=_DESCRIPTION,
                       epilog=_TRAIN_OPTIONS)


def help_parser(topic: str | None = None):
    """The parser whose ``--help`` is ``ktae compare --help [TOPIC]``: :data:`COMMON_OPTIONS` and the sections, one
    of :data:`HELP_SECTIONS`, or ``all``.

    Raises:
        ValueError: ``topic`` is not a section nor ``all``.
    """
    return topic_help_parser([CompareConfig], topic, prog="ktae compare", common=COMMON_OPTIONS,
                             sections=HELP_SECTIONS, full=parser, usage=_USAGE,
                             description=f"{_DESCRIPTION}\n\n{_TRAIN_OPTIONS}")


def parse_args(argv: list[str]) -> tuple[CompareConfig, dict]:
    """``(CompareConfig, ktae train options)`` from the command line."""
    config, rest = parse(parser(), argv, remaining=True)
    launch, train_options = parse_command(rest)
    given = [key for key in ("preset", "config", "resume") if getattr(launch, key)] + list(train_options)
    for key in ("seed", "steps", "eval.every", "run_dir", "preset", "resume", "config"):
        if key in given:
            raise ValueError(f"{option_name(key)} is set by ktae compare (use --seeds/--first_seed/--steps/"
                             "--eval_every/--output)")
    return config.validate(), train_options


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    answered = answer_help(argv, help_parser, "compare")
    if answered is not None:
        return answered
    try:
        config, train_options = parse_args(argv)
        method_list = config_methods(config)
        t0 = time.time()
        runs = run_compare(config, train_options)
        summary = summarise(runs, method_list, config.table_steps, config.smooth)
        if config.target_accuracy:
            summary["steps_to_target"] = steps_to_target(summary, config.target_accuracy)
        summary["command"] = "ktae compare " + " ".join(argv)
        summary["options"] = {"compare": dataclasses.asdict(config), "train": train_options}
        summary["environment"] = describe_environment()  # of this summary; each run's is in its environment.json
        out = Path(config.output)
        figure = Path(config.figure) if config.figure else out / "compare.png"
        name = "DAPO" if config.dapo else "GRPO"
        where = {"arithmetic": "embedded arithmetic task", "word": "embedded word problems",
                 "word-small": "word problems with small numbers",
                 "word-easy": "easy word problems", "smollm2": "SmolLM2-135M"}[config.task]
        if {"model.path", "data.path"} & set(train_options):
            where = "your model/data"
        title = f"{name} vs {name}+KTAE, {where}: mean over {config.seeds} seeds, 95% band"
        write_figure(summary, figure, title)
        write_table(summary, out / "compare.md", out / "compare.json", title)
        curves = write_curves_csv(Path(config.csv) if config.csv else out / "curves.csv",
                                  curve_rows(runs, config.study or out.resolve().name))
        print((out / "compare.md").read_text())
        print(f"figure: {figure}\ntable: {out / 'compare.md'} and {out / 'compare.json'}\ncurves: {curves}\n"
              f"({time.time() - t0:.0f}s this session)")
    except KeyboardInterrupt:
        print("\nstopped; run the same command again to continue (finished runs are reused)", file=sys.stderr)
        return 130
    except (ValueError, TypeError, ImportError) as exc:
        print(f"ktae compare: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
