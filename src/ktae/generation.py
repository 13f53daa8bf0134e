"""Batched text generation for evaluation and rollouts: Hugging Face ``generate`` or vLLM.

>>> gens = generate(model, tokenizer, ["<prompt>"], max_new_tokens=64)   # doctest: +SKIP
>>> gens[0].text, gens[0].num_tokens, gens[0].finished                   # doctest: +SKIP

``backend="hf"`` pads on the left, sorts prompts by length so batches waste
little padding, and stops each sequence at EOS. ``backend="vllm"`` takes a
``vllm.LLM`` as ``model`` (``pip install ktae[vllm]``); vLLM is imported only then.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

#: generation backends: transformers' ``generate`` or a vLLM engine
BACKENDS = ("hf", "vllm")
#: model dtypes a command accepts (``auto``: bfloat16 on a GPU, float32 on a CPU, or the checkpoint's own)
#: ``float64``: slow, but a run then gives the same numbers on CPUs with different SIMD kernels (docs/reproducing.md)
DTYPES = ("auto", "float32", "bfloat16", "float16", "float64")

__all__ = ["Generation", "generate", "load_model", "eos_token_ids"]


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
) -> list[Generation]:
    """Generate ``n`` responses for each prompt.

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

    Returns:
        ``len(prompts) * n`` generations ordered by ``(prompt_index, sample_index)``.
    """
    _check_args(prompts, max_new_tokens, temperature, top_p, n, batch_size)
    if backend == "hf":
        return _generate_hf(model, tokenizer, prompts, max_new_tokens, float(temperature), float(top_p), n,
                            batch_size, seed, progress, on_batch)
    if backend == "vllm":
        return _generate_vllm(model, tokenizer, prompts, max_new_tokens, float(temperature), float(top_p), n,
                              seed, progress, on_batch)
    raise ValueError(f"backend must be 'hf' or 'vllm', got {backend!r}")


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


def _generate_hf(model, tokenizer, prompts, max_new_tokens, temperature, top_p, n, batch_size, seed, progress,
                 on_batch) -> list[Generation]:
    import torch
    from transformers import GenerationConfig

    if tokenizer is None:
        raise ValueError("backend='hf' needs the model's tokenizer")
    stop_ids = eos_token_ids(model, tokenizer)
    if not stop_ids:
        raise ValueError("no EOS token id found on the tokenizer or the model's generation config")
    if seed is not None:
        torch.manual_seed(seed)
    # Prompts are encoded once; sequences sorted by prompt length (longest first) share batches.
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    jobs = sorted(((p, s) for p in range(len(prompts)) for s in range(n)), key=lambda ps: -len(encoded[ps[0]]))
    sampling = temperature > 0
    # Every decoding knob is set explicitly: transformers fills unset ones from the model's own
    # generation_config (e.g. an instruct model's top_k=20, repetition_penalty=1.05), which would
    # silently change "greedy" or "temperature 1.0" from what the paper (and vLLM) do.
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=sampling,
        temperature=temperature if sampling else 1.0,
        top_p=top_p if sampling else 1.0,
        top_k=0 if sampling else 50,  # 0 disables top-k when sampling; unused (library default) when greedy
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        num_beams=1,
        eos_token_id=stop_ids,
    )
    device = getattr(model, "device", None) or next(model.parameters()).device
    results: dict[tuple[int, int], Generation] = {}
    bar = None
    if progress:
        from ktae.progress import progress_bar

        bar = progress_bar(total=len(jobs), desc="generating", unit="seq", dynamic_ncols=True)
    was_training = model.training
    model.eval()
    try:
        with _left_padding(tokenizer), torch.inference_mode():
            config.pad_token_id = tokenizer.pad_token_id
            stop = set(stop_ids)
            for start in range(0, len(jobs), batch_size):
                chunk = jobs[start : start + batch_size]
                batch = tokenizer.pad({"input_ids": [encoded[p] for p, _ in chunk]}, return_tensors="pt")
                input_ids = batch["input_ids"].to(device)
                attention_mask = batch["attention_mask"].to(device)
                out = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
                new_tokens = out[:, input_ids.shape[1] :].tolist()
                made = []
                for (p, s), row in zip(chunk, new_tokens):
                    end = next((k for k, t in enumerate(row) if t in stop), None)
                    finished = end is not None
                    ids = row[: end + 1] if finished else row
                    text_ids = ids[:-1] if finished else ids
                    gen = Generation(
                        prompt_index=p,
                        sample_index=s,
                        text=tokenizer.decode(text_ids, skip_special_tokens=True),
                        token_ids=ids,
                        num_tokens=len(ids),
                        finished=finished,
                    )
                    results[(p, s)] = gen
                    made.append(gen)
                if on_batch is not None:
                    on_batch(sorted(made, key=lambda g: (g.prompt_index, g.sample_index)))
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if was_training:
            model.train()
        if bar is not None:
            bar.close()
    return [results[key] for key in sorted(results)]


def _generate_vllm(llm, tokenizer, prompts, max_new_tokens, temperature, top_p, n, seed, progress,
                   on_batch) -> list[Generation]:
    try:
        from vllm import SamplingParams
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise ImportError("backend='vllm' needs vLLM: pip install 'ktae[vllm]'") from exc
    if not hasattr(llm, "generate"):
        raise TypeError(f"backend='vllm' expects a vllm.LLM as model, got {type(llm).__name__}")
    params = SamplingParams(
        n=n,
        temperature=temperature,
        top_p=top_p if temperature > 0 else 1.0,
        max_tokens=max_new_tokens,
        seed=seed,
    )
    outputs = llm.generate(list(prompts), params, use_tqdm=progress)
    results = []
    for p, request in enumerate(outputs):
        for s, completion in enumerate(request.outputs):
            ids = list(completion.token_ids)
            results.append(
                Generation(
                    prompt_index=p,
                    sample_index=s,
                    text=completion.text,
                    token_ids=ids,
                    num_tokens=len(ids),
                    finished=completion.finish_reason == "stop",
                )
            )
    if on_batch is not None:
        on_batch(results)
    return results


def load_model(
    name_or_path: str,
    *,
    backend: str = "hf",
    dtype: str = "auto",
    device: str | None = None,
    max_model_len: int | None = None,
    trust_remote_code: bool = False,
    vllm_kwargs: dict | None = None,
):
    """Load ``(model, tokenizer)`` for :func:`generate` from a local folder, a local GGUF file or a Hub id
    (the same things ``ktae train --model`` takes: `ktae.model_source.resolve_model_source`).

    ``backend="hf"``: ``AutoModelForCausalLM`` on ``device`` (default: CUDA when
    available, else CPU) in ``dtype`` (``auto``, ``bfloat16``, ``float16``,
    ``float32``); a GGUF file is dequantised by transformers. ``backend="vllm"``: a ``vllm.LLM`` and its
    tokenizer (folders and Hub ids).

    Raises:
        ValueError: ``name_or_path`` is no folder, GGUF file or loadable Hub id (the message says what was tried).
    """
    from ktae.model_source import explain_load_error, resolve_model_source

    source = resolve_model_source(name_or_path)
    if backend == "vllm" and source.kind == "gguf":
        raise ValueError(f"--model {name_or_path!r}: a GGUF file needs --backend hf (the vLLM backend takes a "
                         "model folder or a Hub id)")
    if backend == "vllm":
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ImportError("backend='vllm' needs vLLM: pip install 'ktae[vllm]'") from exc
        from transformers import AutoConfig

        from ktae.vllm_setup import engine_checks

        try:
            config = AutoConfig.from_pretrained(source.name, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as err:
            raise explain_load_error(source, err) from err
        length = max_model_len or getattr(config, "max_position_embeddings", None) or 4096
        kwargs = dict(model=name_or_path, dtype=dtype, trust_remote_code=trust_remote_code)
        kwargs.update(engine_checks(config, length, 4))   # head size refused before the engine starts; CPU KV cache
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        kwargs.update(vllm_kwargs or {})
        llm = LLM(**kwargs)
        return llm, llm.get_tokenizer()
    if backend != "hf":
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtypes = {"auto": "auto", "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32,
              "float64": torch.float64}
    if dtype not in dtypes:
        raise ValueError(f"dtype must be one of {sorted(dtypes)}, got {dtype!r}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if source.kind == "gguf":
        model, tokenizer = _load_gguf(source, trust_remote_code, dtypes[dtype])
        model.to(device)
        model.eval()
        return model, tokenizer
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    dtype_kw = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"  # renamed in transformers 4.56
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.name, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            source.name, trust_remote_code=trust_remote_code, **{dtype_kw: dtypes[dtype]}
        )
    except (OSError, ValueError) as err:
        raise explain_load_error(source, err) from err
    model.to(device)
    model.eval()
    return model, tokenizer


def _load_gguf(source, trust_remote_code: bool, dtype):
    """A GGUF file as a plain transformers model and its tokenizer, loaded the way ``ktae train`` loads it."""
    import torch

    from ktae.loading import align_eos, load_hf_model, load_tokenizer

    tokenizer = load_tokenizer(source.name, gguf_file=source.gguf_file, trust_remote_code=trust_remote_code)
    model = load_hf_model(source.name, torch.float32 if dtype == "auto" else dtype, gguf_file=source.gguf_file,
                          trust_remote_code=trust_remote_code)
    align_eos(model, tokenizer)
    return model, tokenizer
