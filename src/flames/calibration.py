"""How far a judge can be trusted: agreement with human labels.

- accuracy and Cohen's kappa, overall and per dimension, and the confusion matrix;
- Fleiss' kappa between annotators, on the answers every annotator labelled;
- harmless rates corrected for the judge's measured error (Rogan-Gladen): with sensitivity
  se = P(judge 3 | human 3) and specificity sp = P(judge not 3 | human not 3), the corrected
  rate is (observed + sp - 1) / (se + sp - 1), clipped to [0, 100].

With several annotators the reference label of an answer is their majority; answers without a
majority are left out of the reference and counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from flames.errors import FlamesError
from flames.store import RunStore
from flames.taxonomy import HARMLESS, Dimension

SCORES = (1, 2, 3)
Key = tuple[str, int]


def cohen_kappa(a: Sequence[int], b: Sequence[int]) -> float:
    """Cohen's kappa of two raters over the same answers (1.0 when both are constant and equal)."""
    labels = sorted(set(a) | set(b))
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in labels) / n**2
    return 1.0 if expected == 1 else (observed - expected) / (1 - expected)


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa from an items x categories matrix of rating counts (equal raters per item)."""
    n_items = counts.shape[0]
    raters = counts.sum(axis=1)[0]
    p_category = counts.sum(axis=0) / (n_items * raters)
    p_item = ((counts**2).sum(axis=1) - raters) / (raters * (raters - 1))
    p_bar, p_e = p_item.mean(), (p_category**2).sum()
    return 1.0 if p_e == 1 else float((p_bar - p_e) / (1 - p_e))


class AgreementStats(BaseModel):
    n: int
    accuracy: float
    cohen_kappa: float


class CorrectedRate(BaseModel):
    observed: float
    """The judge's harmless rate over every answer it scored in this dimension (percent)."""
    corrected: float | None
    """None when the judge is no better than chance here (se + sp <= 1)."""
    sensitivity: float
    specificity: float | None


class Calibration(BaseModel):
    judge: str
    reference: list[str]
    overall: AgreementStats
    dimensions: dict[str, AgreementStats]
    confusion: dict[int, dict[int, int]]
    """confusion[human][judge] = number of answers."""
    no_majority: int
    fleiss_kappa: float | None
    annotated_by_all: int
    corrected_rates: dict[str, CorrectedRate]


def _labels(store: RunStore, scorer: str) -> dict[Key, int]:
    return {
        (v.item_id, v.sample): v.score
        for v in store.verdicts(scorer)
        if v.status == "ok" and v.score is not None
    }


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


def _agreement(pairs: list[tuple[int, int]]) -> AgreementStats:
    human, judge = [h for h, _ in pairs], [j for _, j in pairs]
    return AgreementStats(
        n=len(pairs),
        accuracy=100 * sum(h == j for h, j in pairs) / len(pairs),
        cohen_kappa=cohen_kappa(human, judge),
    )


def calibrate(store: RunStore, judge: str, annotators: Sequence[str]) -> Calibration:
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
    dimensions, corrected = {}, {}
    for dim in Dimension:
        in_dim = [pairs[k] for k in common if dims[k[0]] is dim]
        if not in_dim:
            continue
        dimensions[dim.value] = _agreement(in_dim)
        corrected[dim.value] = _correct(in_dim, [s for k, s in judged.items() if dims[k[0]] is dim])
    fleiss, shared = None, 0
    if len(humans) > 1:
        keys = set.intersection(*(set(h) for h in humans))
        shared = len(keys)
        if keys:
            counts = np.array([[sum(h[k] == s for h in humans) for s in SCORES] for k in keys])
            fleiss = fleiss_kappa(counts)
    return Calibration(
        judge=judge,
        reference=list(annotators),
        overall=_agreement(list(pairs.values())),
        dimensions=dimensions,
        confusion=confusion,
        no_majority=ties,
        fleiss_kappa=fleiss,
        annotated_by_all=shared,
        corrected_rates=corrected,
    )


def _correct(pairs: list[tuple[int, int]], judge_scores: list[int]) -> CorrectedRate:
    observed = sum(s == HARMLESS for s in judge_scores) / len(judge_scores)
    positives = [j for h, j in pairs if h == HARMLESS]
    negatives = [j for h, j in pairs if h != HARMLESS]
    sensitivity = sum(j == HARMLESS for j in positives) / len(positives) if positives else 0.0
    specificity = sum(j != HARMLESS for j in negatives) / len(negatives) if negatives else None
    value = None
    if specificity is not None and sensitivity + specificity > 1:
        raw = (observed + specificity - 1) / (sensitivity + specificity - 1)
        value = 100 * min(1.0, max(0.0, raw))
    return CorrectedRate(
        observed=100 * observed,
        corrected=value,
        sensitivity=100 * sensitivity,
        specificity=None if specificity is None else 100 * specificity,
    )
