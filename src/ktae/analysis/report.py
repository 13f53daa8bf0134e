"""One-call entry points: terminal tables, HTML report, PNG figures."""
from __future__ import annotations

import os
import re
from typing import Any, TextIO

from ktae.progress import progress_bar

from ktae.analysis.compute import Analysis, DumpCheck, analyze, load_tokenizer, step_rows
from ktae.analysis.figure import plot_rollout
from ktae.analysis.html import default_vmax, write_html
from ktae.analysis.sources import load_source
from ktae.core.config import KTAEConfig


def write_report(
    rollouts_jsonl_path: str | os.PathLike,
    tokenizer: Any,
    html_path: str | os.PathLike,
    *,
    config: KTAEConfig | None = None,
    num_tokens: int = 20,
    page_size: int = 10,
    page_tokens: int = 200_000,
    progress: bool = True,
) -> list[str]:
    """Read a rollouts file, compute key-token values with the core and write the HTML report.

    Args:
        rollouts_jsonl_path: jsonl with one rollout per line (group, prompt, response / token_ids,
            reward / correct, reference; see `ktae.analysis.rollouts`), a folder of step files, or verl's
            own dumps (`ktae.analysis.sources`).
        tokenizer: a tokenizer object, or a Hugging Face name / folder.
        html_path: the HTML file to write (an index plus pages in ``<stem>_pages/`` when the prompts do
            not fit on one page).
        config: KTAE options (default: the paper's, with the tokenizer's pad and EOS ids ignored).
        num_tokens: key tokens listed per prompt and sign.
        page_size: most prompts per page. page_tokens: most tokens per page.
        progress: show progress bars.
    Returns:
        the HTML files written, the main one first.
    """
    source = load_source(rollouts_jsonl_path)
    analysis = analyze(source.rollouts, load_tokenizer(tokenizer), config, num_tokens=num_tokens, progress=progress,
                       notes=source.notes)
    return write_html(analysis, html_path, page_size=page_size, page_tokens=page_tokens, progress=progress)


def format_steps(analysis: Analysis) -> str:
    """The index of steps as a text table."""
    out = [f"{'step':>8} {'prompts':>8} {'rollouts':>9} {'accuracy':>9} {'mixed prompts':>14}"]
    for r in step_rows(analysis):
        step = "-" if r["step"] is None else str(r["step"])
        out.append(f"{step:>8} {r['prompts']:>8} {r['rollouts']:>9} {100 * r['correct'] / r['rollouts']:>8.1f}% "
                   f"{r['mixed']:>14}")
    return "\n".join(out) + "\n"


def format_dump_check(check: DumpCheck) -> str:
    """One line: do the recomputed K values equal the ones the trainer dumped?"""
    source = "the dump's KTAE options" if check.config_from_dump else "the options given here"
    if check.exact:
        return (f"K values: recomputed with {source}, equal to the trainer's dumped values at all {check.tokens} "
                f"tokens (max |difference| {check.max_abs_diff:.2g})\n")
    return (f"warning: K values recomputed with {source} differ from the trainer's dumped values at "
            f"{check.mismatched} of {check.tokens} tokens (max |difference| {check.max_abs_diff:.3g})\n")


def _cell(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_group_tables(analysis: Analysis, max_groups: int | None = None, top: int | None = None) -> str:
    """Per prompt, the top positive and negative tokens with a, b, p-value, IG, direction and K, as text."""
    out = []
    groups = analysis.groups if max_groups is None else analysis.groups[:max_groups]
    header = f"  {'':1} {'token':<18} {'id':>7} {'a/nT':>7} {'b/nF':>7} {'p-value':>9} {'IG':>6} {'dir':>8} {'K':>7}"
    for g in groups:
        question = " ".join(str(g.prompt if g.prompt is not None else g.key).split())
        where = f"step {g.step} · " if g.step is not None else ""
        out.append(
            f"{where}prompt {g.index + 1} · {len(g.members)} rollouts ({g.n_correct} correct, {g.n_wrong} wrong) · "
            f"{_cell(question, 70)}"
        )
        if g.n_correct == 0 or g.n_wrong == 0:
            out.append(f"  all rollouts {'correct' if g.n_wrong == 0 else 'wrong'}: every K is 0\n")
            continue
        out.append(header)
        for sign, records in (("+", g.positive), ("-", g.negative)):
            for r in records[:top] if top is not None else records:
                label = repr(analysis.token_labels.get(r["token"], str(r["token"])))
                p = r["p_value"]
                out.append(
                    f"  {sign} {_cell(label, 18):<18} {r['token']:>7} {r['a']:>3}/{r['n_correct']:<3} "
                    f"{r['b']:>3}/{r['n_wrong']:<3} {p:>9.3g} {r['info_gain']:>6.3f} {r['direction']:>+8.3f} "
                    f"{r['value']:>+7.3f}"
                )
        out.append("")
    if max_groups is not None and len(analysis.groups) > max_groups:
        out.append(f"… {len(analysis.groups) - max_groups} more prompts (see the HTML report)")
    return "\n".join(out)


def print_tables(analysis: Analysis, stream: TextIO, max_groups: int | None = None) -> None:
    stream.write(format_group_tables(analysis, max_groups) + "\n")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:40] or "x"


def write_pngs(
    analysis: Analysis,
    folder: str | os.PathLike,
    *,
    limit: int | None = 50,
    vmax: float | None = None,
    width: int = 90,
    max_lines: int = 80,
    progress: bool = True,
) -> list[str]:
    """One PNG per rollout (`plot_rollout`), prompts with both correct and wrong rollouts first.

    Args:
        limit: at most this many files (None: all).
    Returns:
        the files written.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
    vmax = default_vmax(analysis) if vmax is None else float(vmax)
    folder = os.fspath(folder)
    mixed = [g for g in analysis.groups if g.n_correct and g.n_wrong]
    rest = [g for g in analysis.groups if not (g.n_correct and g.n_wrong)]
    chosen = [(g, i) for g in mixed + rest for i in g.members]
    if limit is not None:
        chosen = chosen[:limit]
    written = []
    for g, i in progress_bar(chosen, desc="writing figures", unit="figure", disable=not progress, leave=False):
        r = analysis.rollouts[i]
        outcome = "correct" if analysis.correct[i] else "wrong"
        reward = f"reward {r.reward:g}" if r.reward is not None else f"score {r.score:g}"
        question = " ".join(str(g.prompt if g.prompt is not None else g.key).split())
        title = f"Prompt {g.index + 1}, rollout {i} ({outcome}, {reward}): {_cell(question, 60)}"
        name = f"prompt{g.index + 1:04d}_rollout{i:05d}_{outcome}.png"
        written.append(
            plot_rollout(
                analysis.pieces[i].pieces,
                analysis.values[i].tolist(),
                os.path.join(folder, name),
                vmax=vmax,
                title=title,
                width=width,
                max_lines=max_lines,
            )
        )
    return written
