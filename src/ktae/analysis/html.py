"""Self-contained HTML report of an `Analysis`: every token shaded by its key-token value.

One file when the input has at most ``page_size`` groups; otherwise an index page at the given path and
the groups in pages ``<stem>_pages/page-001.html`` ... next to it. Every file is standalone: inline CSS, no
script, no network. Each token is one ``<span>`` with its value in ``data-k`` and a tooltip (``title``);
the spans concatenated give the decoded response.
"""
from __future__ import annotations

import html
import math
import os
from typing import Any

from ktae.analysis.colors import LEVELS, css_class, hex_color, level_color, mix, text_color
from ktae.analysis.compute import Analysis, GroupSummary, _group_slices, step_rows
from ktae.files import atomic_write
from ktae.progress import progress_bar

_FIELDS_HELP = (
    ("a", "correct rollouts that contain the token, of all correct rollouts"),
    ("b", "wrong rollouts that contain the token, of all wrong rollouts"),
    ("p", "Fisher's exact test two-sided p-value of the presence table"),
    ("IG", "information gain between correctness and presence, in bits"),
    ("direction", "signed direction x = arcsine distance + gamma * term-frequency ratio"),
    ("K", "key-token value added to the rollout advantage at every occurrence"),
)


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _stylesheet() -> str:
    rules = []
    for sign, prefix in ((1, "p"), (-1, "n")):
        for lv in range(1, LEVELS + 1):
            rgb = level_color(sign, lv)
            rules.append(f".{prefix}{lv}{{background:{hex_color(rgb)};color:{text_color(rgb)}}}")
    shades = "\n".join(rules)
    return f"""
:root{{--ink:#1b1b1b;--muted:#666;--line:#dedede;--soft:#f6f6f4}}
*{{box-sizing:border-box}}
body{{margin:0;background:#fff;color:var(--ink);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}}
main{{max-width:1180px;margin:0 auto;padding:20px 24px 48px}}
h1{{font-size:22px;margin:0 0 4px}} h2{{font-size:18px;margin:0 0 8px}} h3{{font-size:14px;margin:14px 0 6px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}}
.sub{{color:var(--muted);font-size:13px}}
code,.mono,.text,pre{{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace}}
.legend{{display:flex;align-items:center;gap:10px;margin:12px 0 4px;font-size:12.5px;color:var(--muted);flex-wrap:wrap}}
.bar{{width:320px;height:14px;border-radius:3px;border:1px solid var(--line);background:linear-gradient(90deg,{hex_color(mix(-1, 1))},#ffffff 50%,{hex_color(mix(1, 1))})}}
.ticks{{display:flex;justify-content:space-between;width:320px;font-size:11px;color:var(--muted)}}
nav.pages{{margin:14px 0;font-size:14px}} nav.pages a,nav.pages span{{margin-right:10px}}
section.group{{border-top:2px solid var(--ink);margin-top:28px;padding-top:12px}}
.question,.reference{{background:var(--soft);border-radius:6px;padding:8px 12px;white-space:pre-wrap;overflow-wrap:anywhere;font-size:14px}}
.question{{max-height:16em;overflow:auto}}
.reference b{{font-weight:600}}
.tops{{display:grid;grid-template-columns:1fr 1fr;gap:16px}}
@media (max-width:820px){{.tops{{grid-template-columns:1fr}}}}
table{{border-collapse:collapse;font-size:12.5px;width:100%}}
th,td{{padding:3px 7px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}}
th{{color:var(--muted);font-weight:600}} th:first-child,td:first-child{{text-align:left}}
td.tok span{{padding:1px 4px;border-radius:3px;white-space:pre;font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace}}
details.rollout{{border:1px solid var(--line);border-radius:8px;margin:10px 0;overflow:hidden}}
details.rollout>summary{{cursor:pointer;padding:6px 12px;background:var(--soft);font-size:13.5px;list-style-position:inside}}
.badge{{display:inline-block;padding:0 8px;border-radius:10px;font-size:12px;font-weight:600;margin-right:6px}}
.ok{{background:#d9efdf;color:#135b2f}} .bad{{background:#f8d9d6;color:#8a1f17}}
.text{{margin:0;padding:10px 12px;font-size:13.5px;line-height:1.75;white-space:pre-wrap;overflow-wrap:anywhere;word-break:normal;tab-size:4}}
.text span{{border-radius:2px}}
.text span:hover{{outline:1.5px solid #222}}
.text .sp{{outline:1px dashed #9a9a9a;color:#777}}
.text .nl::before{{content:"\\21b5";color:#b0b0b0}}
{shades}
"""


def _legend(vmax: float) -> str:
    half = vmax / 2
    ticks = "".join(f"<span>{t:+.2g}</span>" for t in (-vmax, -half, 0.0, half, vmax)).replace("+0</span>", "0</span>")
    return (
        '<div class="legend"><span>leans to <b style="color:#b3261e">wrong</b> answers</span>'
        f'<div><div class="bar" role="img" aria-label="colour scale from {-vmax:g} (red) to {vmax:g} (green)"></div>'
        f'<div class="ticks">{ticks}</div></div>'
        '<span>leans to <b style="color:#17703a">correct</b> answers</span>'
        "<span>· key-token value K; hover a token for its statistics</span></div>"
    )


def _label(text: str) -> str:
    """A token's text for a table cell: newlines and tabs made visible, the rest as is."""
    if not text:
        return "∅"
    return text.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def _fmt_p(p: float) -> str:
    return f"{p:.3g}" if p >= 1e-3 else f"{p:.2e}"


def _top_table(title: str, records: list[dict], analysis: Analysis, vmax: float) -> str:
    head = (
        f"<div><h3>{_esc(title)}</h3><table><thead><tr><th>token</th><th title='{_esc(_FIELDS_HELP[0][1])}'>in correct</th>"
        f"<th title='{_esc(_FIELDS_HELP[1][1])}'>in wrong</th><th title='{_esc(_FIELDS_HELP[2][1])}'>p-value</th>"
        f"<th title='{_esc(_FIELDS_HELP[3][1])}'>IG</th><th title='{_esc(_FIELDS_HELP[4][1])}'>direction</th>"
        f"<th title='{_esc(_FIELDS_HELP[5][1])}'>K</th></tr></thead><tbody>"
    )
    if not records:
        return head + '<tr><td colspan="7" class="sub">none</td></tr></tbody></table></div>'
    rows = []
    for r in records:
        label = analysis.token_labels.get(r["token"], str(r["token"]))
        shown = _label(label)
        rows.append(
            f'<tr><td class="tok"><span class="{css_class(r["value"], vmax)}" title="token id {r["token"]}">'
            f"{_esc(shown)}</span></td><td>{r['a']}/{r['n_correct']}</td><td>{r['b']}/{r['n_wrong']}</td>"
            f"<td>{_fmt_p(r['p_value'])}</td><td>{r['info_gain']:.3f}</td><td>{r['direction']:+.3f}</td>"
            f"<td><b>{r['value']:+.3f}</b></td></tr>"
        )
    return head + "".join(rows) + "</tbody></table></div>"


class _GroupTags:
    """Opening ``<span>`` tags of one group's tokens, built once per (table row, value) and reused."""

    def __init__(self, analysis: Analysis, start: int, stop: int, vmax: float):
        table = analysis.table
        self.start = start
        self.vmax = vmax
        self.a = table.a[start:stop].tolist()
        self.b = table.b[start:stop].tolist()
        self.nt = table.n_correct[start:stop].tolist()
        self.nf = table.n_wrong[start:stop].tolist()
        self.p = table.p_value[start:stop].tolist()
        self.ig = table.info_gain[start:stop].tolist()
        self.cache: dict[tuple[int, float], str] = {}

    def tip(self, row: int, token: int, value: float) -> str:
        j = row - self.start
        return (
            f"K {value:+.4f} · id {token} · correct {self.a[j]}/{self.nt[j]} · wrong {self.b[j]}/{self.nf[j]}"
            f" · p {_fmt_p(self.p[j])} · IG {self.ig[j]:.3f}"
        )

    def tag(self, row: int, token: int, value: float, extra_class: str = "", extra_tip: str = "") -> str:
        key = (row, value)
        if not extra_class and not extra_tip:
            cached = self.cache.get(key)
            if cached is not None:
                return cached
        classes = css_class(value, self.vmax) + extra_class
        tag = f'<span class="{classes}" data-k="{value:.7g}" title="{_esc(self.tip(row, token, value) + extra_tip)}">'
        if not extra_class and not extra_tip:
            self.cache[key] = tag
        return tag


def _rollout_html(analysis: Analysis, i: int, rows: list[int], tags: _GroupTags, open_: bool) -> str:
    """One rollout: header and one span per token. ``rows[t]`` is the table row of token t."""
    r = analysis.rollouts[i]
    pieces = analysis.pieces[i]
    values = analysis.values[i].tolist()
    ids = analysis.token_ids[i]
    joined_to = pieces.joined_to
    continued: dict[int, list[int]] = {}
    for t, owner in enumerate(joined_to):
        if owner >= 0:
            continued.setdefault(owner, []).append(t)
    spans = []
    escape = html.escape
    for t, (piece, value) in enumerate(zip(pieces.pieces, values)):
        extra_class = extra_tip = ""
        if joined_to[t] >= 0:
            extra_tip = f" · bytes of the character shown by token #{joined_to[t]}"
        if t in continued:
            extra_tip += " · character continues in " + ", ".join(f"#{u} (K {values[u]:+.4f})" for u in continued[t])
        if pieces.special[t]:
            extra_class = " sp"
        elif "\n" in piece and not piece.strip(" \t\n"):
            extra_class = " nl"
        spans.append(tags.tag(rows[t], ids[t], value, extra_class, extra_tip))
        spans.append(escape(piece, quote=False))
        spans.append("</span>")
    ok = analysis.correct[i]
    badge = '<span class="badge ok">correct</span>' if ok else '<span class="badge bad">wrong</span>'
    reward = f"reward {r.reward:g}" if r.reward is not None else f"score {r.score:g}"
    summary = (
        f"{badge}<b>rollout {i}</b> · {reward} · rollout advantage {analysis.advantages[i]:+.3f} · {len(ids)} tokens"
    )
    return (
        f'<details class="rollout" id="r{i}"{" open" if open_ else ""}><summary>{summary}</summary>'
        f'<div class="text">{"".join(spans)}</div></details>'
    )


def _group_html(
    analysis: Analysis, g: GroupSummary, start: int, stop: int, vmax: float, open_rollouts: int | None
) -> str:
    row_of = {token: start + j for j, token in enumerate(analysis.table.token[start:stop].tolist())}
    tags = _GroupTags(analysis, start, stop, vmax)
    step = f"Step {g.step} · " if g.step is not None else ""
    parts = [f'<section class="group" id="g{g.index}"><h2>{step}Prompt {g.index + 1}'
             f'<span class="sub"> · group {_esc(_short(g.key, 80))} · {len(g.members)} rollouts: '
             f"{g.n_correct} correct, {g.n_wrong} wrong</span></h2>"]
    if g.prompt is not None:
        parts.append(f'<h3>Question</h3><div class="question">{_esc(g.prompt)}</div>')
    if g.reference is not None:
        parts.append(f'<div class="reference" style="margin-top:8px"><b>Reference answer:</b> {_esc(g.reference)}</div>')
    if g.n_correct == 0 or g.n_wrong == 0:
        parts.append(
            f'<p class="sub">All rollouts are {"correct" if g.n_wrong == 0 else "wrong"}: KTAE gives every token K = 0 '
            "in this group.</p>"
        )
    else:
        parts.append('<div class="tops">')
        parts.append(_top_table("Key tokens of correct answers (K > 0)", g.positive, analysis, vmax))
        parts.append(_top_table("Key tokens of wrong answers (K < 0)", g.negative, analysis, vmax))
        parts.append("</div>")
    parts.append("<h3>Rollouts</h3>")
    for n, i in enumerate(g.members):
        rows = [row_of[token] for token in analysis.token_ids[i]]
        parts.append(_rollout_html(analysis, i, rows, tags, open_=open_rollouts is None or n < open_rollouts))
    parts.append("</section>")
    return "".join(parts)


def _short(value: Any, limit: int) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_stylesheet()}</style></head><body><main>{body}</main></body></html>\n"
    )


def _header(analysis: Analysis, vmax: float, subtitle: str) -> str:
    c = analysis.config
    n = len(analysis.rollouts)
    ignored = ", ".join(str(i) for i in c.ignore_token_ids) or "none"
    settings = (
        f"alpha={c.alpha:g}, beta={c.beta:g}, gamma={c.gamma:g}, top={c.top:g}, threshold={c.threshold:g}, "
        f"fisher_at_one={c.fisher_at_one}, rollout={c.rollout}, ignored token ids: {ignored}"
    )
    notes = "".join(f'<p class="sub"><b>Note:</b> {_esc(note)}</p>' for note in analysis.notes)
    check = analysis.dump_check
    if check is not None:
        verdict = (f"equal to the trainer's dumped values at all {check.tokens} tokens" if check.exact else
                   f"differ from the trainer's dumped values at {check.mismatched} of {check.tokens} tokens")
        notes += f'<p class="sub"><b>K values:</b> recomputed, {verdict} (max |difference| {check.max_abs_diff:.2g}).</p>'
    return (
        f"<h1>Key tokens · KTAE</h1><div class='sub'>{_plural(n, 'rollout')} of {_plural(len(analysis.groups), 'prompt')}"
        f"{subtitle}. "
        f"Settings: {_esc(settings)}.</div>{notes}{_legend(vmax)}"
    )


def _steps_html(analysis: Analysis, link_of: dict[int, str]) -> str:
    """The index of training steps (prompts, rollouts, accuracy, mixed prompts), linked to each step's first prompt."""
    rows = step_rows(analysis)
    if len(rows) < 2:
        return ""
    body = "".join(
        f'<tr><td><a href="{_esc(link_of[r["first"]])}">step {_esc("-" if r["step"] is None else r["step"])}</a></td>'
        f'<td>{r["prompts"]}</td><td>{r["rollouts"]}</td><td>{100 * r["correct"] / r["rollouts"]:.1f}%</td>'
        f'<td>{r["mixed"]}</td></tr>'
        for r in rows
    )
    return ("<h3>Steps</h3><table><thead><tr><th>step</th><th>prompts</th><th>rollouts</th><th>accuracy</th>"
            f"<th>prompts with both outcomes</th></tr></thead><tbody>{body}</tbody></table><h3>Prompts</h3>")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _write_page(path: str, text: str) -> None:
    with atomic_write(path) as handle:
        handle.write(text)


def default_vmax(analysis: Analysis) -> float:
    """The scale's end: the bound of K (``config.top``)."""
    return float(analysis.config.top)


def write_html(
    analysis: Analysis,
    path: str | os.PathLike,
    *,
    page_size: int = 10,
    page_tokens: int = 200_000,
    vmax: float | None = None,
    open_rollouts: int | None = None,
    progress: bool = True,
) -> list[str]:
    """Write the report; returns the files written (the index / single page first).

    Args:
        analysis: from `ktae.analysis.analyze`.
        path: the HTML file to write.
        page_size: most groups per page.
        page_tokens: most tokens per page (a group larger than this gets a page of its own). When the
            groups do not fit on one page, ``path`` becomes an index and the pages go to ``<stem>_pages/``.
        vmax: |K| at which the colour is fully saturated (default: ``config.top``, the bound of K).
        open_rollouts: rollouts per group shown expanded, the others one click away (None: all).
        progress: show a tqdm progress bar.
    """
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise ValueError(f"page_size must be a positive integer, got {page_size!r}")
    if isinstance(page_tokens, bool) or not isinstance(page_tokens, int) or page_tokens < 1:
        raise ValueError(f"page_tokens must be a positive integer, got {page_tokens!r}")
    vmax = default_vmax(analysis) if vmax is None else float(vmax)
    if not math.isfinite(vmax) or vmax <= 0:
        raise ValueError(f"vmax must be a positive number, got {vmax!r}")
    path = os.fspath(path)
    slices = _group_slices(analysis.table, len(analysis.groups))
    groups = analysis.groups
    bar = progress_bar(total=len(groups), desc="writing report", unit="prompt", disable=not progress, leave=False)
    pages: list[list[GroupSummary]] = []
    budget = 0
    for g in groups:
        size = sum(len(analysis.token_ids[i]) for i in g.members)
        if not pages or len(pages[-1]) >= page_size or budget + size > page_tokens:
            pages.append([])
            budget = 0
        pages[-1].append(g)
        budget += size
    try:
        if len(pages) <= 1:
            body = [_header(analysis, vmax, ""), _steps_html(analysis, {g.index: f"#g{g.index}" for g in groups})]
            for g in groups:
                body.append(_group_html(analysis, g, *slices[g.index], vmax, open_rollouts))
                bar.update(1)
            _write_page(path, _page("KTAE key tokens", "".join(body)))
            return [path]
        stem = os.path.splitext(os.path.basename(path))[0]
        folder_name = f"{stem}_pages"
        folder = os.path.join(os.path.dirname(os.path.abspath(path)), folder_name)
        names = [f"page-{k + 1:03d}.html" for k in range(len(pages))]
        written = []
        for k, chunk in enumerate(pages):
            nav = [f'<a href="../{_esc(os.path.basename(path))}">index</a>']
            nav.append(f'<a href="{names[k - 1]}">← previous</a>' if k > 0 else "<span class='sub'>← previous</span>")
            nav.append(f"<span>page {k + 1} of {len(pages)}</span>")
            nav.append(f'<a href="{names[k + 1]}">next →</a>' if k + 1 < len(pages) else "<span class='sub'>next →</span>")
            nav_html = f'<nav class="pages">{"".join(nav)}</nav>'
            body = [_header(analysis, vmax, f" · page {k + 1} of {len(pages)}"), nav_html]
            for g in chunk:
                body.append(_group_html(analysis, g, *slices[g.index], vmax, open_rollouts))
                bar.update(1)
            body.append(nav_html)
            target = os.path.join(folder, names[k])
            _write_page(target, _page(f"KTAE key tokens · page {k + 1}", "".join(body)))
            written.append(target)
        _write_page(path, _page("KTAE key tokens", _index_body(analysis, vmax, pages, folder_name, names)))
        return [path] + written
    finally:
        bar.close()


def _index_body(analysis: Analysis, vmax: float, pages: list[list[GroupSummary]], folder: str, names: list[str]) -> str:
    rows = []
    for k, chunk in enumerate(pages):
        for g in chunk:
            link = f"{folder}/{names[k]}#g{g.index}"

            def chips(records: list[dict]) -> str:
                out = []
                for r in records[:4]:
                    label = analysis.token_labels.get(r["token"], str(r["token"]))
                    out.append(
                        f'<span class="{css_class(r["value"], vmax)}" title="K {r["value"]:+.4f}">'
                        f"{_esc(_label(label))}</span>"
                    )
                return " ".join(out)

            question = _short(g.prompt if g.prompt is not None else g.key, 90)
            step = f"step {g.step} · " if g.step is not None else ""
            rows.append(
                f'<tr><td><a href="{_esc(link)}">{step}Prompt {g.index + 1}</a></td><td style="text-align:left;white-space:normal">'
                f"{_esc(question)}</td><td>{g.n_correct}/{len(g.members)}</td>"
                f'<td class="tok" style="text-align:left">{chips(g.positive)}</td>'
                f'<td class="tok" style="text-align:left">{chips(g.negative)}</td></tr>'
            )
    page_links = " ".join(f'<a href="{folder}/{n}">{k + 1}</a>' for k, n in enumerate(names))
    link_of = {g.index: f"{folder}/{names[k]}#g{g.index}" for k, chunk in enumerate(pages) for g in chunk}
    return (
        _header(analysis, vmax, f" · {len(pages)} pages")
        + f'<nav class="pages">pages: {page_links}</nav>'
        + _steps_html(analysis, link_of)
        + "<table><thead><tr><th>prompt</th><th style='text-align:left'>question</th><th>correct</th>"
        + "<th style='text-align:left'>top K &gt; 0</th><th style='text-align:left'>top K &lt; 0</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )
