"""ktae targeting: corpora, the rules' registry, the measures against plain references, the command, the committed
corpora (random ~ 0.5, the blame oracle = 1)."""
import json
import math
import random
from pathlib import Path

import pytest
from test_core_targeting import pairwise_auroc

from ktae.core.advantages import grpo_advantages
from ktae.core.config import KTAEConfig
from ktae.recipes.word_problems import WordProblemTask, answer_of, build_tokenizer, token_labels
from ktae.targeting import cli
from ktae.targeting.corpus import Corpus, LabelledRollout, label_ranges, load_run, read_corpus, write_corpus
from ktae.targeting.rules import RULES, SANITY_RULES, Context
from ktae.targeting.score import MEASURES, _pad, score, token_table
from ktae.train.config import make_config, save_yaml

ROOT = Path(__file__).resolve().parents[1]
CORPORA = sorted((ROOT / "docs" / "data" / "targeting").glob("*.jsonl.gz"))


def fake_run(folder: Path, steps=(10, 20), groups=6, n=8, seed=0) -> Path:
    """A run folder as ``ktae train --preset word-grpo --dump_key_tokens_every 10`` leaves it, with the careful and
    sloppy teacher's solutions in place of a model's rollouts."""
    tok = build_tokenizer()
    tok.save_pretrained(folder / "final")
    save_yaml(make_config("word-grpo"), folder / "config.yaml")
    task, rng = WordProblemTask(), random.Random(seed)
    for step in steps:
        rows = []
        for g in range(groups):
            story = task.sample(rng)
            for i in range(n):
                text, _ = task.solution(story, rng, careful=i < 2)
                right = text.endswith("{" + answer_of(story) + "}")
                rows.append({"group": f"step{step}-{g}", "step": step, "prompt": story, "response": text,
                             "token_ids": tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id],
                             "reward": float(right), "correct": right, "reference": answer_of(story),
                             "ktae_config": {"ignore_token_ids": [tok.pad_token_id, tok.eos_token_id]}})
        (folder / "key_tokens").mkdir(parents=True, exist_ok=True)
        (folder / "key_tokens" / f"step_{step:06d}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


def random_corpus(seed=0, batches=2, groups=4, n=6) -> Corpus:
    """Rollouts of a few token ids with random rewards and labels (some groups all right or all wrong)."""
    rng = random.Random(seed)
    rollouts = []
    for b in range(batches):
        for g in range(groups):
            for _ in range(n):
                ids = [rng.randint(2, 7) for _ in range(rng.randint(1, 9))] + [1]
                labels = [rng.random() < 0.3 for _ in ids]
                rollouts.append(LabelledRollout(f"b{b}", f"g{g}", ids, float(rng.random() < 0.5), labels, step=b))
    return Corpus("random", rollouts, KTAEConfig(ignore_token_ids=(0, 1)), {i: str(i) for i in range(8)})


# ------------------------------------------------------------------------------------------------------- corpora
def test_label_ranges():
    assert label_ranges([False, True, True, False, True]) == [[1, 3], [4, 5]]
    assert label_ranges([]) == [] and label_ranges([True]) == [[0, 1]]


def test_a_corpus_round_trips_through_its_file(tmp_path):
    corpus = random_corpus()
    corpus.rollouts[0].prompt, corpus.rollouts[0].response = "p", "r\n"
    path = write_corpus(corpus, tmp_path / "c.jsonl.gz")
    again = read_corpus(path)
    assert again.rollouts == corpus.rollouts and again.config == corpus.config
    assert again.token_texts == corpus.token_texts and again.name == "random"
    assert write_corpus(again, tmp_path / "d.jsonl.gz").read_bytes() == path.read_bytes()   # no time stamp


def test_a_file_that_is_no_corpus_is_refused(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"group": 1}\n')
    with pytest.raises(ValueError, match="not a targeting corpus"):
        read_corpus(tmp_path / "x.jsonl")
    header = {"format": "ktae-targeting-corpus", "version": 1, "ktae_config": {}}
    (tmp_path / "y.jsonl").write_text(json.dumps(header) + '\n{"batch": "b", "group": "g", "token_ids": [1]}\n')
    with pytest.raises(ValueError, match="y.jsonl:2: a rollout needs 'reward'"):
        read_corpus(tmp_path / "y.jsonl")


def test_a_run_folder_is_read_and_labelled_by_the_task(tmp_path):
    run = fake_run(tmp_path / "run")
    corpus = load_run(run)
    tok = build_tokenizer()
    assert len(corpus.rollouts) == 2 * 6 * 8 and {r.batch for r in corpus.rollouts} == {"run/step10", "run/step20"}
    assert corpus.config.ignore_token_ids == (tok.pad_token_id, tok.eos_token_id)
    for r in corpus.rollouts[:10]:
        pieces = [tok.decode([t], skip_special_tokens=True) for t in r.token_ids]
        assert r.mistake == [label == "mistake" for label in token_labels(r.prompt, pieces)]
    assert any(any(r.mistake) for r in corpus.rollouts) and "\n" in "".join(corpus.token_texts.values())


# ------------------------------------------------------------------------------------------------------- measures
def reference_measures(corpus: Corpus, rule: str) -> dict:
    """Some measures of ``rule`` written plainly from their definitions, one rollout and one token at a time."""
    targets, per_rollout, right, shared, pairs = [], [], [], [], []
    for name in dict.fromkeys(r.batch for r in corpus.rollouts):
        rows = [r for r in corpus.rollouts if r.batch == name]
        batch, mistake = _pad(rows)
        number = list(dict.fromkeys(r.batch for r in corpus.rollouts)).index(name)
        context = Context(corpus.config, corpus.token_texts, corpus.newline_ids(), mistake, number)
        adv = RULES[rule](batch, context)
        oracle = RULES["oracle-blame"](batch, context)
        rollout = grpo_advantages(batch.scores, batch.group)            # A_i (tested in test_core_advantages)
        for i, r in enumerate(rows):
            members = [s for s in rows if s.group == r.group]
            rewards = [s.reward for s in members]
            if not (max(rewards) > 0 >= min(rewards)):
                continue                                                  # not a mixed group
            a = float(rollout[i])
            tokens = [t for t, token in enumerate(r.token_ids) if token not in (0, 1)]
            pairs += [(float(adv[i, t]), float(oracle[i, t])) for t in tokens]
            if r.reward > 0:
                right += [float(adv[i, t]) / a for t in tokens]
                continue
            blame = [(t, -float(adv[i, t]) / abs(a)) for t in tokens]
            targets += [(b, r.mistake[t]) for t, b in blame]
            per_rollout.append(pairwise_auroc([b for _, b in blame], [r.mistake[t] for t, _ in blame]))
            correct_ids = [s.token_ids for s in members if s.reward > 0]
            shared += [1 - b for t, b in blame if any(t < len(c) and c[t] == r.token_ids[t] for c in correct_ids)]
    defined = [x for x in per_rollout if not math.isnan(x)]
    pushed = [(max(b, 0.0), m) for b, m in targets]
    xs, ys = zip(*pairs)
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    corr = sum((x - mx) * (y - my) for x, y in pairs) / math.sqrt(sum((x - mx) ** 2 for x in xs)
                                                                 * sum((y - my) ** 2 for y in ys))
    return {"auroc_pooled": pairwise_auroc([b for b, _ in targets], [m for _, m in targets]),
            "auroc_within": sum(defined) / len(defined),
            "blame_share": sum(b for b, m in pushed if m) / sum(b for b, _ in pushed),
            "removed_shared": sum(shared) / len(shared), "kept_correct": sum(right) / len(right),
            "oracle_corr": corr, "oracle_mad": sum(abs(x - y) for x, y in pairs) / len(pairs)}


@pytest.mark.parametrize("rule", list(RULES))
def test_measures_match_a_plain_reference(rule):
    corpus = random_corpus(seed=3, batches=3)
    result = score(token_table(corpus, {rule: RULES[rule]}), [rule])["rules"][rule]
    assert set(MEASURES) <= set(result)
    for name, want in reference_measures(corpus, rule).items():
        assert result[name] == pytest.approx(want, rel=1e-6, abs=1e-9), name


def test_the_sanity_rules_and_grpo_score_as_they_must():
    corpus = random_corpus(seed=4, batches=4, groups=8, n=8)
    result = score(token_table(corpus, RULES), list(RULES))["rules"]
    assert result["grpo"]["auroc_pooled"] == 0.5 and result["grpo"]["auroc_within"] == 0.5
    assert result["grpo"]["removed_shared"] == 0 and result["grpo"]["kept_correct"] == pytest.approx(1)
    for name in ("oracle", "oracle-blame"):
        assert result[name]["auroc_pooled"] == 1 and result[name]["auroc_within"] == 1
    assert result["oracle-blame"]["blame_share"] == 1 and result["oracle-blame"]["oracle_mad"] == 0
    assert 0.3 < result["random"]["auroc_pooled"] < 0.7 and SANITY_RULES == ("random", "oracle-blame")


# ------------------------------------------------------------------------------------------------------- the command
def test_the_command_scores_a_run_folder(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    out = tmp_path / "t.json"
    assert cli.main([str(run), "--json", str(out), "--by_step", "--png", str(tmp_path / "roc.png"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| oracle-blame | 1.000 | 1.000 |" in printed and "step 20" in printed
    result = json.loads(out.read_text())
    assert list(result["rules"]) == list(RULES) and set(result["by_step"]) == {"10", "20"}
    assert result["environment"]["packages"]["torch"] and result["corpus"]["mixed_groups"] > 0
    assert result["corpus"]["batches"] == sum(s["corpus"]["batches"] for s in result["by_step"].values())
    assert (tmp_path / "roc.png").stat().st_size > 10_000


def test_several_inputs_are_reported_one_by_one_and_together(tmp_path, capsys):
    runs = [str(fake_run(tmp_path / f"run{i}", steps=(10,), groups=4, seed=i)) for i in range(3)]
    out = tmp_path / "t.json"
    assert cli.main([*runs, "--rules", "grpo,ktae", "--json", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert list(result["rules"]) == ["grpo", "ktae"] and list(result["by_source"]) == runs
    values = [s["rules"]["ktae"]["auroc_within"] for s in result["by_source"].values()]
    assert result["across_sources"]["ktae"]["auroc_within"]["mean"] == pytest.approx(sum(values) / 3)
    assert set(result["across_sources_by_step"]) == {"10"}
    assert "Over the 3 inputs" in capsys.readouterr().out


def test_the_command_refuses_what_it_cannot_score(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main([str(tmp_path), "--rules", "grpo,nope"])
    assert "unknown rule(s) ['nope']" in capsys.readouterr().err
    save_yaml(make_config("grpo"), tmp_path / "config.yaml")
    assert cli.main([str(tmp_path)]) == 2
    assert "word-problem task" in capsys.readouterr().err
    save_yaml(make_config("word-grpo"), tmp_path / "config.yaml")
    assert cli.main([str(tmp_path)]) == 2
    assert "dump_key_tokens_every" in capsys.readouterr().err
    assert cli.main([str(tmp_path / "missing.jsonl.gz")]) == 2


@pytest.mark.parametrize("path", CORPORA, ids=[p.name for p in CORPORA])
def test_the_committed_corpora_give_the_floor_and_the_ceiling(path):
    result, _ = cli.analyse([str(path)], list(RULES))
    rules = result["rules"]
    for name in ("auroc_pooled", "auroc_within", "auroc_from_first"):
        assert abs(rules["random"][name] - 0.5) < 0.03, name
    assert rules["oracle-blame"]["auroc_pooled"] == 1 and rules["oracle-blame"]["auroc_within"] == 1
    assert rules["grpo"]["auroc_pooled"] == 0.5
    assert result["corpus"]["mixed_group_share"] >= 1 / 3 and result["corpus"]["wrong_step_tokens"] > 0


def test_both_corpora_are_committed():
    assert [p.name for p in CORPORA] == ["smollm2-arithmetic.jsonl.gz", "word-easy-grpo.jsonl.gz"]
    for path in CORPORA:
        assert path.stat().st_size < 3_000_000
        assert read_corpus(path).command.startswith("python -m ktae.targeting.build")


def test_the_word_corpus_is_built_from_the_runs_dumps(tmp_path):
    from ktae.targeting.build import WORD_PRESET, build_word_corpus

    for seed in (0, 1):   # complete run folders are reused, not trained again
        fake_run(tmp_path / "runs" / f"{WORD_PRESET}-s{seed}", steps=(1, 5, 10), groups=2, seed=seed)
    corpus = build_word_corpus(tmp_path / "word.jsonl.gz", tmp_path / "runs", seeds=(0, 1), command="the command")
    again = read_corpus(tmp_path / "word.jsonl.gz")
    assert again.rollouts == corpus.rollouts and again.command == "the command"
    assert sorted({r.batch for r in again.rollouts}) == ["s0/step1", "s0/step10", "s1/step1", "s1/step10"]  # step 5: no
    assert again.environment["packages"]["torch"]


def test_the_smollm2_chunks_resume_from_the_partial_file(tmp_path):
    from ktae.targeting.build import _generate_chunks

    problems = [{"problem": f"Calculate {i} + 1 + 1.", "answer": str(i + 2)} for i in range(3)]
    done = [[{"group": f"p{k}", "token_ids": [5], "reward": 1.0}] for k in range(2)]   # 2 chunks of 2 problems
    partial = tmp_path / "out.partial.jsonl"
    partial.write_text("".join(json.dumps(rows) + "\n" for rows in done))
    said = []
    assert _generate_chunks(None, None, problems, partial, 8, 16, 0, said.append) == [r for rows in done for r in rows]
    assert said == []        # nothing left to generate: no model needed


def test_the_page_shows_the_committed_results():
    page = (ROOT / "docs" / "targeting.md").read_text(encoding="utf-8")
    for path in CORPORA:
        result = json.loads(path.with_name(path.name.replace(".jsonl.gz", ".json")).read_text())
        assert cli.format_table(result, f"docs/data/targeting/{path.name}") in page
    assert (ROOT / "docs" / "data" / "targeting" / "validation.md").read_text().strip() in page
