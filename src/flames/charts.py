"""Inline SVG charts for the HTML report: no scripts, no network, print-friendly."""

from __future__ import annotations

import math
from html import escape

from flames.metrics import Estimate

PALETTE = {
    "Fairness": "#4C72B0",
    "Safety": "#DD8452",
    "Morality": "#55A868",
    "Legality": "#C44E52",
    "Data protection": "#8172B3",
}


def _point(cx: float, cy: float, radius: float, angle: float) -> tuple[float, float]:
    return cx + radius * math.cos(angle), cy + radius * math.sin(angle)


def _polygon(points: list[tuple[float, float]]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)


def radar(values: dict[str, Estimate], title: str, size: int = 360) -> str:
    """A radar of values in [0, 100] (one axis per key), with the CI band shaded."""
    margin = 70  # room for the axis labels left and right
    width = size + 2 * margin
    cx, cy = size / 2 + margin, size / 2
    r = size / 2 - 50
    names = list(values)
    angles = [-math.pi / 2 + 2 * math.pi * i / len(names) for i in range(len(names))]
    parts = [
        f'<svg class="chart radar" width="{width}" height="{size}" '
        f'viewBox="0 0 {width} {size}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for level in (25, 50, 75, 100):
        ring = [_point(cx, cy, r * level / 100, a) for a in angles]
        parts.append(f'<polygon points="{_polygon(ring)}" fill="none" stroke="#ddd"/>')
        parts.append(
            f'<text x="{cx + 3:.1f}" y="{cy - r * level / 100:.1f}" class="tick">{level}</text>'
        )
    for name, angle in zip(names, angles, strict=True):
        x, y = _point(cx, cy, r, angle)
        parts.append(f'<line x1="{cx}" y1="{cy}" x2="{x:.1f}" y2="{y:.1f}" stroke="#ccc"/>')
        lx, ly = _point(cx, cy, r + 14, angle)
        anchor = "middle" if abs(lx - cx) < 5 else ("start" if lx > cx else "end")
        parts.append(
            f'<text x="{lx:.1f}" y="{ly + 4:.1f}" text-anchor="{anchor}" '
            f'class="axis">{escape(name)}</text>'
        )
    bounds = [ci for n in names if (ci := values[n].interval) is not None]
    if len(bounds) == len(names):
        outer = [_point(cx, cy, r * hi / 100, a) for (_, hi), a in zip(bounds, angles, strict=True)]
        inner = [_point(cx, cy, r * lo / 100, a) for (lo, _), a in zip(bounds, angles, strict=True)]
        parts.append(
            f'<polygon points="{_polygon(outer)}" fill="#4C72B0" fill-opacity="0.12" '
            'stroke="none" class="ci"/>'
        )
        parts.append(
            f'<polygon points="{_polygon(inner)}" fill="#fff" fill-opacity="0.6" stroke="none"/>'
        )
    main = [
        _point(cx, cy, r * values[n].value / 100, a) for n, a in zip(names, angles, strict=True)
    ]
    parts.append(
        f'<polygon points="{_polygon(main)}" fill="#4C72B0" fill-opacity="0.25" '
        'stroke="#4C72B0" stroke-width="2" class="series"/>'
    )
    for (x, y), name in zip(main, names, strict=True):
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="#4C72B0">'
            f"<title>{escape(name)}: {values[name].value:.2f}</title></circle>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def bars(values: dict[str, Estimate], groups: dict[str, str], title: str, width: int = 640) -> str:
    """Horizontal bars of values in [0, 100] with CI whiskers, coloured by group."""
    row, left, right = 24, 190, 60
    height = row * len(values) + 40
    scale = (width - left - right) / 100
    parts = [
        f'<svg class="chart bars" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for tick in (0, 25, 50, 75, 100):
        x = left + tick * scale
        parts.append(f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{height - 24}" stroke="#eee"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle" class="tick">{tick}</text>'
        )
    for i, (name, est) in enumerate(values.items()):
        y = 12 + i * row
        colour = PALETTE.get(groups.get(name, ""), "#888")
        parts.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" class="axis">'
            f"{escape(name)}</text>"
        )
        parts.append(
            f'<rect x="{left}" y="{y + 3}" width="{est.value * scale:.1f}" '
            f'height="{row - 8}" fill="{colour}" class="bar">'
            f"<title>{escape(name)}: {est.value:.2f}</title></rect>"
        )
        if (ci := est.interval) is not None:
            x1, x2, ym = left + ci[0] * scale, left + ci[1] * scale, y + row / 2 - 1
            parts.append(
                f'<line x1="{x1:.1f}" y1="{ym:.1f}" x2="{x2:.1f}" y2="{ym:.1f}" '
                'stroke="#333" stroke-width="1.5"/>'
            )
        parts.append(
            f'<text x="{left + 100 * scale + 6:.1f}" y="{y + 15}" class="value">'
            f"{est.value:.1f}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)
