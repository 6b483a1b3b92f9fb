"""Numbers from verdicts: metrics and intervals, comparisons, calibration, robustness, refusals."""
