"""The diverging green/red scale shared by the HTML report and the PNG figures (white at K = 0)."""
from __future__ import annotations

import math

GREEN = (26, 152, 80)  # K > 0: the token leans to correct rollouts
RED = (215, 48, 39)  # K < 0: the token leans to wrong rollouts
WHITE = (255, 255, 255)
LEVELS = 10  # shades per side in the HTML report


def mix(value: float, vmax: float) -> tuple[int, int, int]:
    """RGB of a value on the continuous scale: white at 0, full green at +vmax, full red at -vmax."""
    if vmax <= 0:
        raise ValueError(f"vmax must be > 0, got {vmax!r}")
    t = min(1.0, abs(float(value)) / vmax)
    end = GREEN if value > 0 else RED
    return tuple(round(w + (e - w) * t) for w, e in zip(WHITE, end))  # type: ignore[return-value]


def level(value: float, vmax: float) -> int:
    """Shade level 0..LEVELS; any non-zero value gets at least level 1 so that its sign stays visible."""
    if value == 0 or not math.isfinite(value):
        return 0
    return max(1, min(LEVELS, math.ceil(abs(value) / vmax * LEVELS - 1e-9)))


def css_class(value: float, vmax: float) -> str:
    """``p1``..``p10`` for K > 0, ``n1``..``n10`` for K < 0, ``z`` for K = 0."""
    lv = level(value, vmax)
    if lv == 0:
        return "z"
    return f"{'p' if value > 0 else 'n'}{lv}"


def hex_color(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def level_color(sign: int, lv: int) -> tuple[int, int, int]:
    """Colour of a shade level (the scale at the level's upper edge)."""
    return mix(sign * lv / LEVELS, 1.0) if lv else WHITE


def text_color(rgb: tuple[int, int, int]) -> str:
    """Dark or white text, whichever reads better on ``rgb``."""
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    lum = 0.2126 * channel(rgb[0]) + 0.7152 * channel(rgb[1]) + 0.0722 * channel(rgb[2])
    return "#ffffff" if (1.05 / (lum + 0.05)) > ((lum + 0.05) / 0.05) else "#1b1b1b"
