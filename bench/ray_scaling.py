"""Scoring throughput on Ray with 1 and 2 replicas against the in-process executor.

All three score the same items with the same random official-layout checkpoint on this
machine, in one run; printed as items/s and as ratios to in-process. Ray's start-up is timed
separately and excluded.

    python bench/ray_scaling.py --items 400
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from scorer import SIZES, workload

from flames.execution.distributed import RayOptions, RayScorer
from flames.scoring.scorer.official import OfficialScorer, ScorerSettings
from flames.scoring.scorer.synthetic import build_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--size", default="mid", choices=sorted(SIZES))
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = build_checkpoint(Path(tmp) / "ckpt", **SIZES[args.size])
        scorer = OfficialScorer(ScorerSettings(model=str(checkpoint)))
        pairs = workload(args.items)
        scorer.score_all(pairs[:8])  # warm-up
        start = time.perf_counter()
        scorer.score_all(pairs)
        local = args.items / (time.perf_counter() - start)

        start = time.perf_counter()
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        startup = time.perf_counter() - start
        rates = {}
        for replicas in (1, 2):
            on_ray = RayScorer(scorer, RayOptions(replicas=replicas, batch_size=args.batch_size))
            start = time.perf_counter()
            n = sum(len(batch) for batch in on_ray.score(pairs))
            rates[replicas] = n / (time.perf_counter() - start)
        ray.shutdown()
    print(f"{args.items} items, {args.size} model, CPU; Ray start-up {startup:.1f} s (excluded)")
    print(f"in-process:       {local:7.1f} items/s  (1.00x)")
    for replicas, rate in rates.items():
        print(f"Ray, {replicas} replica(s): {rate:7.1f} items/s  ({rate / local:.2f}x)")


if __name__ == "__main__":
    main()
