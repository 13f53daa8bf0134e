"""Runs are reproducible where they can be: the same seed, versions and CPU kind give the same bits.

The embedded model is built (initialised and warm-started) identically by two processes whose hash seeds and
torch thread counts differ; a small float64 build with a short warm start is also the same whatever SIMD kernels the
CPU offers, to the digits that transformers' float32 RMSNorm and rotary angles leave (docs/reproducing.md: a long
warm start amplifies them).
"""
import json
import os
import subprocess
import sys

import pytest

BUILD = """
import hashlib, json, sys, torch
from ktae.recipes.tiny_model import TinyModelConfig, load_embedded_model
from ktae.recipes.arithmetic import ArithmeticTask
torch.set_num_threads(int(sys.argv[1]))
dtype = getattr(torch, sys.argv[2])
cfg = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, sft_steps=30, sft_batch_size=16)
model, _, _ = load_embedded_model(ArithmeticTask(), cfg, cache=False, progress=False, dtype=dtype)
params = [p.detach() for p in model.parameters()]
print(json.dumps({"sha": hashlib.sha256(b"".join(p.numpy().tobytes() for p in params)).hexdigest(),
                  "abs_sum": sum(float(p.double().abs().sum()) for p in params),
                  "dtype": str(params[0].dtype)}))
"""


def build(threads: int, dtype: str = "float32", **env) -> dict:
    out = subprocess.run([sys.executable, "-c", BUILD, str(threads), dtype], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_two_processes_with_different_hash_seeds_and_threads_build_the_same_model():
    one = build(1, PYTHONHASHSEED="1")
    two = build(2, PYTHONHASHSEED="2")
    assert one["dtype"] == "torch.float32"
    assert one["sha"] == two["sha"]


@pytest.mark.parametrize("capability", ["avx2", "default"])
def test_a_float64_model_is_built_alike_whatever_the_simd_kernels(capability):
    here = build(1, "float64")
    there = build(1, "float64", ATEN_CPU_CAPABILITY=capability)
    assert here["dtype"] == "torch.float64"
    assert there["abs_sum"] == pytest.approx(here["abs_sum"], rel=1e-9)
