"""PNG figure of one rollout in the style of the KTAE paper's Figure 2.

The response is laid out on a monospace grid (wrapped at ``width`` characters, newlines kept and marked
with ``↵``); every token is a box shaded by its key-token value on the report's diverging scale (green:
leans to correct answers, red: leans to wrong ones), with colour bars for both signs.
"""
from __future__ import annotations

import os
import unicodedata
from typing import Sequence

from ktae.analysis.colors import GREEN, RED, WHITE, mix

_FONT = "DejaVu Sans Mono"
_ADVANCE = 0.602  # advance width of DejaVu Sans Mono, in em
_NEWLINE = "\u21b5"


def _visible(text: str) -> str:
    out = []
    for ch in text:
        if ch == "\t":
            out.append("    ")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            out.append("·")
        else:
            out.append(ch)
    return "".join(out)


def layout(pieces: Sequence[str], width: int) -> tuple[list[str], list[tuple[int, int, int, int]]]:
    """Wrap tokens on a ``width``-column grid.

    Returns:
        (lines, boxes): the text of each grid line, and one ``(token, row, column, n_columns)`` box per
        visible run of a token (a token broken over lines gets several boxes; empty tokens get none).
    """
    if width < 8:
        raise ValueError(f"width must be at least 8 columns, got {width}")
    lines: list[list[str]] = [[]]
    boxes: list[tuple[int, int, int, int]] = []
    col = 0

    def newline() -> None:
        nonlocal col
        lines.append([])
        col = 0

    for k, piece in enumerate(pieces):
        segments = piece.split("\n")
        for s, segment in enumerate(segments):
            if s > 0:  # a newline: mark it, then break the line
                if col >= width:
                    newline()
                boxes.append((k, len(lines) - 1, col, 1))
                lines[-1].append(_NEWLINE)
                newline()
            text = _visible(segment)
            if not text:
                continue
            if col + len(text) > width and col > 0 and len(text) <= width:
                newline()
            while text:
                room = width - col
                if room <= 0:
                    newline()
                    continue
                chunk, text = text[:room], text[room:]
                boxes.append((k, len(lines) - 1, col, len(chunk)))
                lines[-1].append(chunk)
                col += len(chunk)
    return ["".join(line) for line in lines], boxes


def diverging_cmap():
    """Red (K = -vmax) -> white (0) -> green (+vmax), the report's scale (a matplotlib colormap)."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list(
        "ktae", [tuple(c / 255 for c in RED), tuple(c / 255 for c in WHITE), tuple(c / 255 for c in GREEN)]
    )


def plot_rollout(
    pieces: Sequence[str],
    values: Sequence[float],
    path: str | os.PathLike,
    *,
    vmax: float = 1.0,
    title: str = "",
    width: int = 90,
    max_lines: int = 80,
    dpi: int = 150,
) -> str:
    """Draw one rollout as a shaded token grid with colour bars and save it as PNG.

    Args:
        pieces: decoded text of each token (`ktae.analysis.token_pieces`).
        values: key-token value K of each token (same length).
        path: the PNG file to write.
        vmax: |K| of full colour. title: text above the grid. width: grid columns.
        max_lines: lines drawn at most (the rest is summarised in a note).
        dpi: resolution.
    Returns:
        the path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg   # matplotlib only when a figure is drawn
    from matplotlib.collections import PatchCollection
    from matplotlib.colorbar import ColorbarBase
    from matplotlib.colors import LinearSegmentedColormap, Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    values = [float(v) for v in values]
    if len(pieces) != len(values):
        raise ValueError(f"pieces and values must have the same length, got {len(pieces)} and {len(values)}")
    if vmax <= 0:
        raise ValueError(f"vmax must be > 0, got {vmax!r}")
    lines, boxes = layout(pieces, width)
    hidden_tokens = 0
    if len(lines) > max_lines:
        shown = {k for k, row, _, _ in boxes if row < max_lines}
        hidden_tokens = len(pieces) - (max(shown) + 1 if shown else 0)
        lines = lines[:max_lines]
        boxes = [b for b in boxes if b[1] < max_lines]
    cell_w = 0.082  # inches per column
    cell_h = 0.19  # inches per line
    font_pt = cell_w * 72 / _ADVANCE
    margin = 0.3
    head = 0.5 if title else 0.15
    foot = 0.78 + (0.2 if hidden_tokens else 0)
    grid_w, grid_h = width * cell_w, max(1, len(lines)) * cell_h
    fig_w, fig_h = grid_w + 2 * margin, grid_h + head + foot
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((margin / fig_w, foot / fig_h, grid_w / fig_w, grid_h / fig_h))
    ax.set_xlim(0, width)
    ax.set_ylim(max(1, len(lines)), 0)
    ax.axis("off")
    patches = []
    colors = []
    for k, row, col, n in boxes:
        patches.append(Rectangle((col + 0.03, row + 0.06), n - 0.06, 0.88))
        colors.append(tuple(c / 255 for c in mix(values[k], vmax)) if values[k] else (1.0, 1.0, 1.0))
    if patches:
        ax.add_collection(
            PatchCollection(patches, facecolors=colors, edgecolors=(0.82, 0.82, 0.82), linewidths=0.35)
        )
    for row, line in enumerate(lines):
        if line:
            ax.text(0, row + 0.53, line, fontfamily=_FONT, fontsize=font_pt, va="center", ha="left", color="#1b1b1b",
                    parse_math=False)
    if title:
        room = int((fig_w - 2 * margin) * 72 / (0.6 * 10))  # characters of bold 10 pt text that fit
        title = title if len(title) <= room else title[: room - 1] + "…"
        fig.text(margin / fig_w, 1 - 0.3 / fig_h, title, fontsize=10, ha="left", va="center", weight="bold",
                 parse_math=False)
    if hidden_tokens:
        fig.text(margin / fig_w, (foot - 0.12) / fig_h, f"… {hidden_tokens} more tokens not shown", fontsize=8,
                 color="#666", ha="left", va="center", parse_math=False)
    cmap = diverging_cmap()
    bar_w = min(2.8, (grid_w - 0.6) / 2)
    for n, (low, high, label) in enumerate(
        ((-vmax, 0.0, "K < 0: leans to wrong answers"), (0.0, vmax, "K > 0: leans to correct answers"))
    ):
        left = margin + (grid_w / 2 - bar_w - 0.15 if n == 0 else grid_w / 2 + 0.15)
        cax = fig.add_axes((left / fig_w, 0.42 / fig_h, bar_w / fig_w, 0.14 / fig_h))
        sub = LinearSegmentedColormap.from_list(label, [cmap((low + vmax) / (2 * vmax)), cmap((high + vmax) / (2 * vmax))])
        bar = ColorbarBase(cax, cmap=sub, norm=Normalize(low, high), orientation="horizontal")
        bar.set_ticks([low, (low + high) / 2, high])
        bar.ax.tick_params(labelsize=7, length=2)
        bar.outline.set_linewidth(0.4)
        bar.set_label(label, fontsize=7.5, labelpad=2)
        cax.xaxis.set_label_position("top")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi, facecolor="white")
    return path
