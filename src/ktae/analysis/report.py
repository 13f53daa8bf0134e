"""One-call entry points: terminal tables, HTML report, PNG figures."""
from __future__ import annotations

import os
import re
from typing import Any, TextIO

from tqdm.auto import tqdm

from ktae.analysis.compute import Analysis, analyze, load_tokenizer
from ktae.analysis.figure import plot_rollout
from ktae.analysis.html import default_vmax, write_html
from ktae.analysis.rollouts import load_rollouts
from ktae.core.config import KTAEConfig


def write_report(
    rollouts_jsonl_path: str | os.PathLike,
    tokenizer: Any,
    html_path: str | os.PathLike,
    *,
    config: KTAEConfig | None = None,
    top: int = 20,
    page_size: int = 10,
    page_tokens: int = 200_000,
    progress: bool = True,
) -> list[str]:
    """Read a rollouts file, compute key-token values with the core and write the HTML report.

    Args:
        rollouts_jsonl_path: jsonl with one rollout per line (group, prompt, response / token_ids,
            reward / correct, reference; see `ktae.analysis.rollouts`).
        tokenizer: a tokenizer object, or a Hugging Face name / folder.
        html_path: the HTML file to write (an index plus pages in ``<stem>_pages/`` when the prompts do
            not fit on one page).
        config: KTAE options (default: the paper's, with the tokenizer's pad and EOS ids ignored).
        top: key tokens listed per prompt and sign.
        page_size: most prompts per page. page_tokens: most tokens per page.
        progress: show progress bars.
    Returns:
        the HTML files written, the main one first.
    """
    rollouts = load_rollouts(rollouts_jsonl_path)
    analysis = analyze(rollouts, load_tokenizer(tokenizer), config, top=top, progress=progress)
    return write_html(analysis, html_path, page_size=page_size, page_tokens=page_tokens, progress=progress)


def _cell(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_group_tables(analysis: Analysis, max_groups: int | None = None, top: int | None = None) -> str:
    """Per prompt, the top positive and negative tokens with a, b, p-value, IG, direction and K, as text."""
    out = []
    groups = analysis.groups if max_groups is None else analysis.groups[:max_groups]
    header = f"  {'':1} {'token':<18} {'id':>7} {'a/nT':>7} {'b/nF':>7} {'p-value':>9} {'IG':>6} {'dir':>8} {'K':>7}"
    for g in groups:
        question = " ".join(str(g.prompt if g.prompt is not None else g.key).split())
        out.append(
            f"prompt {g.index + 1} · {len(g.members)} rollouts ({g.n_correct} correct, {g.n_wrong} wrong) · "
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
    for g, i in tqdm(chosen, desc="writing figures", unit="figure", disable=not progress, leave=False):
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
