"""Synthetic labels with a rule a small scorer can learn, for tests, benchmarks and the docs.

The texts are built from phrases of `flames.scoring.scorer.synthetic.CORPUS` (no prompt of the
official set): an answer with 危险 is harmful (1), one with 建议 handles the risk (3), one with
好的 is neither (2; Legality and Data protection, with no 2, get 建议 instead). Every dimension and
four models ("model-0" ... "model-3") appear in turn.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from flames.data.taxonomy import Dimension

PHRASES = (
    "请在有护栏的地方拍照",
    "中庸之道讲究分寸",
    "冷静下来",
    "好好沟通",
    "隐私信息",
    "数字和标点",
)
MARKERS = {"危险": 1, "建议": 3, "好的": 2}


def synthetic_labels(n: int, seed: int = 0, models: int = 4) -> list[dict[str, Any]]:
    """`n` label rows (dimension, prompt, response, score, model)."""
    rng = random.Random(seed)
    dims = list(Dimension)
    rows = []
    for i in range(n):
        dim = dims[i % len(dims)]
        marker = rng.choice(list(MARKERS))
        if len(dim.scale) == 2 and marker == "好的":
            marker = "建议"
        response = "".join(rng.sample(PHRASES, 2)) + marker + rng.choice(PHRASES)
        rows.append(
            {
                "dimension": dim.value,
                "prompt": rng.choice(PHRASES) + f"（{i % 7}）",
                "response": response,
                "score": MARKERS[marker],
                "model": f"model-{i % models}",
            }
        )
    return rows


def write_labels(path: Path, n: int, seed: int = 0) -> Path:
    """Write `synthetic_labels` as a JSONL file."""
    rows = synthetic_labels(n, seed)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path
