"""A training run from start to shipped scorer: labels, split, backbone, training, held-out
metrics, export."""

from __future__ import annotations

import contextlib
import importlib.metadata
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flames import __version__
from flames.analysis.scorer_eval import ScorerEvaluation, evaluate_predictions
from flames.data.taxonomy import Dimension
from flames.errors import UsageError
from flames.scoring.scorer.card import Card
from flames.scoring.scorer.official import OFFICIAL_MAX_LENGTH, score_of
from flames.scoring.scorer.template import TEMPLATE, render
from flames.scoring.scorer.tokenizer import Truncation
from flames.training.backbone import Backbone, load_backbone
from flames.training.data import Encoded, encode_examples
from flames.training.export import export_scorer
from flames.training.labels import Example, LabelSet, load_labels
from flames.training.settings import TrainingSettings
from flames.training.split import Split, split_labels
from flames.training.trainer import (
    TrainOutcome,
    checkpoints_dir,
    make_accelerator,
    predict,
    train_model,
)


@dataclass
class TrainedScorer:
    out: Path
    card: Card
    outcome: TrainOutcome
    split: Split
    labels: LabelSet
    main_process: bool = True
    """False in the other processes of a distributed run (which write nothing)."""


def differences(backbone: Backbone, settings: TrainingSettings) -> list[str]:
    """Every way the trained scorer differs from the official one, by name."""
    found = ["weights trained by flames on its own labels"]
    if backbone.layout != "internlm":
        found.append(f"backbone {backbone.info.get('model_type')} (official: InternLM-chat-7b)")
        found.append("tokenizer through transformers (official: the exact slow sentencepiece one)")
    if backbone.kind == "encoder":
        found.append("encoder backbone pooled on its first token (official: last non-pad token)")
    if settings.max_length != OFFICIAL_MAX_LENGTH:
        found.append(f"max_length {settings.max_length} (official: {OFFICIAL_MAX_LENGTH})")
    if settings.truncation != "official":
        found.append(f"truncation {settings.truncation} (official: keep the first tokens)")
    return found


def _versions(lora: bool) -> dict[str, str]:
    names = ["torch", "transformers", "accelerate", "safetensors", *(["peft"] if lora else [])]
    found = {"flames": __version__}
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def held_out_metrics(
    name: str,
    examples: list[Example],
    encoded: list[Encoded],
    predicted: list[int],
    bootstrap: int = 2000,
    seed: int = 0,
) -> ScorerEvaluation:
    dims = [e.dimension for e in examples]
    return evaluate_predictions(
        name,
        "trained",
        [d.value for d in dims],
        {d.value: d.scale for d in Dimension},
        [e.score for e in examples],
        [score_of(d, c) for d, c in zip(dims, predicted, strict=True)],
        bootstrap=bootstrap,
        seed=seed,
    )


def _check(settings: TrainingSettings, backbone: Backbone) -> None:
    bare = len(backbone.tokenizer.encode(render("", "")))
    if settings.max_length < bare:
        raise UsageError(
            f"max_length {settings.max_length} is shorter than the bare template ({bare} tokens)",
            "--max-length",
        )
    limit = getattr(backbone.model.config, "max_position_embeddings", None)
    if limit is not None and settings.max_length > limit:
        raise UsageError(
            f"max_length {settings.max_length} is beyond the backbone's {limit} positions",
            "--max-length",
        )


def train_scorer(settings: TrainingSettings) -> TrainedScorer:
    """Train, measure on the held-out labels, and export; resumes a killed run in the same OUT."""
    if not settings.base:
        raise UsageError("no backbone: give --base (a folder, a hub id or a .gguf file)", "--base")
    if not settings.out:
        raise UsageError("no output folder: give --out", "--out")
    out = Path(settings.out)
    labels = load_labels(settings.labels, settings.annotators, settings.from_scorer, settings.mix)
    split = split_labels(labels.examples, settings.split)
    accelerator, precision = make_accelerator(settings)
    from accelerate.utils import set_seed

    set_seed(settings.seed)
    backbone = load_backbone(settings.base, settings.backbone, settings.trust_remote_code)
    _check(settings, backbone)
    pad_id = backbone.tokenizer.pad_id
    assert pad_id is not None  # both tokenizers refuse a layout without one
    truncation = Truncation(settings.truncation)
    encoded = {
        side: encode_examples(split.side(side), backbone.tokenizer, settings.max_length, truncation)
        for side in ("train", "validation", "test")
    }
    identity = {"settings": settings.fingerprint(), "labels_sha256": labels.sha256}
    model, outcome = train_model(
        backbone.model,
        pad_id,
        encoded["train"],
        encoded["validation"],
        settings,
        out,
        identity,
        accelerator,
    )
    name = settings.name or out.resolve().name
    metrics: dict[str, Any] = {}
    for side in ("validation", "test"):
        if encoded[side]:
            predicted = predict(accelerator, model, encoded[side], pad_id, settings.batch_size)
            found = held_out_metrics(name, split.side(side), encoded[side], predicted)
            metrics[side] = found.model_dump(mode="json", exclude={"scorer", "kind", "errors"})
    history = [
        {
            "epoch": h["epoch"],
            "train_loss": round(sum(h["losses"]) / len(h["losses"]), 6) if h["losses"] else None,
            "validation_accuracy": h.get("validation_accuracy"),
        }
        for h in outcome.history
    ]
    card = Card(
        name=name,
        layout=backbone.layout,  # type: ignore[arg-type]
        backbone=backbone.info,
        pooling=model.pooling.value,
        tokenizer="official" if backbone.layout == "internlm" else "transformers",
        trust_remote_code=settings.trust_remote_code,
        template=TEMPLATE,
        max_length=settings.max_length,
        truncation=settings.truncation,
        differences=differences(backbone, settings),
        training={
            "labels": labels.describe(),
            "split": split.describe(with_keys=False),
            "hyperparameters": settings.hyperparameters(),
            "steps": outcome.steps,
            "history": history,
            "metrics": metrics,
            "truncated": {s: sum(e.truncated for e in enc) for s, enc in encoded.items()},
            "distributed": {"processes": accelerator.num_processes, "precision": precision},
            "versions": _versions(settings.lora is not None),
        },
    )
    if accelerator.is_main_process:
        export_scorer(model, backbone, card, split, out, precision, outcome.state_dict)
        shutil.rmtree(checkpoints_dir(out), ignore_errors=True)
    outcome.state_dict = None  # exported; not kept in memory
    accelerator.wait_for_everyone()
    outcome.precision = precision
    return TrainedScorer(
        out=out,
        card=card,
        outcome=outcome,
        split=split,
        labels=labels,
        main_process=accelerator.is_main_process,
    )
