"""Does K point at the mistakes? Key-token values against the labelled wrong steps of real rollouts.

    python benchmarks/key_tokens_vs_mistakes.py RUN_DIR [RUN_DIR ...] [--out DIR] [--fraction 0.1]

``RUN_DIR`` is a ``ktae train`` run on the word-problem task (``--preset word-grpo-ktae`` or any ``word-*``
preset) made with ``--dump_key_tokens_every N``: its ``key_tokens/step_XXXX.jsonl`` files hold the rollouts
of the policy being trained, with their token ids, rewards and problems. For every dumped step this script

1. computes the key-token values K and the rollout advantages A with the ``ktae`` core, with the settings the
   run trained with (``config.yaml``: alpha, beta, gamma, top, threshold, fisher_at_one, the rollout
   estimator; pad and EOS ignored), i.e. the values the trainer used;
2. labels every token of every response with :func:`ktae.recipes.word_problems.token_labels` (a wrong step, a right
   step, a detour, the answer line);
3. scores, over the tokens of the wrong rollouts, how well ``-K`` ranks wrong-step tokens first, beside
   GRPO's flat rollout advantage ``-A``, KTAE's whole advantage ``-(A + K)`` and random marking
   (:func:`ktae.analysis.mistakes.mistake_metrics`: AUROC pooled and within each rollout, share of wrong-step
   tokens among the ``--fraction`` most blamed tokens).

It writes ``<out>/mistakes.json``, ``<out>/mistakes.md`` (one run: a table per dumped step and all steps
together; several runs, e.g. the seeds of one arm: mean ± 95% CI over the runs, then each run) and
``<out>/mistakes.png`` (ROC curves of the scores on all tokens pooled, and K of wrong-step vs other tokens).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

import ktae
from ktae.analysis.mistakes import mistake_metrics
from ktae.environment import describe_environment
from ktae.train.rollouts import pad
from ktae.recipes.word_problems import token_labels

SCORES = {"-K": "key-token value K (KTAE)", "-A": "rollout advantage A (GRPO, flat)",
          "-(A+K)": "KTAE advantage A + K", "random": "random marking"}


def load_run(run_dir: Path, tokenizer_path: str | None):
    """``(tokenizer, KTAEConfig, dump files)`` of a run folder: the KTAE settings the run trained with."""
    from transformers import AutoTokenizer

    from ktae.special_tokens import special_token_ids
    from ktae.train.checkpoint import latest_checkpoint
    from ktae.train.config import load_run_config

    config = load_run_config(run_dir)
    if config.task.name != "word":
        raise ValueError(f"{run_dir} is not a run on the word-problem task (task: {config.task.name!r}); "
                         "only that task labels its wrong steps")
    dumps = sorted((run_dir / "key_tokens").glob("step_*.jsonl"))
    if not dumps:
        raise ValueError(f"{run_dir}/key_tokens has no step_*.jsonl: train with --dump_key_tokens_every N")
    if tokenizer_path is None:
        last = latest_checkpoint(run_dir)
        candidates = [run_dir / "final"] + ([last / "model"] if last is not None else [])
        found = [c for c in candidates if (c / "tokenizer.json").is_file()]
        if not found:
            raise ValueError(f"no tokenizer saved in {run_dir} (final/ or checkpoints/): give --tokenizer")
        tokenizer_path = str(found[0])
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    return tokenizer, config.ktae_config(special_token_ids(tokenizer)), dumps


def step_tokens(path: Path, tokenizer, ktae_config) -> dict[str, torch.Tensor]:
    """Flat per-token tensors of one dump: K, A, the wrong-step label, rollout index, rollout correctness."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    responses, mask = pad([r["token_ids"] for r in rows], pad_id=0)
    rewards = torch.tensor([float(r["reward"]) for r in rows])
    groups = [r["group"] for r in rows]
    key = ktae.key_token_values(responses, mask, rewards, groups, ktae_config)        # [B, L]
    base = ktae.rollout_advantages(rewards, groups, ktae_config)                       # [B]
    ignored = torch.tensor(sorted(ktae_config.ignore_token_ids or ()), dtype=torch.long)
    right = [float(r["reward"]) > ktae_config.threshold for r in rows]
    outcomes: dict[str, set] = {}
    for g, ok in zip(groups, right):
        outcomes.setdefault(g, set()).add(ok)
    out: dict[str, list] = {"K": [], "A": [], "mistake": [], "derailed": [], "rollout": [], "correct": [], "mixed": []}
    for i, r in enumerate(rows):
        ids = r["token_ids"]
        labels = token_labels(r["prompt"], [tokenizer.decode([t], skip_special_tokens=True) for t in ids])
        keep = ~torch.isin(torch.tensor(ids, dtype=torch.long), ignored)
        n = int(keep.sum())
        out["K"].append(key[i, : len(ids)][keep])
        out["A"].append(base[i].expand(n))
        mistake = torch.tensor([lab == "mistake" for lab in labels], dtype=torch.bool)
        out["mistake"].append(mistake[keep])
        out["derailed"].append((torch.cumsum(mistake.long(), 0) > 0)[keep])
        out["rollout"].append(torch.full((n,), i))
        out["correct"].append(torch.full((n,), right[i]))
        out["mixed"].append(torch.full((n,), len(outcomes[groups[i]]) == 2))
    return {k: torch.cat(v) for k, v in out.items()}


#: what is scored: (token label, rollouts) — the tokens of wrong steps, or every token from a rollout's first
#: wrong step on; among the tokens of all wrong rollouts, or of the wrong rollouts of mixed groups (groups with
#: right and wrong rollouts: elsewhere K is 0 by definition)
TARGETS = {"wrong step, all wrong rollouts": ("mistake", False),
           "wrong step, mixed groups": ("mistake", True),
           "from the first wrong step on, all wrong rollouts": ("derailed", False),
           "from the first wrong step on, mixed groups": ("derailed", True)}
TOKEN_KEYS = ("K", "A", "mistake", "derailed", "correct", "mixed")


def score_tokens(tokens: dict[str, torch.Tensor], fraction: float, seed: int = 0) -> dict:
    """:func:`mistake_metrics` over the wrong rollouts' tokens for each of :data:`TARGETS`, and mean K of each
    kind of token (wrong rollouts of mixed groups)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(len(tokens["K"]), generator=generator)
    result = {}
    for name, (label, mixed_only) in TARGETS.items():
        keep = ~tokens["correct"] & (tokens["mixed"] if mixed_only else True)
        k, a = tokens["K"][keep], tokens["A"][keep]
        scores = {"-K": -k, "-A": -a, "-(A+K)": -(a + k), "random": noise[keep]}
        result[name] = mistake_metrics(scores, tokens[label][keep], tokens["rollout"][keep], fraction)
    keep = ~tokens["correct"] & tokens["mixed"]
    k, m = tokens["K"][keep], tokens["mistake"][keep]
    mean = lambda x: float(x.mean()) if x.numel() else float("nan")  # noqa: E731
    result["mean_K"] = {"wrong_step_tokens": mean(k[m]), "other_tokens_of_wrong_rollouts": mean(k[~m]),
                        "tokens_of_right_rollouts": mean(tokens["K"][tokens["correct"]])}
    return result


def table(results: dict[str, dict], fraction: float) -> str:
    lines = ["| step | tokens labelled | wrong rollouts | tokens | labelled share | score | AUROC (pooled) | "
             f"AUROC (within rollout) | labelled share of the top {fraction:.0%} |",
             "|---|---|---:|---:|---:|---|---:|---:|---:|"]
    for step, res in results.items():
        for target in TARGETS:
            data = res[target]["data"]
            for name in SCORES:
                row = res[target][name]
                within = "–" if math.isnan(row["auroc_within"]) else f"{row['auroc_within']:.3f}"
                lines.append(f"| {step} | {target} | {int(data['rollouts'])} | {int(data['tokens'])} | "
                             f"{data['base_rate']:.3f} | {name} | {row['auroc']:.3f} | {within} | "
                             f"{row['share_top']:.3f} |")
    return "\n".join(lines)


def figure(tokens: dict[str, torch.Tensor], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keep = ~tokens["correct"] & tokens["mixed"]   # where K can act: wrong rollouts of mixed groups
    k, a, m = tokens["K"][keep], tokens["A"][keep], tokens["mistake"][keep]
    fig, (roc, hist) = plt.subplots(1, 2, figsize=(10, 4))
    for name, score in (("-K", -k), ("-A", -a), ("-(A+K)", -(a + k))):
        order = torch.argsort(score, descending=True, stable=True)
        hits = m[order].double()
        tpr = torch.cat([torch.zeros(1), hits.cumsum(0) / max(float(hits.sum()), 1.0)])
        fpr = torch.cat([torch.zeros(1), (1 - hits).cumsum(0) / max(float((1 - hits).sum()), 1.0)])
        roc.plot(fpr.numpy(), tpr.numpy(), label=f"{name}: {SCORES[name]}")
    roc.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="random marking")
    roc.set_xlabel("share of other tokens blamed")
    roc.set_ylabel("share of wrong-step tokens blamed")
    roc.set_title("ranking the tokens of wrong rollouts (mixed groups)", fontsize=10)
    roc.legend(fontsize=7, loc="lower right")
    bins = torch.linspace(-1, 1, 41).numpy()
    hist.hist(k[m].numpy(), bins=bins, alpha=0.6, density=True, label="tokens of wrong steps")
    hist.hist(k[~m].numpy(), bins=bins, alpha=0.6, density=True, label="other tokens of wrong rollouts")
    hist.set_xlabel("key-token value K")
    hist.set_title("K in wrong rollouts (mixed groups)", fontsize=10)
    hist.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def score_run(run_dir: Path, tokenizer_path: str | None, fraction: float) -> tuple[dict, dict[str, torch.Tensor]]:
    """Per dumped step and all steps together: the scores of one run, and its tokens."""
    tokenizer, ktae_config, dumps = load_run(run_dir, tokenizer_path)
    per_step, results = {}, {}
    for path in dumps:
        step = int(path.stem.split("_")[-1])
        per_step[step] = step_tokens(path, tokenizer, ktae_config)
        results[str(step)] = score_tokens(per_step[step], fraction)
    together = {k: torch.cat([t[k] for t in per_step.values()]) for k in TOKEN_KEYS}
    together["rollout"] = torch.cat([t["rollout"] + 1_000_000 * step for step, t in per_step.items()])
    results["all"] = score_tokens(together, fraction)
    print(f"{run_dir.name}: AUROC of -K for wrong-step tokens (mixed groups) "
          f"{results['all']['wrong step, mixed groups']['-K']['auroc']:.3f} "
          f"({len(dumps)} dumped steps)", flush=True)
    return results, together


def across_runs(per_run: dict[str, dict], fraction: float) -> tuple[dict, str]:
    """Mean ± 95% CI over runs (Student t) of each score's metrics on all the run's dumped steps."""
    from ktae.experiments.compare import mean_ci

    summary: dict = {}
    lines = [f"Over {len(per_run)} runs (mean ± 95% CI, Student t), tokens of wrong rollouts of all dumped steps:", "",
             "| tokens labelled | labelled share | score | AUROC (pooled) | AUROC (within rollout) | "
             f"labelled share of the top {fraction:.0%} |", "|---|---:|---|---:|---:|---:|"]
    for target in TARGETS:
        base = mean_ci([r["all"][target]["data"]["base_rate"] for r in per_run.values()])
        for name in SCORES:
            cells = {m: mean_ci([r["all"][target][name][m] for r in per_run.values()
                                 if not math.isnan(r["all"][target][name][m])])
                     for m in ("auroc", "auroc_within", "share_top")}
            summary.setdefault(target, {})[name] = {m: {"mean": c[0], "ci95": c[1]} for m, c in cells.items()}
            text = [f"{c[0]:.3f} ± {c[1]:.3f}" for c in cells.values()]
            lines.append(f"| {target} | {base[0]:.3f} ± {base[1]:.3f} | {name} | " + " | ".join(text) + " |")
    return summary, "\n".join(lines)


def by_step(per_run: dict[str, dict], target: str = "wrong step, mixed groups") -> tuple[dict, str]:
    """Per dumped step, mean ± 95% CI over runs of the AUROC (pooled and within a rollout) of each score for
    ``target``: does K point at the mistakes better as training goes on? Steps dumped by every run only."""
    from ktae.experiments.compare import mean_ci

    steps = sorted(set.intersection(*({int(k) for k in r if k != "all"} for r in per_run.values())))
    summary: dict = {}
    lines = [f"Per dumped step, tokens of {target.replace('wrong step, ', 'wrong rollouts of ')} (mean ± 95% CI over "
             f"{len(per_run)} runs; labelled: tokens of wrong steps):", "",
             "| step | labelled share | " + " | ".join(f"{name} AUROC (pooled / within)" for name in SCORES if name != "random")
             + " |", "|---:|---:|" + "---:|" * (len(SCORES) - 1)]
    for step in steps:
        cells = []
        for name in SCORES:
            if name == "random":
                continue
            pooled, within = (mean_ci([r[str(step)][target][name][m] for r in per_run.values()
                                       if not math.isnan(r[str(step)][target][name][m])])
                              for m in ("auroc", "auroc_within"))
            summary.setdefault(str(step), {})[name] = {"auroc": pooled, "auroc_within": within}
            cells.append(f"{pooled[0]:.3f} ± {pooled[1]:.3f} / {within[0]:.3f} ± {within[1]:.3f}")
        base = mean_ci([r[str(step)][target]["data"]["base_rate"] for r in per_run.values()])
        lines.append(f"| {step} | {base[0]:.3f} | " + " | ".join(cells) + " |")
    return summary, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", type=Path, nargs="+", help="word-task runs made with --dump_key_tokens_every N")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: RUN_DIR/mistakes for one "
                                                                "run; required for several)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the run's final/ or checkpoint)")
    parser.add_argument("--fraction", type=float, default=0.1, help="top share of blamed tokens (default 0.1)")
    args = parser.parse_args(argv)
    if len(args.run_dirs) > 1 and args.out is None:
        parser.error("--out is required with several runs")
    out = args.out or args.run_dirs[0] / "mistakes"
    per_run, pooled = {}, []
    try:
        for run_dir in args.run_dirs:
            per_run[run_dir.name], tokens = score_run(run_dir, args.tokenizer, args.fraction)
            pooled.append(tokens)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    together = {k: torch.cat([t[k] for t in pooled]) for k in TOKEN_KEYS}
    together["rollout"] = torch.cat([t["rollout"] + 1_000_000_000 * i for i, t in enumerate(pooled)])
    out.mkdir(parents=True, exist_ok=True)
    if len(per_run) == 1:
        results = next(iter(per_run.values()))
        text = table(results, args.fraction)
    else:
        summary, text = across_runs(per_run, args.fraction)
        steps_summary, steps_text = by_step(per_run)
        text += "\n\n" + steps_text
        results = {"runs": per_run, "across_runs": summary, "by_step": steps_summary,
                   "mean_K": score_tokens(together, args.fraction)["mean_K"]}
        text += "\n\nPer run, all dumped steps:\n\n" + table({name: r["all"] for name, r in per_run.items()},
                                                              args.fraction)
    (out / "mistakes.json").write_text(json.dumps({**results, "environment": describe_environment()}, indent=1))
    (out / "mistakes.md").write_text(text + "\n")
    names = args.run_dirs[0].name if len(per_run) == 1 else f"{len(per_run)} runs"
    figure(together, out / "mistakes.png", f"{names}: K vs labelled wrong steps (tokens of wrong rollouts)")
    print(text)
    print(f"written: {out / 'mistakes.md'}, {out / 'mistakes.json'}, {out / 'mistakes.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
