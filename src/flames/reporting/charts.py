"""Inline SVG charts for the HTML report: no scripts, no network, print-friendly."""

from __future__ import annotations

import math
from html import escape

from flames.analysis.metrics import Estimate

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


LEGEND_ROW = 20
"""Height of one legend line, in SVG units."""


def legend(entries: list[tuple[str, str, str]], x: float, y: float) -> str:
    """A legend: one (colour, label, shape) per line; shape is "box", "band" or "line"."""
    parts = [f'<g class="legend" transform="translate({x:.1f},{y:.1f})">']
    for i, (colour, label, shape) in enumerate(entries):
        top = i * LEGEND_ROW
        if shape == "line":
            parts.append(
                f'<line x1="0" y1="{top + 7}" x2="14" y2="{top + 7}" stroke="{colour}" '
                'stroke-width="2"/>'
            )
        else:
            opacity = ' fill-opacity="0.25"' if shape == "band" else ""
            parts.append(f'<rect x="0" y="{top}" width="14" height="14" fill="{colour}"{opacity}/>')
        parts.append(f'<text x="20" y="{top + 11}" class="axis">{escape(label)}</text>')
    parts.append("</g>")
    return "\n".join(parts)


def radar(
    values: dict[str, Estimate],
    title: str,
    size: int = 360,
    labels: dict[str, str] | None = None,
    legend_labels: tuple[str, str] = ("harmless rate", "95% CI"),
) -> str:
    """A radar of values in [0, 100] (one axis per key), with the CI band shaded; `labels` are
    the axis names shown (default: the keys)."""
    margin = 70  # room for the axis labels left and right
    width = size + 2 * margin
    cx, cy = size / 2 + margin, size / 2
    r = size / 2 - 50
    names = list(values)
    shown = labels or {}
    height = size + 2 * LEGEND_ROW
    angles = [-math.pi / 2 + 2 * math.pi * i / len(names) for i in range(len(names))]
    parts = [
        f'<svg class="chart radar" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" '
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
            f'class="axis">{escape(shown.get(name, name))}</text>'
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
            f"<title>{escape(shown.get(name, name))}: {values[name].value:.2f}</title></circle>"
        )
    rate_label, ci_label = legend_labels
    parts.append(
        legend([("#4C72B0", rate_label, "line"), ("#4C72B0", ci_label, "band")], margin, size)
    )
    parts.append("</svg>")
    return "\n".join(parts)


def bars(
    values: dict[str, Estimate],
    groups: dict[str, str],
    title: str,
    width: int = 640,
    labels: dict[str, str] | None = None,
) -> str:
    """Horizontal bars of values in [0, 100] with CI whiskers, coloured by group, with a legend
    of the groups; `labels` are the names shown (default: the keys)."""
    row, left, right = 24, 190, 60
    shown = labels or {}
    present = [g for g in PALETTE if g in groups.values()]
    plot_height = row * len(values) + 40
    height = plot_height + LEGEND_ROW * len(present) + 10
    scale = (width - left - right) / 100
    parts = [
        f'<svg class="chart bars" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for tick in (0, 25, 50, 75, 100):
        x = left + tick * scale
        parts.append(
            f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{plot_height - 24}" stroke="#eee"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{plot_height - 8}" text-anchor="middle" class="tick">'
            f"{tick}</text>"
        )
    for i, (name, est) in enumerate(values.items()):
        y = 12 + i * row
        colour = PALETTE.get(groups.get(name, ""), "#888")
        parts.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" class="axis">'
            f"{escape(shown.get(name, name))}</text>"
        )
        parts.append(
            f'<rect x="{left}" y="{y + 3}" width="{est.value * scale:.1f}" '
            f'height="{row - 8}" fill="{colour}" class="bar">'
            f"<title>{escape(shown.get(name, name))}: {est.value:.2f}</title></rect>"
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
    entries = [(PALETTE[g], shown.get(g, g), "box") for g in present]
    parts.append(legend(entries, left, plot_height + 4))
    parts.append("</svg>")
    return "\n".join(parts)


def _diverging(change: float, limit: float) -> str:
    """Red for a fall, blue for a rise, white for none; full colour at +-limit points."""
    f = max(-1.0, min(1.0, change / limit))
    end = (178, 24, 43) if f < 0 else (33, 102, 172)
    r, g, b = (round(255 + (e - 255) * abs(f)) for e in end)
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(
    cells: dict[tuple[str, str], tuple[float, bool]],
    rows: list[str],
    columns: list[str],
    title: str,
    labels: dict[str, str] | None = None,
    legend_labels: tuple[str, str] = ("change (points)", "* p < 0.05"),
) -> str:
    """A grid of (value, significant) per (row, column), coloured by the value on a diverging
    scale, the value written in each cell with * where significant, and a colour legend."""
    shown = labels or {}
    cell_w, cell_h, left, top = 92, 30, 150, 64
    width = left + cell_w * len(columns) + 20
    plot_bottom = top + cell_h * len(rows)
    height = plot_bottom + 70
    values = [abs(v) for v, _ in cells.values()]
    limit = max([10.0, *values])
    parts = [
        f'<svg class="chart heatmap" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for j, col in enumerate(columns):
        x = left + j * cell_w + cell_w / 2
        parts.append(
            f'<text x="{x:.1f}" y="{top - 10}" text-anchor="middle" class="axis">'
            f"{escape(shown.get(col, col))}</text>"
        )
    for i, row in enumerate(rows):
        y = top + i * cell_h
        parts.append(
            f'<text x="{left - 8}" y="{y + cell_h / 2 + 4:.1f}" text-anchor="end" class="axis">'
            f"{escape(shown.get(row, row))}</text>"
        )
        for j, col in enumerate(columns):
            x = left + j * cell_w
            if (row, col) not in cells:
                continue
            value, significant = cells[(row, col)]
            mark = "*" if significant else ""
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" '
                f'fill="{_diverging(value, limit)}" class="cell">'
                f"<title>{escape(shown.get(row, row))} · {escape(shown.get(col, col))}: "
                f"{value:+.1f}{mark}</title></rect>"
            )
            ink = ' fill="#fff"' if abs(value) > limit / 2 else ""
            parts.append(
                f'<text x="{x + cell_w / 2 - 1:.1f}" y="{y + cell_h / 2 + 4:.1f}" '
                f'text-anchor="middle" class="cell-value"{ink}>{value:+.1f}{mark}</text>'
            )
    # Colour legend: a ramp from -limit to +limit.
    ramp_x, ramp_y, steps, step_w = left, plot_bottom + 22, 20, 12
    parts.append(f'<g class="legend" transform="translate({ramp_x},{ramp_y})">')
    for k in range(steps):
        v = -limit + 2 * limit * (k + 0.5) / steps
        parts.append(
            f'<rect x="{k * step_w}" y="0" width="{step_w}" height="12" '
            f'fill="{_diverging(v, limit)}"/>'
        )
    end = steps * step_w
    parts.append(f'<text x="0" y="28" class="tick">{-limit:+.0f}</text>')
    parts.append(f'<text x="{end / 2}" y="28" text-anchor="middle" class="tick">0</text>')
    parts.append(f'<text x="{end}" y="28" text-anchor="end" class="tick">{limit:+.0f}</text>')
    change_label, mark_label = legend_labels
    parts.append(f'<text x="{end + 12}" y="11" class="axis">{escape(change_label)}</text>')
    parts.append(f'<text x="{end + 12}" y="28" class="axis">{escape(mark_label)}</text>')
    parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts)


SERIES = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860")
"""Colours of the lines of `curves`, in order."""


def curves(
    series: dict[str, list[float]],
    title: str,
    x_label: str,
    y_label: str,
    width: int = 640,
    height: int = 320,
) -> str:
    """Step lines of values in [0, 100] over x = 1, 2, ... (one per series, with a legend): a
    share reached within the first x tries, such as ASR@k."""
    left, right, top, bottom = 56, 20, 16, 48
    longest = max((len(v) for v in series.values()), default=0) or 1
    plot_w, plot_h = width - left - right, height - top - bottom
    total = height + LEGEND_ROW * len(series)

    def x_of(k: float) -> float:
        return left + plot_w * (k - 0.5) / longest

    def y_of(value: float) -> float:
        return top + plot_h * (1 - value / 100)

    parts = [
        f'<svg class="chart curves" width="{width}" height="{total}" '
        f'viewBox="0 0 {width} {total}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for tick in (0, 25, 50, 75, 100):
        y = y_of(tick)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#eee"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{tick}</text>'
        )
    step = max(1, round(longest / 10))
    for k in range(1, longest + 1, step):
        parts.append(
            f'<text x="{x_of(k):.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
            f'class="tick">{k}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 36}" text-anchor="middle" '
        f'class="axis">{escape(x_label)}</text>'
    )
    parts.append(
        f'<text x="14" y="{top + plot_h / 2:.1f}" text-anchor="middle" class="axis" '
        f'transform="rotate(-90 14 {top + plot_h / 2:.1f})">{escape(y_label)}</text>'
    )
    entries = []
    for (name, values), colour in zip(series.items(), SERIES * 4, strict=False):
        points = []
        for k, value in enumerate(values, start=1):
            points += [(x_of(k - 0.5), y_of(value)), (x_of(k + 0.5), y_of(value))]
        parts.append(
            f'<polyline points="{_polygon(points)}" fill="none" stroke="{colour}" '
            f'stroke-width="2" class="series"><title>{escape(name)}</title></polyline>'
        )
        entries.append((colour, name, "line"))
    parts.append(legend(entries, left, height))
    parts.append("</svg>")
    return "\n".join(parts)
