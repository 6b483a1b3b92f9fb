"""How much each prompt transform lowers the harmless rate, paired on the source prompts."""

from __future__ import annotations

from pydantic import BaseModel
from rich.console import Console

from flames.analysis.compare import (
    MCNEMAR,
    SIGN_FLIP,
    PairedDifference,
    item_rates,
    paired_by_dimension,
)
from flames.analysis.results import Results
from flames.data.augment import SOURCE
from flames.errors import FlamesError
from flames.i18n import Lang, local_name, t
from flames.reporting.console_table import Col, print_table


class TransformEffect(BaseModel):
    transform: str
    dimensions: dict[str, PairedDifference]
    """rate_a: the source prompts; rate_b: the transformed ones; difference: b - a."""
    overall: PairedDifference


def robustness(
    results: Results, bootstrap_samples: int = 2000, seed: int = 0
) -> list[TransformEffect]:
    """Per transform, the paired change in harmless rate against the untransformed sources."""
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
            sources, by_source(transform), bootstrap_samples, seed
        )
        effects.append(TransformEffect(transform=transform, dimensions=dimensions, overall=overall))
    return effects


def print_robustness(
    effects: list[TransformEffect], console: Console, lang: Lang | str = Lang.en
) -> None:
    """The robustness table, fitted to the console's width."""
    cols = [
        Col(t("transform", lang), text=True),
        Col(t("dimension", lang), text=True),
        Col(t("n", lang)),
        Col(t("source", lang), short="Src" if Lang(lang) is Lang.en else None),
        Col(t("transformed", lang), short="Trans." if Lang(lang) is Lang.en else None),
        Col(t("change", lang), short="Δ"),
        Col(t("ci", lang), short=t("ci_short", lang), drop=1),
        Col("p"),
    ]
    rows = []
    for effect in effects:
        dims = [*effect.dimensions.items(), (t("overall_short", lang), effect.overall)]
        for i, (dim, d) in enumerate(dims):
            rows.append(
                [
                    effect.transform if i == 0 else "",
                    local_name(dim, lang),
                    str(d.n),
                    f"{d.rate_a:.1f}%",
                    f"{d.rate_b:.1f}%",
                    f"{d.difference:+.1f}",
                    f"[{d.ci_low:+.1f}, {d.ci_high:+.1f}]",
                    f"{d.p_value:.3g}",
                ]
            )
    print_table(console, cols, rows, title=t("robustness", lang), lang=lang)
    console.print(t("p_note", lang, mcnemar=MCNEMAR, sign_flip=SIGN_FLIP))
