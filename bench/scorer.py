"""Scorer throughput: length-sorted token-budget batching against infer.py's naive loop.

The baseline is the official infer.py's pattern: batches of 16 in dataset order, each padded to
its longest input. Both run the same model on the same inputs in the same process, so only the
batching differs; the verdicts are checked to agree. Models are random checkpoints in the
official layout (a tiny and a mid-size one on CPU; add --full-7b on a GPU for the real shape).
With --vllm, the same items are also scored by the scorer on vLLM's pooling runner (mid and 7B
shapes), timed after its engine has started, against the token-budget path.

    python bench/scorer.py --items 1000 --mid-items 200
    python bench/scorer.py --items 0 --mid-items 200 --vllm enforce_eager=true  # vLLM's CPU build
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch

from flames.data.dataset import Item
from flames.data.taxonomy import Dimension
from flames.runs.records import Answer
from flames.scoring.scorer.official import OfficialScorer, ScorerSettings, plan_batches
from flames.scoring.scorer.synthetic import build_checkpoint

SIZES = {
    "tiny": {"hidden": 64, "layers": 2, "heads": 4, "intermediate": 160},
    "mid": {"hidden": 512, "layers": 8, "heads": 8, "intermediate": 1376},
    "full-7b": {"hidden": 4096, "layers": 32, "heads": 32, "intermediate": 11008},
}
SENTENCES = [
    "这样做可能违反法律，建议你和对方好好沟通。",
    "天台边缘非常危险，请注意安全。",
    "我不能提供他人的隐私信息。",
    "中庸之道讲究分寸，并不是放弃努力。",
]


def workload(n: int, seed: int = 0) -> list[tuple[Item, Answer]]:
    """Answers whose lengths spread as real ones do: from a few words to long essays."""
    rng = random.Random(seed)
    dims = list(Dimension)
    pairs = []
    for i in range(n):
        dim = dims[i % 5]
        item = Item(
            id=f"b{i}",
            dimension=dim,
            subcomponent=dim.subcomponents[0],
            prompt="".join(rng.choices(SENTENCES, k=rng.randint(1, 4))),
        )
        words = int(10 ** rng.uniform(0.3, 2.0))  # 2 to 100 sentences, log-uniform
        response = "".join(rng.choices(SENTENCES, k=words))
        pairs.append((item, Answer(item_id=item.id, status="ok", response=response)))
    return pairs


def run(scorer: OfficialScorer, pairs, batches: list[list[int]]) -> tuple[float, int, list]:
    encoded = [scorer.encode(i, a) for i, a in pairs]
    padded = sum(len(b) * max(len(encoded[i].ids) for i in b) for b in batches)
    labels: dict[int, int] = {}
    sync = torch.cuda.synchronize if scorer.device.startswith("cuda") else lambda: None
    sync()
    start = time.perf_counter()
    for batch in batches:
        verdicts = scorer._verdicts([pairs[i] for i in batch], [encoded[i] for i in batch])
        labels.update(zip(batch, (v.score for v in verdicts), strict=True))
    sync()
    return time.perf_counter() - start, padded, [labels[i] for i in range(len(pairs))]


def bench_vllm(
    scorer: OfficialScorer, pairs, engine_args: list[str], our_time: float, our_labels: list
) -> None:
    from flames.cli.describe import parse_engine_args
    from flames.scoring.scorer.vllm_engine import VLLMScorer

    on_vllm = VLLMScorer(scorer.settings, parse_engine_args(engine_args))
    on_vllm.score_all(pairs[:16])  # export, engine start-up and warm-up
    start = time.perf_counter()
    labels = [v.score for v in on_vllm.score_all(pairs)]
    elapsed = time.perf_counter() - start
    on_vllm.close()
    agree = sum(a == b for a, b in zip(our_labels, labels, strict=True))
    print(
        f"  vLLM pooling runner:     {elapsed:7.2f} s  ({our_time / elapsed:.2f}x the token "
        f"budget path); verdicts agree on {agree}/{len(pairs)}"
    )


def bench(
    size: str, n: int, workdir: Path, device: str | None, dtype: str, vllm: list[str] | None
) -> None:
    checkpoint = build_checkpoint(workdir / size, **SIZES[size])
    scorer = OfficialScorer(ScorerSettings(model=str(checkpoint), device=device, dtype=dtype))
    pairs = workload(n)
    real = sum(len(scorer.encode(i, a).ids) for i, a in pairs)
    naive = [list(range(s, min(s + 16, n))) for s in range(0, n, 16)]
    lengths = [len(scorer.encode(i, a).ids) for i, a in pairs]
    ours = plan_batches(lengths, scorer.token_budget, scorer.settings.max_batch)
    run(scorer, pairs[:16], [list(range(16))])  # warm-up
    base_time, base_padded, base_labels = run(scorer, pairs, naive)
    our_time, our_padded, our_labels = run(scorer, pairs, ours)
    agree = sum(a == b for a, b in zip(base_labels, our_labels, strict=True))
    print(f"[{size}] {n} items, {real} real tokens, {scorer.device} {scorer.dtype_name}")
    print(
        f"  naive batch-16 in order: {base_time:7.2f} s  {real / base_time:9.0f} tok/s  "
        f"padding waste {base_padded / real - 1:6.1%}"
    )
    print(
        f"  flames token budget:     {our_time:7.2f} s  {real / our_time:9.0f} tok/s  "
        f"padding waste {our_padded / real - 1:6.1%}"
    )
    print(f"  speed-up {base_time / our_time:.2f}x; verdicts agree on {agree}/{n}")
    if vllm is not None and size != "tiny":  # vLLM's kernels want head sizes of 32 and up
        bench_vllm(scorer, pairs, vllm, our_time, our_labels)
    if size == "full-7b" and scorer.device.startswith("cuda"):
        params = sum(p.numel() for p in scorer.model.parameters())
        flops = 2 * params * real
        peak = {"float16": 989e12, "bfloat16": 989e12}.get(scorer.dtype_name, 67e12)
        print(
            f"  {our_time * 1000 / n:.1f} s per 1,000 items; "
            f"{flops / our_time / peak:.1%} of the H100's dense peak"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000, help="items for the tiny model")
    parser.add_argument("--mid-items", type=int, default=200, help="items for the mid model")
    parser.add_argument("--full-7b", type=int, default=0, help="items for the 7B shape (GPU)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument(
        "--vllm", nargs="*", default=None, metavar="KEY=VALUE", help="also time vLLM (engine args)"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        for size, n in (("tiny", args.items), ("mid", args.mid_items), ("full-7b", args.full_7b)):
            if n:
                bench(size, n, Path(tmp), args.device, args.dtype, args.vllm)


if __name__ == "__main__":
    main()
