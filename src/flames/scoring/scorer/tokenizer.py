"""The scorer's tokenizer: the official slow sentencepiece tokenizer, without transformers.

The official scorer tokenizes with InternLMTokenizer under transformers 4.33.2. How a checkpoint
declares that tokenizer is read by `flames.scoring.scorer.layout`; encoding then goes as that
version's ``PreTrainedTokenizer.tokenize`` and ``encode(truncation=True, max_length=...)``: cut the
text on every special and added token, strip the whitespace beside each token as its flags say,
encode each remaining piece on its own with sentencepiece (so each gets its own "▁" prefix), map
pieces to ids (added tokens first), add BOS (and EOS where the checkpoint asks), and truncate the
text's tokens so the whole fits max_length.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import sentencepiece as spm

from flames.scoring.scorer.layout import TokenizerLayout, read_layout


class Truncation(StrEnum):
    """How inputs longer than max_length are cut."""

    OFFICIAL = "official"
    """As infer.py: keep the first max_length tokens, which can cut off the template's tail."""
    KEEP_SUFFIX = "keep-suffix"
    """Shorten the response (then the prompt) so the whole template tail survives."""


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    truncated: bool


class TemplateEncoder:
    """Fits the scorer's template into max_length tokens, given `encode` and `truncate`."""

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` with the special tokens the tokenizer adds, untruncated."""
        raise NotImplementedError

    def truncate(self, text: str, max_length: int) -> Encoded:
        """As ``encode(text, truncation=True, max_length=...)``."""
        raise NotImplementedError

    def encode_fitted(
        self,
        render: Callable[[int, int], str],
        sizes: tuple[int, int],
        max_length: int,
        truncation: Truncation,
    ) -> Encoded:
        """Encode `render(prompt_chars, response_chars)` within `max_length` tokens.

        `render(p, r)` must give the text with the prompt cut to p characters and the response
        to r; `sizes` are the full lengths.
        """
        prompt_len, response_len = sizes
        if truncation is Truncation.OFFICIAL:
            return self.truncate(render(prompt_len, response_len), max_length)
        ids = self.encode(render(prompt_len, response_len))
        if len(ids) <= max_length:
            return Encoded(ids, truncated=False)
        # Keep the template's tail: the longest response (then prompt) prefix that fits.
        if len(self.encode(render(prompt_len, 0))) <= max_length:
            keep = self._longest_fit(lambda r: render(prompt_len, r), response_len, max_length)
            return Encoded(self.encode(render(prompt_len, keep)), truncated=True)
        keep = self._longest_fit(lambda p: render(p, 0), prompt_len, max_length)
        return Encoded(self.encode(render(keep, 0)), truncated=True)

    def _longest_fit(self, text_for: Callable[[int], str], upper: int, max_length: int) -> int:
        low, high = 0, upper  # invariant: text_for(low) fits
        while low < high:
            mid = (low + high + 1) // 2
            if len(self.encode(text_for(mid))) <= max_length:
                low = mid
            else:
                high = mid - 1
        return low


class ScorerTokenizer(TemplateEncoder):
    def __init__(self, layout: TokenizerLayout, sp: spm.SentencePieceProcessor):
        self.layout = layout
        self.sp = sp
        self.bos_id = layout.bos_id
        self.eos_id = layout.eos_id
        self.pad_id = layout.pad_id
        self._ids = {t.content: t.id for t in layout.split_tokens}
        self._strips = {t.content: (t.strip_left, t.strip_right) for t in layout.split_tokens}
        self._added = {t.content: t.id for t in layout.split_tokens if t.id >= sp.get_piece_size()}
        longest_first = sorted(self._ids, key=len, reverse=True)
        self._split = (
            re.compile("(" + "|".join(re.escape(t) for t in longest_first) + ")")
            if longest_first and not layout.split_special_tokens
            else None
        )

    @classmethod
    def from_checkpoint(cls, directory: Path) -> ScorerTokenizer:
        return cls(*read_layout(directory))

    def describe(self) -> dict[str, Any]:
        """What the scorer manifest records about the tokenizer."""
        return self.layout.describe()

    def _chunks(self, text: str) -> list[str]:
        """Cut on the split tokens, then strip whitespace beside each as its flags say."""
        if self._split is None:
            return [text] if text else []
        parts = [p for p in self._split.split(text) if p]
        for i, part in enumerate(parts):
            if part not in self._ids:
                continue
            strip_left, strip_right = self._strips[part]
            if strip_right and i + 1 < len(parts):
                parts[i + 1] = parts[i + 1].lstrip()
            if strip_left and i > 0:
                parts[i - 1] = parts[i - 1].rstrip()
        return [p for p in parts if p]

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text` alone: no BOS or EOS, untruncated."""
        ids: list[int] = []
        for chunk in self._chunks(text):
            if chunk in self._ids:
                ids.append(self._ids[chunk])
            else:
                for piece in self.sp.encode(chunk, out_type=str):
                    ids.append(self._added.get(piece, self.sp.piece_to_id(piece)))
        return ids

    def _wrap(self, ids: list[int]) -> list[int]:
        bos = [self.bos_id] if self.layout.add_bos and self.bos_id is not None else []
        eos = [self.eos_id] if self.layout.add_eos and self.eos_id is not None else []
        return bos + ids + eos

    @property
    def special_count(self) -> int:
        """Tokens added around the text (BOS, EOS)."""
        return len(self._wrap([]))

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` with the checkpoint's BOS (and EOS, if it asks), untruncated."""
        return self._wrap(self.tokenize(text))

    def truncate(self, text: str, max_length: int) -> Encoded:
        """As ``encode(text, truncation=True, max_length=...)``: cut the text's own tokens."""
        ids = self.tokenize(text)
        excess = len(ids) + self.special_count - max_length
        if excess <= 0:
            return Encoded(self._wrap(ids), truncated=False)
        if self.layout.truncation_side == "left":
            return Encoded(self._wrap(ids[excess:]), truncated=True)
        return Encoded(self._wrap(ids[: len(ids) - excess]), truncated=True)
