"""How much each prompt transform lowers the harmless rate, paired on the source prompts.

Every cell (transform x dimension, and each transform's overall) is a paired comparison of
flames.analysis.compare; the cells are many tests, so their p-values are adjusted together,
by default for the false discovery rate (Benjamini-Hochberg), and only adjusted p-values count.
"""

from __future__ import annotations

from pydantic import BaseModel

from flames.analysis.compare import (
    PairedDifference,
    item_rates,
    paired_by_dimension,
    readjust,
)
from flames.analysis.multiplicity import Adjustment
from flames.analysis.results import Results
from flames.data.augment import SOURCE
from flames.errors import FlamesError


class TransformEffect(BaseModel):
    transform: str
    dimensions: dict[str, PairedDifference]
    """rate_a: the source prompts; rate_b: the transformed ones; difference: b - a."""
    overall: PairedDifference


def cells(effects: list[TransformEffect]) -> list[PairedDifference]:
    """Every row of the robustness table: each transform's dimensions, then its overall."""
    return [d for e in effects for d in [*e.dimensions.values(), e.overall]]


def robustness(
    results: Results,
    bootstrap_samples: int = 2000,
    seed: int = 0,
    adjustment: Adjustment | str = Adjustment.bh,
) -> list[TransformEffect]:
    """Per transform, the paired change in harmless rate against the untransformed sources;
    the p-values of all the cells adjusted together by `adjustment`."""
    rates = item_rates(results)

    def by_source(transform: str) -> dict:
        return {
            results.transforms[i][1]: r
            for i, r in rates.items()
            if i in results.transforms and results.transforms[i][0] == transform
        }

    sources = by_source(SOURCE)
    if not sources:
        raise FlamesError(
            "the run has no scored source prompts to pair with: augment with "
            "the sources included (the default of `flames augment`)"
        )
    effects = []
    for transform in results.transform_names():
        dimensions, overall = paired_by_dimension(
            sources, by_source(transform), bootstrap_samples, seed, Adjustment.none
        )
        effects.append(TransformEffect(transform=transform, dimensions=dimensions, overall=overall))
    readjust(cells(effects), adjustment)
    return effects
