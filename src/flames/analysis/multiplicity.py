"""p-values adjusted for the number of tests a table makes.

A table that names a winner in each of several rows makes several tests: at p < 0.05 each,
some row names a winner by chance far more often than 5% of the time. Adjusted p-values keep
that in check:

- holm: Holm's step-down (1979), the family-wise error rate (the chance of any false winner);
  `compare`'s default over its dimension rows;
- bonferroni: each p times the number of tests; the same guarantee, never more power than Holm;
- bh: Benjamini-Hochberg (1995), the false discovery rate (the expected share of false ones
  among the rows called); the default of the robustness tables, which test many cells;
- none: the raw p-values.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np


class Adjustment(StrEnum):
    holm = "holm"
    bonferroni = "bonferroni"
    bh = "bh"
    none = "none"


LABELS = {
    Adjustment.holm: "Holm",
    Adjustment.bonferroni: "Bonferroni",
    Adjustment.bh: "Benjamini-Hochberg",
    Adjustment.none: "none",
}


def adjust(p_values: Sequence[float], method: Adjustment | str) -> list[float]:
    """The adjusted p-values, in the order given (each at most 1)."""
    method = Adjustment(method)
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if m == 0 or method is Adjustment.none:
        return p.tolist()
    if method is Adjustment.bonferroni:
        return np.minimum(p * m, 1.0).tolist()
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method is Adjustment.holm:
        # p_(i) * (m - i + 1), made non-decreasing from the smallest p up.
        scaled = np.maximum.accumulate(ranked * (m - np.arange(m)))
    else:
        # p_(i) * m / i, made non-increasing from the largest p down.
        scaled = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(scaled, 1.0)
    return adjusted.tolist()
