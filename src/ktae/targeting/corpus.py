"""Frozen rollouts with token labels: the input of ``ktae targeting``.

A :class:`Corpus` is a list of rollouts (token ids, reward, group, the batch they were sampled in) with one label per
token, ``mistake`` (the token lies in a labelled wrong step), and what the credit rules need to run without the
model: the KTAE options of the run (threshold, rollout estimator, the ignored pad/EOS ids) and the text of every
token id used (``token_texts``).

Two sources:

* a ``ktae train`` run on the word-problem task made with ``--dump_key_tokens_every N`` (:func:`load_run`): its
  dumps are read and labelled with :func:`ktae.recipes.word_problems.token_labels`;
* a corpus file (:func:`read_corpus` / :func:`write_corpus`), gzip-compressed JSON lines: a header line
  ``{"format": "ktae-targeting-corpus", "version": 1, "name", "description", "labels", "command", "ktae_config",
  "token_texts": {id: text}, "environment"}``, then one line per rollout ``{"batch", "group", "step", "prompt",
  "response", "token_ids", "reward", "mistake": [[start, end], ...]}`` (the labelled tokens as half-open index
  ranges). The committed corpora (``docs/data/targeting/``) are made by :mod:`ktae.targeting.build`.
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ktae.core.config import KTAEConfig

__all__ = ["LabelledRollout", "Corpus", "FORMAT", "label_ranges", "read_corpus", "write_corpus", "load_run",
           "load_input"]

FORMAT = "ktae-targeting-corpus"
VERSION = 1


@dataclass
class LabelledRollout:
    """One rollout: ``token_ids`` with ``mistake[t]`` for each; ``batch`` names the step (or generation batch) it
    was sampled in, ``group`` its prompt within that batch."""

    batch: str
    group: str
    token_ids: list[int]
    reward: float
    mistake: list[bool]
    step: int | None = None
    prompt: str | None = None
    response: str | None = None

    def __post_init__(self) -> None:
        if len(self.mistake) != len(self.token_ids):
            raise ValueError(f"rollout {self.batch}/{self.group}: {len(self.mistake)} labels for "
                             f"{len(self.token_ids)} tokens")


@dataclass
class Corpus:
    """Labelled rollouts and what the rules need to score them (see the module docstring)."""

    name: str
    rollouts: list[LabelledRollout]
    config: KTAEConfig
    token_texts: dict[int, str]
    description: str = ""
    labels: str = ""
    command: str = ""
    environment: dict = field(default_factory=dict)

    def newline_ids(self) -> frozenset[int]:
        """The token ids whose text holds a line break."""
        return frozenset(i for i, text in self.token_texts.items() if "\n" in text)


def label_ranges(flags: Sequence[bool]) -> list[list[int]]:
    """``[[start, end], ...]``: the half-open index ranges of the True entries of ``flags``."""
    ranges: list[list[int]] = []
    for i, flag in enumerate(flags):
        if flag and ranges and ranges[-1][1] == i:
            ranges[-1][1] = i + 1
        elif flag:
            ranges.append([i, i + 1])
    return ranges


def _flags(ranges: Sequence[Sequence[int]], length: int, where: str) -> list[bool]:
    flags = [False] * length
    for start, end in ranges:
        if not 0 <= start < end <= length:
            raise ValueError(f"{where}: mistake range [{start}, {end}) outside the {length} tokens")
        flags[start:end] = [True] * (end - start)
    return flags


def _config_dict(config: KTAEConfig) -> dict:
    options = dataclasses.asdict(config)
    options["ignore_token_ids"] = sorted(options["ignore_token_ids"] or ())
    return options


def write_corpus(corpus: Corpus, path: str | os.PathLike) -> Path:
    """Write ``corpus`` as gzip-compressed JSON lines (the same bytes for the same corpus: no time stamp)."""
    path = Path(path)
    header = {"format": FORMAT, "version": VERSION, "name": corpus.name, "description": corpus.description,
              "labels": corpus.labels, "command": corpus.command, "ktae_config": _config_dict(corpus.config),
              "token_texts": {str(k): v for k, v in sorted(corpus.token_texts.items())},
              "environment": corpus.environment}
    lines = [json.dumps(header, ensure_ascii=False)]
    for r in corpus.rollouts:
        lines.append(json.dumps({"batch": r.batch, "group": r.group, "step": r.step, "prompt": r.prompt,
                                 "response": r.response, "token_ids": r.token_ids, "reward": r.reward,
                                 "mistake": label_ranges(r.mistake)}, ensure_ascii=False))
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as handle:
        handle.write(("\n".join(lines) + "\n").encode("utf-8"))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)
    return path


def read_corpus(path: str | os.PathLike) -> Corpus:
    """The corpus in a file written by :func:`write_corpus` (gzip-compressed or plain JSON lines).

    Raises:
        ValueError: the file is no targeting corpus, or a line misses what a rollout needs (the message names it).
    """
    path = Path(path)
    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip()]
    header = json.loads(lines[0]) if lines else {}
    if header.get("format") != FORMAT:
        raise ValueError(f"{path}: not a targeting corpus (its first line has no \"format\": \"{FORMAT}\"); give a "
                         "corpus file or a word-task run folder")
    if header.get("version") != VERSION:
        raise ValueError(f"{path}: corpus version {header.get('version')!r}, this ktae reads version {VERSION}")
    options = dict(header["ktae_config"])
    options["ignore_token_ids"] = tuple(options.get("ignore_token_ids") or ())
    rollouts = []
    for number, line in enumerate(lines[1:], 2):
        record = json.loads(line)
        where = f"{path}:{number}"
        try:
            ids = [int(t) for t in record["token_ids"]]
            rollouts.append(LabelledRollout(str(record["batch"]), str(record["group"]), ids, float(record["reward"]),
                                            _flags(record["mistake"], len(ids), where), record.get("step"),
                                            record.get("prompt"), record.get("response")))
        except KeyError as missing:
            raise ValueError(f"{where}: a rollout needs {missing}") from None
    return Corpus(header.get("name") or path.name, rollouts, KTAEConfig(**options),
                  {int(k): v for k, v in header.get("token_texts", {}).items()}, header.get("description", ""),
                  header.get("labels", ""), header.get("command", ""), header.get("environment", {}))


def load_run(run_dir: str | os.PathLike, tokenizer: Any = None, name: str | None = None) -> Corpus:
    """The dumped rollouts of a word-task run (``ktae train --dump_key_tokens_every N``), labelled.

    Every token is labelled by :func:`ktae.recipes.word_problems.token_labels` from the decoded text of each token;
    the KTAE options are the ones the dump records (the run's own). ``tokenizer``: a tokenizer or a folder (default:
    the one the dump names, else the run's ``final/``). Each dumped step is one batch, ``<name>/step<N>``.

    Raises:
        ValueError: the folder is no run on the word-problem task, or it has no dumps.
    """
    from ktae.analysis.compute import config_from_rollouts, load_tokenizer
    from ktae.analysis.sources import load_source
    from ktae.frontend.options import ktae_config
    from ktae.frontend.records import DUMP_FOLDER
    from ktae.recipes.word_problems import token_labels
    from ktae.train.config import load_run_config

    run_dir = Path(run_dir)
    task = load_run_config(run_dir).task.name
    if task != "word":
        raise ValueError(f"{run_dir} is not a run on the word-problem task (task: {task!r}); only that task labels "
                         "its wrong steps (or give a corpus file)")
    if not any((run_dir / DUMP_FOLDER).glob("step_*.jsonl")):
        raise ValueError(f"{run_dir}/{DUMP_FOLDER} has no step_*.jsonl: train with --dump_key_tokens_every N")
    source = load_source(run_dir)
    tokenizer = load_tokenizer(tokenizer or source.tokenizer or run_dir / "final")
    config = ktae_config(config_from_rollouts(source.rollouts) or {}, where=str(run_dir))
    name = name or run_dir.name
    texts: dict[int, str] = {}
    rollouts = []
    for r in source.rollouts:
        pieces = tokenizer.batch_decode([[t] for t in r.token_ids], skip_special_tokens=True)
        texts.update((t, tokenizer.decode([t])) for t in r.token_ids if t not in texts)
        labels = token_labels(r.prompt or "", pieces)
        rollouts.append(LabelledRollout(f"{name}/step{r.step}", str(r.group), list(r.token_ids), float(r.score),
                                        [label == "mistake" for label in labels], r.step, r.prompt, "".join(pieces)))
    return Corpus(name, rollouts, config, texts, description=f"the dumps of the word-task run {run_dir}",
                  labels="mistake: the token lies in a line the word task labels a wrong step (token_labels)")


def load_input(path: str | os.PathLike) -> Corpus:
    """A corpus file, or a word-task run folder (:func:`load_run`)."""
    if os.path.isdir(path):
        return load_run(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no run folder or corpus file at {path}")
    return read_corpus(path)
