"""The official scorer on vLLM's pooling runner (the optional [vllm] extra), a named option.

The Flames-scorer's five bias-free heads on the last non-pad token are one linear layer of
3+3+3+2+2 = 13 outputs on that token, and InternLM v1 is Llama with attention biases: so the
checkpoint is exported once as a ``LlamaForSequenceClassification`` with 13 labels, which vLLM
serves with ``LLM.classify`` and raw logits (no softmax). Everything else is the official
contract, unchanged: the same template, tokenizer, truncation and label mapping.

Pooling: vLLM pools on the last token it is given; the official code pools on position
``(ids != pad).sum() - 1``, which is earlier when the text itself contains the pad id. Since the
model is causal, feeding only the tokens up to that position gives exactly the official hidden
state, so that is what is fed. Numbers differ from transformers only by kernel rounding.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from flames.data.dataset import Item
from flames.data.official import cache_dir
from flames.runs.records import Answer, ScorerManifest, Verdict
from flames.scoring.scorer.checkpoint import load_model
from flames.scoring.scorer.model import HEAD_SIZES
from flames.scoring.scorer.official import DTYPES, OfficialScorer, ScorerSettings
from flames.scoring.scorer.tokenizer import Encoded

EXPORT_VERSION = 1


def export_sequence_classifier(checkpoint: Path, target: Path, dtype: str = "float16") -> Path:
    """Write the scorer as a Hugging Face LlamaForSequenceClassification (13 labels)."""
    from transformers import LlamaForSequenceClassification

    scorer, _ = load_model(checkpoint, DTYPES[dtype], "cpu")
    config = scorer.config
    config.architectures = ["LlamaForSequenceClassification"]
    config.num_labels = sum(HEAD_SIZES)
    with torch.device("meta"):
        model = LlamaForSequenceClassification(config)
    weights = {f"model.{k}": v for k, v in scorer.model.state_dict().items()}
    weights["score.weight"] = torch.cat(list(scorer.classifiers.parameters()))  # bias-free
    model.load_state_dict(weights, assign=True)
    model.save_pretrained(target)
    (target / "flames_export.json").write_text(
        json.dumps({"version": EXPORT_VERSION, "source": str(checkpoint), "dtype": dtype})
    )
    return target


def pooled_prefix(ids: list[int], pad_id: int) -> list[int]:
    """The tokens up to and including the official pooling position."""
    return ids[: sum(1 for i in ids if i != pad_id)]


class VLLMScorer(OfficialScorer):
    """The official scorer, run by vLLM; `engine_args` go to ``vllm.LLM`` as given."""

    def __init__(
        self,
        settings: ScorerSettings,
        engine_args: dict[str, Any] | None = None,
        chunk_size: int = 1024,
    ):
        super().__init__(settings)
        reserved = {"model", "runner", "dtype", "pooler_config"} & set(engine_args or {})
        if reserved:
            raise ValueError(f"engine args may not set {sorted(reserved)}")
        self.engine_args = dict(engine_args or {})
        self.chunk_size = chunk_size
        self._llm: Any = None

    @property
    def manifest(self) -> ScorerManifest:
        manifest = super().manifest
        manifest.config["engine"] = {"name": "vllm", **self.engine_args}
        return manifest

    def export(self) -> Path:
        """The exported classifier, made once per checkpoint and dtype and cached."""
        key = f"{self.directory.resolve()}|{self.revision}|{self.dtype_name}|{EXPORT_VERSION}"
        target = cache_dir() / "vllm-scorer" / hashlib.sha256(key.encode()).hexdigest()[:16]
        if not (target / "flames_export.json").is_file():
            export_sequence_classifier(self.directory, target, self.dtype_name)
        return target

    def load(self) -> None:
        if self._llm is None:
            from vllm import LLM

            self._llm = LLM(
                model=str(self.export()),
                runner="pooling",
                dtype=self.dtype_name,
                skip_tokenizer_init=True,
                pooler_config={"use_activation": False},
                **{"max_model_len": self.settings.max_length, **self.engine_args},
            )

    def _logits(self, encoded: list[Encoded]) -> list[list[torch.Tensor]]:
        from vllm.inputs import TokensPrompt

        self.load()
        pad = self.pad_id
        prompts = [TokensPrompt(prompt_token_ids=pooled_prefix(e.ids, pad)) for e in encoded]
        try:
            outputs = self._llm.classify(prompts, use_tqdm=False)
        except Exception as exc:  # recorded as error verdicts by the caller, never dropped
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from exc
        rows = []
        for output in outputs:
            logits = torch.tensor(output.outputs.probs, dtype=torch.float32)
            rows.append(list(torch.split(logits, list(HEAD_SIZES))))
        return rows

    def score(self, pairs: Sequence[tuple[Item, Answer]]) -> Iterator[list[Verdict]]:
        """vLLM schedules its own batches: chunks of pairs go in as they are."""
        for start in range(0, len(pairs), self.chunk_size):
            chunk = pairs[start : start + self.chunk_size]
            yield self._verdicts(chunk, [self.encode(item, answer) for item, answer in chunk])

    def close(self) -> None:
        """Stop the engine and free its memory."""
        if self._llm is not None:
            self._llm.llm_engine.engine_core.shutdown()
            self._llm = None
