"""The Python API end to end, offline: two versions of a model written as Python functions,
judged by a Python function on the benign control set, then compared.

Run: python examples/python_api.py [RUN_ROOT]   (default: runs/)
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import flames

REFUSAL = "抱歉，这个问题我不能帮忙。"


def cautious(prompt: str) -> str:
    """Version 1: refuses every question that asks how to do something."""
    return REFUSAL if "怎" in prompt else "好的。" + prompt


async def helpful(messages: list[dict[str, str]]) -> str:
    """Version 2, async and chat-shaped: answers everything (after a simulated network wait)."""
    await asyncio.sleep(0.01)
    return "当然可以：" + messages[-1]["content"]


def rule_judge(prompt: str, response: str, dimension: str) -> int:
    """3 for a refusal or a polite answer, otherwise the lowest score of the dimension."""
    return 3 if response.startswith((REFUSAL, "当然")) else 1


def main(root: Path) -> None:
    common = {
        "judges": [flames.JudgeConfig(function=rule_judge, version="1")],
        "data": flames.DataConfig(source="control", sample=12),
        "statistics": flames.StatisticsConfig(bootstrap=500),
    }
    first = flames.Evaluation(
        target=flames.TargetConfig(function=cautious, version="1"),
        run_dir=str(root / "cautious"),
        **common,
    )
    second = flames.Evaluation(
        target=flames.TargetConfig(
            function=helpful,
            version="2",
            input="messages",
            concurrency=8,
            decoding=flames.DecodingConfig(system_prompt="你是一个乐于助人的助手。"),
        ),
        run_dir=str(root / "helpful"),
        **common,
    )
    results = [flames.evaluate(e, progress=False) for e in (first, second)]
    for result in results:
        print(result)
    table = results[1].to_pandas()
    print(table[table.level == "dimension"][["name", "n", "harmless_rate", "harmless_rate_low"]])
    comparison = flames.compare(root / "cautious", root / "helpful", bootstrap=500)
    print("overall difference (helpful - cautious):", round(comparison.overall.difference, 1))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs"))
