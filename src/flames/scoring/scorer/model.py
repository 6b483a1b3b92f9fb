"""The Flames-scorer network: InternLM-7B as transformers' native Llama, plus 5 linear heads.

InternLM v1 is Llama with a bias on the q, k, v and o projections, so the backbone is
`LlamaModel(attention_bias=True)`. The heads [3, 3, 3, 2, 2] (Fairness, Safety, Morality,
Legality, Data protection) read the hidden state of the last non-pad token, found exactly as the
official code does: ``(input_ids != pad_token_id).sum(-1) - 1``, which assumes right padding.

A trained scorer (flames.training) may sit on another backbone: any transformers base model
built from its config (Qwen2, Llama, ...), or an encoder (BERT, RoBERTa), which pools on its
first token (``[CLS]``) instead; `Pooling` names the two, and the scorer manifest records which.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, LlamaConfig, LlamaModel, PretrainedConfig

HEAD_SIZES = (3, 3, 3, 2, 2)


class Pooling(StrEnum):
    """Which token's hidden state the heads read."""

    LAST = "last-non-pad"
    """The official pooling: position ``(input_ids != pad).sum(-1) - 1`` (right padding)."""
    FIRST = "first"
    """An encoder's ``[CLS]``, the first token (a named option for encoder backbones)."""


def backbone_of(config: PretrainedConfig) -> nn.Module:
    """The base model (no language-model head) that `config` describes."""
    if isinstance(config, LlamaConfig):
        return LlamaModel(config)
    if config.model_type in ("bert", "roberta", "xlm-roberta"):  # their pooler is never used
        return AutoModel.from_config(config, add_pooling_layer=False)
    return AutoModel.from_config(config)


def llama_config(internlm: dict[str, Any]) -> LlamaConfig:
    """The Llama configuration equivalent to an InternLM v1 config.json."""
    rotary = internlm.get("rotary") or {}
    heads = internlm["num_attention_heads"]
    return LlamaConfig(
        vocab_size=internlm["vocab_size"],
        hidden_size=internlm["hidden_size"],
        intermediate_size=internlm["intermediate_size"],
        num_hidden_layers=internlm["num_hidden_layers"],
        num_attention_heads=heads,
        num_key_value_heads=internlm.get("num_key_value_heads", heads),
        hidden_act=internlm.get("hidden_act", "silu"),
        max_position_embeddings=internlm.get("max_position_embeddings", 2048),
        rms_norm_eps=internlm.get("rms_norm_eps", 1e-6),
        # transformers 5 still accepts rope_theta and folds it into rope_parameters (tested).
        rope_theta=float(rotary.get("base", internlm.get("rope_theta", 10000.0))),  # type: ignore[call-arg]
        attention_bias=bool(internlm.get("bias", True)),
        mlp_bias=False,
        pad_token_id=internlm.get("pad_token_id", 2),
        bos_token_id=internlm.get("bos_token_id", 1),
        eos_token_id=internlm.get("eos_token_id", 2),
        tie_word_embeddings=False,
    )


class FlamesScorerModel(nn.Module):
    def __init__(
        self,
        config: PretrainedConfig,
        pooling: Pooling = Pooling.LAST,
        backbone: nn.Module | None = None,
    ):
        super().__init__()
        self.config = config
        if config.pad_token_id is None:
            raise ValueError("the scorer pools on the last non-pad token: pad_token_id is needed")
        self.pad_token_id: int = config.pad_token_id
        self.pooling = Pooling(pooling)
        self.model = backbone if backbone is not None else backbone_of(config)
        self.classifiers = nn.ModuleList(
            nn.Linear(config.hidden_size, n, bias=False) for n in HEAD_SIZES
        )

    def pool_index(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Position of the last non-pad token of each row, exactly as the official code (or 0,
        the first token, with `Pooling.FIRST`)."""
        if self.pooling is Pooling.FIRST:
            return torch.zeros(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
        return torch.ne(input_ids, self.pad_token_id).sum(-1) - 1

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """Logits of each of the 5 heads at the pooled position, in fp32: 5 x [batch, classes]."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        pooled = hidden[rows, self.pool_index(input_ids)]
        return [head(pooled).float() for head in self.classifiers]
