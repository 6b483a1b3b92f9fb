"""The training loop, on accelerate: one process on a CPU or a GPU, or many through
``accelerate launch`` (DDP, DeepSpeed or FSDP, as its config says); flames adds no engine of its
own.

- Precision: fp32 on the CPU; on a GPU bf16 (or fp16) mixed precision, fp32 master weights.
- Determinism: the seed fixes the new heads, the batches of every epoch (`epoch_batches`) and
  the random state; two runs with the same settings and labels end with the same weights (on
  the CPU bit for bit; GPU kernels may add rounding noise).
- Checkpoints: every `save_every` steps and at each epoch's end the full state (weights,
  optimizer, scheduler, random states; ``Accelerator.save_state``) is written to a temporary
  folder and renamed into ``OUT/checkpoints/step-N``, so a kill at any moment leaves the last
  complete one. Run the same command again and it resumes from there, skipping the batches
  already seen, and ends with the weights an uninterrupted run would have. A checkpoint made
  with other settings or other labels is refused, never mixed in.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from flames._util.progress import Tracker
from flames.errors import ManifestMismatch, UsageError
from flames.scoring.scorer.model import FlamesScorerModel
from flames.training.data import (
    Encoded as EncodedLabel,
    EncodedDataset,
    EpochSampler,
    collate,
    epoch_batches,
)
from flames.training.loss import balanced_weights, masked_multitask_loss
from flames.training.settings import LoraSettings, TrainingSettings

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
PROGRESS_FILE = "progress.json"
PARTIAL = ".partial"
KEEP = 2
"""Complete checkpoints kept (the newest)."""


@dataclass
class TrainOutcome:
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    """Per epoch: mean training loss and validation accuracy."""
    resumed_from: int | None = None
    """The step a killed run resumed from, or None."""
    seconds: float = 0.0
    items_per_second: float = 0.0
    """Training items per second in this process's run (resumed part only)."""
    precision: str = "fp32"
    state_dict: dict[str, torch.Tensor] | None = None
    """The trained weights as gathered by accelerate (full training); None: the model's own."""


def resolve_precision(settings: TrainingSettings, on_gpu: bool) -> str:
    if settings.precision == "auto":
        if not on_gpu:
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if settings.precision != "fp32" and not on_gpu:
        raise UsageError(
            f"precision {settings.precision} needs a GPU; on the CPU training is fp32",
            "--precision",
        )
    return settings.precision


def make_accelerator(settings: TrainingSettings) -> tuple[Any, str]:
    from accelerate import Accelerator

    if settings.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("device cuda: no GPU is visible", "--device")
    on_gpu = settings.device != "cpu" and torch.cuda.is_available()
    precision = resolve_precision(settings, on_gpu)
    mixed = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]
    return Accelerator(cpu=not on_gpu, mixed_precision=mixed), precision


def apply_lora(backbone: torch.nn.Module, lora: LoraSettings) -> torch.nn.Module:
    """Low-rank adapters on the backbone's linear layers (peft); the heads train in full."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise UsageError(
            "LoRA needs peft: pip install 'flames-eval[train]'", param_hint="--lora"
        ) from None
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
    )
    return get_peft_model(backbone, config)


def merge_lora(model: FlamesScorerModel) -> FlamesScorerModel:
    """Fold the adapters into the backbone's weights (plain weights, the base's key names)."""
    merge = getattr(model.model, "merge_and_unload", None)
    if merge is not None:
        model.model = merge()
    return model


# -- checkpoints -------------------------------------------------------------------------------


def checkpoints_dir(out: Path) -> Path:
    return out / CHECKPOINTS


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint (one whose progress file was written last, then renamed)."""
    folder = checkpoints_dir(out)
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob("step-*") if not p.name.endswith(PARTIAL)]
    done = [p for p in done if (p / PROGRESS_FILE).is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def _save(accelerator: Any, out: Path, progress: dict[str, Any]) -> None:
    folder = checkpoints_dir(out)
    final = folder / f"step-{progress['step']:08d}"
    tmp = folder / (final.name + PARTIAL)
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / PROGRESS_FILE).write_text(json.dumps(progress, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in sorted(
            (p for p in folder.glob("step-*") if not p.name.endswith(PARTIAL)),
            key=lambda p: int(p.name.split("-")[1]),
        )[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _check_resumable(checkpoint: Path, identity: dict[str, str]) -> dict[str, Any]:
    progress = json.loads((checkpoint / PROGRESS_FILE).read_text())
    for key, value in identity.items():
        if progress.get(key) != value:
            raise ManifestMismatch(
                f"{checkpoint} was made with other {key.replace('_', ' ')} "
                f"({progress.get(key)} != {value}); refusing to resume from it. Use a new --out, "
                "or the original settings and labels."
            )
    return progress


# -- the loop ----------------------------------------------------------------------------------


def _indexed(pad_id: int, rows: Sequence[tuple[int, EncodedLabel]]) -> dict[str, torch.Tensor]:
    batch = collate(pad_id, [e for _, e in rows])
    batch["index"] = torch.tensor([i for i, _ in rows])
    return batch


def predict(
    accelerator: Any,
    model: torch.nn.Module,
    encoded: Sequence[EncodedLabel],
    pad_id: int,
    batch_size: int,
) -> list[int]:
    """The predicted class of each item on its own head, in order (over all processes)."""
    from accelerate.utils import gather_object

    if not encoded:
        return []
    lengths = [len(e.ids) for e in encoded]
    order = sorted(range(len(encoded)), key=lambda i: -lengths[i])
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    loader = torch.utils.data.DataLoader(
        list(enumerate(encoded)),
        batch_sampler=EpochSampler(batches),
        collate_fn=partial(_indexed, pad_id),
    )
    loader = accelerator.prepare_data_loader(loader)
    found: dict[int, int] = {}
    model.eval()
    with torch.no_grad():
        for batch in loader:
            logits = model(batch["input_ids"], batch["attention_mask"])
            picked = [int(logits[h][row].argmax()) for row, h in enumerate(batch["heads"].tolist())]
            # Processes hold batches of different sizes (and repeats that even them out): each
            # gathers (index, class) pairs as objects, and repeats agree.
            pairs = list(zip(batch["index"].tolist(), picked, strict=True))
            found.update(gather_object(pairs) if accelerator.num_processes > 1 else pairs)
    model.train()
    return [found[i] for i in range(len(encoded))]


def train_model(
    model: FlamesScorerModel,
    pad_id: int,
    train: Sequence[EncodedLabel],
    validation: Sequence[EncodedLabel],
    settings: TrainingSettings,
    out: Path,
    identity: dict[str, str],
    accelerator: Any,
) -> tuple[FlamesScorerModel, TrainOutcome]:
    """Train `model` on `train` (validation accuracy after each epoch); returns the trained model
    (unwrapped, LoRA merged) and what happened. Resumes from OUT's last checkpoint."""
    from transformers import get_linear_schedule_with_warmup

    if settings.lora is not None:
        model.model = apply_lora(model.model, settings.lora)
    weights = None
    if settings.class_weights == "balanced":
        weights = balanced_weights([e.head for e in train], [e.target for e in train])
    lengths = [len(e.ids) for e in train]
    per_epoch = math.ceil(len(train) / settings.batch_size)
    total = per_epoch * settings.epochs
    """Optimizer steps over all processes (accelerate steps the scheduler once per process)."""
    local_total = math.ceil(per_epoch / accelerator.num_processes) * settings.epochs
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=settings.lr,
        weight_decay=settings.weight_decay,
    )
    scheduler = get_linear_schedule_with_warmup(
        optimizer, round(settings.warmup_ratio * total), total
    )
    deepspeed = getattr(accelerator.state, "deepspeed_plugin", None)
    if deepspeed is not None:  # no data loader in this prepare: DeepSpeed is told the batch
        # (as accelerate's own error message asks: AcceleratorState().deepspeed_plugin
        # .deepspeed_config['train_micro_batch_size_per_gpu']).
        deepspeed.deepspeed_config["train_micro_batch_size_per_gpu"] = settings.batch_size
    prepared, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    outcome = TrainOutcome(steps=0)
    start_epoch, skip = 0, 0
    checkpoint = latest_checkpoint(out)
    if checkpoint is not None:
        progress = _check_resumable(checkpoint, identity)
        accelerator.load_state(str(checkpoint))
        outcome.steps = outcome.resumed_from = progress["step"]
        outcome.history = progress["history"]
        start_epoch, skip = progress["epoch"], progress["batch"]
        if accelerator.is_main_process:
            log.info("resuming from %s (step %d)", checkpoint, outcome.steps)
    data = EncodedDataset(train)
    bar = Tracker(
        "train",
        local_total,
        enabled=settings.progress and accelerator.is_main_process,
        unit="steps",
        fields={"epoch": start_epoch + 1, "loss": "-"},
        field_format="{name} {value}",
        done=outcome.steps,
    )
    started, seen = time.perf_counter(), 0
    with bar:
        for epoch in range(start_epoch, settings.epochs):
            batches = epoch_batches(lengths, settings.batch_size, settings.seed, epoch)
            loader = accelerator.prepare_data_loader(
                torch.utils.data.DataLoader(
                    data, batch_sampler=EpochSampler(batches), collate_fn=partial(collate, pad_id)
                )
            )
            n_batches = len(loader)
            done_here = skip if epoch == start_epoch else 0
            if done_here:
                loader = accelerator.skip_first_batches(loader, done_here)
            losses = list(outcome.history[-1]["losses"]) if done_here and outcome.history else []
            if not done_here:
                outcome.history.append({"epoch": epoch + 1, "losses": []})
            for index, batch in enumerate(loader, start=done_here):
                logits = prepared(batch["input_ids"], batch["attention_mask"])
                loss = masked_multitask_loss(logits, batch["heads"], batch["targets"], weights)
                accelerator.backward(loss)
                if settings.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(prepared.parameters(), settings.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                outcome.steps += 1
                seen += batch["heads"].shape[0] * accelerator.num_processes
                value = float(accelerator.reduce(loss.detach(), reduction="mean"))
                losses.append(round(value, 6))
                outcome.history[-1]["losses"] = losses
                bar.advance(epoch=epoch + 1, loss=f"{value:.4f}")
                end_of_epoch = index + 1 == n_batches
                if end_of_epoch:
                    accuracy = _accuracy(accelerator, prepared, validation, pad_id, settings)
                    outcome.history[-1]["validation_accuracy"] = accuracy
                if outcome.steps % settings.save_every == 0 or end_of_epoch:
                    position = (epoch + 1, 0) if end_of_epoch else (epoch, index + 1)
                    progress = {"step": outcome.steps, "epoch": position[0], "batch": position[1]}
                    _save(accelerator, out, {**progress, **identity, "history": outcome.history})
    outcome.seconds = time.perf_counter() - started
    outcome.items_per_second = seen / outcome.seconds if outcome.seconds else 0.0
    accelerator.wait_for_everyone()
    if settings.lora is None:
        # Whole weights on the main process even where DeepSpeed ZeRO-3 or FSDP shard them
        # (every process must take part); None on the others.
        outcome.state_dict = accelerator.get_state_dict(prepared)
    trained = merge_lora(accelerator.unwrap_model(prepared))
    return trained, outcome


def _accuracy(
    accelerator: Any,
    model: torch.nn.Module,
    validation: Sequence[EncodedLabel],
    pad_id: int,
    settings: TrainingSettings,
) -> float | None:
    if not validation:
        return None
    predicted = predict(accelerator, model, validation, pad_id, settings.batch_size)
    right = sum(p == e.target for p, e in zip(predicted, validation, strict=True))
    return round(100 * right / len(validation), 4)
