"""How far a judge can be trusted: agreement with human labels.

- accuracy and Cohen's kappa, overall and per dimension, and the confusion matrix. Cohen's
  kappa is unweighted (every disagreement counts the same); linear or quadratic weights, for the
  ordinal 1-2-3 scale, are an option (a disagreement of 1 vs 3 counts twice, or four times, as
  much as 1 vs 2);
- Fleiss' kappa between annotators, on the answers every annotator labelled;
- harmless rates corrected for the judge's measured error (Rogan-Gladen): with sensitivity
  se = P(judge 3 | human 3) and specificity sp = P(judge not 3 | human not 3), the corrected
  rate is (observed + sp - 1) / (se + sp - 1), clipped to [0, 100]. Its interval is a
  bootstrap over labelled and unlabelled answers together (counts resampled per dimension), so
  it carries the uncertainty of se and sp as well as of the observed rate. se (sp) is undefined,
  None, when no labelled answer is harmless (not harmless).

A statistic whose denominator is zero is undefined, not 0 or 1: it is None, and the model's
`undefined` says why (e.g. Cohen's kappa when both raters give every answer the same score:
there is no disagreement expected by chance to improve on; scikit-learn gives NaN there).

se and sp are only unbiased when the labelled answers are a random sample of the answers:
`flames annotate export --random N` draws one, and each label records how its answer was
selected (see flames.scoring.annotate), so calibrate can say when they are not.

With several annotators the reference label of an answer is their majority; answers without a
majority are left out of the reference and counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import combinations
from typing import Literal

import numpy as np
from pydantic import BaseModel

from flames.data.taxonomy import HARMLESS, Dimension
from flames.errors import FlamesError
from flames.runs.records import RANDOM, UNKNOWN_SELECTION
from flames.runs.store import RunStore

SCORES = (1, 2, 3)
Key = tuple[str, int]
KappaWeights = Literal["linear", "quadratic"]


KAPPA_UNDEFINED = "both raters gave every answer the same score, so no agreement is beyond chance"
FLEISS_UNDEFINED = "every annotator gave every answer the same score"
SENSITIVITY_UNDEFINED = "no labelled answer here is harmless"
SPECIFICITY_UNDEFINED = "every labelled answer here is harmless"
CORRECTION_UNDEFINED = "sensitivity or specificity is undefined"
NO_BETTER_THAN_CHANCE = "the judge is no better than chance here (sensitivity + specificity <= 1)"
REASONS = (
    KAPPA_UNDEFINED,
    FLEISS_UNDEFINED,
    SENSITIVITY_UNDEFINED,
    SPECIFICITY_UNDEFINED,
    CORRECTION_UNDEFINED,
    NO_BETTER_THAN_CHANCE,
)
"""Why a statistic is undefined, in the words reports print (flames.reporting.i18n has them)."""


def cohen_kappa(
    a: Sequence[int], b: Sequence[int], weights: KappaWeights | None = None
) -> float | None:
    """Cohen's kappa of two raters over the same scores 1-3; None (undefined, KAPPA_UNDEFINED)
    when both give every answer the same score, so that chance agreement is already perfect.

    `weights`: None counts every disagreement the same; "linear" and "quadratic" weigh it by
    |x - y| or (x - y) ** 2, for the ordinal scale.
    """
    index = {s: i for i, s in enumerate(SCORES)}
    observed = np.zeros((len(SCORES), len(SCORES)))
    for x, y in zip(a, b, strict=True):
        observed[index[x], index[y]] += 1
    observed /= len(a)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    distance = np.abs(np.subtract.outer(np.arange(len(SCORES)), np.arange(len(SCORES))))
    if weights is None:
        penalty = (distance > 0).astype(float)
    else:
        penalty = distance ** (2 if weights == "quadratic" else 1)
    chance = float((penalty * expected).sum())
    return None if chance == 0 else 1 - float((penalty * observed).sum()) / chance


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa from an items x categories matrix of rating counts (equal raters per item);
    None (undefined, FLEISS_UNDEFINED) when every rating is the same score."""
    n_items = counts.shape[0]
    raters = counts.sum(axis=1)[0]
    p_category = counts.sum(axis=0) / (n_items * raters)
    p_item = ((counts**2).sum(axis=1) - raters) / (raters * (raters - 1))
    p_bar, p_e = p_item.mean(), (p_category**2).sum()
    return None if p_e == 1 else float((p_bar - p_e) / (1 - p_e))


class AgreementStats(BaseModel):
    n: int
    accuracy: float
    cohen_kappa: float | None
    """Unweighted; None when undefined (see `undefined`)."""
    weighted_kappa: float | None = None
    """Cohen's kappa with the calibration's `kappa_weights`, when asked for."""
    undefined: dict[str, str] = {}
    """Why a statistic above is None although asked for: field name -> reason."""


class CorrectedRate(BaseModel):
    observed: float
    """The judge's harmless rate over every answer it scored in this dimension (percent)."""
    corrected: float | None
    """None when se or sp is undefined or the judge is no better than chance (se + sp <= 1)."""
    ci_low: float | None = None
    ci_high: float | None = None
    """Bootstrap interval of `corrected`; resamples where it is undefined count as 0 for the
    lower limit and 100 for the upper, so an unstable correction shows as a wide interval."""
    sensitivity: float | None
    """None (undefined) when no labelled answer here is harmless."""
    specificity: float | None
    """None (undefined) when every labelled answer here is harmless."""
    labelled: int
    unlabelled: int
    undefined: dict[str, str] = {}
    """Why a statistic above is None: field name -> reason."""


class Calibration(BaseModel):
    judge: str
    reference: list[str]
    overall: AgreementStats
    dimensions: dict[str, AgreementStats]
    confusion: dict[int, dict[int, int]]
    """confusion[human][judge] = number of answers."""
    no_majority: int
    fleiss_kappa: float | None
    """None with one annotator, or when undefined (see `undefined`)."""
    annotated_by_all: int
    corrected_rates: dict[str, CorrectedRate]
    kappa_weights: KappaWeights | None = None
    label_selection: dict[str, int]
    """How the labelled answers were selected (flames.scoring.annotate.SELECTION), counted."""
    bootstrap_samples: int
    seed: int
    undefined: dict[str, str] = {}
    """Why a statistic above is None although it was computed: field name -> reason."""

    @property
    def random_labels(self) -> bool:
        """Whether every label was on an answer drawn at random."""
        return all(s.startswith(RANDOM) for s in self.label_selection)


class PairAgreement(BaseModel):
    """How often two scorers give the same score to the answers both scored."""

    a: str
    b: str
    n: int
    """Answers scored by both (0: none in common, and no agreement to measure)."""
    agreement: float | None
    """Percent of those answers with the same score."""
    cohen_kappa: float | None
    """None when there is no answer in common, or when undefined (see `undefined`)."""
    undefined: dict[str, str] = {}


class Disagreements(BaseModel):
    """Where several scorers disagree on a run's answers."""

    pairs: list[PairAgreement]
    """Every pair of the scorers, in the order given."""
    contested: int
    """Answers the scorers do not all score the same (worth labelling first)."""


def pair_agreements(store: RunStore, scorers: Sequence[str]) -> list[PairAgreement]:
    """The agreement of every pair of `scorers` on this run, in the order given."""
    scores = {name: _labels(store, name) for name in scorers}
    pairs = []
    for a, b in combinations(scorers, 2):
        keys = sorted(scores[a].keys() & scores[b].keys())
        x, y = [scores[a][k] for k in keys], [scores[b][k] for k in keys]
        same = 100 * sum(i == j for i, j in zip(x, y, strict=True)) / len(keys) if keys else None
        kappa = cohen_kappa(x, y) if keys else None
        why = {"cohen_kappa": KAPPA_UNDEFINED} if keys and kappa is None else {}
        pairs.append(
            PairAgreement(a=a, b=b, n=len(keys), agreement=same, cohen_kappa=kappa, undefined=why)
        )
    return pairs


def _labels(store: RunStore, scorer: str) -> dict[Key, int]:
    return {
        (v.item_id, v.sample): v.score
        for v in store.verdicts(scorer)
        if v.status == "ok" and v.score is not None
    }


def _selection(store: RunStore, scorers: Sequence[str]) -> dict[Key, str]:
    """How each labelled answer was selected, as its first annotator recorded it."""
    how: dict[Key, str] = {}
    for name in scorers:
        for v in store.verdicts(name):
            how.setdefault((v.item_id, v.sample), v.raw or UNKNOWN_SELECTION)
    return how


def reference_labels(per_annotator: list[dict[Key, int]]) -> tuple[dict[Key, int], int]:
    """Majority label per answer, and how many answers had no majority."""
    votes: dict[Key, list[int]] = {}
    for labels in per_annotator:
        for key, score in labels.items():
            votes.setdefault(key, []).append(score)
    reference, ties = {}, 0
    for key, scores in votes.items():
        (top, count), *rest = Counter(scores).most_common()
        if rest and rest[0][1] == count:
            ties += 1
        else:
            reference[key] = top
    return reference, ties


def _agreement(pairs: list[tuple[int, int]], weights: KappaWeights | None) -> AgreementStats:
    human, judge = [h for h, _ in pairs], [j for _, j in pairs]
    kappa = cohen_kappa(human, judge)
    weighted = None if weights is None else cohen_kappa(human, judge, weights)
    undefined = {"cohen_kappa": KAPPA_UNDEFINED} if kappa is None else {}
    if weights is not None and weighted is None:
        undefined["weighted_kappa"] = KAPPA_UNDEFINED
    return AgreementStats(
        n=len(pairs),
        accuracy=100 * sum(h == j for h, j in pairs) / len(pairs),
        cohen_kappa=kappa,
        weighted_kappa=weighted,
        undefined=undefined,
    )


def calibrate(
    store: RunStore,
    judge: str,
    annotators: Sequence[str],
    kappa_weights: KappaWeights | None = None,
    bootstrap_samples: int = 2000,
    seed: int = 0,
) -> Calibration:
    """Compare `judge`'s verdicts with the human scorers `annotators` on this run."""
    dims = {item.id: item.dimension for item in store.items()}
    humans = [_labels(store, name) for name in annotators]
    reference, ties = reference_labels(humans)
    judged = _labels(store, judge)
    common = sorted(reference.keys() & judged.keys())
    if not common:
        raise FlamesError(
            f"no answer has both a label from {', '.join(annotators)} and a verdict from {judge}"
        )
    pairs = {key: (reference[key], judged[key]) for key in common}
    confusion = {h: {j: 0 for j in SCORES} for h in SCORES}
    for h, j in pairs.values():
        confusion[h][j] += 1
    rng = np.random.default_rng(seed)
    dimensions, corrected = {}, {}
    for dim in Dimension:
        in_dim = [pairs[k] for k in common if dims[k[0]] is dim]
        if not in_dim:
            continue
        dimensions[dim.value] = _agreement(in_dim, kappa_weights)
        unlabelled = [s for k, s in judged.items() if dims[k[0]] is dim and k not in pairs]
        corrected[dim.value] = _correct(in_dim, unlabelled, rng, bootstrap_samples)
    selection = _selection(store, annotators)
    fleiss, shared, undefined = None, 0, {}
    if len(humans) > 1:
        keys = set.intersection(*(set(h) for h in humans))
        shared = len(keys)
        if keys:
            counts = np.array([[sum(h[k] == s for h in humans) for s in SCORES] for k in keys])
            fleiss = fleiss_kappa(counts)
            if fleiss is None:
                undefined["fleiss_kappa"] = FLEISS_UNDEFINED
    return Calibration(
        judge=judge,
        reference=list(annotators),
        overall=_agreement(list(pairs.values()), kappa_weights),
        dimensions=dimensions,
        confusion=confusion,
        no_majority=ties,
        fleiss_kappa=fleiss,
        annotated_by_all=shared,
        corrected_rates=corrected,
        kappa_weights=kappa_weights,
        label_selection=dict(Counter(selection[k] for k in common)),
        bootstrap_samples=bootstrap_samples,
        seed=seed,
        undefined=undefined,
    )


def rogan_gladen(
    observed: np.ndarray, sensitivity: np.ndarray, specificity: np.ndarray
) -> np.ndarray:
    """The corrected share, clipped to [0, 1]; NaN where se or sp is NaN or se + sp <= 1."""
    with np.errstate(invalid="ignore", divide="ignore"):
        informed = sensitivity + specificity - 1
        raw = (observed + specificity - 1) / informed
    return np.where(informed > 0, np.clip(raw, 0, 1), np.nan)


def _rates(cells: np.ndarray, unlabelled_harmless: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """Observed share, se and sp (NaN where undefined) from labelled cells (tp, fn, fp, tn)."""
    tp, fn, fp, tn = np.moveaxis(cells.astype(float), -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity = tp / (tp + fn)
        specificity = tn / (fp + tn)
    return (tp + fp + unlabelled_harmless) / n, sensitivity, specificity


def _correct(
    pairs: list[tuple[int, int]],
    unlabelled: list[int],
    rng: np.random.Generator,
    samples: int,
) -> CorrectedRate:
    human = np.array([h == HARMLESS for h, _ in pairs])
    judge = np.array([j == HARMLESS for _, j in pairs])
    cells = np.array(
        [
            np.sum(human & judge),
            np.sum(human & ~judge),
            np.sum(~human & judge),
            np.sum(~human & ~judge),
        ]
    )
    labelled, others = len(pairs), len(unlabelled)
    others_harmless = sum(s == HARMLESS for s in unlabelled)
    observed, se, sp = _rates(cells, np.array(others_harmless), labelled + others)
    value = rogan_gladen(observed, se, sp)
    low = high = None
    if samples and not np.isnan(value):
        draws = _rates(
            rng.multinomial(labelled, cells / labelled, size=samples),
            rng.binomial(others, others_harmless / others if others else 0.0, size=samples),
            labelled + others,
        )
        replicates = rogan_gladen(*draws)
        low = 100 * float(np.quantile(np.nan_to_num(replicates, nan=0.0), 0.025))
        high = 100 * float(np.quantile(np.nan_to_num(replicates, nan=1.0), 0.975))

    def percent(x: np.ndarray) -> float | None:
        return None if np.isnan(x) else 100 * float(x)

    undefined = {}
    if np.isnan(se):
        undefined["sensitivity"] = SENSITIVITY_UNDEFINED
    if np.isnan(sp):
        undefined["specificity"] = SPECIFICITY_UNDEFINED
    if np.isnan(value):
        undefined["corrected"] = (
            CORRECTION_UNDEFINED if np.isnan(se) or np.isnan(sp) else NO_BETTER_THAN_CHANCE
        )
    return CorrectedRate(
        observed=100 * float(observed),
        corrected=percent(value),
        ci_low=low,
        ci_high=high,
        sensitivity=percent(se),
        specificity=percent(sp),
        labelled=labelled,
        unlabelled=others,
        undefined=undefined,
    )
