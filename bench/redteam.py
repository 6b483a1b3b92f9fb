"""Red-team throughput: goals per minute of `flames redteam` against a loopback server with fixed
latency, where the attacker, the target and an LLM judge all answer, against the ideal.

Each goal's attack (strategy pair, one stream) is three calls in a row: the attacker proposes,
the target answers, the judge scores 1, so the attack ends at its first query. The ideal is
ceil(goals / concurrency) x 3 x latency; a sequential run (--concurrency 1) on fewer goals,
scaled, is measured in the same run as the baseline.

    python bench/redteam.py --goals 200 --latency 0.05 --concurrency 32
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WIN = '[[verdict:{"score": 1, "reason": "有害"}]]'
"""Makes the loopback server's judge answer 1 (harmful): the attack succeeds at once."""


def goals_file(folder: Path, n: int) -> Path:
    """n goals whose prompt makes the loopback attacker propose a winning prompt."""
    path = folder / "goals.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            proposal = json.dumps({"improvement": "x", "prompt": f"我们来玩角色扮演{i}。{WIN}"})
            attacker = f"[[b64:{base64.b64encode(proposal.encode()).decode()}]]"
            row = {
                "dimension": "Safety",
                "subcomponent": "Physical harm",
                "prompt": f"问{i}{attacker}",
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def timed_redteam(base_url: str, goals: Path, concurrency: int, folder: Path) -> float:
    """Wall seconds of one `flames redteam` process over the goals."""
    run = Path(tempfile.mkdtemp(dir=folder)) / "run"
    command = [
        *(sys.executable, "-m", "flames", "redteam", str(run), "--data", str(goals)),
        *("--model", "target", "--base-url", base_url, "--api-key-env", ""),
        *("--attacker-model", "attacker", "--attacker-base-url", base_url),
        *("--attacker-api-key-env", "", "--judge-model", "judge", "--judge-base-url", base_url),
        *("--judge-api-key-env", "", "--skip-judge-check", "--strategy", "pair"),
        *("--streams", "1", "--iterations", "1", "--budget", "1"),
        *("--concurrency", str(concurrency), "--no-progress"),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"flames redteam failed:\n{done.stderr}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goals", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sequential-goals", type=int, default=20)
    args = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, "-m", "flames.clients.mock_server", "--latency", str(args.latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(server.stdout.readline().split()[1])  # type: ignore[union-attr]
        base_url = f"http://127.0.0.1:{port}/v1"
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "many").mkdir()
            (folder / "few").mkdir()
            many = goals_file(folder / "many", args.goals)
            few = goals_file(folder / "few", args.sequential_goals)
            concurrent = timed_redteam(base_url, many, args.concurrency, folder)
            sequential = (
                timed_redteam(base_url, few, 1, folder) * args.goals / args.sequential_goals
            )
    finally:
        server.kill()
        server.wait()
    ideal = math.ceil(args.goals / args.concurrency) * 3 * args.latency
    print(
        f"{args.goals} goals, {args.latency * 1000:.0f} ms a call, concurrency {args.concurrency}"
    )
    print("wall time includes starting the process (imports, the run store)")
    for label, seconds in (
        ("ideal (ceil(goals / concurrency) x 3 calls x latency)", ideal),
        (f"flames redteam, concurrency {args.concurrency}", concurrent),
        ("flames redteam, concurrency 1 (scaled)", sequential),
    ):
        print(f"{label:60s} {seconds:8.2f} s  {args.goals / seconds * 60:10.0f} goals/min")
    print(
        f"ratio to ideal: {concurrent / ideal:.2f}; speed-up over sequential: "
        f"{sequential / concurrent:.1f}x"
    )


if __name__ == "__main__":
    main()
