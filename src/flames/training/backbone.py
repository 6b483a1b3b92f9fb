"""The network a scorer is trained from: a backbone with the 5 heads, and its tokenizer.

- A folder in the official scorer's layout (InternLM's config.json and sentencepiece tokenizer:
  the released scorer, InternLM-chat-7b, a random checkpoint from
  `flames.scoring.scorer.synthetic`, or a scorer trained earlier): loaded by the official
  scorer's own code, its heads kept where it has them. The trained scorer keeps that layout, so
  the official infer.py loads it, and it tokenizes exactly as the official scorer.
- Any other transformers model (a folder, a hub id, or a .gguf file): its base model through
  ``AutoModel``, new heads, and its own tokenizer. A causal LM pools on the last non-pad token;
  an encoder (BERT, RoBERTa: a named option) on its first token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from flames.errors import UsageError
from flames.scoring.scorer.card import read_card
from flames.scoring.scorer.checkpoint import load_model
from flames.scoring.scorer.layout import read_json
from flames.scoring.scorer.model import FlamesScorerModel, Pooling
from flames.scoring.scorer.official import load_tokenizer
from flames.scoring.scorer.tokenizer import TemplateEncoder

log = logging.getLogger(__name__)

ENCODER_TYPES = ("bert", "roberta", "xlm-roberta", "ernie", "nezha", "megatron-bert")
"""Model types taken for encoders by backbone "auto"."""
POOLER_TYPES = ("bert", "roberta", "xlm-roberta")
"""Encoders loaded without their pooler, which the scorer never uses (as `backbone_of`)."""


@dataclass
class Backbone:
    model: FlamesScorerModel
    tokenizer: TemplateEncoder
    layout: str
    """internlm (the official layout) or transformers."""
    kind: str
    """causal-lm or encoder."""
    source: Path | None = None
    """The official-layout folder, whose config and tokenizer files the export copies."""
    hf_tokenizer: Any = None
    """The transformers tokenizer the export saves (transformers layout)."""
    info: dict[str, Any] = field(default_factory=dict)


def _official_layout(path: Path) -> bool:
    if not path.is_dir():
        return False
    card = read_card(path)
    if card is not None:
        return card.layout == "internlm"
    config = read_json(path / "config.json") or {}
    return config.get("model_type") == "internlm"


def load_backbone(base: str, kind: str = "auto", trust_remote_code: bool = False) -> Backbone:
    """The backbone `base` with the scorer's heads, in fp32 on the CPU (heads it lacks are new,
    drawn from torch's current random state: seed first)."""
    path = Path(base)
    if _official_layout(path):
        if kind == "encoder":
            raise UsageError(f"{base}: an InternLM checkpoint is not an encoder", "--backbone")
        model, _ = load_model(path, torch.float32, "cpu", heads=False)
        tokenizer = load_tokenizer(path, read_card(path))
        info = {"base": base, "model_type": "internlm", "kind": "causal-lm"}
        return Backbone(model.train(), tokenizer, "internlm", "causal-lm", source=path, info=info)
    card = read_card(path) if path.is_dir() else None
    if card is not None:  # a trained scorer on another backbone: go on training it
        model, _ = load_model(path, torch.float32, "cpu")
        tokenizer = load_tokenizer(path, card)
        kind = card.backbone.get("kind", "causal-lm")
        info = {**card.backbone, "base": base}
        hf = getattr(tokenizer, "tokenizer", None)
        return Backbone(model.train(), tokenizer, "transformers", kind, hf_tokenizer=hf, info=info)
    return _transformers_backbone(base, kind, trust_remote_code)


def _transformers_backbone(base: str, kind: str, trust_remote_code: bool) -> Backbone:
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from flames.scoring.scorer.fast_tokenizer import TransformersTokenizer

    where: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    name = base
    path = Path(base)
    if path.suffix == ".gguf":  # a GGUF file: transformers dequantises it
        if not path.is_file():
            raise UsageError(f"{base}: no such file", "--base")
        name, where["gguf_file"] = str(path.parent), path.name
    elif not path.exists() and (path.is_absolute() or base.count("/") != 1):
        raise UsageError(f"{base}: no such folder, and not a Hugging Face repo id", "--base")
    try:
        hf_tokenizer = AutoTokenizer.from_pretrained(name, **where)
        config = AutoConfig.from_pretrained(name, **where)
        if kind == "auto":
            kind = "encoder" if config.model_type in ENCODER_TYPES else "causal-lm"
        extra = {"add_pooling_layer": False} if config.model_type in POOLER_TYPES else {}
        backbone = AutoModel.from_pretrained(name, dtype=torch.float32, **where, **extra)
    except (OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"{base}: cannot load it as a transformers model ({reason})") from None
    config = backbone.config
    model_type = getattr(config, "model_type", "")
    if hf_tokenizer.pad_token is None:  # causal LMs often have none: pad with end-of-text
        if hf_tokenizer.eos_token is None:
            raise UsageError(f"{base}: the tokenizer has neither a pad nor an end token")
        hf_tokenizer.pad_token = hf_tokenizer.eos_token
    hf_tokenizer.padding_side = "right"
    config.pad_token_id = hf_tokenizer.pad_token_id
    if getattr(config, "quantization_config", None) is not None:
        del config.quantization_config  # a dequantised GGUF: plain tensors now
    pooling = Pooling.FIRST if kind == "encoder" else Pooling.LAST
    model = FlamesScorerModel(config, pooling, backbone=backbone)
    info = {"base": base, "model_type": model_type, "kind": kind, "class": type(backbone).__name__}
    return Backbone(
        model.train(),
        TransformersTokenizer(hf_tokenizer),
        "transformers",
        kind,
        hf_tokenizer=hf_tokenizer,
        info=info,
    )
