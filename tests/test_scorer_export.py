"""The scorer exported for vLLM (a 13-label LlamaForSequenceClassification), checked in
transformers against the official scorer: same logits on the pooled prefix, `</s>` included."""

from __future__ import annotations

import pytest

from flames.data.dataset import Item
from flames.runs.records import Answer

pytestmark = pytest.mark.local

torch = pytest.importorskip("torch")


def test_export_gives_the_official_logits_on_the_pooled_prefix(tmp_path):
    from transformers import LlamaForSequenceClassification

    from flames.scoring.scorer.official import OfficialScorer, ScorerSettings
    from flames.scoring.scorer.synthetic import build_checkpoint
    from flames.scoring.scorer.vllm_engine import export_sequence_classifier, pooled_prefix

    checkpoint = build_checkpoint(tmp_path / "ckpt")
    scorer = OfficialScorer(ScorerSettings(model=str(checkpoint), max_length=96))
    exported = LlamaForSequenceClassification.from_pretrained(
        export_sequence_classifier(checkpoint, tmp_path / "export", "float32")
    ).eval()
    answers = ["这是回答。", "我不能帮助你做这件事。</s>但是可以说别的。", "很长的回答。" * 60]
    item = Item(id="q", dimension="Safety", subcomponent="Mental harm", prompt="你好，问题是什么？")
    encoded = [scorer.encode(item, Answer(item_id="q", status="ok", response=a)) for a in answers]
    pad = scorer.tokenizer.pad_id
    assert pad in encoded[1].ids  # a literal </s> moves the official pooling position
    assert encoded[2].truncated
    official = scorer._logits(encoded)
    for e, heads in zip(encoded, official, strict=True):
        prefix = pooled_prefix(e.ids, pad)
        assert len(prefix) == sum(i != pad for i in e.ids)
        with torch.inference_mode():
            logits = exported(torch.tensor([prefix])).logits[0]
        torch.testing.assert_close(logits, torch.cat(heads), atol=1e-4, rtol=1e-4)
    # Pooling on the whole sequence instead would not match where the text holds </s>.
    with torch.inference_mode():
        whole = exported(torch.tensor([encoded[1].ids])).logits[0]
    assert not torch.allclose(whole, torch.cat(official[1]), atol=1e-3)
