"""vLLM rollouts for the trainer (``--backend vllm``; GPU and ``pip install 'ktae[vllm]'``).

The engine lives in the training process, on the same GPU ("colocated"), started from the
policy's initial weights; after every update :meth:`VLLMEngine.sync` copies the policy's
parameters into it. Sampling goes through :func:`ktae.generation.generate`.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMEngine:
    """A colocated ``vllm.LLM`` kept in step with the policy."""

    def __init__(self, model, tokenizer, cfg, source: str, run_dir: Path, dtype=None):
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ImportError("--backend vllm needs vLLM (pip install 'ktae[vllm]'); or use --backend hf") from exc
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
            dtype=str(dtype or next(model.parameters()).dtype).removeprefix("torch."),
            gpu_memory_utilization=cfg.rollout.vllm_gpu_memory_utilization,
            max_model_len=cfg.data.max_prompt_tokens + max(cfg.rollout.max_new_tokens, cfg.eval.max_new_tokens),
            distributed_executor_backend="external_launcher",
            seed=cfg.seed,
            trust_remote_code=cfg.model.trust_remote_code,
        )
        self._calls = 0

    def _runner_model(self):
        executor = self.llm.llm_engine.model_executor
        worker = executor.driver_worker
        runner = getattr(worker, "model_runner", None) or getattr(getattr(worker, "worker", None), "model_runner")
        return runner.model

    def sync(self, model) -> None:
        """Copy the policy's current parameters into the engine."""
        target = self._runner_model()
        for name, param in model.named_parameters():
            target.load_weights([(name.replace("_checkpoint_wrapped_module.", ""), param.data)])
        self.llm.reset_prefix_cache()

    def generate(self, prompts: list[str], n: int, greedy: bool = False, max_new_tokens: int | None = None):
        from ktae.generation import generate

        self._calls += 1
        rollout = self.cfg.rollout
        return generate(self.llm, self.tokenizer, prompts, max_new_tokens=max_new_tokens or rollout.max_new_tokens,
                        temperature=0.0 if greedy else rollout.temperature, top_p=rollout.top_p, n=n,
                        backend="vllm", seed=self.cfg.seed * 1_000_003 + self._calls, progress=False)
