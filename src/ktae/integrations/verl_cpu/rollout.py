"""verl's ``hf`` rollout: a Ray actor that generates with transformers, token ids in, token ids out.

verl 0.9 generates through rollout *servers* (``workers/rollout/replica.py`` ``RolloutReplicaRegistry``: vllm,
sglang, trtllm) that its agent loop calls with ``server.generate.remote(request_id=, prompt_ids=,
sampling_params=)``, and through a ``BaseRollout`` adapter in each trainer process
(``workers/rollout/base.py`` ``_ROLLOUT_REGISTRY``) that verl's weight sync calls with the trainer's weights
(``engine_workers.ActorRolloutRefWorker.update_weights`` -> ``rollout.update_weights(per_tensor_param)``). None
of the three engines runs on a CPU with the torch verl needs, so this module adds a fourth, registered under both
registries as ``actor_rollout_ref.rollout.name=hf``:

- :class:`HFServer`: one Ray actor per replica holding a ``transformers`` causal LM in float32; each request is a
  ``generate()`` call on one prompt (sampling as verl asks: temperature, top-p, top-k; greedy at temperature 0),
  answered with verl's ``TokenOutput`` (the new token ids, their log-probabilities when asked);
- :class:`HFServerAdapter`: the trainer-side ``BaseRollout``: ``update_weights`` gathers the ``(name, tensor)``
  pairs verl's sync yields and loads them into the server's model (checked: every parameter of the server's
  model must be sent), so each step samples from the weights the actor just trained;
- :class:`HFReplica`: the ``RolloutReplica`` that starts the server (hybrid mode: colocated with the trainer).

This is for rehearsing a verl job on a CPU (``ktae verl --cpu``), not for speed: requests are served one at a
time.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Generator
from typing import Any

import ray
import torch
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput

logger = logging.getLogger(__name__)

NAME = "hf"
#: the fully qualified name verl's ``get_rollout_class`` imports for ``(name, "async")``
ADAPTER = f"{__name__}.HFServerAdapter"


def _server_name(replica_rank: int, node_rank: int = 0) -> str:
    return f"{NAME}_server_{replica_rank}_{node_rank}"


def _sample_kwargs(sampling_params: dict[str, Any]) -> dict[str, Any]:
    """transformers ``generate`` options for verl's sampling parameters (vLLM names)."""
    temperature = float(sampling_params.get("temperature", 1.0) or 0.0)
    if temperature <= 0:
        return {"do_sample": False}
    kwargs: dict[str, Any] = {"do_sample": True, "temperature": temperature}
    top_p = sampling_params.get("top_p")
    if top_p is not None and 0 < float(top_p) < 1:
        kwargs["top_p"] = float(top_p)
    top_k = sampling_params.get("top_k")
    kwargs["top_k"] = int(top_k) if top_k is not None and int(top_k) > 0 else 0  # 0: transformers' "no top-k"
    penalty = sampling_params.get("repetition_penalty")
    if penalty is not None and float(penalty) != 1.0:
        kwargs["repetition_penalty"] = float(penalty)
    return kwargs


class HFServer:
    """One rollout replica: a transformers causal LM that answers verl's token-in, token-out requests."""

    def __init__(self, config: Any, model_config: Any, replica_rank: int = 0) -> None:
        from transformers import AutoModelForCausalLM, GenerationConfig
        from verl.utils.config import omega_conf_to_dataclass
        from verl.workers.config import HFModelConfig

        model_config = omega_conf_to_dataclass(model_config, dataclass_type=HFModelConfig)  # as vLLM's server does
        self.config = config
        self.replica_rank = replica_rank
        path = model_config.local_path
        trust = bool(getattr(model_config, "trust_remote_code", False))
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, trust_remote_code=trust)
        self.model.eval()
        tokenizer = model_config.tokenizer
        eos = getattr(tokenizer, "eos_token_id", None)
        pad = getattr(tokenizer, "pad_token_id", None)
        self.eos = [eos] if isinstance(eos, int) else list(eos or [])
        generation = getattr(self.model, "generation_config", None) or GenerationConfig()
        extra = generation.eos_token_id
        self.eos += [i for i in ([extra] if isinstance(extra, int) else (extra or [])) if i not in self.eos]
        self.pad = pad if pad is not None else (self.eos[0] if self.eos else 0)
        self.parameter_names = {name for name, _ in self.model.named_parameters()}
        self.global_steps: int | None = None
        self.generator = torch.Generator().manual_seed(int(getattr(config, "seed", 0)) + replica_rank)
        self._lock = threading.Lock()

    def get_server_address(self) -> str:
        return f"{NAME}-replica-{self.replica_rank}"

    # ---- generation
    async def generate(self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any],
                       **kwargs: Any) -> TokenOutput:
        """verl's token-in, token-out call: the new token ids (and log-probs when ``sampling_params['logprobs']``)."""
        if kwargs.get("image_data") is not None or kwargs.get("video_data") is not None:
            raise ValueError("the hf rollout of ktae's CPU runtime generates text only (no image or video inputs)")
        params = dict(sampling_params)
        length = self.config.response_length
        max_tokens = params.pop("max_tokens", params.pop("max_new_tokens", None))
        max_tokens = length if max_tokens is None else min(int(max_tokens), length)
        if getattr(self.config, "max_model_len", None):
            max_tokens = min(max_tokens, int(self.config.max_model_len) - len(prompt_ids))
        if max_tokens < 1:
            raise ValueError(f"prompt of {len(prompt_ids)} tokens leaves no room to generate")
        ids, logprobs = await asyncio.to_thread(self._generate, list(prompt_ids), params, max_tokens)
        return TokenOutput(token_ids=ids, log_probs=logprobs, stop_reason="completed",
                           extra_fields={"global_steps": self.global_steps})

    @torch.no_grad()
    def _generate(self, prompt_ids: list[int], params: dict[str, Any], max_tokens: int):
        stop = list(self.eos) + [int(i) for i in (params.get("stop_token_ids") or [])]
        sample = _sample_kwargs(params)
        with self._lock:
            state = torch.get_rng_state()
            torch.set_rng_state(self.generator.get_state())
            try:
                out = self.model.generate(
                    torch.tensor([prompt_ids]), attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                    max_new_tokens=max_tokens, eos_token_id=stop or None, pad_token_id=self.pad,
                    return_dict_in_generate=True, output_logits=bool(params.get("logprobs")), **sample,
                )
                self.generator.set_state(torch.get_rng_state())
            finally:
                torch.set_rng_state(state)
        new = out.sequences[0, len(prompt_ids):].tolist()
        if stop and any(t in stop for t in new):  # cut after the first stop token (generate pads the rest)
            new = new[: next(i for i, t in enumerate(new) if t in stop) + 1]
        logprobs = None
        if params.get("logprobs"):
            temperature = float(params.get("temperature") or 1.0) or 1.0
            logits = torch.stack([step[0] for step in out.logits[: len(new)]]).float() / temperature
            logprobs = torch.log_softmax(logits, -1).gather(-1, torch.tensor(new)[:, None])[:, 0].tolist()
        return new, logprobs

    # ---- weights
    def load_weights(self, weights: dict[str, torch.Tensor], global_steps: int | None = None) -> int:
        """Load the trainer's full weights (HF parameter names); every parameter of the model must be among them.

        Returns:
            The number of tensors loaded.
        """
        unknown = sorted(set(weights) - set(self.model.state_dict()))
        missing = sorted(self.parameter_names - set(weights))
        if unknown or missing:
            raise ValueError(
                f"hf rollout: the trainer sent weights that do not fit the rollout model (unknown: {unknown[:5]}, "
                f"missing: {missing[:5]})"
            )
        with self._lock, torch.no_grad():
            state = self.model.state_dict()
            for name, tensor in weights.items():
                state[name].copy_(tensor.to(state[name].dtype))
        if global_steps is not None:
            self.global_steps = global_steps
        return len(weights)

    # ---- what verl's replicas and checkpoint engine call; memory is not handed back on a CPU
    async def wake_up(self, tags: list[str] | None = None) -> None:
        pass

    async def sleep(self) -> None:
        pass

    async def clear_kv_cache(self) -> None:
        pass

    async def release_kv_cache(self) -> None:
        pass

    async def resume_kv_cache(self) -> None:
        pass

    async def abort_all_requests(self, reset_prefix_cache: bool = True, reject_request: bool = False) -> dict:
        return {}

    async def resume_generation(self) -> None:
        pass

    async def start_profile(self, **kwargs: Any) -> None:
        pass

    async def stop_profile(self) -> None:
        pass

    async def set_global_steps(self, global_steps: int) -> None:
        self.global_steps = global_steps


class HFReplica(RolloutReplica):
    """A replica of the ``hf`` rollout: one :class:`HFServer` actor beside the trainer process(es)."""

    async def launch_servers(self) -> None:
        if self.world_size != 1:
            raise ValueError(
                "the hf rollout runs one server per trainer process: set actor_rollout_ref.rollout."
                f"tensor_model_parallel_size=1 (and data/pipeline parallel sizes 1), got a world size of "
                f"{self.world_size}"
            )
        env = {key: os.environ[key] for key in ("VERL_PLATFORM", "VERL_USE_EXTERNAL_MODULES") if key in os.environ}
        server = ray.remote(HFServer).options(
            name=_server_name(self.replica_rank), num_cpus=0, max_concurrency=self.max_concurrency,
            runtime_env={"env_vars": env},
        ).remote(config=self.config, model_config=self.model_config, replica_rank=self.replica_rank)
        self.servers = [server]
        self._server_handle = server
        self._server_address = await server.get_server_address.remote()


class HFServerAdapter(BaseRollout):
    """The trainer-side end of the ``hf`` rollout: hands verl's weight sync to the :class:`HFServer`."""

    def __init__(self, config: Any, model_config: Any, device_mesh: Any, replica_rank: int = -1) -> None:
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", "0"))
        self.replica_rank = rank if replica_rank == -1 else replica_rank  # one trainer process per replica
        self.server_handle = None

    def _server(self) -> Any:
        if self.server_handle is None:  # the server starts after the trainer processes
            self.server_handle = ray.get_actor(_server_name(self.replica_rank))
        return self.server_handle

    async def resume(self, tags: list[str]) -> None:
        pass

    async def release(self) -> None:
        pass

    @torch.no_grad()
    async def update_weights(self, weights: Generator[tuple[str, torch.Tensor], None, None],
                             global_steps: int | None = None, wire_format: str = "named_tensors",
                             **kwargs: Any) -> None:
        """Send the trainer's full weights to the server (verl's ``rollout.update_weights`` in the naive sync)."""
        if wire_format != "named_tensors":
            raise ValueError(f"the hf rollout takes full weights (wire_format='named_tensors'), got {wire_format!r}")
        if kwargs.get("peft_config") is not None:
            raise ValueError("the hf rollout takes merged weights: set actor_rollout_ref.model.lora.merge=True")
        state = {}
        for name, tensor in weights:
            if hasattr(tensor, "full_tensor"):  # a DTensor shard: the whole tensor
                tensor = tensor.full_tensor()
            state[name] = tensor.detach().to("cpu", copy=True)
        await self._server().load_weights.remote(ray.put(state), global_steps)
