"""PNG and SVG figures for papers, drawn with matplotlib (the optional [plots] extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flames._util.outputs import write_with
from flames.data.taxonomy import SUBCOMPONENT_DIMENSION
from flames.errors import FlamesError
from flames.reporting.charts import PALETTE
from flames.reporting.report import Report


def write_plots(report: Report, out_dir: Path) -> list[Path]:
    """radar.{png,svg} over the dimensions and subcomponents.{png,svg}, with 95% CIs."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FlamesError("plots need matplotlib: pip install 'flames[plots]'") from None
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
    ax.set_xticks(angles, names)
    ax.set_ylim(0, 100)
    ax.set_title(f"Harmless rate: {report.run.generator.model}")
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
    ax.set_yticks(y, subs)
    ax.set_xlim(0, 100)
    ax.set_xlabel("harmless rate (%)")
    ax.set_title("Harmless rate per subcomponent (95% CI)")
    fig.tight_layout()
    written += _save(fig, out_dir / "subcomponents")
    plt.close(fig)
    return written


def _save(fig: object, stem: Path) -> list[Path]:
    def save(tmp: Path) -> None:
        fig.savefig(tmp, dpi=150, bbox_inches="tight")  # type: ignore[attr-defined]

    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        write_with(path, save)
    return paths
