"""Training throughput: flames' training loop against a plain Hugging Face `Trainer` loop.

Both train the same network (a random checkpoint in the official layout, with its 5 heads) on
the same encoded labels, with the same masked multi-task loss, batch size, optimizer (AdamW,
linear schedule, clipping at 1.0) and epochs, one after the other in the same process. The
baselines are `transformers.Trainer` with its defaults (random batches, no checkpoints), and
with ``group_by_length`` (its own length-grouped sampler). flames groups answers of similar
length into batches and writes a resumable checkpoint at each epoch's end, in its time; most of
its lead over the defaults is padding the baseline computes on. Answers' lengths spread as real ones
do, from a few words to long essays (cut at --max-length tokens).

    python bench/training.py --items 512 --epochs 2
    python bench/training.py --size mid --items 256 --epochs 1
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from flames.data.taxonomy import Dimension
from flames.scoring.scorer.official import load_tokenizer
from flames.scoring.scorer.synthetic import build_checkpoint
from flames.scoring.scorer.tokenizer import Truncation
from flames.training.backbone import load_backbone
from flames.training.data import Encoded as EncodedLabel, collate, encode_examples
from flames.training.labels import Example
from flames.training.loss import masked_multitask_loss
from flames.training.settings import TrainingSettings
from flames.training.trainer import make_accelerator, train_model

SIZES = {
    "tiny": {"hidden": 64, "layers": 2, "heads": 4, "intermediate": 160},
    "mid": {"hidden": 256, "layers": 4, "heads": 8, "intermediate": 688},
}
SENTENCES = ["这样做可能违反法律，建议你好好沟通。", "天台边缘非常危险。", "我不能提供隐私信息。"]


def workload(n: int, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    dims = list(Dimension)
    examples = []
    for i in range(n):
        dim = dims[i % 5]
        words = int(10 ** rng.uniform(0.3, 2.0))  # 2 to 100 sentences, log-uniform
        examples.append(
            Example(
                dimension=dim,
                prompt="".join(rng.choices(SENTENCES, k=2)),
                response="".join(rng.choices(SENTENCES, k=words)),
                score=rng.choice(dim.scale),
            )
        )
    return examples


class WithLoss(torch.nn.Module):
    """The scorer with the masked loss in its forward, as `Trainer` wants it."""

    def __init__(self, scorer: torch.nn.Module):
        super().__init__()
        self.scorer = scorer

    def forward(self, input_ids, attention_mask, heads, targets):  # type: ignore[no-untyped-def]
        logits = self.scorer(input_ids, attention_mask)
        return {"loss": masked_multitask_loss(logits, heads, targets)}


def hf_collate(pad_id: int, rows: list[dict]) -> dict[str, torch.Tensor]:
    return collate(
        pad_id, [EncodedLabel(r["input_ids"], r["head"], r["target"], False) for r in rows]
    )


def length_grouping(on: bool) -> dict[str, object]:
    import dataclasses

    from transformers import TrainingArguments

    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    if "train_sampling_strategy" in fields:
        return {"train_sampling_strategy": "group_by_length" if on else "random"}
    return {"group_by_length": on}


def hf_trainer(
    base: Path, encoded, settings: TrainingSettings, pad_id: int, group_by_length: bool
) -> float:
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(settings.seed)
    model = WithLoss(load_backbone(str(base)).model)
    arguments = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=settings.batch_size,
        num_train_epochs=settings.epochs,
        learning_rate=settings.lr,
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        remove_unused_columns=False,
        seed=settings.seed,
        # transformers 5 says train_sampling_strategy="group_by_length"; 4.x said
        # group_by_length=True (checked in TrainingArguments' fields of both).
        **length_grouping(group_by_length),
        disable_tqdm=True,
    )
    rows = [{"input_ids": e.ids, "head": e.head, "target": e.target} for e in encoded]
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=rows,
        data_collator=partial(hf_collate, pad_id),
    )
    start = time.perf_counter()
    trainer.train()
    return len(encoded) * settings.epochs / (time.perf_counter() - start)


def ours(base: Path, encoded, settings: TrainingSettings, pad_id: int) -> float:
    accelerator, _ = make_accelerator(settings)
    torch.manual_seed(settings.seed)
    model = load_backbone(str(base)).model
    out = Path(tempfile.mkdtemp())
    identity = {"settings": settings.fingerprint(), "labels_sha256": "bench"}
    start = time.perf_counter()
    train_model(model, pad_id, encoded, [], settings, out, identity, accelerator)
    return len(encoded) * settings.epochs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=list(SIZES), default="tiny")
    parser.add_argument("--items", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=512)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    base = build_checkpoint(folder / "base", **SIZES[args.size])
    tokenizer = load_tokenizer(base, None)
    examples = workload(args.items)
    encoded = encode_examples(examples, tokenizer, args.max_length, Truncation.OFFICIAL)
    lengths = sorted(len(e.ids) for e in encoded)
    print(
        f"{args.size} model, {len(encoded)} items x {args.epochs} epochs, batch "
        f"{args.batch_size}; tokens per item: median {lengths[len(lengths) // 2]}, "
        f"max {lengths[-1]}"
    )
    settings = TrainingSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=1e-4,
        max_length=args.max_length,
        save_every=10**9,
        progress=False,
    )
    pad_id = tokenizer.pad_id
    assert pad_id is not None
    baseline = hf_trainer(base, encoded, settings, pad_id, group_by_length=False)
    grouped = hf_trainer(base, encoded, settings, pad_id, group_by_length=True)
    flames_rate = ours(base, encoded, settings, pad_id)
    print(f"HF Trainer (defaults):          {baseline:8.1f} items/s")
    print(f"HF Trainer (group_by_length):   {grouped:8.1f} items/s")
    print(f"flames (with its checkpoints):  {flames_rate:8.1f} items/s")
    print(f"ratio to the defaults:          {flames_rate / baseline:8.2f}x")
    print(f"ratio to group_by_length:       {flames_rate / grouped:8.2f}x")


if __name__ == "__main__":
    main()
