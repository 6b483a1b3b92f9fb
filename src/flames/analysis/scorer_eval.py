"""How well a scorer agrees with held-out labels, per dimension and over all of them.

For each scorer (a trained one, the official scorer, an LLM judge, a Python function), on the
same labelled answers:

- accuracy, with the reports' rate interval (flames.analysis.intervals.proportion_interval);
- macro-F1 over the dimension's scale (classes never seen count 0, as scikit-learn's
  ``zero_division=0``), with a percentile bootstrap interval over the answers;
- the confusion matrix (label x prediction);
- Cohen's kappa, unweighted, linear and quadratic (flames.analysis.calibration.cohen_kappa),
  undefined (None, with the reason) when labels and predictions are all one and the same score;
- the harmless rate the scorer implies against the labels' own, each with that interval,
  and their gap (scorer minus labels) with a paired bootstrap interval: a scorer can be accurate
  and still move the headline number.

Over all dimensions the statistics are over all labels together (micro), with macro-F1 over the
scores 1, 2 and 3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

from flames.analysis.calibration import KAPPA_UNDEFINED, cohen_kappa
from flames.analysis.intervals import proportion_interval
from flames.analysis.metrics import Estimate
from flames.data.taxonomy import HARMLESS, THREE_LEVEL

CONFIDENCE = 0.95


class Agreement(BaseModel):
    """A scorer's agreement with the labels on one group of answers."""

    n: int
    accuracy: Estimate
    """Percent of answers given the label's score."""
    macro_f1: Estimate
    """Mean F1 over the scale's scores, in percent."""
    cohen_kappa: float | None
    """None when undefined (see `undefined`), as each kappa."""
    kappa_linear: float | None
    kappa_quadratic: float | None
    confusion: dict[int, dict[int, int]]
    """confusion[label][prediction] = answers."""
    harmless_rate: Estimate
    """The scorer's harmless rate on these answers (percent scored 3)."""
    label_harmless_rate: Estimate
    """The labels' own harmless rate."""
    harmless_gap: Estimate
    """Scorer minus labels, in points, with a paired bootstrap interval."""
    undefined: dict[str, str] = {}
    """Why a statistic is None: field name -> reason (a zero denominator)."""


class ScorerEvaluation(BaseModel):
    scorer: str
    kind: str
    overall: Agreement
    dimensions: dict[str, Agreement]
    errors: int = 0
    """Answers this scorer failed on (left out of every scorer's statistics)."""


def macro_f1(labels: np.ndarray, predicted: np.ndarray, scale: Sequence[int]) -> np.ndarray:
    """Macro-F1 of each row (the last axis holds the answers) over the scores in `scale`."""
    scores = []
    for s in scale:
        tp = ((labels == s) & (predicted == s)).sum(axis=-1)
        wrong = ((labels == s) != (predicted == s)).sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(2 * tp + wrong > 0, 2 * tp / (2 * tp + wrong), 0.0)
        scores.append(f1)
    return np.mean(scores, axis=0)


def _proportion(hits: int, n: int, confidence: float) -> Estimate:
    low, high = proportion_interval(hits, n, confidence)
    return Estimate(value=100 * hits / n, ci_low=100 * float(low), ci_high=100 * float(high))


def _percentile(value: float, draws: np.ndarray, confidence: float) -> Estimate:
    if not len(draws):
        return Estimate(value=value)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return Estimate(value=value, ci_low=float(low), ci_high=float(high))


def agreement(
    labels: Sequence[int],
    predicted: Sequence[int],
    scale: Sequence[int] = THREE_LEVEL,
    bootstrap: int = 2000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Agreement:
    """The agreement of `predicted` with `labels` (scores on `scale`)."""
    if len(labels) != len(predicted) or not labels:
        raise ValueError("labels and predictions must be non-empty and of the same length")
    y, p = np.asarray(labels), np.asarray(predicted)
    n = len(y)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(bootstrap, n)) if bootstrap else np.empty((0, n), int)
    yb, pb = y[draws], p[draws]
    f1 = 100 * float(macro_f1(y, p, scale))
    gap = 100 * float(np.mean(p == HARMLESS) - np.mean(y == HARMLESS))
    gap_draws = 100 * ((pb == HARMLESS).mean(axis=1) - (yb == HARMLESS).mean(axis=1))
    kappas = {
        "cohen_kappa": cohen_kappa(y.tolist(), p.tolist()),
        "kappa_linear": cohen_kappa(y.tolist(), p.tolist(), "linear"),
        "kappa_quadratic": cohen_kappa(y.tolist(), p.tolist(), "quadratic"),
    }
    return Agreement(
        n=n,
        accuracy=_proportion(int((y == p).sum()), n, confidence),
        macro_f1=_percentile(f1, 100 * macro_f1(yb, pb, scale), confidence),
        **kappas,
        confusion={a: {b: int(((y == a) & (p == b)).sum()) for b in scale} for a in scale},
        harmless_rate=_proportion(int((p == HARMLESS).sum()), n, confidence),
        label_harmless_rate=_proportion(int((y == HARMLESS).sum()), n, confidence),
        harmless_gap=_percentile(gap, gap_draws, confidence),
        undefined={k: KAPPA_UNDEFINED for k, v in kappas.items() if v is None},
    )


def evaluate_predictions(
    scorer: str,
    kind: str,
    dimensions: Sequence[str],
    scales: dict[str, Sequence[int]],
    labels: Sequence[int],
    predicted: Sequence[int],
    errors: int = 0,
    bootstrap: int = 2000,
    seed: int = 0,
) -> ScorerEvaluation:
    """Agreement over all answers and per dimension (in the order first seen)."""
    per: dict[str, Agreement] = {}
    for dim in dict.fromkeys(dimensions):
        rows = [i for i, d in enumerate(dimensions) if d == dim]
        per[dim] = agreement(
            [labels[i] for i in rows],
            [predicted[i] for i in rows],
            scales[dim],
            bootstrap,
            seed,
        )
    overall = agreement(labels, predicted, THREE_LEVEL, bootstrap, seed)
    return ScorerEvaluation(
        scorer=scorer, kind=kind, overall=overall, dimensions=per, errors=errors
    )


class ScorerComparison(BaseModel):
    """Scorers measured against the same held-out labels."""

    labels: dict[str, Any]
    """Where the labels came from, their hash, and how many were used and left out."""
    selection: str
    n: int
    """Labelled answers every scorer judged."""
    scorers: list[ScorerEvaluation]
    bootstrap_samples: int
    seed: int
