"""Generation throughput against a loopback OpenAI-compatible server with fixed latency.

Prints wall time for the concurrent backend against the ideal (N x latency / concurrency) and
against a sequential client (concurrency 1), measured in the same run, through the real path:
the aiohttp client, retries, and durable writes to the run store.

With --cli, `flames generate` and then `flames judge` run as a user runs them, each in its own
process, on a prompt file of N lines: wall time against the ideal, and peak resident memory.

    python bench/generation.py --n 1000 --latency 0.05 --concurrency 64
    python bench/generation.py --cli --n 100000 --latency 0.2 --concurrency 256
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flames.data.dataset import Dataset, Item
from flames.generation import run_generation
from flames.generation.openai_api import OpenAIBackend
from flames.runs.records import DatasetInfo, RunManifest
from flames.runs.store import RunStore


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


VERDICT = '[[verdict:{"score": 3, "reason": "ok"}]]'
"""Makes the loopback server answer with a valid verdict, for the judging half of --cli."""


def timed_cli(args: list[str | Path]) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of `python -m flames ARGS` in its own process."""
    start = time.perf_counter()
    env = {**os.environ, "OPENAI_API_KEY": "sk-bench"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flames", *map(str, args)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"flames {args[0]} failed:\n{proc.stderr.read().decode()}")  # type: ignore[union-attr]
    return wall, usage.ru_maxrss / 1024


def cli_runs(base_url: str, n: int, concurrency: int, workdir: Path) -> dict[str, tuple]:
    """Time `flames generate` and `flames judge` on n prompts."""
    data = workdir / "prompts.jsonl"
    with data.open("w", encoding="utf-8") as fh:
        for i in range(n):
            row = {"dimension": "Safety", "subcomponent": "Physical harm", "prompt": f"第{i}个问题"}
            row["prompt"] += VERDICT
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    run = workdir / "run"
    common = ["--base-url", base_url, "--concurrency", str(concurrency), "--no-progress"]
    return {
        "generate": timed_cli(["generate", run, "--model", "bench", "--data", data, *common]),
        # The loopback server answers every prompt with the same verdict: no judge to check.
        "judge": timed_cli(["judge", run, "--model", "judge", "--skip-judge-check", *common]),
    }


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
    parser.add_argument(
        "--cli", action="store_true", help="time `flames generate` and `flames judge` instead"
    )
    args = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, "-m", "flames.clients.mock_server", "--latency", str(args.latency)],
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
        if args.cli:
            with tempfile.TemporaryDirectory() as tmp:
                timings = cli_runs(base_url, args.n, args.concurrency, Path(tmp))
            ideal = args.n * args.latency / args.concurrency
            print(f"{args.n} prompts, {args.latency * 1000:.0f} ms, concurrency {args.concurrency}")
            print(f"ideal (N x latency / concurrency): {ideal:8.2f} s")
            for command, (wall, peak) in timings.items():
                ratio = wall / ideal
                print(f"flames {command:<9} {wall:8.2f} s ({ratio:.2f}x ideal), {peak:.0f} MB")
            return
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
