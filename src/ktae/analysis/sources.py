"""Where rollouts come from: a file or a folder of step files, in one of the layouts engines write.

Recognised without flags (per file, from the fields of its records):

* ``ktae`` - the project's own rollouts (``ktae train --dump-key-tokens-every``, the verl and TRL dump options,
  or any file with a group / response / reward; see `ktae.analysis.rollouts`). Records of the integrations'
  dumps also carry ``step``, ``key_token_values`` (K at each token, as used by the trainer) and ``ktae_config``.
* ``verl`` - verl's ``trainer.rollout_data_dir`` / ``trainer.validation_data_dir`` files (``<step>.jsonl``, one
  line per rollout: ``input``, ``output``, ``gts``, ``score``, ``step`` and the reward's extra fields such as
  ``acc``). Rollouts are grouped by (``step``, ``input``); ``acc`` (when present, else ``score``) decides
  correctness; the response text is re-tokenised by the analysis.
* ``trl`` - TRL's completion logs (``log_completions=True``: ``<output_dir>/completions/completions_<step>.parquet``
  with ``step``, ``prompt``, ``completion``, one column per reward function and ``advantage``). Rollouts are
  grouped by (``step``, ``prompt``); the score is the sum of the reward columns (the log has no reward weights);
  the completion text is re-tokenised.

A folder gives the rollouts of all its ``.jsonl`` / ``.json`` files, in step order (the last number in the
file name, or the records' ``step``); ``steps`` keeps only some steps.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from ktae.analysis.rollouts import Rollout, rollout_from_record
from ktae.frontend.outcomes import require_verdict
from ktae.frontend.records import DUMP_FOLDER

#: Fields every line of a verl rollout / validation dump has (``_write_generations``).
VERL_FIELDS = ("input", "output", "score", "step")
FORMAT_NAMES = {"ktae": "ktae rollouts", "verl": "a verl rollout dump (rollout_data_dir / validation_data_dir)",
                "trl": "a TRL completions log (log_completions)"}
#: Columns of TRL's completions log that are not rewards.
TRL_FIELDS = ("step", "prompt", "completion", "advantage")


@dataclass
class RolloutSource:
    """Rollouts read from a file or folder, with what the report should say about them."""

    rollouts: list[Rollout]
    format: str
    files: list[str]
    steps: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tokenizer: str | None = None  # where the trainer's tokenizer loads from, when the records or the run say


def dump_folder(path: str) -> str:
    """The folder of rollout files that ``path`` names: its ``key_tokens`` folder for a run folder (``ktae train``'s
    run_dir, TRL's output_dir: their own .json files, such as environment.json, are no rollouts), else ``path``."""
    inner = os.path.join(path, DUMP_FOLDER)
    return inner if os.path.isdir(inner) else path


def run_tokenizer(path: str, rollouts: list[Rollout]) -> str | None:
    """Where the tokenizer of these rollouts loads from: the one the records name (the trainers' dumps), else,
    for a ``ktae train`` run folder (``path`` or its parent), its ``final`` model or its configured model."""
    named = {r.tokenizer for r in rollouts if r.tokenizer}
    if len(named) == 1:
        return named.pop()
    for run_dir in (path, os.path.dirname(os.path.normpath(path))):
        final = os.path.join(run_dir, "final")
        if os.path.isfile(os.path.join(final, "tokenizer_config.json")):
            return final
        config = os.path.join(run_dir, "config.yaml")
        if os.path.isfile(config):
            import yaml

            with open(config, encoding="utf-8") as handle:
                model = (yaml.safe_load(handle) or {}).get("model") or {}
            name = model.get("tokenizer") or model.get("path") if isinstance(model, dict) else None
            return name if name and name != "embedded" else None
    return None


def parse_steps(text: str | Iterable[int] | None) -> set[int] | None:
    """``"10,20,30-40"`` -> {10, 20, 30, ..., 40}; None -> None (all steps)."""
    if text is None:
        return None
    if not isinstance(text, str):
        return {int(s) for s in text}
    steps: set[int] = set()
    for part in text.replace(" ", "").split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise ValueError(f"--steps: expected step numbers and ranges such as '10,20,30-40', got {text!r}")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if high < low:
            raise ValueError(f"--steps: range {part!r} runs backwards")
        steps.update(range(low, high + 1))
    return steps


def read_records(path: str) -> list[tuple[str, Any]]:
    """The records of a ``.jsonl`` file (one JSON object per line), a ``.json`` file (a list, or
    ``{"rollouts": [...]}``) or a ``.parquet`` table, each with where it is (``":12"`` for line 12, ``"[3]"`` for
    item or row 3).

    Raises:
        ValueError: invalid JSON (naming the line) or an empty file.
    """
    name = os.path.basename(path)
    if path.endswith(".parquet"):
        return _parquet_records(path)
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    head = text.lstrip()[:1]
    if not head:
        raise ValueError(f"{name}: the file is empty (no rollouts)")
    if head == "[" or (head == "{" and path.endswith(".json")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{name}: not valid JSON: {err}") from err
        if isinstance(data, dict):
            data = data.get("rollouts")
        if not isinstance(data, list):
            raise ValueError(f"{name}: expected a list of rollouts (or an object with a 'rollouts' list)")
        return [(f"[{i}]", record) for i, record in enumerate(data)]
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append((f":{number}", json.loads(line)))
        except json.JSONDecodeError as err:
            raise ValueError(f"{name}:{number}: not valid JSON: {err}") from err
    return records


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _parquet_records(path: str) -> list[tuple[str, Any]]:
    import pandas as pd

    frame = pd.read_parquet(path)
    if frame.empty:
        raise ValueError(f"{os.path.basename(path)}: the file is empty (no rollouts)")
    return [(f"[{i}]", _plain(r)) for i, r in enumerate(frame.to_dict("records"))]


def _message_text(value: Any) -> Any:
    """The text of a TRL prompt or completion: a string as is, a conversation as its last message's content."""
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        contents = [m.get("content") for m in value if isinstance(m.get("content"), str)]
        return contents[-1] if contents else json.dumps(value, ensure_ascii=False)
    return value


def trl_rollout(record: dict, where: str, group: str, reward_names: list[str]) -> Rollout:
    """A `Rollout` from one row of TRL's completions log; the score is the sum of its reward columns."""
    text = _message_text(record.get("completion"))
    if not isinstance(text, str):
        raise ValueError(f"{where}: needs the response: TRL's 'completion' must be text or a conversation")
    rewards = [record.get(n) for n in reward_names]
    if not rewards or any(isinstance(r, bool) or not isinstance(r, (int, float)) for r in rewards):
        raise ValueError(f"{where}: needs the outcome: numeric reward columns besides {list(TRL_FIELDS)}")
    score = float(sum(r for r in rewards if math.isfinite(r)))
    prompt = _message_text(record.get("prompt"))
    return Rollout(group=group, score=score, response=text,
                   prompt=prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False),
                   reward=score, source=where, step=_int_step(record["step"], where))


def detect_format(record: Any) -> str:
    """``"verl"`` for a line of a verl generations dump, ``"trl"`` for a row of TRL's completions log, else
    ``"ktae"``."""
    if isinstance(record, dict) and all(k in record for k in TRL_FIELDS):
        return "trl"
    if (isinstance(record, dict) and "input" in record and "step" in record and ("output" in record or "score" in record)
            and "token_ids" not in record):
        return "verl"
    return "ktae"


def verl_rollout(record: dict, where: str, group: str) -> Rollout:
    """A `Rollout` from one line of a verl dump; ``group`` is the id given to its (step, input)."""
    for name, what in (("output", "the response"), ("score", "the outcome")):
        if record.get(name) is None:
            raise ValueError(f"{where}: needs {what}: verl's field {name!r} is missing")
    text = record["output"]
    if not isinstance(text, str):
        raise ValueError(f"{where}: field 'output' must be a string (verl's decoded response), got {type(text).__name__}")
    score = record["score"]
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise ValueError(f"{where}: field 'score' must be a finite number, got {score!r}")
    acc = record.get("acc")
    correct = None
    if isinstance(acc, (int, float)) and not isinstance(acc, bool) and math.isfinite(acc):
        correct = acc > 0
    elif acc is not None:
        correct = require_verdict(acc, where, "acc")
    split = (1.0 if correct else 0.0) if correct is not None else float(score)
    reference = record.get("gts")
    if reference is not None and not isinstance(reference, str):
        reference = json.dumps(reference, ensure_ascii=False)
    prompt = record["input"]
    return Rollout(
        group=group, score=split, response=text, prompt=prompt if isinstance(prompt, str) else json.dumps(prompt),
        reference=reference, reward=float(score), correct=correct, source=where, step=_int_step(record["step"], where),
    )


def _int_step(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ValueError(f"{where}: field 'step' must be an integer, got {value!r}")
    return int(value)


def _file_step(path: str) -> int | None:
    numbers = re.findall(r"\d+", os.path.splitext(os.path.basename(path))[0])
    return int(numbers[-1]) if numbers else None


def _load_file(path: str, prefer: str, steps: set[int] | None) -> tuple[str, list[Rollout]]:
    name = os.path.basename(path)
    pairs = read_records(path)
    if not pairs:
        raise ValueError(f"{name}: contains no rollouts")

    def where(label: str) -> str:
        return f"{name}{label}"

    kinds = {detect_format(r) for _, r in pairs}
    if len(kinds) > 1:
        raise ValueError(f"{name}: mixes records of different layouts ({', '.join(sorted(kinds))}); one kind per file")
    kind = kinds.pop()
    file_step = _file_step(path)
    rollouts: list[Rollout] = []
    if kind in ("verl", "trl"):  # grouped by (step, prompt): the rollouts of one prompt in one step
        prompt_field = "input" if kind == "verl" else "prompt"
        names = [k for k, v in pairs[0][1].items() if k not in TRL_FIELDS and isinstance(v, (int, float))
                 and not isinstance(v, bool)]
        ids: dict[tuple[int, str], str] = {}
        for n, record in pairs:
            step = _int_step(record["step"], where(n))
            if steps is not None and step not in steps:
                continue
            key = (step, json.dumps(record[prompt_field], ensure_ascii=False))
            group = ids.setdefault(key, f"step{step}-p{sum(1 for s, _ in ids if s == step)}")
            rollouts.append(verl_rollout(record, where(n), group) if kind == "verl"
                            else trl_rollout(record, where(n), group, names))
        return kind, rollouts
    for n, record in pairs:
        rollout = rollout_from_record(record, where(n), prefer)
        if rollout.step is None:
            rollout.step = file_step
        if steps is not None and rollout.step not in steps:
            continue
        rollouts.append(rollout)
    return kind, rollouts


def rollout_files(folder: str) -> list[str]:
    """The ``.jsonl`` / ``.json`` files of a folder, in step order (last number of the name), then by name."""
    names = [n for n in os.listdir(folder) if n.endswith((".jsonl", ".json", ".parquet")) and not n.startswith(".")]
    names.sort(key=lambda n: (_file_step(n) is None, _file_step(n) or 0, n))
    return [os.path.join(folder, n) for n in names]


def load_source(path: str | os.PathLike, prefer: str = "reward", steps: str | Iterable[int] | None = None) -> RolloutSource:
    """Rollouts of a file or a folder of step files, in whichever recognised layout (see the module docstring).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: an empty file or folder, files of different layouts in one folder, a record that misses what
            the analysis needs (the message names the file and line), or no rollouts at the selected steps.
    """
    if prefer not in ("reward", "correct"):
        raise ValueError(f"prefer must be 'reward' or 'correct', got {prefer!r}")
    path = os.fspath(path)
    wanted = parse_steps(steps)
    given = path
    if os.path.isdir(path):
        path = dump_folder(path)
        files = rollout_files(path)
        if not files:
            raise ValueError(f"{path}: no .jsonl, .json or .parquet rollout files in this folder")
    elif os.path.isfile(path):
        files = [path]
    else:
        raise FileNotFoundError(f"rollouts file or folder not found: {path}")
    kinds: dict[str, str] = {}
    rollouts: list[Rollout] = []
    for file in files:
        kind, part = _load_file(file, prefer, wanted)
        kinds.setdefault(kind, os.path.basename(file))
        if len(kinds) > 1:
            (k1, f1), (k2, f2) = list(kinds.items())[:2]
            raise ValueError(
                f"{path}: mixed formats: {f1} is {FORMAT_NAMES[k1]}, {f2} is {FORMAT_NAMES[k2]}; "
                "analyse one kind of file at a time"
            )
        rollouts.extend(part)
    kind = next(iter(kinds))
    found = sorted({r.step for r in rollouts if r.step is not None})
    if not rollouts:
        what = f" at steps {steps}" if wanted is not None else ""
        raise ValueError(f"{path}: contains no rollouts{what}")
    notes = []
    if kind == "verl":
        notes.append(
            "verl rollout dump: rollouts grouped by (step, input); correct = "
            + ("'acc' > 0" if any(r.correct is not None for r in rollouts) else "'score' above the threshold")
            + "; token ids come from re-tokenising verl's decoded 'output' text with the given tokenizer (verl "
            "decodes without special tokens), so they may differ from the ids the trainer used. For the trainer's "
            "exact ids and K values use the plug-in's dump (+algorithm.ktae.dump_every=N)."
        )
    if kind == "trl":
        notes.append(
            "TRL completions log: rollouts grouped by (step, prompt); score = the sum of the reward columns (the log "
            "has no reward weights); token ids come from re-tokenising the completion text with the given tokenizer. "
            "For the trainer's exact ids and K values use KTAEGRPOConfig(ktae_dump_every=N)."
        )
    return RolloutSource(rollouts=rollouts, format=kind, files=files, steps=found, notes=notes,
                         tokenizer=run_tokenizer(given if os.path.isdir(given) else os.path.dirname(given), rollouts))


def load_rollouts(path: str | os.PathLike, prefer: str = "reward", steps: Any = None) -> list[Rollout]:
    """Read rollouts from a ``.jsonl`` file (one JSON object per line), a ``.json`` file (a list of objects, or an
    object with a ``rollouts`` list), or a folder of such step files; verl's own dumps are recognised
    (:func:`load_source`, which also says what the report should note about them, gives the rollouts).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: a line is not valid JSON or misses a required field (the message names the line).
    """
    return load_source(path, prefer, steps).rollouts
