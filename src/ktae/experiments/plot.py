"""``ktae plot RUN_DIR [RUN_DIR ...]``: accuracy, mean response length and entropy against steps (one PNG).

Each run folder's ``metrics.jsonl`` is read; several runs share the axes (like Figure 4 of
the paper). Accuracy shows the rollouts' accuracy per step (thin line, smoothed) and the
held-out greedy accuracy on schedule (markers) when the run evaluated.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ktae.options import make_parser, option, parse
from ktae.train.logger import read_metrics


def save_figure(fig, path: str | Path) -> Path:
    """Lay out ``fig``, write it to ``path`` as a 120-dpi PNG (folders made as needed) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over the last ``window`` values (fewer at the start); ``window`` <= 1: the values."""
    if window <= 1:
        return values
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """Steps and values of ``key`` over the records that have it (the last record of a step wins)."""
    by_step: dict[int, float] = {}
    for r in records:
        value = r.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            by_step[int(r["step"])] = float(value)
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def plot_runs(run_dirs: list[str | Path], output: str | Path, labels: list[str] | None = None, smooth: int = 5,
              title: str | None = None) -> Path:
    """Draw the runs' curves into ``output`` (PNG) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not run_dirs:
        raise ValueError("run_dirs: give at least one run folder")
    if labels is not None and len(labels) != len(run_dirs):
        raise ValueError(f"labels: expected {len(run_dirs)} labels (one per run), got {len(labels)}")
    runs = [(Path(d), read_metrics(d)) for d in run_dirs]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (path, records) in enumerate(runs):
        color = colors[k % len(colors)]
        label = labels[k] if labels else path.name
        steps, acc = series(records, "accuracy")
        if steps:
            axes[0].plot(steps, moving_average(acc, smooth), color=color, alpha=0.45, lw=1.2,
                         label=f"{label} (rollouts)")
        ev_steps, ev_acc = series(records, "eval_accuracy")
        if ev_steps:
            axes[0].plot(ev_steps, ev_acc, color=color, marker="o", lw=2, label=f"{label} (held-out, greedy)")
        steps, length = series(records, "response_length")
        if steps:
            axes[1].plot(steps, moving_average(length, smooth), color=color, lw=1.6, label=label)
        steps, entropy = series(records, "entropy")
        if steps:
            axes[2].plot(steps, moving_average(entropy, smooth), color=color, lw=1.6, label=label)
    for ax, name in zip(axes, ("accuracy", "mean response length (tokens)", "entropy (nats / token)")):
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=7, loc="lower right")
    axes[1].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return save_figure(fig, output)


@dataclass
class PlotOptions:
    """Options of ``ktae plot`` (the run folders are its positional arguments)."""

    output: str | None = option(None, "PNG to write (None: <first run>/curves.png, or curves.png for several runs)",
                                aliases=("-o",))
    labels: str | None = option(None, "comma-separated legend labels, one per run")
    smooth: int = option(5, "moving-average window over steps (1 = raw)")
    title: str | None = option(None, "figure title")


def build_parser():
    """The command-line parser of ``ktae plot``: :class:`PlotOptions` and the run folders."""
    parser = make_parser([PlotOptions], prog="ktae plot", description="Plot accuracy, mean response length and "
                         "entropy against steps for one or more run folders.")
    parser.add_argument("run_dirs", nargs="+", help="run folders (each holds a metrics.jsonl)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``ktae plot``: 0 when the figure is written, 2 (a message on stderr) on bad input."""
    parser = build_parser()
    try:
        options, positional = parse(parser, sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        parser.error(str(exc))
    run_dirs = positional.run_dirs
    output = options.output or (str(Path(run_dirs[0]) / "curves.png") if len(run_dirs) == 1 else "curves.png")
    labels = [s.strip() for s in options.labels.split(",")] if options.labels else None
    try:
        path = plot_runs(run_dirs, output, labels=labels, smooth=options.smooth, title=options.title)
    except ValueError as exc:
        print(f"ktae plot: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
