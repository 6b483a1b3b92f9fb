"""Labels as the scorer reads them: the official template, tokenized and truncated as the scorer
will be at scoring time, each with its head and class; and the batches of an epoch.

Batches are a pure function of (seed, epoch): the epoch's order is shuffled, then answers of
similar length are grouped (within windows of 50 batches, then the batches shuffled again), so
little compute goes to padding. A run resumed after a kill sees exactly the same batches.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from flames.scoring.scorer.template import render
from flames.scoring.scorer.tokenizer import TemplateEncoder, Truncation
from flames.training.labels import Example, class_index

GROUP_WINDOW = 50
"""Batches per window within which answers are sorted by length."""


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    head: int
    target: int
    truncated: bool


def encode_examples(
    examples: Sequence[Example],
    tokenizer: TemplateEncoder,
    max_length: int,
    truncation: Truncation,
) -> list[Encoded]:
    """Each label's scorer input, head and class, exactly as the scorer will encode it."""
    encoded = []
    for e in examples:
        prompt, response = e.prompt, e.response
        fitted = tokenizer.encode_fitted(
            lambda p, r, prompt=prompt, response=response: render(prompt[:p], response[:r]),
            (len(prompt), len(response)),
            max_length,
            truncation,
        )
        head = e.dimension.head_index
        encoded.append(
            Encoded(fitted.ids, head, class_index(e.dimension, e.score), fitted.truncated)
        )
    return encoded


class EncodedDataset(torch.utils.data.Dataset[Encoded]):
    def __init__(self, encoded: Sequence[Encoded]):
        self.encoded = list(encoded)

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, index: int) -> Encoded:
        return self.encoded[index]


def epoch_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group: bool = True
) -> list[list[int]]:
    """The batches of one epoch: shuffled, grouped by length within windows, deterministic."""
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group:
        window = batch_size * GROUP_WINDOW
        order = [
            i
            for start in range(0, len(order), window)
            for i in sorted(order[start : start + window], key=lambda i: -lengths[i])
        ]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if group:
        rng.shuffle(batches)
    return batches


class EpochSampler(torch.utils.data.Sampler[list[int]]):
    """A batch sampler over `epoch_batches`."""

    def __init__(self, batches: list[list[int]]):
        self.batches = batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def collate(pad_id: int, batch: Sequence[Encoded]) -> dict[str, torch.Tensor]:
    """Right padding with the pad id, as the scorer pads (its pooling assumes it)."""
    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        ids[row, : len(e.ids)] = torch.tensor(e.ids)
        mask[row, : len(e.ids)] = 1
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "heads": torch.tensor([e.head for e in batch]),
        "targets": torch.tensor([e.target for e in batch]),
    }
