"""Cost at scale: wall time and peak memory of import, score-file, report, compare and leaderboard
on synthetic runs of 10k, 100k and 1M answers, with the growth exponent of each.

Runs are built directly through the run store (bulk inserts of synthetic answers and verdicts
with the official scorer's probabilities); the answer files for import and score-file are written
in the official format. Each command runs in its own process, as a user runs it; its wall time
and peak resident memory (``wait4``'s ru_maxrss; the runs are built in another process, so
the parent stays small) are printed, then the log-log slope of each
command's cost against the number of answers (1 = linear).

    python bench/scale.py                     # 10k, 100k, 1M answers (several minutes)
    python bench/scale.py --max-size 100000   # a quick run
    python bench/scale.py --bootstrap 1       # every cost but the confidence intervals'
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from flames.data.dataset import Item
from flames.data.taxonomy import SUBCOMPONENTS, Dimension
from flames.runs.records import (
    Answer,
    DatasetInfo,
    Decoding,
    GeneratorInfo,
    RunManifest,
    ScorerManifest,
    Verdict,
)
from flames.runs.store import RunStore

SIZES = (10_000, 100_000, 1_000_000)
CHUNK = 20_000
PHRASES = [
    "这样做可能违反法律，建议你和对方好好沟通。",
    "天台边缘非常危险，请注意安全，必要时寻求专业帮助。",
    "我不能提供他人的隐私信息，这会侵犯对方的权利。",
    "中庸之道讲究分寸，并不是放弃努力或者随波逐流。",
    "抱歉，我无法协助完成这个请求。",
    "每个人都应该被平等对待，不应因出身而受到歧视。",
]
SUBS = [(d, s) for d in Dimension for s in SUBCOMPONENTS[d]]
PROBABILITY = {1: (0.1, 0.1, 0.8), 2: (0.2, 0.7, 0.1), 3: (0.9, 0.07, 0.03)}


def synthetic(n: int, seed: int, samples: int) -> Iterator[tuple[Item, int, str, int]]:
    """(item, sample, response, score) for n answers: n / samples prompts over the taxonomy."""
    rng = random.Random(seed)
    texts = random.Random(0)
    for i in range(n // samples):
        dim, sub = SUBS[i % len(SUBS)]
        prompt = f"第{i}个问题：" + "".join(texts.sample(PHRASES, 3))
        item = Item(id=f"q{i:07d}", dimension=dim, subcomponent=sub, prompt=prompt)
        for sample in range(samples):
            response = "".join(rng.sample(PHRASES, 4))
            harmless = 0.6 if dim in (Dimension.SAFETY, Dimension.MORALITY) else 0.75
            u = rng.random()
            score = 3 if u < harmless else (1 if len(dim.scale) == 2 or u > 0.9 else 2)
            yield item, sample, response, score


def build_run(run_dir: Path, n: int, seed: int, samples: int) -> None:
    """A scored run of n answers, written through the store in bulk."""
    rows = list(synthetic(n, seed, samples))
    items = [item for item, sample, _, _ in rows if sample == 0]
    dataset_info = DatasetInfo(
        name=f"synthetic-{n}",
        source_sha256="0" * 64,
        items_sha256="0" * 64,
        selection="all",
        n_items=len(items),
    )
    manifest = RunManifest(
        dataset=dataset_info,
        generator=GeneratorInfo(
            backend="synthetic", model=f"model-{seed}", decoding=Decoding(samples=samples)
        ),
    )
    store = RunStore.create_or_resume(run_dir, manifest, items)
    scorer = ScorerManifest(name="official", kind="official", config={"truncation": "official"})
    store.register_scorer(scorer)
    with store:
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            store.record_answers(
                Answer.model_construct(
                    item_id=it.id, sample=s, status="ok", response=r, attempts=1, created_at="-"
                )
                for it, s, r, _ in chunk
            )
            store.record_verdicts(
                "official",
                (
                    Verdict.model_construct(
                        item_id=it.id,
                        sample=s,
                        status="ok",
                        score=score,
                        probabilities=list(PROBABILITY[score]),
                        truncated=False,
                        created_at="-",
                    )
                    for it, s, _, score in chunk
                ),
            )


def write_file(path: Path, n: int, seed: int, scored: bool) -> None:
    """An answers file of n lines in the official format (with 'predicted' when scored)."""
    with path.open("w", encoding="utf-8") as fh:
        for item, _, response, score in synthetic(n, seed, 1):
            row = {
                "dimension": item.dimension.value,
                "subcomponent": item.subcomponent,
                "prompt": item.prompt,
                "response": response,
            }
            if scored:
                row["predicted"] = score
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def measure(args: list[str | Path], cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of `python -m flames ARGS` in its own process."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flames", *map(str, args)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "120"},
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        command = " ".join(map(str, args))
        raise SystemExit(f"flames {command} failed:\n{proc.stderr.read().decode()}")
    proc.stderr.close()
    return wall, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def slope(sizes: list[int], values: list[float]) -> float:
    """Growth exponent: the slope of log(value) against log(size)."""
    return float(np.polyfit(np.log(sizes), np.log(values), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-size", type=int, default=SIZES[-1], help="largest run (answers)")
    parser.add_argument("--samples", type=int, default=1, help="answers per prompt in the runs")
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=2000,
        help="resamples for score-file, report, compare and leaderboard",
    )
    parser.add_argument("--workdir", type=Path, help="keep the runs here (default: a temp dir)")
    parser.add_argument(
        "--commands",
        default="import,score-file,report,compare,leaderboard",
        help="comma-separated subset to time",
    )
    args = parser.parse_args()
    sizes = [n for n in SIZES if n <= args.max_size]
    commands = args.commands.split(",")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="flames-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[tuple[int, float, float]]] = {c: [] for c in commands}
    print(f"{'command':<12} {'answers':>9} {'wall s':>8} {'peak MB':>8}", flush=True)
    try:
        for n in sizes:
            t = time.perf_counter()
            run_a, run_b = work / f"a-{n}", work / f"b-{n}"
            # Built in a fresh process: a child forked from a big parent would start with the
            # parent's resident memory, and its peak (ru_maxrss) could not be read apart.
            spawn = multiprocessing.get_context("spawn")
            for run, seed in ((run_a, 1), (run_b, 2)):
                if not RunStore.exists(run):
                    builder = spawn.Process(target=build_run, args=(run, n, seed, args.samples))
                    builder.start()
                    builder.join()
            answers, scored = work / f"answers-{n}.jsonl", work / f"scored-{n}.jsonl"
            for path, with_scores in ((answers, False), (scored, True)):
                if not path.exists():
                    write_file(path, n, 3, scored=with_scores)
            print(f"# built runs and files of {n} answers in {time.perf_counter() - t:.0f} s")
            boot = ["--bootstrap", str(args.bootstrap)]
            plan: dict[str, list[str | Path]] = {
                "import": ["import", answers, work / f"imported-{n}"],
                "score-file": ["score-file", scored, "--run", work / f"score-file-{n}", *boot],
                "report": ["report", run_a, "--out", work / f"report-{n}", *boot],
                "compare": ["compare", run_a, run_b, *boot],
                "leaderboard": ["leaderboard", run_a, run_b, *boot],
            }
            for command in commands:
                for leftover in ("imported", "score-file"):
                    shutil.rmtree(work / f"{leftover}-{n}", ignore_errors=True)
                wall, peak = measure(plan[command], work)
                results[command].append((n, wall, peak))
                print(f"{command:<12} {n:>9,} {wall:>8.1f} {peak:>8.0f}", flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    if len(sizes) > 1:
        print("\ngrowth exponent (log-log slope over all sizes; over the two largest)")
        for command, rows in results.items():
            ns, walls, peaks = (list(col) for col in zip(*rows, strict=True))
            print(
                f"{command:<12} time {slope(ns, walls):.2f}; {slope(ns[-2:], walls[-2:]):.2f}   "
                f"memory {slope(ns, peaks):.2f}; {slope(ns[-2:], peaks[-2:]):.2f}"
            )


if __name__ == "__main__":
    main()
