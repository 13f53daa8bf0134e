"""The word-problem task: generation, the teacher's labels equal the labeller's, the BPE tokenizer, token labels."""
import random

import pytest

from ktae.rewards import grade_math
from ktae.recipes.word_problems import (LABELS, WordProblemTask, answer_of, build_tokenizer, label_lines, operations,
                                 token_labels, worked_solution)


def test_careful_solution_is_right_and_graded_right():
    task = WordProblemTask()
    for record in task.problems(200, seed=3):
        text = worked_solution(record["problem"])
        assert grade_math(text, record["answer"])
        assert all(label in ("step", "answer") for _, _, label in label_lines(record["problem"], text))


def test_a_known_story():
    story = ("Mia has 3 boxes of 4 pens. Then Mia buys 2 boxes of 5 more pens. Then Mia gives away 7 pens. "
             "How many pens does Mia have now?")
    assert [(o.tag, o.op) for o in operations(story)] == [("3 boxes of 4", "*"), ("2 boxes of 5", "*"),
                                                         ("adds", "+"), ("gives away 7", "-")]
    assert answer_of(story) == "15"
    assert worked_solution(story) == "3 boxes of 4: 3*4=12\n2 boxes of 5: 2*5=10\nadds 10: 12+10=22\n" \
                                     "gives away 7: 22-7=15\n\\boxed{15}"
    # a sloppy solution written by hand: each habit once
    sloppy = ("3 boxes of 4: 3+4=7\n"            # boxes added: the mistake is made here
              "2 boxes of 5: 2*5=10\n"           # right (the running total is still 7, kept aside)
              "adds 10: 7+5=12, 12+5=17\n"       # counting on in pieces from the carried 7: a detour, no new error
              "check: 12+5=17\n"                 # a right re-check
              "gives away 7: 17+7=24\n"          # giving adds: a mistake
              "oops\n"                           # not a step
              "\\boxed{24}")
    assert [label for _, _, label in label_lines(story, sloppy)] == \
        ["mistake", "step", "detour", "detour", "mistake", "mistake", "answer"]
    slip = "3 boxes of 4: 3*4=12\n2 boxes of 5: 2*5=10\nadds 10: 12+5=17, 17+5=23\ncheck: 17+5=23\n\\boxed{23}"
    assert [label for _, _, label in label_lines(story, slip)] == ["step", "step", "mistake", "mistake", "answer"]
    with pytest.raises(ValueError, match="not a story"):
        operations("3+4*2")


@pytest.mark.parametrize("task", [WordProblemTask(), WordProblemTask(max_count=50, max_change=9)],
                         ids=["default", "small-numbers"])
def test_teacher_labels_equal_the_labeller_on_sloppy_solutions(task):
    rng = random.Random(0)
    seen = set()
    for _ in range(2000):
        story = task.sample(rng)
        text, labels = task.solution(story, rng, careful=rng.random() < 0.3)
        assert [label for _, _, label in label_lines(story, text)] == labels
        seen |= set(labels)
    assert seen == {"step", "mistake", "detour", "answer"} and seen <= set(LABELS)


def test_sloppy_solutions_are_longer_and_less_often_right():
    task = WordProblemTask()
    rng = random.Random(1)
    stats = {True: [0, 0, 0], False: [0, 0, 0]}
    for _ in range(600):
        story = task.sample(rng)
        careful = rng.random() < 0.5
        text, _ = task.solution(story, rng, careful)
        row = stats[careful]
        row[0] += 1
        row[1] += text.endswith("{" + answer_of(story) + "}")
        row[2] += len(text)
    assert stats[True][1] == stats[True][0]
    assert stats[False][1] / stats[False][0] < 0.6
    assert stats[False][2] / stats[False][0] > 1.2 * stats[True][2] / stats[True][0]


def test_tokenizer_learns_multi_character_tokens_and_round_trips():
    tok = build_tokenizer()
    assert len(tok) == 640 and tok.pad_token_id == 0 and tok.eos_token_id == 1
    story = WordProblemTask().problems(1, seed=5)[0]["problem"]
    text = story + "\n" + worked_solution(story)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    pieces = tok.convert_ids_to_tokens(ids)
    assert len(ids) < len(text) / 2.5                     # words and numbers are multi-character tokens
    assert any(p.lstrip("Ġ").isdigit() and len(p.lstrip("Ġ")) >= 2 for p in pieces)
    assert build_tokenizer().get_vocab() == tok.get_vocab()   # deterministic


def test_token_labels_follow_the_lines():
    story = "Ann has 9 coins. Then Ann finds 4 more coins. Then Ann loses 3 coins. How many coins does Ann have now?"
    response = "finds 4: 9+4=13\nloses 3: 13+3=16\n\\boxed{16}"
    tok = build_tokenizer()
    ids = tok(response, add_special_tokens=False)["input_ids"]
    texts = [tok.decode([i]) for i in ids]
    labels = token_labels(story, texts)
    first_newline = texts.index("\n")
    assert set(labels[:first_newline + 1]) == {"step"}
    box = next(i for i, t in enumerate(texts) if "box" in t)
    assert set(labels[first_newline + 1:box - 1]) == {"mistake"} and labels[-1] == "answer"


def test_small_numbers_stay_in_their_ranges():
    import re

    task = WordProblemTask(max_count=50, max_change=9)
    records = task.problems(500, seed=4)
    changes = [int(m) for r in records for m in re.findall(r"(?:buys|finds|gets|wins|gives away|loses|sells) (\d+) "
                                                            r"(?!boxes)", r["problem"])]
    assert changes and min(changes) >= 2 and max(changes) == 9
    for r in records:
        values = [int(v) for v in re.findall(r"=(-?\d+)", worked_solution(r["problem"]))]
        assert 0 <= min(values) and max(values) <= 50 and values[-1] == int(r["answer"])
    assert max(int(r["answer"]) for r in WordProblemTask().problems(500, seed=4)) > 50  # the default: up to 200


def test_task_options_are_checked():
    with pytest.raises(ValueError, match="max_count"):
        WordProblemTask(max_count=20, max_change=10)
    with pytest.raises(ValueError, match="min_events"):
        WordProblemTask(min_events=3, max_events=2)
    with pytest.raises(ValueError, match="slip"):
        WordProblemTask(slip=1.5)


def test_a_problems_answer_is_the_careful_teachers():
    """problems() takes the answer from the story's own count; the careful solution reads it from the story."""
    task = WordProblemTask(max_count=30, max_change=5)
    records = task.problems(400, seed=3)
    assert all(r["answer"] == answer_of(r["problem"]) for r in records)
    rng_a, rng_b = random.Random(5), random.Random(5)
    assert [task.sample(rng_a) for _ in range(50)] == [task.sample_counted(rng_b)[0] for _ in range(50)]
