"""Training data from files and folders; a model from a local Hugging Face folder."""
import json

import pytest

from ktae.train.config import make_config
from ktae.train.data import load_rows, to_problems
from ktae.train.logger import read_metrics
from ktae.train.loop import train
from ktae.recipes.arithmetic import ArithmeticTask, worked_solution

ROWS = [
    {"problem": "What is 1+1?", "solution": "It is $\\boxed{2}$.", "level": "Level 3"},
    {"problem": "What is 2+2?", "solution": "So \\boxed{4}", "level": "Level 1"},
    {"problem": "Name a prime.", "solution": "no box here", "level": "Level 5"},
]


@pytest.fixture
def files(tmp_path):
    import datasets

    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    ds = datasets.Dataset.from_list(ROWS)
    ds.to_parquet(str(tmp_path / "d.parquet"))
    ds.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "saved_dict"))
    return tmp_path


def test_every_local_form_loads_the_same_rows(files):
    for source, split in (("d.jsonl", "train"), ("d.parquet", "train"), ("saved", "train"), ("saved_dict", "train")):
        rows = load_rows(str(files / source), split)
        assert [r["problem"] for r in rows] == [r["problem"] for r in ROWS], source
    assert len(load_rows(str(files / "saved_dict"), "test")) == 1
    with pytest.raises(ValueError, match="--split"):
        load_rows(str(files / "saved_dict"), "validation")
    with pytest.raises(ValueError, match="no such file"):
        load_rows(str(files / "missing.jsonl"))
    (files / "d.txt").write_text("x")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_rows(str(files / "d.txt"))


def test_fields_filter_and_answers_from_solutions(files):
    rows = load_rows(str(files / "d.jsonl"))
    problems = to_problems(rows, "problem", "solution", answer_from_solution=True, filter_field="level",
                           filter_values=["Level 3", "Level 5"])
    assert problems == [{"problem": "What is 1+1?", "answer": "2"}]   # level 1 filtered, no-box row dropped
    with pytest.raises(ValueError, match="--problem_field"):
        to_problems(rows, "question", "solution")
    with pytest.raises(ValueError, match="--filter_field"):
        to_problems(rows, "problem", "solution", filter_field="difficulty", filter_values=["1"])


def test_train_a_local_hf_model_on_a_jsonl_file(tmp_path):
    """The non-embedded path: a model folder (a tiny Llama saved here) and problems from a jsonl file."""
    from ktae.recipes.arithmetic import build_tokenizer
    from ktae.recipes.tiny_model import build_model, TinyModelConfig

    tok = build_tokenizer()
    model = build_model(TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64),
                        len(tok), tok.pad_token_id, tok.eos_token_id)
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    problems = ArithmeticTask().problems(40, seed=1)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"q": p["problem"], "a": p["answer"]}) + "\n"
                                                  for p in problems[:30]))
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps({"q": p["problem"], "a": p["answer"]}) + "\n"
                                                 for p in problems[30:]))
    assert worked_solution(problems[0]["problem"])  # the problems are well-formed
    cfg = make_config(model=str(tmp_path / "model"), data=str(tmp_path / "train.jsonl"),
                      eval_data=str(tmp_path / "eval.jsonl"), problem_field="q", answer_field="a",
                      template="{problem}\n", steps=1, prompts_per_step=2, rollouts_per_prompt=2, max_new_tokens=8,
                      eval_every=1, threads=1, grader_workers=0, quiet=True, run_dir=str(tmp_path / "run"))
    run_dir = train(cfg)
    records = read_metrics(run_dir)
    assert [r["step"] for r in records if "eval_accuracy" in r] == [0, 1]
    assert records[-1]["eval_problems"] == 10
    assert (run_dir / "final" / "model.safetensors").is_file()


def test_training_pool_leaves_out_prompts_without_room(tmp_path):
    """The trainer's rule is the generation rule: a prompt must leave room for one new token in the positions."""
    from transformers import AutoTokenizer

    from ktae.train.config import DataConfig
    from ktae.train.rollouts import fitting_problems, prepare_prompts
    from test_generation import build_tiny_lm

    tokenizer = AutoTokenizer.from_pretrained(str(build_tiny_lm(tmp_path / "lm", positions=21)))
    data = DataConfig(path="problems.jsonl", template="{problem}", max_prompt_tokens=30)
    problems = [{"problem": "a" * n, "answer": "1"} for n in (5, 20, 25, 40)]   # one token per character
    prompts = prepare_prompts(problems, data, tokenizer, positions=21)
    assert prompts.usable == [0, 1] and prompts.no_room == 1                   # 25 leaves no room, 40 > 30
    assert prepare_prompts(problems, data, tokenizer).usable == [0, 1, 2]      # positions unknown: no limit
    assert fitting_problems(problems, data, tokenizer, 21) == problems[:2]
    with pytest.raises(ValueError, match=r"--max_prompt_tokens 30: every prompt is longer, or leaves no room for a "
                                         r"response in the model's 4 positions"):
        prepare_prompts(problems, data, tokenizer, positions=4)
