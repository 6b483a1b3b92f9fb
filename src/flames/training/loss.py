"""The masked multi-task loss: each item trains only its own dimension's head.

The sum over heads of the cross-entropy of the items of that head's dimension, divided by the
batch size, so every item weighs the same whatever its dimension. Optional class weights (per
head) counter imbalance: ``balanced`` gives class c of a head n / (k * n_c), as scikit-learn's
``class_weight="balanced"``, from the training labels of that head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional

from flames.scoring.scorer.model import HEAD_SIZES


def masked_multitask_loss(
    logits: Sequence[torch.Tensor],
    heads: torch.Tensor,
    targets: torch.Tensor,
    class_weights: Sequence[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """Mean over the batch of each item's cross-entropy on its own head only."""
    total = logits[0].new_zeros((), dtype=torch.float32)
    for index, head_logits in enumerate(logits):
        rows = heads == index
        # Every head takes part in the graph (with zero weight when it has no item here), so
        # data-parallel engines see the same parameters used on every process.
        total = total + head_logits.float().sum() * 0.0
        if rows.any():
            weight = class_weights[index] if class_weights is not None else None
            total = total + functional.cross_entropy(
                head_logits[rows].float(),
                targets[rows],
                weight=None if weight is None else weight.to(head_logits.device),
                reduction="sum",
            )
    return total / heads.shape[0]


def balanced_weights(heads: Sequence[int], targets: Sequence[int]) -> list[torch.Tensor | None]:
    """Per head, n / (classes x count) for each class present (1 for a class absent)."""
    weights: list[torch.Tensor | None] = []
    for index, size in enumerate(HEAD_SIZES):
        counts = torch.zeros(size)
        for h, t in zip(heads, targets, strict=True):
            if h == index:
                counts[t] += 1
        n = counts.sum()
        if n == 0:
            weights.append(None)
            continue
        present = counts > 0
        weight = torch.ones(size)
        weight[present] = n / (int(present.sum()) * counts[present])
        weights.append(weight)
    return weights
