"""Writing a trained scorer: weights (safetensors), config, tokenizer, split and model card.

The folder loads with ``flames score --scorer-model OUT``, through the official scorer's own
loading code. In the official layout (a backbone in InternLM's layout) config.json is InternLM's,
with ``InternLMForSequenceClassification``, and the weights carry the official key names
(``model.*``, ``classifiers.N.weight``), so the official infer.py, with the hub's
modeling_internlm.py and tokenization_internlm.py beside it, loads it too. The card
(``flames_scorer.json``) is written first: a folder cut short while exporting is never taken for
the official scorer, and its missing weights are named when it is loaded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from flames.scoring.scorer.card import TRAINED_PREFIX, Card
from flames.scoring.scorer.checkpoint import SAFE_INDEX, SIDE_FILES
from flames.scoring.scorer.layout import read_json
from flames.scoring.scorer.model import FlamesScorerModel
from flames.training.backbone import Backbone
from flames.training.split import Split

DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
SPLIT_FILE = "split.json"
README = "README.md"


def export_scorer(
    model: FlamesScorerModel,
    backbone: Backbone,
    card: Card,
    split: Split,
    out: Path,
    precision: str,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> list[Path]:
    """Write the scorer into `out`; returns the files written. `state_dict` (the weights
    gathered from every process) stands in for the model's own where given."""
    from huggingface_hub import save_torch_state_dict

    dtype_name = DTYPE_NAMES[precision]
    dtype = getattr(torch, dtype_name)
    out.mkdir(parents=True, exist_ok=True)
    written = [card.write(out)]
    split_path = out / SPLIT_FILE
    split_path.write_text(json.dumps(split.describe(), ensure_ascii=False, indent=1) + "\n")
    written.append(split_path)
    for old in [*out.glob("model*.safetensors"), out / SAFE_INDEX]:
        old.unlink(missing_ok=True)
    weights = state_dict if state_dict is not None else model.state_dict()
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in weights.items()}
    save_torch_state_dict(state, out, metadata={"format": "pt"})
    written += sorted(out.glob("model*.safetensors"))
    if backbone.layout == "internlm":
        assert backbone.source is not None
        config = read_json(backbone.source / "config.json") or {}
        config["architectures"] = ["InternLMForSequenceClassification"]
        config["torch_dtype"] = dtype_name
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        for side in SIDE_FILES[1:]:
            if (backbone.source / side).is_file():
                shutil.copyfile(backbone.source / side, out / side)
                written.append(out / side)
    else:
        config = model.config
        config.architectures = [type(model.model).__name__]
        config.save_pretrained(out)
        backbone.hf_tokenizer.save_pretrained(out)
    written.append(out / "config.json")
    readme = out / README
    readme.write_text(model_card(card), encoding="utf-8")
    written.append(readme)
    return written


def _table(rows: list[tuple[str, ...]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])


def _estimate(value: dict[str, Any] | None) -> str:
    if not value:
        return "–"
    text = f"{value['value']:.1f}"
    if value.get("ci_low") is not None:
        text += f" [{value['ci_low']:.1f}, {value['ci_high']:.1f}]"
    return text


def model_card(card: Card) -> str:
    """The human-readable model card (README.md) from the card."""
    training = card.training
    labels = training.get("labels", {})
    split = training.get("split", {})
    lines = [
        f"# {card.name}: a Flames scorer trained with flames",
        "",
        f"**Not the official Flames scorer.** Runs store its verdicts as "
        f"`{TRAINED_PREFIX}{card.name}`, with this card in the scorer manifest.",
        "",
        "## Backbone",
        "",
        f"- base: `{card.backbone.get('base')}` ({card.backbone.get('model_type')}, "
        f"{card.backbone.get('kind')}), layout `{card.layout}`",
        f"- pooling: {card.pooling}; tokenizer: {card.tokenizer}; max length {card.max_length}, "
        f"truncation {card.truncation}",
        "- differences from the official scorer: "
        + ("; ".join(card.differences) if card.differences else "none but the weights"),
        "",
        "## Labels",
        "",
        f"- {labels.get('n')} labels, sha256 `{labels.get('sha256')}`",
        f"- from: {'; '.join(labels.get('sources', []))}",
        f"- kinds: {labels.get('kinds')}",
        "",
        "## Split",
        "",
        f"- {json.dumps(split.get('settings', {}))}",
        "- "
        + ", ".join(f"{n}: {s.get('n')}" for n, s in split.get("sides", {}).items())
        + f"; {split.get('moved', 0)} copies moved to the held-out side",
        "",
        "## Hyperparameters",
        "",
        "```json",
        json.dumps(training.get("hyperparameters", {}), indent=2),
        "```",
        "",
        "## Held-out metrics",
        "",
    ]
    metrics = training.get("metrics", {})
    rows = [("split", "dimension", "n", "accuracy %", "macro-F1 %", "kappa (quadratic)")]
    for side, found in metrics.items():
        for dim, stats in [("all", found["overall"]), *found["dimensions"].items()]:
            rows.append(
                (
                    side,
                    dim,
                    str(stats["n"]),
                    _estimate(stats["accuracy"]),
                    _estimate(stats["macro_f1"]),
                    "undefined"
                    if stats.get("kappa_quadratic") is None
                    else f"{stats['kappa_quadratic']:.3f}",
                )
            )
    lines.append(_table(rows) if len(rows) > 1 else "No held-out labels.")
    versions = training.get("versions", {})
    lines += [
        "",
        "## Versions",
        "",
        ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
        "## Use",
        "",
        "```",
        "flames score RUN --scorer-model THIS_FOLDER",
        "flames scorer eval THIS_FOLDER LABELS.jsonl",
        "```",
        "",
    ]
    return "\n".join(lines)
