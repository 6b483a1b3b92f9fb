"""A trained scorer's own tokenizer, through transformers: a named difference from the official.

The official scorer's slow sentencepiece tokenizer is reproduced exactly, without transformers
(`flames.scoring.scorer.tokenizer`). A scorer trained on another backbone (Qwen2.5, SmolLM2, a
Chinese BERT, ...) tokenizes as that backbone does: ``tokenizer(text)`` with its special tokens,
and ``truncation=True, max_length=...`` as infer.py asks, padded on the right. Its card says
``tokenizer: transformers``, and the scorer manifest records the class and the version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flames.scoring.scorer.layout import TokenizerError
from flames.scoring.scorer.tokenizer import Encoded, TemplateEncoder


class TransformersTokenizer(TemplateEncoder):
    def __init__(self, tokenizer: Any):
        if tokenizer.pad_token_id is None:
            raise TokenizerError(
                f"{tokenizer.name_or_path}: the tokenizer has no pad token; the scorer pads "
                "its batches with it"
            )
        self.tokenizer = tokenizer
        self.pad_id: int = tokenizer.pad_token_id

    @classmethod
    def from_folder(cls, directory: Path, trust_remote_code: bool = False) -> TransformersTokenizer:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(
                directory, trust_remote_code=trust_remote_code
            )
        except (OSError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TokenizerError(f"{directory}: no usable tokenizer ({reason})") from None
        return cls(tokenizer)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def truncate(self, text: str, max_length: int) -> Encoded:
        ids = self.encode(text)
        if len(ids) <= max_length:
            return Encoded(ids, truncated=False)
        cut = self.tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
        return Encoded(list(cut), truncated=True)

    def describe(self) -> dict[str, Any]:
        """What the scorer manifest records about the tokenizer."""
        import transformers

        tok = self.tokenizer
        return {
            "class": type(tok).__name__,
            "library": f"transformers {transformers.__version__}",
            "pad_token_id": self.pad_id,
            "special_tokens": self.encode("") or [],
            "truncation_side": tok.truncation_side,
            "padding_side": "right",
        }
