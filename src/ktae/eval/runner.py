"""Run the benchmarks with a model (resumable), or re-grade saved generations.

Output folder of :func:`run_benchmarks`:

* ``generations.jsonl`` - one line per response (benchmark, index, sample,
  problem, reference, response, answer, tokens, finished, correct), appended
  and flushed after every generation batch, so an interrupted run loses at most
  one batch and resumes where it stopped;
* ``run.json`` - the generation settings (a resumed run must use the same);
* ``summary.json`` - per-benchmark accuracy / pass@k / mean length, average, and the environment that made
  them (``environment``: versions, git commit, CPU; see :func:`ktae.environment.describe_environment`).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ktae.environment import describe_environment
from ktae.eval.benchmarks import Example, benchmark_names, canonical_benchmark, load_benchmark
from ktae.eval.metrics import summarize
from ktae.files import atomic_write
from ktae.frontend.outcomes import as_verdict
from ktae.generation import BACKENDS

__all__ = [
    "EvalConfig",
    "run_benchmarks",
    "leave_out_long_prompts",
    "regrade",
    "RegradeResult",
    "read_generations",
    "GENERATIONS_FILE",
    "SUMMARY_FILE",
    "RUN_FILE",
]

GENERATIONS_FILE = "generations.jsonl"
SUMMARY_FILE = "summary.json"
RUN_FILE = "run.json"

#: Settings that change what is generated; a resumed run must match them.
_GENERATION_KEYS = ("model", "template", "max_new_tokens", "temperature", "top_p")


@dataclass
class EvalConfig:
    """Settings of ``ktae eval`` (also usable from Python with :func:`run_benchmarks`)."""

    model: str | None = field(default=None, metadata={"help": "local folder or Hub id of a causal LM"})
    benchmarks: tuple[str, ...] = field(
        default=tuple(benchmark_names()), metadata={"help": "benchmarks to run (aime, math, amc, minerva, olympiad_bench)"}
    )
    data: str | None = field(
        default=None,
        metadata={"help": "save_to_disk folder, jsonl/json/parquet file or folder, or Hub id; default: public Hub sets"},
    )
    limit: int | None = field(default=None, metadata={"help": "evaluate only the first N problems of each benchmark"})
    output: str = field(default="eval_out", metadata={"help": "folder for generations.jsonl, summary.json, run.json"})
    template: str = field(default="qwen_math", metadata={"help": "prompt template: qwen_math, r1 or chat"})
    max_new_tokens: int = field(default=3000, metadata={"help": "response length limit in tokens (paper: 3000)"})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy (paper); > 0 samples"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling threshold"})
    n: int = field(default=1, metadata={"help": "samples per problem (> 1 needs temperature > 0; reports pass@k)"})
    batch_size: int = field(default=16, metadata={"help": "sequences per generate call (HF backend)"})
    backend: str = field(default="hf", metadata={"help": "hf (transformers generate) or vllm"})
    vllm_enforce_eager: bool = field(default=False, metadata={
        "help": "vLLM: run the model eagerly, no torch.compile or CUDA graphs (no compile warm-up: starts faster, "
                "generates somewhat slower)"})
    dtype: str = field(default="auto", metadata={"help": "model dtype: auto, bfloat16, float16, float32"})
    device: str | None = field(default=None, metadata={"help": "torch device for the HF backend (None: cuda if available)"})
    seed: int = field(default=0, metadata={"help": "random seed for sampling"})
    grading_workers: int | None = field(default=None, metadata={"help": "grading processes (default: CPU count, max 8)"})
    grading_timeout: float = field(default=5.0, metadata={"help": "seconds allowed to grade one answer"})
    problem_field: str | None = field(default=None, metadata={"help": "problem column of the data (None: auto)"})
    answer_field: str | None = field(default=None, metadata={"help": "answer column of the data (None: auto)"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})
    skip_long_prompts: bool = field(default=False, metadata={
        "help": "leave out the problems whose prompts leave no room for a response in the model's positions and "
                "report them as skipped (without it such problems stop the run before it generates)"})

    def __post_init__(self) -> None:
        if isinstance(self.benchmarks, str):
            self.benchmarks = (self.benchmarks,)
        if not self.benchmarks:
            raise ValueError("benchmarks must name at least one benchmark")
        self.benchmarks = tuple(dict.fromkeys(canonical_benchmark(b) for b in self.benchmarks))
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1):
            raise ValueError(f"limit must be a positive int, got {self.limit!r}")
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive int, got {self.max_new_tokens!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n must be a positive int, got {self.n!r}")
        if self.n > 1 and self.temperature == 0:
            raise ValueError("n > 1 samples per problem needs temperature > 0 (greedy gives identical samples)")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if not self.grading_timeout > 0:
            raise ValueError(f"grading_timeout must be > 0, got {self.grading_timeout!r}")


def read_generations(path: str) -> list[dict]:
    """Records of a generations file: ``.jsonl`` (a truncated last line is skipped) or a ``.json`` list."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"generations file {path!r} does not exist")
    if path.lower().endswith(".json"):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data, dict):
            for key in ("generations", "records", "data", "samples"):
                if isinstance(data.get(key), list):
                    data = data[key]
                    break
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise ValueError(f"{path}: expected a JSON list of objects")
        return data
    records = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if line_no == len(lines):  # the last line of an interrupted write
                continue
            raise ValueError(f"{path}:{line_no}: not valid JSON") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{line_no}: expected a JSON object per line")
        records.append(record)
    return records


class _Appender:
    """Appends JSON lines durably (flush + fsync per batch).

    A half-written last line (the run was killed while writing it) is cut off
    first; every complete line is kept.
    """

    def __init__(self, path: str):
        if os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path, "rb+") as f:
                data = f.read()
                if not data.endswith(b"\n"):
                    f.truncate(data.rfind(b"\n") + 1)
        self._f = open(path, "a", encoding="utf-8")

    def write(self, records: list[dict]) -> None:
        for r in records:
            self._f.write(json.dumps(r, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def _write_json(path: str, obj: Any) -> None:
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def _check_run_settings(output: str, settings: dict) -> None:
    """Refuse a folder whose generations were made with other settings; a folder without generations (an
    earlier run that failed before generating anything) takes the new settings."""
    path = os.path.join(output, RUN_FILE)
    generations = os.path.join(output, GENERATIONS_FILE)
    if os.path.exists(path) and os.path.exists(generations) and os.path.getsize(generations) > 0:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        diff = {k: (old.get(k), settings.get(k)) for k in _GENERATION_KEYS if old.get(k) != settings.get(k)}
        if diff:
            details = ", ".join(f"{k}: saved {a!r} vs now {b!r}" for k, (a, b) in diff.items())
            raise ValueError(
                f"{output} holds generations made with other settings ({details}); "
                "use another --output folder (or move that one away) to start a new evaluation"
            )
    _write_json(path, settings)


def _model_label(model: str | None) -> str:
    if not model:
        return "model"
    return os.path.basename(os.path.normpath(model)) or model


def run_benchmarks(config: EvalConfig, *, model: Any = None, tokenizer: Any = None, log=print) -> dict[str, Any]:
    """Generate, grade and summarise ``config.benchmarks``; resumes from ``config.output``.

    ``model``/``tokenizer`` may be passed in (an already loaded HF model or
    ``vllm.LLM``); otherwise ``config.model`` is loaded, and only if something
    is left to generate. Problems whose prompts leave no room for a response in the model's positions
    (:func:`ktae.generation.fit_prompts`) stop the run before it generates (a ValueError), or, with
    ``config.skip_long_prompts``, are left out and listed under ``skipped`` in the summary. Returns the summary
    (also written to ``summary.json``).
    """
    from ktae.model_source import resolve_model_source

    if model is None and not config.model:
        raise ValueError("run_benchmarks needs config.model (a folder or Hub id) or a loaded model")
    source = resolve_model_source(config.model) if model is None else None   # resolved once, here
    os.makedirs(config.output, exist_ok=True)
    settings = asdict(config)
    settings["benchmarks"] = list(config.benchmarks)
    if model is not None and not config.model:
        settings["model"] = type(model).__name__
    _check_run_settings(config.output, settings)
    gen_path = os.path.join(config.output, GENERATIONS_FILE)
    done: dict[tuple[str, int, int], dict] = {}
    for r in read_generations(gen_path) if os.path.exists(gen_path) else []:
        done[(r["benchmark"], int(r["index"]), int(r.get("sample", 0)))] = r
    suites = {bench: load_benchmark(bench, config.data, limit=config.limit, problem_field=config.problem_field,
                                    answer_field=config.answer_field) for bench in config.benchmarks}
    todo = {b: [ex for ex in exs if any((b, ex.index, s) not in done for s in range(config.n))]
            for b, exs in suites.items()}
    skipped: dict[str, list[int]] = {}
    if any(todo.values()):
        if model is None:
            from ktae.loading import load_model

            log(f"loading {config.model} ({config.backend})")
            model, tokenizer = load_model(source, backend=config.backend, dtype=config.dtype, device=config.device,
                                          vllm_kwargs={"enforce_eager": True} if config.vllm_enforce_eager else None)
        if tokenizer is None and config.backend == "vllm":
            tokenizer = model.get_tokenizer()
        skipped = leave_out_long_prompts(todo, config, model, tokenizer, log)
    appender = _Appender(gen_path)
    try:
        for bench, examples in suites.items():
            if todo[bench]:
                _generate_benchmark(bench, examples, todo[bench], done, config, model, tokenizer, appender)
    finally:
        appender.close()
    return _write_summary(config, settings, suites, done, skipped)


def leave_out_long_prompts(todo: dict[str, list[Example]], config: EvalConfig, model: Any, tokenizer: Any,
                           log=print) -> dict[str, list[int]]:
    """Take the problems whose prompts leave no room for a response (:func:`ktae.generation.fit_prompts`) out of
    ``todo``; ``{benchmark: their indices}``, empty when every prompt fits.

    Raises:
        ValueError: some prompts are too long and ``config.skip_long_prompts`` is off (one line: how many, per
            benchmark, and the option that skips them).
    """
    from ktae.generation import fit_prompts, model_positions, prompt_token_ids, too_long_message
    from ktae.prompts import format_prompt

    positions = model_positions(model)
    long: dict[str, list[Example]] = {}
    for bench, examples in todo.items():
        ids = prompt_token_ids(tokenizer, [format_prompt(ex.problem, config.template, tokenizer) for ex in examples])
        fit = fit_prompts([len(row) for row in ids], positions, config.max_new_tokens)
        if fit.too_long:
            long[bench] = [examples[i] for i in fit.too_long]
    if not long:
        return {}
    count = sum(len(exs) for exs in long.values())
    where = ", ".join(f"{bench} {len(exs)}" for bench, exs in long.items())
    message = f"{too_long_message(count, sum(len(exs) for exs in todo.values()), positions, 'problems')} ({where})"
    if not config.skip_long_prompts:
        raise ValueError(f"{message}; give --skip_long_prompts to evaluate the others and report these as skipped")
    log(f"skipping {message}")
    for bench, exs in long.items():
        indices = {ex.index for ex in exs}
        todo[bench] = [ex for ex in todo[bench] if ex.index not in indices]
    return {bench: sorted(ex.index for ex in exs) for bench, exs in long.items()}


def _write_summary(config: EvalConfig, settings: dict, suites: dict[str, list[Example]],
                   done: dict[tuple[str, int, int], dict], skipped: dict[str, list[int]]) -> dict[str, Any]:
    """The summary of the saved records (and the ``skipped`` problems' indices per benchmark), written to
    ``summary.json``."""
    all_records = [
        done[(b, ex.index, s)] for b, exs in suites.items() for ex in exs for s in range(config.n)
        if (b, ex.index, s) in done
    ]
    summary = summarize(all_records, list(config.benchmarks))
    summary["model"] = config.model or settings["model"]
    summary["settings"] = {k: settings[k] for k in ("template", "max_new_tokens", "temperature", "top_p", "n", "limit",
                                                    "backend")}
    if skipped:
        summary["skipped"] = skipped
    summary["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    summary["environment"] = describe_environment()
    _write_json(os.path.join(config.output, SUMMARY_FILE), summary)
    return summary


def _generate_benchmark(bench: str, examples: list[Example], remaining: list[Example],
                        done: dict[tuple[str, int, int], dict], config: EvalConfig, model: Any, tokenizer: Any,
                        appender: "_Appender") -> None:
    """Generate the missing responses of one benchmark, grading and appending them batch by batch.

    ``done`` (``(benchmark, index, sample) -> record``) gets every new record; a progress bar shows the
    responses done and the running accuracy.
    """
    from ktae.generation import generate
    from ktae.prompts import format_prompt

    records = [done[(bench, ex.index, s)] for ex in examples for s in range(config.n) if (bench, ex.index, s) in done]
    bar = None
    if config.progress:
        from ktae.progress import progress_bar

        bar = progress_bar(total=len(examples) * config.n, initial=len(records), desc=bench, unit="resp",
                           dynamic_ncols=True)
        if records:
            bar.set_postfix(acc=f"{100 * sum(bool(r['correct']) for r in records) / len(records):.1f}%")
    prompts = [format_prompt(ex.problem, config.template, tokenizer) for ex in remaining]

    def save(batch):
        batch = [g for g in batch if (bench, remaining[g.prompt_index].index, g.sample_index) not in done]
        if not batch:
            return
        new = _graded_records(bench, batch, remaining, config)
        appender.write(new)
        for r in new:
            done[(bench, r["index"], r["sample"])] = r
        records.extend(new)
        if bar is not None:
            bar.update(len(new))
            bar.set_postfix(acc=f"{100 * sum(bool(r['correct']) for r in records) / len(records):.1f}%")

    try:
        if config.backend == "vllm":
            chunk = 256  # save every chunk of prompts: an interruption loses at most one
            for start in range(0, len(prompts), chunk):
                generate(model, tokenizer, prompts[start : start + chunk], max_new_tokens=config.max_new_tokens,
                         temperature=config.temperature, top_p=config.top_p, n=config.n, backend="vllm",
                         seed=config.seed, progress=False,
                         on_batch=lambda b, start=start: save([_shift(g, start) for g in b]))
        else:
            generate(model, tokenizer, prompts, max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                     top_p=config.top_p, n=config.n, batch_size=config.batch_size, backend="hf", seed=config.seed,
                     progress=False, on_batch=save)
    finally:
        if bar is not None:
            bar.close()


def _graded_records(bench: str, batch: list, remaining: list[Example], config: EvalConfig) -> list[dict]:
    """The generations of ``batch`` graded, as ``generations.jsonl`` records."""
    from ktae.rewards import grade_batch
    from ktae.rewards.answers import extract_boxed

    refs = [remaining[g.prompt_index].reference for g in batch]
    verdicts = grade_batch([g.text for g in batch], refs, config.grading_workers, timeout=config.grading_timeout,
                           progress=False)
    out = []
    for g, ok in zip(batch, verdicts):
        ex = remaining[g.prompt_index]
        out.append({"benchmark": bench, "index": ex.index, "sample": g.sample_index, "problem": ex.problem,
                    "reference": ex.reference, "response": g.text, "answer": extract_boxed(g.text),
                    "tokens": g.num_tokens, "finished": g.finished, "correct": bool(ok)})
    return out


def _shift(generation, offset: int):
    generation.prompt_index += offset
    return generation


@dataclass
class RegradeResult:
    """Outcome of :func:`regrade`."""

    summary: dict[str, Any]
    records: list[dict]
    compared: int = 0
    agreed: int = 0
    disagreements: list[dict] = field(default_factory=list)
    layout: str = "ktae"
    samples: int = 0

    @property
    def agreement(self) -> float | None:
        return (100.0 * self.agreed / self.compared) if self.compared else None


def regrade(
    path: str,
    *,
    response_field: str | None = None,
    reference_field: str | None = None,
    problem_field: str | None = None,
    benchmark_field: str | None = None,
    verdict_field: str | None = None,
    tokens_field: str | None = None,
    workers: int | None = None,
    timeout: float = 5.0,
    output: str | None = None,
    progress: bool = True,
) -> RegradeResult:
    """Re-grade saved generations (jsonl or json list) without a model.

    The layouts of other harnesses are recognised from their field names (the Dr. GRPO / understand-r1-zero
    evaluator, the Qwen2.5-Math evaluator, verl's dumps: see `ktae.eval.formats`); otherwise fields are found
    automatically (``response``/``output``/..., ``reference``/``answer``/..., ``benchmark``/``data_source``) or
    given explicitly. A record may hold one response or a list of ``n`` (then every sample is graded, and the
    summary has the mean accuracy and pass@k). When records carry earlier verdicts (``correct``, or the harness's
    ``reward`` / ``score`` / ``acc``, one per sample), the agreement rate and the disagreeing samples are reported.
    ``output``, when given, receives the re-graded records (jsonl, with ``correct`` replaced, a list for a list
    of responses, and the old verdict kept as ``previous_correct``) and a ``.summary.json`` beside.
    """
    from ktae.eval.formats import expand_samples
    from ktae.rewards import grade_batch
    from ktae.rewards.answers import extract_boxed

    records = read_generations(path)
    if not records:
        raise ValueError(f"{path} holds no records")
    fields = {"response": response_field, "reference": reference_field, "problem": problem_field,
              "benchmark": benchmark_field, "verdict": verdict_field, "tokens": tokens_field}
    layout, samples, used = expand_samples(records, path, fields)
    verdicts = grade_batch([s.response for s in samples], [s.reference for s in samples], workers, timeout=timeout,
                           progress=progress)
    result = RegradeResult(summary={}, records=[], layout=layout, samples=len(samples))
    normalized = []
    problem_ids: dict[tuple[str, Any], int] = {}
    now: dict[int, list[bool]] = {}
    for s, ok in zip(samples, verdicts):
        key = s.problem if isinstance(s.problem, (int, str)) else str(s.problem)
        pid = problem_ids.setdefault((s.benchmark, key), len(problem_ids))
        now.setdefault(s.record, []).append(bool(ok))
        normalized.append({"benchmark": s.benchmark, "index": pid, "correct": bool(ok), "tokens": s.tokens})
        previous = as_verdict(s.previous)
        if previous is None:
            continue
        result.compared += 1
        if previous == bool(ok):
            result.agreed += 1
        else:
            result.disagreements.append({
                "record": s.record if s.sample is None else f"{s.record}.{s.sample}",
                "benchmark": s.benchmark,
                "answer": extract_boxed(s.response),
                "reference": s.reference,
                "previous": previous,
                "now": bool(ok),
            })
    for i, r in enumerate(records):
        out = dict(r)
        if used["verdict"]:
            out["previous_correct"] = r.get(used["verdict"])
        out["correct"] = now[i] if isinstance(r[used["response"]], list) else now[i][0]
        result.records.append(out)
    order = [b for b in benchmark_names() if any(n["benchmark"] == b for n in normalized)]
    result.summary = summarize(normalized, order)
    result.summary["source"] = path
    result.summary["layout"] = layout
    result.summary["environment"] = describe_environment()
    if result.compared:
        result.summary["agreement"] = {
            "compared": result.compared, "agreed": result.agreed, "rate": result.agreement,
        }
    if output:
        with atomic_write(output) as f:
            for r in result.records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        base = output[: -len(".jsonl")] if output.endswith(".jsonl") else output
        _write_json(base + ".summary.json", result.summary)
    return result
