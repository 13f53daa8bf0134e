"""ktae analyze on the files engines write: verl's rollout / validation dumps (written by verl itself), folders of
step files, --steps, and clear errors for bad files."""
from __future__ import annotations

import json

import pytest
import torch

import ktae
from ktae.analysis import analyze
from ktae.analysis.cli import main as analyze_main
from ktae.analysis.compute import encode_text
from ktae.analysis.sources import load_source, parse_steps

from test_analysis_report import byte_level_tokenizer

PROMPTS = ["Compute $7 \\times 8$.", "Find $2+3$."]
ANSWERS = ["56", "5"]
RESPONSES = {
    0: [("7 × 8 = 56, so $\\boxed{56}$.", 1.0), ("Seven eights: 56. $\\boxed{56}$", 1.0),
        ("7 × 8 = 54, so $\\boxed{54}$.", 0.0), ("I think $\\boxed{15}$.", 0.0)],
    1: [("2+3 = 5, so $\\boxed{5}$.", 1.0), ("I think $\\boxed{6}$.", 0.0), ("2+3 = 5 $\\boxed{5}$", 1.0),
        ("2+3 = 6, so $\\boxed{6}$.", 0.0)],
}


@pytest.fixture(scope="module")
def tok():
    return byte_level_tokenizer()


@pytest.fixture(scope="module")
def tok_folder(tok, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    tok.save_pretrained(folder)
    return str(folder)


def verl_step(step: int, shift: int = 0):
    """The lists verl hands to _write_generations for one step: interleaved groups, DAPO-like scores, acc."""
    inputs, outputs, gts, scores, acc = [], [], [], [], []
    for k in range(4):
        for p in (0, 1):
            text, ok = RESPONSES[p][(k + shift) % 4]
            inputs.append(PROMPTS[p])
            outputs.append(text)
            gts.append(ANSWERS[p])
            scores.append(1.0 if ok else -1.0 - 0.1 * k)  # +1/-1 with an overlong-style penalty
            acc.append(ok)
    return inputs, outputs, gts, scores, {"acc": acc}


@pytest.fixture(scope="module")
def verl_dir(tmp_path_factory):
    """A rollout_data_dir written by verl's own writer (the legacy trainer's and the v1 trainer's)."""
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    folder = tmp_path_factory.mktemp("rollout_data")
    for step, writer in ((1, RayPPOTrainer._write_generations), (2, PPOTrainer._write_generations),
                         (10, RayPPOTrainer._write_generations)):
        inputs, outputs, gts, scores, extra = verl_step(step, shift=step)
        writer(inputs, outputs, gts, scores, extra, str(folder), step)
    return folder


def test_verl_dump_groups_verdicts_and_values(tok, verl_dir):
    source = load_source(verl_dir / "2.jsonl")
    assert source.format == "verl" and source.steps == [2]
    assert any("re-tokenising" in note for note in source.notes)
    rollouts = source.rollouts
    assert len(rollouts) == 8 and len({r.group for r in rollouts}) == 2  # grouped by (step, input)
    inputs, outputs, gts, scores, extra = verl_step(2, shift=2)
    for r, text, score, ok, prompt, gt in zip(rollouts, outputs, scores, extra["acc"], inputs, gts):
        assert (r.response, r.reward, r.correct, r.prompt, r.reference, r.step) == (text, score, ok, prompt, gt, 2)
        assert r.score == (1.0 if ok else 0.0)  # acc decides, not the shaped score
    analysis = analyze(rollouts, tok, progress=False, notes=source.notes)
    ids = [encode_text(tok, text) for text in outputs]
    length = max(map(len, ids))
    responses = torch.zeros(8, length, dtype=torch.long)
    mask = torch.zeros(8, length, dtype=torch.long)
    for i, x in enumerate(ids):
        responses[i, : len(x)], mask[i, : len(x)] = torch.tensor(x), 1
    group = [PROMPTS.index(p) for p in inputs]
    expected = ktae.key_token_values(responses, mask, torch.tensor([float(a) for a in extra["acc"]]), group,
                                     analysis.config)
    for i in range(8):
        assert torch.equal(analysis.values[i], expected[i, : len(ids[i])])
    assert [(g.n_correct, g.n_wrong, g.step) for g in analysis.groups] == [(2, 2, 2), (2, 2, 2)]
    assert analysis.notes == source.notes


def test_verl_score_decides_without_acc(tmp_path):
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    inputs, outputs, gts, scores, _ = verl_step(3)
    RayPPOTrainer._write_generations(inputs, outputs, gts, scores, {}, str(tmp_path), 3)
    rollouts = load_source(tmp_path / "3.jsonl").rollouts
    assert [r.score for r in rollouts] == scores and all(r.correct is None for r in rollouts)


def test_verl_folder_steps_and_report(tok_folder, verl_dir, tmp_path, capsys):
    source = load_source(verl_dir)
    assert source.steps == [1, 2, 10] and len(source.rollouts) == 24
    assert [r.step for r in source.rollouts] == [1] * 8 + [2] * 8 + [10] * 8  # step order, not name order
    assert load_source(verl_dir, steps="2,5-10").steps == [2, 10]
    html = tmp_path / "report.html"
    rc = analyze_main([str(verl_dir), "--tokenizer", tok_folder, "--html", str(html), "--quiet", "--page-size", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "re-tokenising" in out and "step 10 · prompt 5" in out
    lines = [line.split() for line in out.splitlines() if line.strip().startswith(("1 ", "2 ", "10 "))]
    assert ["1", "2", "8", "50.0%", "2"] in lines and ["10", "2", "8", "50.0%", "2"] in lines
    index = html.read_text(encoding="utf-8")
    assert "<h3>Steps</h3>" in index and "report_pages/page-003.html#g4" in index and "re-tokenising" in index
    page = (tmp_path / "report_pages" / "page-003.html").read_text(encoding="utf-8")
    assert "Step 10 · Prompt 5" in page
    rc = analyze_main([str(verl_dir), "--tokenizer", tok_folder, "--steps", "2", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and "step 2 · prompt 1" in out and "step 1 " not in out and "step 10" not in out
    assert analyze_main([str(verl_dir), "--tokenizer", tok_folder, "--steps", "7", "--quiet"]) == 2
    assert "no rollouts at steps 7" in capsys.readouterr().err


def test_validation_dump_says_ktae_needs_groups(tok_folder, tmp_path, capsys):
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    inputs = [f"Problem {i}" for i in range(4)]
    outputs = ["$\\boxed{1}$", "$\\boxed{2}$", "no", "$\\boxed{4}$"]
    RayPPOTrainer._write_generations(inputs, outputs, ["1"] * 4, [1.0, 0.0, 0.0, 1.0], {"acc": [1.0, 0.0, 0.0, 1.0]},
                                     str(tmp_path / "val"), 20)
    html = tmp_path / "val.html"
    rc = analyze_main([str(tmp_path / "val"), "--tokenizer", tok_folder, "--html", str(html), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "single rollout" in out and "KTAE" in out and "needs groups" in out
    assert "all rollouts wrong" in out and "all rollouts correct" in out
    assert "needs groups" in html.read_text(encoding="utf-8")


def test_parse_steps():
    assert parse_steps("3, 5-7") == {3, 5, 6, 7}
    assert parse_steps(None) is None
    for bad in ("a", "5-3", "1,,2"):
        with pytest.raises(ValueError, match="--steps"):
            parse_steps(bad)


def test_bad_files_get_clear_errors(tok_folder, verl_dir, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty.jsonl: the file is empty"):
        load_source(empty)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "1.jsonl").write_text((verl_dir / "1.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    (mixed / "2.jsonl").write_text(json.dumps({"group": 1, "response": "x", "reward": 1.0}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="mixed formats: 1.jsonl is a verl rollout dump .* 2.jsonl is ktae rollouts"):
        load_source(mixed)
    line = json.loads((verl_dir / "1.jsonl").read_text(encoding="utf-8").splitlines()[0])
    del line["output"]
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps(line) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"missing.jsonl:1: needs the response"):
        load_source(missing)
    line["output"] = ["a", "b"]
    missing.write_text(json.dumps(line) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"missing.jsonl:1: field 'output' must be a string"):
        load_source(missing)
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    (nothing / "notes.txt").write_text("x", encoding="utf-8")
    assert analyze_main([str(nothing), "--tokenizer", tok_folder]) == 2
    assert "no .jsonl, .json or .parquet rollout files" in capsys.readouterr().err
