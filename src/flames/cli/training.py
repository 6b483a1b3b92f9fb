"""`flames scorer train` and `flames scorer eval`: a scorer of your own from labels."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from flames import _api
from flames._util.outputs import write_text
from flames.cli.app import console, scorer_app
from flames.cli.describe import usage_errors
from flames.cli.options import BootstrapOpt, ConfigOpt, JsonOpt, SeedOpt
from flames.cli.output import print_json

LabelsArg = Annotated[
    list[str] | None,
    typer.Argument(help="Labels: JSONL files (dimension, prompt, response, score) or run dirs."),
]


class SplitKind(StrEnum):
    random = "random"
    prompt = "prompt"
    model = "model"


class Only(StrEnum):
    held_out = "held-out"
    test = "test"
    all = "all"


def _option(help: str, *names: str, **extra: Any) -> Any:
    return typer.Option(*names, help=help, **extra)


@scorer_app.command("train")
def scorer_train(
    labels: LabelsArg = None,
    base: Annotated[
        str | None,
        _option("Backbone: folder, hub id, .gguf file, or a scorer checkpoint (InternLM layout)."),
    ] = None,
    out: Annotated[Path | None, _option("Folder to write the trained scorer to.")] = None,
    config: ConfigOpt = None,
    split: Annotated[SplitKind | None, _option("Split by model, by prompt, or random.")] = None,
    validation: Annotated[
        float | None, _option("Share held out for validation (random, prompt).")
    ] = None,
    test: Annotated[float | None, _option("Share held out for test (random, prompt).")] = None,
    validation_models: Annotated[
        list[str] | None, _option("Models whose answers validate (split by model); repeat.")
    ] = None,
    test_models: Annotated[
        list[str] | None, _option("Models whose answers test (split by model); repeat.")
    ] = None,
    split_seed: Annotated[int | None, _option("Seed of the split.")] = None,
    epochs: Annotated[int | None, _option("Passes over the training labels.", min=1)] = None,
    lr: Annotated[float | None, _option("Learning rate (AdamW).")] = None,
    batch_size: Annotated[int | None, _option("Labels per step.", min=1)] = None,
    max_length: Annotated[int | None, _option("Input tokens (official: 512).")] = None,
    truncation: Annotated[str | None, _option("official or keep-suffix.")] = None,
    class_weights: Annotated[str | None, _option("none or balanced (per head).")] = None,
    lora: Annotated[
        bool | None, _option("LoRA adapters (peft), merged on export.", "--lora/--full")
    ] = None,
    lora_r: Annotated[int | None, _option("LoRA rank.", min=1)] = None,
    precision: Annotated[str | None, _option("auto, fp32, bf16 or fp16 (GPU).")] = None,
    device: Annotated[str | None, _option("auto, cpu or cuda.")] = None,
    seed: Annotated[int | None, _option("Seed of the heads, batches and dropout.")] = None,
    save_every: Annotated[int | None, _option("Steps between checkpoints.", min=1)] = None,
    annotator: Annotated[
        list[str] | None, _option("Human labels of this annotator only (runs); repeat.")
    ] = None,
    from_scorer: Annotated[
        str | None, _option("Distil: train on this scorer's verdicts in the runs.")
    ] = None,
    mix: Annotated[
        bool | None, _option("Use human labels and --from-scorer verdicts together.")
    ] = None,
    name: Annotated[str | None, _option("The scorer's name (default: the folder's).")] = None,
    backbone: Annotated[str | None, _option("auto, causal-lm or encoder (BERT-like).")] = None,
    trust_remote_code: Annotated[
        bool | None, _option("Run the backbone's own code from its folder or hub repo.")
    ] = None,
    progress: Annotated[bool, _option("Show a progress bar.", "--progress/--no-progress")] = True,
) -> None:
    """Train a Flames-architecture scorer on labels; resumes a killed run in the same --out."""
    split_fields = {
        "kind": split.value if split else None,
        "validation": validation,
        "test": test,
        "validation_models": validation_models,
        "test_models": test_models,
        "seed": split_seed,
    }
    given_split = {k: v for k, v in split_fields.items() if v is not None}
    lora_choice: Any = None if lora is None else ({"r": lora_r} if lora and lora_r else lora)
    settings = {
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "max_length": max_length,
        "truncation": truncation,
        "class_weights": class_weights,
        "precision": precision,
        "device": device,
        "seed": seed,
        "save_every": save_every,
        "annotators": annotator or None,
        "from_scorer": from_scorer,
        "mix": mix,
        "name": name,
        "backbone": backbone,
        "trust_remote_code": trust_remote_code,
        "progress": progress,
    }
    with usage_errors():
        trained = _api.train_scorer(
            labels or (),
            base=base,
            out=out,
            config=config,
            split=given_split or None,
            lora=lora_choice,
            **settings,
        )
    if not trained.main_process:
        return
    card = trained.card
    test_metrics = card.training["metrics"].get("test")
    console.print(
        f"trained {card.name} on {len(trained.split.train)} labels in {trained.outcome.steps} "
        f"steps ({trained.outcome.precision}, {trained.outcome.items_per_second:.1f} items/s)"
        + (
            f", resumed from step {trained.outcome.resumed_from}"
            if trained.outcome.resumed_from
            else ""
        ),
        highlight=False,
    )
    if test_metrics:
        accuracy = test_metrics["overall"]["accuracy"]
        console.print(
            f"test: {test_metrics['overall']['n']} labels, accuracy {accuracy['value']:.1f}% "
            f"[{accuracy['ci_low']:.1f}, {accuracy['ci_high']:.1f}]",
            highlight=False,
        )
    console.print(f"wrote {trained.out} (score runs with: flames score RUN --scorer-model {out})")


@scorer_app.command("eval")
def scorer_eval(
    scorer: Annotated[Path, typer.Argument(help="A scorer folder written by `scorer train`.")],
    labels: Annotated[
        list[str], typer.Argument(help="Labels: JSONL files or run dirs with human labels.")
    ],
    official: Annotated[
        str | None, _option("Also the official scorer: its checkpoint folder or hub id.")
    ] = None,
    judge: Annotated[
        list[str] | None, _option("Also this LLM judge (a chat model name); repeat.")
    ] = None,
    judge_function: Annotated[
        list[str] | None, _option("Also this Python judge, 'module:function'; repeat.")
    ] = None,
    base_url: Annotated[str | None, _option("The LLM judges' OpenAI-compatible URL.")] = None,
    skip_judge_check: Annotated[
        bool, _option("Use LLM judges without their sanity check.")
    ] = False,
    only: Annotated[
        Only, _option("held-out (all but its training labels), test (its stored test side), all.")
    ] = Only.held_out,
    annotator: Annotated[
        list[str] | None, _option("Human labels of this annotator only (runs); repeat.")
    ] = None,
    out: Annotated[Path | None, _option("Also write scorer_eval.json here.")] = None,
    bootstrap: BootstrapOpt = 2000,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Measure a trained scorer against held-out labels, beside the official scorer and judges."""
    from flames._config import JudgeConfig
    from flames.reporting.scorer_eval import print_scorer_comparison

    judges: list[Any] = [
        JudgeConfig(model=m, base_url=base_url, skip_check=skip_judge_check) for m in judge or ()
    ]
    judges += [JudgeConfig(model=f, kind="callable") for f in judge_function or ()]
    with usage_errors():
        comparison = _api.evaluate_scorer(
            scorer,
            labels,
            official=official,
            judges=judges,
            only=only.value,  # type: ignore[arg-type]
            annotators=annotator or (),
            bootstrap=bootstrap,
            seed=seed,
            console=console,
        )
    text = comparison.model_dump_json(indent=2)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "scorer_eval.json", text)
    if as_json:
        print_json(json.dumps(json.loads(text), ensure_ascii=False, indent=2))
        return
    print_scorer_comparison(comparison, console)
