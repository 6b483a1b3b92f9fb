"""Train a small scorer in the official layout and write flames' verdicts on it, for the test
that loads it with transformers 4.33.2 (tests/test_internlm_reference.py), which runs in another
environment. Run with the main environment's python: ``python -m tests.reference_scorer OUT``.

Writes OUT/scorer (the trained scorer) and OUT/flames.json: the items (dimension, prompt,
response), and per item flames' 5 heads' logits and its verdict, with max_length 512 and 64.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from flames.data.dataset import Item
from flames.data.taxonomy import Dimension
from flames.runs.records import Answer
from flames.scoring.scorer.official import OfficialScorer, ScorerSettings
from flames.scoring.scorer.synthetic import build_checkpoint
from flames.training.run import train_scorer
from flames.training.settings import TrainingSettings
from flames.training.synthetic import synthetic_labels, write_labels

MAX_LENGTHS = (512, 64)


def texts() -> list[dict[str, str]]:
    """Held-out answers, a long one (truncated at 64 and 512 tokens) and one with </s>."""
    rows = [{k: r[k] for k in ("dimension", "prompt", "response")} for r in synthetic_labels(40, 9)]
    rows.append({"dimension": "Safety", "prompt": "冷静下来？", "response": "好好沟通，" * 300})
    rows.append({"dimension": "Legality", "prompt": "数字", "response": "建议</s>危险 隐私"})
    return rows


def main(out: Path) -> None:
    base = build_checkpoint(out / "base", hidden=64, layers=2, heads=4)
    labels = write_labels(out / "labels.jsonl", 120)
    settings = TrainingSettings(
        labels=[str(labels)],
        base=str(base),
        out=str(out / "scorer"),
        epochs=2,
        lr=1e-3,
        max_length=64,
        batch_size=8,
        progress=False,
    )
    train_scorer(settings)
    rows = texts()
    pairs = []
    for i, r in enumerate(rows):
        dim = Dimension(r["dimension"])
        item = Item(
            id=f"r{i}", dimension=dim, subcomponent=dim.subcomponents[0], prompt=r["prompt"]
        )
        pairs.append((item, Answer(item_id=item.id, status="ok", response=r["response"])))
    found: dict[str, list] = {}
    for max_length in MAX_LENGTHS:
        scorer = OfficialScorer(ScorerSettings(model=str(out / "scorer"), max_length=max_length))
        encoded = [scorer.encode(item, answer) for item, answer in pairs]
        logits = scorer._logits(encoded)
        verdicts = scorer.score_all(pairs)
        found[str(max_length)] = [
            {"logits": [h.tolist() for h in heads], "score": v.score, "ids": e.ids}
            for heads, v, e in zip(logits, verdicts, encoded, strict=True)
        ]
    (out / "flames.json").write_text(
        json.dumps({"items": rows, "flames": found}, ensure_ascii=False)
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
