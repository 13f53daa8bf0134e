"""benchmarks/key_tokens_vs_mistakes.py on a run folder holding the teacher's solutions as dumped rollouts."""
import json
import random
from pathlib import Path

import pytest
from benchmark_scripts import load_benchmark

from ktae.train.config import make_config, save_yaml
from ktae.recipes.word_problems import WordProblemTask, answer_of, build_tokenizer



def load_script():
    return load_benchmark("key_tokens_vs_mistakes")


def fake_run(folder: Path, steps=(10, 20), groups=6, n=8, seed=0) -> Path:
    """A run folder as ``ktae train --preset word-grpo-ktae --dump_key_tokens_every 10`` leaves it, with the
    careful and sloppy teacher's solutions in place of a model's rollouts."""
    tok = build_tokenizer()
    tok.save_pretrained(folder / "final")
    save_yaml(make_config("word-grpo-ktae"), folder / "config.yaml")
    task, rng = WordProblemTask(), random.Random(seed)
    for step in steps:
        rows = []
        for g in range(groups):
            story = task.sample(rng)
            for i in range(n):
                text, _ = task.solution(story, rng, careful=i < 2)
                right = text.endswith("{" + answer_of(story) + "}")
                rows.append({"group": f"step{step}-{g}", "prompt": story, "response": text,
                             "token_ids": tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id],
                             "reward": float(right), "correct": right, "reference": answer_of(story)})
        (folder / "key_tokens").mkdir(parents=True, exist_ok=True)
        (folder / "key_tokens" / f"step_{step:04d}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


def test_script_scores_the_dumped_rollouts(tmp_path):
    run = fake_run(tmp_path / "run")
    assert load_script().main([str(run), "--out", str(tmp_path / "out")]) == 0
    results = json.loads((tmp_path / "out" / "mistakes.json").read_text())
    assert set(results) == {"10", "20", "all", "environment"}
    assert results["environment"]["packages"]["torch"] and results["environment"]["cpu_count"] >= 1
    together = results["all"]
    for target in ("wrong step, all wrong rollouts", "wrong step, mixed groups",
                   "from the first wrong step on, all wrong rollouts", "from the first wrong step on, mixed groups"):
        scored = together[target]
        assert scored["data"]["rollouts"] == sum(results[s][target]["data"]["rollouts"] for s in ("10", "20"))
        assert 0 < scored["data"]["base_rate"] < 1
        assert scored["random"]["auroc"] == 0.5
        assert scored["-A"]["auroc_within"] == 0.5              # a flat advantage cannot rank within a rollout
        assert 0 <= scored["-K"]["auroc"] <= 1 and 0 <= scored["-K"]["share_top"] <= 1
    assert set(together["mean_K"]) == {"wrong_step_tokens", "other_tokens_of_wrong_rollouts",
                                       "tokens_of_right_rollouts"}
    assert (tmp_path / "out" / "mistakes.png").stat().st_size > 10_000
    assert "AUROC" in (tmp_path / "out" / "mistakes.md").read_text()


def test_script_over_several_runs(tmp_path):
    runs = [fake_run(tmp_path / f"run{i}", steps=(10, 20), groups=3, seed=i) for i in range(3)]
    assert load_script().main([*map(str, runs), "--out", str(tmp_path / "out")]) == 0
    results = json.loads((tmp_path / "out" / "mistakes.json").read_text())
    assert set(results["runs"]) == {"run0", "run1", "run2"}
    cell = results["across_runs"]["wrong step, mixed groups"]["-K"]["auroc"]
    values = [r["all"]["wrong step, mixed groups"]["-K"]["auroc"] for r in results["runs"].values()]
    assert cell["mean"] == pytest.approx(sum(values) / 3) and cell["ci95"] > 0
    assert "Over 3 runs" in (tmp_path / "out" / "mistakes.md").read_text()
    # per dumped step, over the runs: the secondary outcome of docs/study-learning.md
    assert set(results["by_step"]) == {"10", "20"}
    at10 = [r["10"]["wrong step, mixed groups"]["-K"]["auroc"] for r in results["runs"].values()]
    assert results["by_step"]["10"]["-K"]["auroc"][0] == pytest.approx(sum(at10) / 3)
    assert "| 20 |" in (tmp_path / "out" / "mistakes.md").read_text()


def test_script_refuses_runs_it_cannot_read(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("task: arithmetic\n")
    assert load_script().main([str(tmp_path)]) == 2
    assert "word-problem task" in capsys.readouterr().err
    (tmp_path / "config.yaml").write_text("task: word\n")
    assert load_script().main([str(tmp_path)]) == 2
    assert "dump_key_tokens_every" in capsys.readouterr().err
