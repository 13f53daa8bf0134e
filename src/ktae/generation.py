"""Batched text generation for evaluation and rollouts: Hugging Face ``generate`` or vLLM.

>>> gens = generate(model, tokenizer, ["<prompt>"], max_new_tokens=64)   # doctest: +SKIP
>>> gens[0].text, gens[0].num_tokens, gens[0].finished                   # doctest: +SKIP

``backend="hf"`` pads on the left, sorts prompts by length so batches waste
little padding, stops each sequence at EOS and drops finished sequences from the batch
(:func:`ktae.decoding.decode`). ``backend="vllm"`` takes a
``vllm.LLM`` as ``model`` (``pip install ktae[vllm]``); vLLM is imported only then.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

#: generation backends: transformers' ``generate`` or a vLLM engine
BACKENDS = ("hf", "vllm")

__all__ = ["Generation", "generate", "eos_token_ids", "PromptFit", "fit_prompts", "model_positions",
           "prompt_token_ids", "too_long_message"]


@dataclass
class Generation:
    """One sampled response.

    ``token_ids`` are the response tokens, EOS included when the model emitted it
    (padding removed); ``num_tokens == len(token_ids)``; ``finished`` is True when
    the response ended with EOS (or a stop token), False when it hit
    ``max_new_tokens``.
    """

    prompt_index: int
    sample_index: int
    text: str
    token_ids: list[int]
    num_tokens: int
    finished: bool

    def to_dict(self) -> dict:
        return asdict(self)


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Stop tokens: the tokenizer's EOS plus the model's generation-config EOS ids (deduplicated)."""
    ids: list[int] = []

    def add(value: Any) -> None:
        if value is None:
            return
        if isinstance(value, (list, tuple, set)):
            for v in value:
                add(v)
        else:
            ids.append(int(value))

    add(getattr(tokenizer, "eos_token_id", None))
    config = getattr(model, "generation_config", None)
    if config is not None:
        add(getattr(config, "eos_token_id", None))
    return list(dict.fromkeys(ids))


def _check_args(prompts, max_new_tokens, temperature, top_p, n, batch_size) -> None:
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise TypeError(f"prompts must be a list of str, got {type(prompts).__name__}")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompts[{i}] must be a str, got {type(p).__name__}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    if not isinstance(temperature, (int, float)) or temperature < 0:
        raise ValueError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}")
    if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if n > 1 and temperature == 0:
        raise ValueError("n > 1 samples per prompt needs temperature > 0 (greedy decoding gives n identical copies)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")


@dataclass(frozen=True)
class PromptFit:
    """Which prompts a model answers, and how long each answer may be: the one rule of both generation backends,
    ``ktae eval`` and ``ktae train``.

    A prompt fits when it leaves room for at least one new token in the model's ``positions`` (its token count is
    at most ``positions - 1``); the response to it may have ``min(max_new_tokens, positions - prompt tokens)``
    tokens, and stops there unfinished. ``positions`` None (not known): every prompt fits, nothing is capped.
    """

    positions: int | None
    max_new_tokens: int
    too_long: tuple[int, ...]   # indices of the prompts that do not fit
    limits: tuple[int, ...]     # per prompt: its response length limit in tokens (0 for a prompt that does not fit)

    @property
    def capped(self) -> tuple[int, ...]:
        """Indices of the fitting prompts whose responses are limited below ``max_new_tokens`` by the positions."""
        return tuple(i for i, limit in enumerate(self.limits) if 0 < limit < self.max_new_tokens)


def fit_prompts(lengths: Sequence[int], positions: int | None, max_new_tokens: int) -> PromptFit:
    """The :class:`PromptFit` of prompts of ``lengths`` tokens in a model of ``positions`` positions.

    Raises:
        ValueError: a length that is not an int >= 0, ``positions`` not None nor an int >= 1, or ``max_new_tokens``
            not an int >= 1.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens: expected an int >= 1, got {max_new_tokens!r}")
    if positions is not None and (isinstance(positions, bool) or not isinstance(positions, int) or positions < 1):
        raise ValueError(f"positions: expected None or an int >= 1, got {positions!r}")
    for i, length in enumerate(lengths):
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise ValueError(f"lengths[{i}]: expected a token count (an int >= 0), got {length!r}")
    if positions is None:
        return PromptFit(None, max_new_tokens, (), tuple(max_new_tokens for _ in lengths))
    limits = tuple(max(0, min(max_new_tokens, positions - length)) for length in lengths)
    return PromptFit(positions, max_new_tokens, tuple(i for i, limit in enumerate(limits) if limit == 0), limits)


def too_long_message(count: int, total: int, positions: int, what: str = "prompts") -> str:
    """One line: ``count`` of ``total`` prompts leave no room for a response in the model's ``positions``."""
    return (f"{count} of {total} {what} have more than {positions - 1} tokens, which leaves no room for a "
            f"response in the model's {positions} positions")


def model_positions(model: Any) -> int | None:
    """The most tokens (prompt + response) ``model`` takes: a ``vllm.LLM``'s ``max_model_len``, a transformers
    model's ``max_position_embeddings``; None when it does not say."""
    engine = getattr(model, "llm_engine", None)
    if engine is not None:
        value = getattr(getattr(engine, "model_config", None), "max_model_len", None)
    else:
        value = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def prompt_token_ids(tokenizer: Any, prompts: Sequence[str]) -> list[list[int]]:
    """The token ids both backends generate from: the templated text, no special tokens added.

    A fast tokenizer's own encoder (``backend_tokenizer``, what ``tokenizer(text)`` calls) encodes them in one batch:
    the same ids without transformers' per-text bookkeeping (a third of the time for a training pool)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return [encoding.ids for encoding in backend.encode_batch(list(prompts), add_special_tokens=False)]
    return [list(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    n: int = 1,
    batch_size: int = 16,
    backend: str = "hf",
    seed: int | None = None,
    progress: bool = True,
    on_batch: Callable[[list[Generation]], None] | None = None,
    draw: str = "inverse",
) -> list[Generation]:
    """Generate ``n`` responses for each prompt.

    Both backends take the same prompt tokens (:func:`prompt_token_ids`) and follow one rule
    (:func:`fit_prompts`): every prompt must leave room for a response in the model's positions
    (:func:`model_positions`), and a response stops where prompt + response fill them (unfinished) when that
    comes before ``max_new_tokens``.

    Args:
        model: a ``transformers`` causal LM (``backend="hf"``) or a ``vllm.LLM`` (``backend="vllm"``).
        tokenizer: the model's tokenizer (for vLLM, ``None`` uses ``model.get_tokenizer()``).
        prompts: the full prompt texts (already templated, see :func:`ktae.prompts.format_prompt`).
        max_new_tokens: response length limit in tokens.
        temperature: 0 = greedy decoding (the paper's evaluation); > 0 samples.
        top_p: nucleus sampling threshold (sampling only).
        n: responses per prompt (needs ``temperature > 0`` when > 1).
        batch_size: sequences per ``generate`` call (HF backend).
        seed: seeds torch (HF) or vLLM's sampler, for reproducible sampling.
        progress: show a tqdm bar.
        on_batch: called with each finished batch's generations as soon as they
            exist (HF backend: per batch; vLLM: once), so callers can save them.
        draw: how the HF backend draws a sampled token: ``inverse`` or ``race`` (:func:`ktae.decoding.decode`);
            vLLM draws its own way and takes only ``inverse`` (the default).

    Returns:
        ``len(prompts) * n`` generations ordered by ``(prompt_index, sample_index)``.

    Raises:
        ValueError: a bad argument, or a prompt that leaves no room for a response (leave such prompts out first:
            ``ktae eval --skip_long_prompts`` does).
    """
    _check_args(prompts, max_new_tokens, temperature, top_p, n, batch_size)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    from ktae.decoding import DRAWS

    if draw not in DRAWS or (backend == "vllm" and draw != "inverse"):
        raise ValueError(f"draw must be one of {DRAWS} (backend 'vllm': 'inverse', its own sampler), got {draw!r}")
    if backend == "vllm" and not hasattr(model, "generate"):
        raise TypeError(f"backend='vllm' expects a vllm.LLM as model, got {type(model).__name__}")
    if tokenizer is None and backend == "vllm":
        tokenizer = model.get_tokenizer()
    if tokenizer is None:
        raise ValueError(f"backend={backend!r} needs the model's tokenizer")
    encoded = prompt_token_ids(tokenizer, prompts)
    fit = fit_prompts([len(ids) for ids in encoded], model_positions(model), max_new_tokens)
    if fit.too_long:
        raise ValueError(f"{too_long_message(len(fit.too_long), len(prompts), fit.positions)} (prompt indices "
                         f"{list(fit.too_long[:10])}); leave them out before generating")
    if backend == "hf":
        return _generate_hf(model, tokenizer, encoded, fit.limits, float(temperature), float(top_p), n, batch_size,
                            seed, progress, on_batch, draw)
    return _generate_vllm(model, encoded, fit.limits, float(temperature), float(top_p), n, seed, progress, on_batch)


@contextlib.contextmanager
def _left_padding(tokenizer):
    old_side = tokenizer.padding_side
    old_pad = tokenizer.pad_token
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("tokenizer has neither a pad token nor an EOS token; set tokenizer.pad_token")
        tokenizer.pad_token = tokenizer.eos_token
    try:
        yield
    finally:
        tokenizer.padding_side = old_side
        if old_pad is None:
            tokenizer.pad_token = None


def _hf_batches(jobs: list[tuple[int, int]], limits: Sequence[int], batch_size: int) -> list[list[tuple[int, int]]]:
    """``(prompt, sample)`` jobs in batches of at most ``batch_size`` whose prompts share one response limit, so
    that no sequence of a batch runs past the model's positions."""
    batches: list[list[tuple[int, int]]] = []
    for job in jobs:
        current = batches[-1] if batches else None
        if current is None or len(current) == batch_size or limits[current[0][0]] != limits[job[0]]:
            batches.append([job])
        else:
            current.append(job)
    return batches


def _hf_generations(chunk: list[tuple[int, int]], rows: list[list[int]], stop: set[int], tokenizer) -> list[Generation]:
    """The :class:`Generation` of each ``(prompt, sample)`` of ``chunk`` from its new token ``rows`` (cut after
    the first stop token)."""
    made = []
    for (p, s), row in zip(chunk, rows):
        end = next((k for k, t in enumerate(row) if t in stop), None)
        finished = end is not None
        ids = row[: end + 1] if finished else row
        text_ids = ids[:-1] if finished else ids
        text = tokenizer.decode(text_ids, skip_special_tokens=True)
        made.append(Generation(prompt_index=p, sample_index=s, text=text, token_ids=ids, num_tokens=len(ids),
                               finished=finished))
    return sorted(made, key=lambda g: (g.prompt_index, g.sample_index))


def _generate_hf(model, tokenizer, encoded, limits, temperature, top_p, n, batch_size, seed, progress,
                 on_batch, draw) -> list[Generation]:
    """:func:`ktae.decoding.decode` over batches of sequences sorted by prompt length (longest first), each batch
    with its prompts' response limit. Greedy or plain sampling (temperature, top-p): the model's own
    ``generation_config`` (an instruct model's top_k=20, repetition_penalty=1.05, ...) is not read, so "greedy" and
    "temperature 1.0" mean what they mean in the paper and in vLLM."""
    import torch

    from ktae.decoding import decode

    stop_ids = eos_token_ids(model, tokenizer)
    if not stop_ids:
        raise ValueError("no EOS token id found on the tokenizer or the model's generation config")
    if seed is not None:
        torch.manual_seed(seed)
    jobs = sorted(((p, s) for p in range(len(encoded)) for s in range(n)), key=lambda ps: -len(encoded[ps[0]]))
    device = getattr(model, "device", None) or next(model.parameters()).device
    results: dict[tuple[int, int], Generation] = {}
    bar = None
    if progress:
        from ktae.progress import progress_bar

        bar = progress_bar(total=len(jobs), desc="generating", unit="seq", dynamic_ncols=True)
    was_training = model.training
    model.eval()
    try:
        with _left_padding(tokenizer):
            for chunk in _hf_batches(jobs, limits, batch_size):
                batch = tokenizer.pad({"input_ids": [encoded[p] for p, _ in chunk]}, return_tensors="pt")
                rows = decode(model, batch["input_ids"].to(device), batch["attention_mask"].to(device),
                              max_new_tokens=limits[chunk[0][0]], stop_ids=stop_ids, pad_id=tokenizer.pad_token_id,
                              temperature=temperature, top_p=top_p, draw=draw)
                made = _hf_generations(chunk, rows, set(stop_ids), tokenizer)
                results.update(((g.prompt_index, g.sample_index), g) for g in made)
                if on_batch is not None:
                    on_batch(made)
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if was_training:
            model.train()
        if bar is not None:
            bar.close()
    return [results[key] for key in sorted(results)]


def _generate_vllm(llm, encoded, limits, temperature, top_p, n, seed, progress, on_batch) -> list[Generation]:
    """``llm.generate`` on the prompts' token ids, each prompt with its own response limit."""
    try:
        from vllm import SamplingParams
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise ImportError("backend='vllm' needs vLLM: pip install 'ktae[vllm]'") from exc
    by_limit = {
        limit: SamplingParams(n=n, temperature=temperature, top_p=top_p if temperature > 0 else 1.0, max_tokens=limit,
                              seed=seed)
        for limit in sorted(set(limits))
    }
    inputs = [{"prompt_token_ids": ids} for ids in encoded]
    outputs = llm.generate(inputs, [by_limit[limit] for limit in limits], use_tqdm=progress)
    results = []
    for p, request in enumerate(outputs):
        for s, completion in enumerate(request.outputs):
            ids = list(completion.token_ids)
            results.append(Generation(prompt_index=p, sample_index=s, text=completion.text, token_ids=ids,
                                      num_tokens=len(ids), finished=completion.finish_reason == "stop"))
    if on_batch is not None:
        on_batch(results)
    return results
