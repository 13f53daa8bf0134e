"""The rollout record and the key-token dump writer of every trainer (``ktae train``, the verl plug-in, the TRL
trainer): the rollouts of a step with the exact token ids, rewards, group ids and key-token values K the trainer
used, the KTAE options and where the tokenizer came from, so that ``ktae analyze DIR`` shows them with no flag
(and checks that it recomputes the same K).

One file per dumped step, ``<folder>/step_<step:06d>.jsonl`` (:data:`DUMP_FILE`), one line per rollout::

    {"group", "step", "prompt", "response", "token_ids", "reward", "correct", "reference",
     "key_token_values": [K of each token id], "ktae_config": {KTAEConfig fields}, "tokenizer": name or folder}

The caller hands over CPU copies of the batch; decoding the texts and writing happen in one background thread,
so a training step waits only for the copy. A file appears whole or not at all (written to a temporary name, then
renamed). Only the process that constructs a `KeyTokenDumper` and calls `submit` writes: the integrations call it
on verl's driver and on TRL's main process only. ``correct`` is :func:`ktae.frontend.outcomes.is_correct` of the
reward, the rule the trainer split on.
"""
from __future__ import annotations

import atexit
import dataclasses
import json
import os
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Sequence

import torch

from ktae.core.config import KTAEConfig
from ktae.files import atomic_write
from ktae.frontend.outcomes import is_correct

__all__ = ["KeyTokenDumper", "DUMP_FILE", "DUMP_FOLDER", "tokenizer_source"]

DUMP_FILE = "step_{step:06d}.jsonl"
#: the dump folder inside a run folder (``ktae train``'s run_dir, TRL's output_dir), where ``ktae analyze`` looks
DUMP_FOLDER = "key_tokens"


def tokenizer_source(tokenizer: Any) -> str | None:
    """The name or folder a tokenizer was loaded from (``name_or_path``), or None when it does not say."""
    name = getattr(tokenizer, "name_or_path", None)
    return str(name) if name else None


def _rows(ids: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
    keep = mask.to(torch.bool)
    return [ids[i][keep[i]].tolist() for i in range(ids.shape[0])]


def _plain(value: Any) -> Any:
    """A JSON-friendly copy of a reference answer (numpy values and arrays included)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


class KeyTokenDumper:
    """Writes the rollouts of one step in every ``every`` (with their K values) to ``folder``, in the background.

    A step is dumped when it is the first one the dumper sees in a window of ``every`` steps (``step // every``
    changed): with one generation per step that is every ``every``-th step; trainers that generate once for
    several steps (TRL's ``steps_per_generation``) still get one dump per window.

    Args:
        folder: where the ``step_<step>.jsonl`` files go (created when needed).
        every: dump interval in steps (>= 1).
        tokenizer: decodes prompts and responses for the report (None: token ids only).
        source: where the tokenizer loads from, written in every record for ``ktae analyze`` (default: the
            tokenizer's ``name_or_path``).
    """

    def __init__(self, folder: str | os.PathLike, every: int, tokenizer: Any = None, source: str | None = None):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"dump_every must be a positive number of steps, got {every!r}")
        if not folder:
            raise ValueError("a key-token dump needs a folder to write to (dump_dir)")
        self.folder = os.fspath(folder)
        self.every = every
        self.tokenizer = tokenizer
        self.source = source or tokenizer_source(tokenizer)
        self._window: int | None = None
        self._executor: ThreadPoolExecutor | None = None  # started by the first submit
        self._futures: list[Future] = []

    def due(self, step: int | None) -> bool:
        """Whether ``step`` opens a new window of ``every`` steps (and so should be dumped). The same on every
        process of a distributed run, so that they can gather what the main process writes."""
        return step is not None and int(step) // self.every != self._window

    def skip(self, step: int) -> None:
        """Mark ``step``'s window as done without writing (the processes that do not write call this)."""
        self._window = int(step) // self.every

    def submit(
        self,
        step: int,
        responses: torch.Tensor,
        mask: torch.Tensor,
        scores: torch.Tensor,
        group: Sequence[Any],
        values: torch.Tensor,
        config: KTAEConfig,
        prompts: Sequence[Any] | None = None,
        references: Sequence[Any] | None = None,
    ) -> None:
        """Queue one step's rollouts for writing.

        Args:
            step: the training step (names the file).
            responses: [B, L] response token ids; mask: [B, L] 0/1 (only masked-in ids are written).
            scores: [B] the outcome scores KTAE split on; group: [B] prompt ids (strings, ints).
            values: [B, L] the key-token values K used by the trainer.
            config: the KTAE options used.
            prompts: [B] prompt texts, or prompt token id lists (decoded here), or None.
            references: [B] reference answers, or None.
        """
        self._window = int(step) // self.every
        self._raise_failures()
        rows = len(group)
        if not (responses.shape[0] == mask.shape[0] == scores.shape[0] == values.shape[0] == rows):
            raise ValueError(f"key-token dump: {rows} group ids for a batch of {responses.shape[0]} rollouts")
        ids = _rows(responses.detach().cpu(), mask.detach().cpu())
        ks = _rows(values.detach().to(torch.float32).cpu(), mask.detach().cpu())
        job = dict(
            step=int(step), ids=ids, values=ks, scores=scores.detach().to(torch.float64).cpu().tolist(),
            group=[str(g) for g in group], config=config, prompts=list(prompts) if prompts is not None else None,
            references=[_plain(r) for r in references] if references is not None else None,
        )
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ktae-dump")
            atexit.register(_close_ref, weakref.ref(self))
        self._futures.append(self._executor.submit(self._write, **job))

    def _decode(self, ids: list[int]) -> str | None:
        if self.tokenizer is None:
            return None
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _write(self, step, ids, values, scores, group, config, prompts, references) -> str:
        options = dataclasses.asdict(config)
        options["ignore_token_ids"] = list(options["ignore_token_ids"])
        os.makedirs(self.folder, exist_ok=True)
        path = os.path.join(self.folder, DUMP_FILE.format(step=step))
        correct = is_correct(scores, config.threshold).tolist()
        with atomic_write(path) as handle:
            for i, row in enumerate(ids):
                prompt = prompts[i] if prompts is not None else None
                if isinstance(prompt, (list, tuple)) and all(isinstance(t, int) for t in prompt):
                    prompt = self._decode(list(prompt))
                record = {
                    "group": group[i], "step": step, "prompt": prompt, "response": self._decode(row),
                    "token_ids": row, "reward": scores[i], "correct": bool(correct[i]),
                    "reference": references[i] if references is not None else None,
                    "key_token_values": values[i], "ktae_config": options, "tokenizer": self.source,
                }
                handle.write(json.dumps({k: v for k, v in record.items() if v is not None}, ensure_ascii=False) + "\n")
        return path

    def _raise_failures(self) -> None:
        pending = []
        for future in self._futures:
            if future.done():
                future.result()  # a failed write surfaces here, at the next step
            else:
                pending.append(future)
        self._futures = pending

    def flush(self) -> list[str]:
        """Wait for every queued write; returns nothing new but raises a failed write's error."""
        futures, self._futures = self._futures, []
        return [f.result() for f in futures]

    def close(self) -> None:
        """Finish the queued writes and stop the thread (also done at interpreter exit)."""
        try:
            self.flush()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)


def _close_ref(ref: weakref.ref) -> None:
    dumper = ref()
    if dumper is not None:
        dumper.close()
