"""The documentation's code runs as written.

Every fenced ```bash and ```python block of README.md and docs/**/*.md runs, unless the line
right before its opening fence is `<!-- not run: REASON -->`. A page's blocks run in order in
one fresh folder (a copy of examples/ beside them), so a block may use what an earlier one of
its page wrote; each block is its own script (bash -e, or python reading it as a script saved
in that folder). A block fails when it exits
non-zero or prints a traceback. The environment is the test's own: this virtual environment
first on PATH, the official prompts through FLAMES_DATA_DIR, an empty cache, no API key, and
the Hugging Face hub offline.

A Chinese page (PAGE.zh.md) whose blocks are the English page's, comments aside, is not run
again: it is the same program.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
NOT_RUN = re.compile(r"^\s*<!--\s*not run:(?P<reason>.*?)-->\s*$")
RUNNABLE = {"bash", "python"}
# Every block names its language, so that nothing runnable hides in a block the test skips.
# Not allowed: sh, shell, console, py ... (code that would be shown as shell or Python, not run).
OTHER_LANGUAGES = {
    *("toml", "yaml", "json", "jsonl", "text", "csv"),
    *("ini", "diff", "html", "markdown"),
}
TRACEBACK = "Traceback (most recent call last)"


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    not_run: str | None  # the reason, when the block is marked not run

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """Every fenced block of a Markdown page, in order."""
    lines = page.read_text("utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, indent = opening["fence"], opening["indent"]
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence)), None
        )
        assert end is not None, f"{page.relative_to(REPO)}:{i + 1}: a fence that never closes"
        body = [line.removeprefix(indent) for line in lines[i + 1 : end]]
        marker = NOT_RUN.match(lines[i - 1]) if i else None
        reason = marker["reason"].strip() if marker else None
        found.append(Block(page, i + 1, opening["info"].lower(), "\n".join(body) + "\n", reason))
        i = end + 1
    return found


def without_comments(block: Block) -> str:
    """The block's program: python as its syntax tree; bash without its comments (outside
    quotes and here-documents, whose text is kept whole)."""
    if block.language == "python":
        return ast.dump(ast.parse(block.code))
    kept, heredoc_end = [], None
    for line in block.code.splitlines():
        if heredoc_end is not None:
            kept.append(line)
            if line.strip() == heredoc_end:
                heredoc_end = None
            continue
        line = strip_bash_comment(line)
        if line:
            kept.append(line)
        here = re.search(r"<<-?\s*(['\"]?)(\w+)\1", line)
        if here:
            heredoc_end = here[2]
    return "\n".join(kept)


def strip_bash_comment(line: str) -> str:
    quote, escaped = None, False
    for k, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k].rstrip()
    return line.rstrip()


def runnable(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.language in RUNNABLE and b.not_run is None]


def same_program_as_english(page: Path) -> Path | None:
    """For PAGE.zh.md, PAGE.md when their runnable blocks are the same program."""
    if not page.name.endswith(".zh.md"):
        return None
    english = page.with_name(page.name.removesuffix(".zh.md") + ".md")
    if not english.is_file():
        return None
    ours, theirs = runnable(page), runnable(english)
    same = [without_comments(b) for b in ours] == [without_comments(b) for b in theirs]
    return english if same else None


def test_every_block_names_its_language_and_every_marker_its_reason():
    wrong = []
    for page in pages():
        lines = page.read_text("utf-8").splitlines()
        fenced = {b.line for b in blocks(page)}
        for block in blocks(page):
            if block.language not in RUNNABLE | OTHER_LANGUAGES:
                wrong.append(f"{block.where}: language {block.language!r}")
            if block.not_run is not None and block.language not in RUNNABLE:
                wrong.append(f"{block.where}: a not-run marker on a {block.language} block")
            if block.not_run == "":
                wrong.append(f"{block.where}: a not-run marker without a reason")
        for number, line in enumerate(lines, 1):
            if NOT_RUN.match(line) and number + 1 not in fenced:
                wrong.append(f"{page.relative_to(REPO)}:{number}: a marker on no block")
    assert not wrong, "\n".join(wrong)


def test_the_block_reader(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Text\n\n```bash\necho one  # a comment\n```\n\n"
        "<!-- not run: needs a GPU -->\n```python\nimport torch\n```\n\n"
        "- In a list:\n\n    ```python\n    print('indented')\n    ```\n\n"
        "````text\n```bash\nnot a block\n```\n````\n",
        "utf-8",
    )
    found = [(b.line, b.language, b.code, b.not_run) for b in blocks(page)]
    assert found == [
        (3, "bash", "echo one  # a comment\n", None),
        (8, "python", "import torch\n", "needs a GPU"),
        (14, "python", "print('indented')\n", None),
        (18, "text", "```bash\nnot a block\n```\n", None),
    ]


@pytest.mark.parametrize(
    ("english", "chinese", "same"),
    [
        ("flames run x  # run it\n", "flames run x  # 运行\n", True),
        ("# fetch\nflames data fetch\n", "# 下载\nflames data fetch\n", True),
        ('echo "a # b"\n', 'echo "a # 乙"\n', False),  # inside quotes: not a comment
        ("echo a#b\n", "echo a#c\n", False),  # not after a space: not a comment
        ("cat > f <<'EOF'\n# one\nEOF\n", "cat > f <<'EOF'\n# 一\nEOF\n", False),
        ("flames run x\n", "flames run y\n", False),
    ],
)
def test_a_chinese_page_is_the_same_program_only_when_its_code_is(english, chinese, same):
    def block(code: str) -> Block:
        return Block(REPO / "x.md", 1, "bash", code, None)

    assert (without_comments(block(english)) == without_comments(block(chinese))) is same
    python_en = Block(REPO / "x.md", 1, "python", "x = 1  # one\nprint('是')\n", None)
    python_zh = Block(REPO / "x.md", 1, "python", "# 注释\nx = 1  # 一\nprint('是')\n", None)
    assert without_comments(python_en) == without_comments(python_zh)


def block_environment(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("API_KEY")}
    data_dir = os.environ.get("FLAMES_DATA_DIR") or str(REPO.parent / "shared" / "data")
    env.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        FLAMES_DATA_DIR=data_dir,
        FLAMES_CACHE_DIR=str(folder / ".cache"),
        HF_HUB_OFFLINE="1",
        COLUMNS="100",
    )
    env.pop("PYTHONPATH", None)
    return env


def pages_to_run() -> list[Path]:
    return [p for p in pages() if runnable(p) and same_program_as_english(p) is None]


@pytest.mark.parametrize("page", pages_to_run(), ids=lambda p: str(p.relative_to(REPO)))
def test_the_page_runs(page, tmp_path):
    folder = tmp_path / "work"
    shutil.copytree(REPO / "examples", folder / "examples")
    env = block_environment(folder)
    for number, block in enumerate(runnable(page)):
        if block.language == "bash":
            script = folder.parent / f"block-{number}.sh"  # outside the folder the page sees
            script.write_text(block.code, "utf-8")
            command, stdin = ["bash", "-e", "-o", "pipefail", str(script)], None
        else:  # from stdin, so that the folder is on sys.path as for a script saved in it
            command, stdin = [sys.executable, "-"], block.code
        proc = subprocess.run(
            command, cwd=folder, env=env, input=stdin, capture_output=True, text=True, timeout=180
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{block.where} exited {proc.returncode}:\n{out[-3000:]}"
        assert TRACEBACK not in out, f"{block.where} printed a traceback:\n{out[-3000:]}"


def docs_hooks():
    """.ci/docs_hooks.py, the checks of the documentation build (needs the docs extra)."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("griffe")
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / ".ci" / "docs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_build_refuses_a_reference_that_is_not_the_public_surface(tmp_path):
    from mkdocs.exceptions import PluginError

    hooks = docs_hooks()
    reference = (REPO / "docs" / "reference.md").read_text("utf-8")
    assert hooks.on_config({"docs_dir": str(REPO / "docs")})  # as it stands: accepted
    (tmp_path / "reference.md").write_text(
        reference.replace("::: flames.compare\n", "::: flames.errors\n"), "utf-8"
    )
    with pytest.raises(PluginError, match=r"leaves out: compare.*is not public: errors"):
        hooks.on_config({"docs_dir": str(tmp_path)})


def test_the_docs_build_refuses_an_annotation_that_cannot_be_evaluated():
    hooks = docs_hooks()

    def typo(run_dir: str) -> EvalResutl:  # noqa: F821  (the typo this check is for)
        return run_dir

    def fine(run_dir: str) -> Path:
        return Path(run_dir)

    assert hooks.annotation_problems("typo", typo) and not hooks.annotation_problems("fine", fine)
