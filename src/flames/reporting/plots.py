"""PNG and SVG figures for papers, drawn with matplotlib (the optional [plots] extra), in English
or Chinese (which needs a CJK font)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from flames._util.outputs import write_with
from flames._util.terminal import printable
from flames.data.taxonomy import SUBCOMPONENT_DIMENSION
from flames.errors import FlamesError, install_hint
from flames.reporting.charts import PALETTE
from flames.reporting.i18n import Lang, local_name, t
from flames.reporting.report import Report

CJK_FONTS = (
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "Microsoft YaHei",
    "PingFang SC",
    "SimHei",
)
"""Fonts with Chinese glyphs, in the order they are preferred."""


def cjk_font() -> str | None:
    """The first installed font of CJK_FONTS, if any."""
    from matplotlib import font_manager

    for family in CJK_FONTS:
        try:
            font_manager.findfont(
                font_manager.FontProperties(family=family), fallback_to_default=False
            )
        except ValueError:
            continue
        return family
    return None


def write_plots(report: Report, out_dir: Path, lang: Lang | str = Lang.en) -> list[Path]:
    """radar.{png,svg} over the dimensions and subcomponents.{png,svg}, with 95% CIs."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FlamesError(f"plots need matplotlib: {install_hint('plots')}") from None
    # matplotlib logs each fallback between a family's weights: noise for the reader.
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    # Names (a model's, ...) are drawn as written: "$...$" in one is not TeX math, whose parser
    # fails on what it cannot read (rcParam text.parse_math, checked in matplotlib 3.11).
    style: dict[str, object] = {"text.parse_math": False}
    if Lang(lang) is Lang.zh:
        font = cjk_font()
        if font is None:
            raise FlamesError(
                "Chinese figures need a font with Chinese glyphs (one of "
                f"{', '.join(CJK_FONTS)}; e.g. apt install fonts-noto-cjk): none is installed. "
                "Install one, or draw the figures in English (--lang en)."
            )
        style |= {"font.family": "sans-serif", "font.sans-serif": [font, "DejaVu Sans"]}
    with plt.rc_context(style):
        return _draw(plt, report, out_dir, lang)


def _draw(plt: Any, report: Report, out_dir: Path, lang: Lang | str) -> list[Path]:
    from matplotlib.patches import Patch

    m = report.metrics
    written = []

    names = list(m.dimensions)
    rates = [m.dimensions[n].harmless_rate for n in names]
    angles = np.linspace(0, 2 * np.pi, len(names), endpoint=False).tolist()
    fig, ax = plt.subplots(figsize=(5, 5), subplot_kw={"polar": True})
    closed = [*angles, angles[0]]
    values = [r.value for r in rates]
    ax.plot(closed, [*values, values[0]], color="#4C72B0", linewidth=2)
    ax.fill(closed, [*values, values[0]], color="#4C72B0", alpha=0.2)
    bounds = [ci for r in rates if (ci := r.interval) is not None]
    if len(bounds) == len(rates):
        lows, highs = [lo for lo, _ in bounds], [hi for _, hi in bounds]
        ax.fill_between(closed, [*lows, lows[0]], [*highs, highs[0]], color="#4C72B0", alpha=0.12)
    ax.set_xticks(angles, [local_name(n, lang) for n in names])
    ax.set_ylim(0, 100)
    ax.set_title(f"{t('harmless_rate', lang)}: {printable(report.run.generator.model)}")
    written += _save(fig, out_dir / "radar")
    plt.close(fig)

    subs = list(m.subcomponents)
    est = [m.subcomponents[s].harmless_rate for s in subs]
    fig, ax = plt.subplots(figsize=(7, 0.38 * len(subs) + 1))
    y = np.arange(len(subs))[::-1]
    colours = [
        PALETTE.get(SUBCOMPONENT_DIMENSION[s].value, "#888")
        if s in SUBCOMPONENT_DIMENSION
        else "#888"
        for s in subs
    ]
    errors = None
    cis = [ci for e in est if (ci := e.interval) is not None]
    if len(cis) == len(est):
        errors = np.array(
            [
                [e.value - lo for e, (lo, _) in zip(est, cis, strict=True)],
                [hi - e.value for e, (_, hi) in zip(est, cis, strict=True)],
            ]
        )
    ax.barh(y, [e.value for e in est], xerr=errors, color=colours, capsize=3)
    ax.set_yticks(y, [local_name(s, lang) for s in subs])
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"{t('harmless_rate', lang)} (%)")
    ax.set_title(t("bars_caption", lang))
    shown = dict.fromkeys(
        SUBCOMPONENT_DIMENSION[s].value for s in subs if s in SUBCOMPONENT_DIMENSION
    )
    legend = [Patch(color=PALETTE.get(d, "#888"), label=local_name(d, lang)) for d in shown]
    if legend:  # which colour is which dimension
        ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.tight_layout()
    written += _save(fig, out_dir / "subcomponents")
    plt.close(fig)
    return written


def _save(fig: object, stem: Path) -> list[Path]:
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        # No date in the SVG: the same report gives the same files.
        metadata = {"Date": None} if path.suffix == ".svg" else None

        def save(tmp: Path, metadata: dict[str, None] | None = metadata) -> None:
            fig.savefig(tmp, dpi=150, bbox_inches="tight", metadata=metadata)  # type: ignore[attr-defined]

        write_with(path, save)
    return paths
