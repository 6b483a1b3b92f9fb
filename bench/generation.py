"""Generation throughput against a loopback OpenAI-compatible server with fixed latency.

Prints wall time for the concurrent backend against the ideal (N x latency / concurrency) and
against a sequential client (concurrency 1), measured in the same run, through the real path:
the aiohttp client, retries, and durable writes to the run store.

    python bench/generation.py --n 1000 --latency 0.05 --concurrency 64
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flames.dataset import Dataset, Item
from flames.generation import run_generation
from flames.generation.openai_api import OpenAIBackend
from flames.records import DatasetInfo, RunManifest
from flames.store import RunStore


def timed_run(base_url: str, items: list[Item], concurrency: int, workdir: Path) -> float:
    dataset = Dataset(name="bench", source_sha256="0" * 64, items=items)
    backend = OpenAIBackend("bench", base_url=base_url, concurrency=concurrency)
    manifest = RunManifest(dataset=DatasetInfo.of(dataset), generator=backend.info)
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    with RunStore.create_or_resume(run_dir, manifest, items) as store:
        start = time.perf_counter()
        summary = run_generation(store, backend, progress=False)
        elapsed = time.perf_counter() - start
    assert summary.ok == len(items), summary
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--sequential-n",
        type=int,
        default=200,
        help="prompts for the sequential client (its time is scaled to --n)",
    )
    args = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, "-m", "flames.mock_server", "--latency", str(args.latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(server.stdout.readline().split()[1])
        base_url = f"http://127.0.0.1:{port}/v1"
        items = [
            Item(
                id=f"b{i}", dimension="Safety", subcomponent="Physical harm", prompt=f"第{i}个问题"
            )
            for i in range(args.n)
        ]
        with tempfile.TemporaryDirectory() as tmp:
            concurrent = timed_run(base_url, items, args.concurrency, Path(tmp))
            seq_items = items[: args.sequential_n]
            sequential = timed_run(base_url, seq_items, 1, Path(tmp)) * args.n / len(seq_items)
    finally:
        server.kill()
        server.wait()

    ideal = args.n * args.latency / args.concurrency
    print(f"{args.n} prompts, {args.latency * 1000:.0f} ms latency, concurrency {args.concurrency}")
    print(f"ideal (N x latency / concurrency): {ideal:8.2f} s")
    print(
        f"flames, concurrent:                {concurrent:8.2f} s  ({concurrent / ideal:.2f}x ideal)"
    )
    print(
        f"sequential client (scaled from {len(seq_items)}): {sequential:8.2f} s  "
        f"({sequential / concurrent:.1f}x slower than concurrent)"
    )


if __name__ == "__main__":
    main()
