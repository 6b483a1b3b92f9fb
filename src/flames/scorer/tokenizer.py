"""The scorer's tokenizer: sentencepiece, encoding exactly as InternLMTokenizer does.

InternLMTokenizer is a slow transformers tokenizer over `tokenizer.model`: it adds BOS, never
EOS, pads with ``</s>`` (id 2) on the right, and, like every slow tokenizer of transformers 4.33
(the scorer's version), splits the text on its special tokens (and on any tokens listed in the
checkpoint's ``added_tokens.json``) first, strips the whitespace on both sides of each, and
encodes the pieces between them with sentencepiece.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import sentencepiece as spm

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


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


class ScorerTokenizer:
    def __init__(self, model_file: Path | str, added_tokens: dict[str, int] | None = None):
        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.bos_id = self.sp.piece_to_id(BOS)
        self.eos_id = self.sp.piece_to_id(EOS)
        self.pad_id = self.eos_id
        self._special_ids = {
            BOS: self.bos_id,
            EOS: self.eos_id,
            UNK: self.sp.piece_to_id(UNK),
            **(added_tokens or {}),
        }
        longest_first = sorted(self._special_ids, key=len, reverse=True)
        self._split = re.compile("(" + "|".join(re.escape(t) for t in longest_first) + ")")

    @classmethod
    def from_checkpoint(cls, directory: Path) -> ScorerTokenizer:
        added = directory / "added_tokens.json"
        tokens = json.loads(added.read_text(encoding="utf-8")) if added.is_file() else None
        return cls(directory / "tokenizer.model", tokens)

    def _chunks(self, text: str) -> list[str]:
        """Split on special tokens and strip the whitespace around each, as transformers 4.33."""
        parts = self._split.split(text)
        for i, part in enumerate(parts):
            if part in self._special_ids:
                if i + 1 < len(parts) and parts[i + 1]:
                    parts[i + 1] = parts[i + 1].lstrip()
                if i > 0 and parts[i - 1]:
                    parts[i - 1] = parts[i - 1].rstrip()
        return [p for p in parts if p]

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` with BOS in front and no EOS, untruncated."""
        ids = [self.bos_id]
        for chunk in self._chunks(text):
            if chunk in self._special_ids:
                ids.append(self._special_ids[chunk])
            else:
                ids.extend(self.sp.encode(chunk))
        return ids

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
        ids = self.encode(render(prompt_len, response_len))
        if len(ids) <= max_length:
            return Encoded(ids, truncated=False)
        if truncation is Truncation.OFFICIAL:
            return Encoded(ids[:max_length], truncated=True)
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
