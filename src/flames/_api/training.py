"""Training a scorer from labels, and measuring it against the official scorer and judges."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from flames._api.pieces import (
    ModelLike,
    build_judge,
    console_or_default,
    judge_config,
    official_scorer,
    vet,
)
from flames._config import JudgeConfig, ScorerConfig, load_training, validated
from flames.errors import UsageError

if TYPE_CHECKING:
    from flames.analysis.scorer_eval import ScorerComparison
    from flames.training.evaluate import Selection
    from flames.training.run import TrainedScorer
    from flames.training.settings import TrainingSettings


def _labels(labels: str | Path | Sequence[str | Path]) -> list[str]:
    return [str(labels)] if isinstance(labels, str | Path) else [str(x) for x in labels]


def training_settings(
    labels: str | Path | Sequence[str | Path] = (),
    *,
    config: TrainingSettings | str | Path | None = None,
    **settings: Any,
) -> TrainingSettings:
    """`TrainingSettings` from a file or object (`config`), with the given fields changed.
    ``split`` may be a kind ('random', 'prompt', 'model') or a table of `SplitSettings` fields;
    ``lora`` True (its defaults), False, or a table of `LoraSettings` fields. Errors name the
    field."""
    from flames.training.settings import TrainingSettings

    if isinstance(config, str | Path):
        config = load_training(config)
    data: dict[str, Any] = config.model_dump() if config is not None else {}
    if labels:
        data["labels"] = _labels(labels)
    split = settings.pop("split", None)
    if isinstance(split, str):
        split = {"kind": split}
    if split is not None:  # the fields given change the file's split, the rest stay
        given = split if isinstance(split, dict) else split.model_dump(exclude_unset=True)
        data["split"] = {**(data.get("split") or {}), **given}
    lora = settings.pop("lora", None)
    if lora is False:
        data["lora"] = None
    elif lora is not None:
        given = {} if lora is True else lora if isinstance(lora, dict) else lora.model_dump()
        data["lora"] = {**(data.get("lora") or {}), **given}
    data.update({k: v for k, v in settings.items() if v is not None})
    return validated(TrainingSettings, data)


def train_scorer(
    labels: str | Path | Sequence[str | Path] = (),
    *,
    base: str | Path | None = None,
    out: str | Path | None = None,
    config: TrainingSettings | str | Path | None = None,
    **settings: Any,
) -> TrainedScorer:
    """Train a Flames-architecture scorer on labels (JSONL files of dimension, prompt, response
    and score, or runs with human labels) and write it to `out`: safetensors weights, tokenizer,
    split and model card. `base` is the backbone (a folder, a hub id, a .gguf file, or a scorer
    checkpoint); other settings are `TrainingSettings` fields (``split``, ``epochs``, ``lr``,
    ``lora``, ...), or come from `config` (an object or a TOML/YAML file). A killed run resumes
    when called again with the same settings. Needs the [local] extra ([train] for LoRA)."""
    from flames.training.run import train_scorer as train

    chosen = training_settings(
        labels,
        config=config,
        base=None if base is None else str(base),
        out=None if out is None else str(out),
        **settings,
    )
    return train(chosen)


def evaluate_scorer(
    scorer: str | Path,
    labels: str | Path | Sequence[str | Path],
    *,
    official: str | ScorerConfig | None = None,
    judges: Sequence[ModelLike | JudgeConfig] = (),
    only: Selection = "held-out",
    annotators: Sequence[str] = (),
    from_scorer: str | None = None,
    bootstrap: int = 2000,
    seed: int = 0,
    console: Console | None = None,
) -> ScorerComparison:
    """A trained scorer against held-out labels, beside the official scorer (`official`: a
    checkpoint folder or hub id) and `judges` (chat models or Python functions), all on the same
    labelled answers: accuracy and macro-F1 with intervals, confusion, Cohen's kappa (plain,
    linear, quadratic), and implied vs labelled harmless rates, per dimension. Labels the scorer
    was trained on are left out (`only`: 'held-out', its stored 'test' side, or 'all')."""
    from flames.training.evaluate import compare_scorers, held_out
    from flames.training.labels import load_labels

    folder = Path(scorer)
    if not folder.is_dir():
        raise UsageError(f"{scorer}: no such folder (a scorer written by flames scorer train)")
    out = console_or_default(console)
    label_set = load_labels(_labels(labels), annotators, from_scorer)
    examples, counts = held_out(folder, label_set, only)
    built = [official_scorer(ScorerConfig(model=str(folder)), None)]
    if official is not None:
        config = official if isinstance(official, ScorerConfig) else ScorerConfig(model=official)
        built.append(official_scorer(config, None))
    for judge in judges:
        config = judge_config(judge, None)
        one = build_judge(config)
        vet(one, config.skip_check, out)
        built.append(one)
    described = {**label_set.describe(), **counts}
    described.pop("counts", None)
    return compare_scorers(built, examples, described, only, bootstrap, seed)
