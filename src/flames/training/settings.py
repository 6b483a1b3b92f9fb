"""The settings of a training run: one typed object from the command line, Python or a file."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flames.training.split import SplitSettings


class LoraSettings(BaseModel):
    """Low-rank adapters on the backbone (peft); merged into the weights on export."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """The backbone's linear layers to adapt (peft's "all-linear": every one)."""


class TrainingSettings(BaseModel):
    """Everything a trained scorer is made from. `flames scorer train --config FILE` reads it."""

    model_config = ConfigDict(extra="forbid")

    labels: list[str] = Field(default_factory=list)
    """JSONL files and run directories."""
    annotators: list[str] = Field(default_factory=list)
    """Human labels of these annotators only (runs; default: all)."""
    from_scorer: str | None = None
    """Distil: train on this scorer's verdicts in the runs instead of human labels."""
    mix: bool = False
    """Use human labels and `from_scorer`'s verdicts together (on purpose)."""
    base: str = ""
    """The backbone: a folder, a Hugging Face id, a .gguf file, or a Flames-scorer checkpoint."""
    out: str = ""
    """The folder the trained scorer is written to."""
    name: str | None = None
    """The scorer's name (default: the output folder's name); runs store it as trained:NAME."""
    backbone: Literal["auto", "causal-lm", "encoder"] = "auto"
    """auto: an encoder for BERT-like configs, else a causal LM pooled on its last token."""
    trust_remote_code: bool = False
    split: SplitSettings = Field(default_factory=SplitSettings)
    epochs: int = Field(default=3, ge=1)
    lr: float = Field(default=2e-5, gt=0)
    batch_size: int = Field(default=16, ge=1)
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1)
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    """Gradient clipping (1.0, as the official accelerate config); None turns it off."""
    max_length: int = Field(default=512, ge=8)
    truncation: Literal["official", "keep-suffix"] = "official"
    class_weights: Literal["none", "balanced"] = "none"
    """balanced: each head's classes weighted by n / (classes x count), against imbalance."""
    lora: LoraSettings | None = None
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto: bf16 on a GPU that has it, else fp16 on a GPU; fp32 on the CPU."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    save_every: int = Field(default=100, ge=1)
    """Steps between checkpoints (a killed run resumes from the last one)."""
    progress: bool = True

    @model_validator(mode="after")
    def _check(self) -> TrainingSettings:
        if self.mix and self.from_scorer is None:
            raise ValueError("mix adds a scorer's verdicts to human labels: set from_scorer")
        return self

    def identity(self) -> dict[str, Any]:
        """What must be equal for a killed run to resume (not where it writes or how it shows)."""
        return self.model_dump(mode="json", exclude={"out", "progress", "save_every"})

    def fingerprint(self) -> str:
        text = json.dumps(self.identity(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def hyperparameters(self) -> dict[str, Any]:
        """What the card records as hyperparameters."""
        keep = (
            "epochs",
            "lr",
            "batch_size",
            "weight_decay",
            "warmup_ratio",
            "max_grad_norm",
            "max_length",
            "truncation",
            "class_weights",
            "lora",
            "precision",
            "seed",
        )
        return self.model_dump(mode="json", include=set(keep))
