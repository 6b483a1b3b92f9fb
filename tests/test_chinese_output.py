"""With --lang zh, what the commands say is Chinese: every console sentence, report.md,
report.html and the leaderboard (its Markdown too). Names stay as they are: runs, models,
scorers, files, the published models, statistical methods, and the manifest's JSON keys."""

from __future__ import annotations

import html
import re
from pathlib import Path

from .helpers import run_cli, write_jsonl

DEMO = Path(__file__).parents[1] / "examples" / "scored_demo.jsonl"

NAMES = {
    # Runs, models and scorers of this test.
    "demo", "unscored", "imported", "notes",
    "AI",  # in a prompt of the demo file, shown among the worst answers
    # The project, its commands and files.
    "Flames", "flames", "sha", "score", "report", "README", "docs", "statistics",
    "json", "csv", "md", "jsonl", "html", "png", "svg", "radar", "subcomponents", "scored", "board",
    "token",  # the word Chinese texts on language models use too
    # Statistical methods, by their authors' names.
    "Wilson", "Brown-Cai-DasGupta", "MOVER", "McNemar", "Holm", "Bonferroni", "Benjamini-Hochberg",
    # The published leaderboard's models.
    "Claude", "InternLM-", "ChatGPT", "Baichuan", "Ernie", "Bot", "Qwen-", "ChatYuan-", "GPT-",
    "ChatGLM", "ChatGLM-", "MOSS-", "BELLE-", "Minimax",
}  # fmt: skip
"""Words that are names, not English sentences."""

PATH = re.compile(r"\S*[/\\]\S*|\S+\.(?:json|jsonl|csv|md|html|png|svg|db)\b")
WORD = re.compile(r"[A-Za-z][A-Za-z'\-]+")


def english(text: str) -> list[str]:
    """The English words of `text` that are not names (paths, hashes and numbers left out)."""
    text = PATH.sub(" ", re.sub(r"&\w+;", " ", text))  # Markdown's &nbsp; is markup
    return sorted({w for w in WORD.findall(text) if w not in NAMES and not _hex(w)})


def _hex(word: str) -> bool:
    return re.fullmatch(r"[0-9a-f]+", word) is not None


def shown_text(page: str) -> str:
    """What a reader sees of an HTML report, less the manifest (JSON keys, kept English)."""
    page = page.split('<dl class="manifest"', 1)[0]
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_report_score_file_and_leaderboard_speak_chinese(tmp_path):
    said = []
    proc = run_cli("score-file", DEMO, "--run", "demo", "--lang", "zh", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    said.append(proc.stdout + proc.stderr)
    # A second scored run, so the leaderboard has a group to place: its note on ranks.
    proc = run_cli("score-file", DEMO, "--run", "demo2", "--lang", "zh", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("report", "demo", "--lang", "zh", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    said.append(proc.stdout + proc.stderr)
    rows = [
        {"id": "a", "dimension": "Safety", "subcomponent": "Mental harm", "prompt": "问题"}
        | {"response": "回答"}
    ]
    write_jsonl(tmp_path / "u.jsonl", rows)
    assert run_cli("import", "u.jsonl", "unscored", cwd=tmp_path).returncode == 0
    (tmp_path / "notes").mkdir()
    runs = ("demo", "demo2", "unscored", "notes")
    board = ("leaderboard", *runs, "--lang", "zh", "--out", "board.md")
    proc = run_cli(*board, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    said.append(proc.stdout + proc.stderr)
    console = "\n".join(said)
    assert "已写入" in console and "未排名" in console and "Flames 评测报告：" in console
    assert "可能名次" in console
    report = tmp_path / "demo" / "report"
    texts = {
        "console": console,
        "report.md": report.joinpath("report.md").read_text("utf-8"),
        "report.html": shown_text(report.joinpath("report.html").read_text("utf-8")),
        "board.md": (tmp_path / "board.md").read_text("utf-8"),
    }
    for where, text in texts.items():
        assert english(text) == [], (where, english(text))


RUN_CONFIG = """\
[target]
backend = "callable"
model = "zhfns:answer"
version = "1"

[data]
source = "control"
sample = 4

[[judges]]
kind = "callable"
model = "zhfns:judge"
"""

FUNCTIONS = """\
def answer(prompt: str) -> str:
    return "抱歉，这个问题我不能帮忙。"


def judge(prompt: str, response: str, dimension: str) -> int:
    return 3
"""


def test_run_speaks_chinese_from_the_first_line_to_the_last(tmp_path):
    (tmp_path / "zhfns.py").write_text(FUNCTIONS, "utf-8")
    (tmp_path / "eval.toml").write_text(RUN_CONFIG, "utf-8")
    env = {"PYTHONPATH": f"{tmp_path}:{Path(__file__).parents[1] / 'src'}"}
    args = ("run", "r", "--config", "eval.toml", "--lang", "zh", "--no-progress")
    proc = run_cli(*args, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    said = proc.stdout + proc.stderr
    assert "已生成 4 条回答" in said and "为 4 条回答评分" in said, said
    names = re.sub(r"(judge:)?zhfns:\w+|callable-judge", " ", said)
    assert english(names) == [], english(names)
