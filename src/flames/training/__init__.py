"""Scorer training and evaluation from labels: datasets, splits, the masked multi-task loss,
the training loop, and export in the official scorer's layout."""
