"""Where a run's numbers go: ``metrics.jsonl`` (always), the console, tensorboard and W&B (when asked).

``metrics.jsonl`` holds one JSON object per line: a training record per step (``"step"``
plus the step's metrics) and an evaluation record on schedule (``"step"`` plus
``eval_*`` keys; step 0 is the model before training).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ktae.frontend.metrics import PREFIX, upgrade_record

#: console columns: (header, metric key, format)
COLUMNS = [
    ("step", "step", "{:>5d}"),
    ("reward", "reward", "{:>7.3f}"),
    ("acc", "accuracy", "{:>6.1%}"),
    ("len", "response_length", "{:>6.1f}"),
    ("cut", "clipped_fraction", "{:>5.0%}"),
    ("entropy", "entropy", "{:>7.3f}"),
    ("kl", "kl", "{:>7.4f}"),
    ("clip", "clip_fraction", "{:>6.3f}"),
    ("gnorm", "grad_norm", "{:>7.3f}"),
    ("|K|", PREFIX + "abs_mean", "{:>6.3f}"),
    ("K+/K-", None, None),
    ("s/step", "time_step", "{:>6.2f}"),
    ("gen/rew/adv/upd %", None, None),
]


def read_metrics(run_dir: str | Path) -> list[dict]:
    """All records of ``<run_dir>/metrics.jsonl`` (a torn last line, from a crash, is ignored), with the metric
    names of older runs replaced by the shared ones (:func:`ktae.frontend.metrics.upgrade_record`)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise ValueError(f"{str(run_dir)!r} is not a run folder (no metrics.jsonl in it)")
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(upgrade_record(json.loads(line)))
        except json.JSONDecodeError:
            continue
    return out


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLogger:
    """Writes records to ``metrics.jsonl`` (flushed every line) and, when asked, tensorboard and W&B."""

    def __init__(self, run_dir: Path, config: dict, *, resume_step: int | None = None, tensorboard: bool = False,
                 wandb: bool = False, wandb_project: str = "ktae", quiet: bool = False):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "metrics.jsonl"
        self.quiet = quiet
        if resume_step is not None and self.path.exists():
            # drop what was logged after the checkpoint we resume from, so the file reads like one run
            kept = [r for r in read_metrics(self.run_dir) if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self._file = open(self.path, "a", buffering=1)
        self._tb = None
        self._wandb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ImportError("--tensorboard needs the tensorboard package: pip install 'ktae[tensorboard]'") from exc
            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
        if wandb:
            try:
                import wandb as wandb_module
            except ImportError as exc:
                raise ImportError("--wandb needs the wandb package: pip install 'ktae[wandb]'") from exc
            id_file = self.run_dir / "wandb_id"
            run_id = id_file.read_text().strip() if id_file.exists() else wandb_module.util.generate_id()
            id_file.write_text(run_id)
            self._wandb = wandb_module.init(project=wandb_project, name=self.run_dir.name, id=run_id, resume="allow",
                                            config=config, dir=str(self.run_dir))
        self._rows = 0

    # ------------------------------------------------------------------ records
    def log(self, record: dict) -> None:
        record = {k: _clean(v) for k, v in record.items()}
        self._file.write(json.dumps(record) + "\n")
        step = int(record.get("step", 0))
        numbers = {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))
                   and not isinstance(v, bool) and v is not None}
        if self._tb is not None:
            for key, value in numbers.items():
                self._tb.add_scalar(key if "/" in key else ("eval/" + key[5:] if key.startswith("eval_")
                                                             else "train/" + key), value, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(numbers, step=step)

    # ------------------------------------------------------------------ console
    def print(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def row(self, record: dict) -> str:
        cells = []
        for head, key, fmt in COLUMNS:
            if head == "K+/K-":
                pos, neg = record.get(PREFIX + "positive_fraction"), record.get(PREFIX + "negative_fraction")
                text = f"{pos:.2f}/{neg:.2f}" if pos is not None and neg is not None else "-"
                cells.append(text.rjust(len(head) if len(head) > 9 else 9))
                continue
            if head.startswith("gen/"):
                shares = [record.get(k) for k in ("share_generation", "share_reward", "share_advantage",
                                                  "share_update")]
                text = "/".join(f"{100 * s:.0f}" if s is not None else "-" for s in shares)
                cells.append(text.rjust(len(head)))
                continue
            width = max(len(head), len(fmt.format(0 if "d" in fmt else 0.0)))
            value = record.get(key)
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                text = "-" if value is None else str(value)
            else:
                text = fmt.format(int(value) if "d" in fmt else float(value))
            cells.append(text.strip().rjust(width))
        return " ".join(cells)

    def header_line(self) -> str:
        parts = []
        for head, key, fmt in COLUMNS:
            if head == "K+/K-":
                parts.append(head.rjust(9))
            elif head.startswith("gen/"):
                parts.append(head)
            else:
                width = max(len(head), len(fmt.format(0 if "d" in fmt else 0.0)))
                parts.append(head.rjust(width))
        return " ".join(parts)

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            if self._tb is not None:
                self._tb.close()
            if self._wandb is not None:
                self._wandb.finish()
