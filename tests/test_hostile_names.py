"""Names are text everywhere: a model, run, scorer, annotator, transform or prompt set named with
terminal escapes, HTML, Markdown and Rich markup reaches every table and file as the characters
it holds, and injects nothing: no escape sequence, script, heading, link or broken table."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flames.runs.records import ScorerManifest, Verdict
from flames.runs.store import RunStore

from .helpers import tied, write_jsonl

PAYLOAD = (
    "\x1b]0;pwned\x07\x1b[2J\x9b31m<img src=x onerror=\"window.pwned='img'\">"
    "[red]red[/red] **em** `code` ## heading [x](javascript:window.pwned='link') a|b "
    "www.evil.example &lt;b&gt; $x$ ~~s~~\n# second line"
)
"""What every name below carries."""
SCRIPT = "<script>window.pwned='script'</script>"
MODEL, SCORER, ANNOTATOR, TRANSFORM = (f"{who} {PAYLOAD}" for who in "MSAT")
FOLDER = PAYLOAD.replace("/", "|")
"""The payload as a folder's name (no slash)."""
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shown(name: str) -> str:
    """How a name reads in Markdown: control characters as \\xNN, line breaks and tabs as
    spaces."""
    from flames._util.terminal import printable

    return printable(re.sub(r"[\n\t]", " ", name))


class Page(HTMLParser):
    """The elements of a page, its tables' cells per row, and the text it shows."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: Counter[str] = Counter()
        self.tables: list[list[int]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags[tag] += 1
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append(0)
        elif tag in ("td", "th"):
            self.tables[-1][-1] += 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def rendered(markdown: str) -> tuple[str, Page]:
    """HTML as a permissive Markdown viewer makes it (markdown-it-py with raw HTML allowed,
    GFM tables and strikethrough), and what that page holds."""
    from markdown_it import MarkdownIt

    renderer = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    html = renderer.render(markdown)
    page = Page()
    page.feed(html)
    return html, page


def console_out(*args: str | Path) -> str:
    from flames.cli import app
    from flames.cli.app import console, err

    console.width = err.width = 1000  # whole names on one line: what is shown can be compared
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def on_console(name: str) -> str:
    """How the console must show a name: each control character, line break and tab as \\xNN,
    everything else (Rich markup included) as written."""
    return "".join(f"\\x{ord(c):02x}" if CONTROL.match(c) or c in "\n\t" else c for c in name)


def assert_plain_console(out: str, *names: str) -> None:
    assert CONTROL.findall(out) == []  # no escape sequence reaches the terminal
    flat = " ".join(out.split())  # a table's title wraps at its width
    for name in names:
        assert " ".join(on_console(name).split()) in flat, name


def assert_plain_markdown(text: str, headings: dict[str, int], strong: int, *names: str) -> None:
    """Rendered, the Markdown holds only its own elements, and shows each name as written."""
    assert CONTROL.findall(text) == []
    _, page = rendered(text)
    for tag in ("script", "img", "a", "em", "del", "iframe", "input"):
        assert page.tags[tag] == 0, tag  # no HTML, link, image or emphasis from a name
    assert {h: page.tags[h] for h in ("h1", "h2", "h3", "h4")} == headings
    assert page.tags["strong"] == strong
    for rows in page.tables:
        assert len(set(rows)) == 1, rows  # no name adds or removes a cell
    visible = "".join(page.text)
    for name in names:
        assert shown(name) in visible, name


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Two runs in folders named with the payload: answers by MODEL, a transform named
    TRANSFORM, verdicts by SCORER, labels by ANNOTATOR."""
    root = tmp_path_factory.mktemp("names")
    rows = []
    for i in range(12):
        dimension, sub = ("Safety", "Mental harm") if i % 2 else ("Fairness", "Toxic language")
        base = {"dimension": dimension, "subcomponent": sub, "predicted": 1 + i % 3}
        rows.append(base | {"id": f"s{i}", "prompt": f"问题{i}", "response": f"回答{i} {SCRIPT}"})
        rows[-1] |= {"transform": "none", "source_id": f"s{i}"}
        rows.append(base | {"id": f"t{i}", "prompt": f"变形{i}", "response": f"回答{i}"})
        rows[-1] |= {"transform": TRANSFORM, "source_id": f"s{i}", "predicted": 3}
    data = write_jsonl(root / "answers.jsonl", rows)
    runs = [root / f"run {n} {FOLDER}" for n in (1, 2)]
    for run in runs:
        console_out("import", data, run, "--model", MODEL)
        with RunStore.open_writer(run, "test") as store:
            store.register_scorer(ScorerManifest(name=SCORER, kind="test", config={"x": SCRIPT}))
            verdicts = [Verdict(item_id=r["id"], status="ok", score=3) for r in rows]
            store.record_verdicts(SCORER, tied(store, verdicts))
    labels = [{"item_id": r["id"], "label": r["predicted"], "annotator": ANNOTATOR} for r in rows]
    console_out("annotate", "import", runs[0], write_jsonl(root / "labels.jsonl", labels))
    return root, runs


def test_report_console_markdown_csv_html_and_plots_show_names_as_text(hostile):
    root, (run, _) = hostile
    out_dir = root / "report"
    out = console_out("report", run, "--scorer-name", SCORER, "--out", out_dir, "--bootstrap", "0")
    assert_plain_console(out, MODEL, SCORER, TRANSFORM)  # title, notes, robustness table
    markdown = (out_dir / "report.md").read_text("utf-8")
    headings = {"h1": 1, "h2": 1, "h3": 0, "h4": 0}
    assert_plain_markdown(markdown, headings, 1, MODEL, SCORER, TRANSFORM)
    html = (out_dir / "report.html").read_text("utf-8")
    assert SCRIPT not in html and "<img src=x" not in html and "&lt;img src=x" in html
    csv_text = (out_dir / "report.csv").read_text("utf-8")
    assert CONTROL.findall(csv_text) == []


def test_plots_draw_names_as_text(hostile):
    pytest.importorskip("matplotlib")
    root, (run, _) = hostile
    out = console_out(
        "report", run, "--scorer-name", SCORER, "--out", root / "plots", "--bootstrap", "0",
        "--plots", "--no-html",
    )  # fmt: skip
    assert (root / "plots" / "radar.png").stat().st_size > 0
    assert_plain_console(out, MODEL)


def test_leaderboard_compare_calibrate_and_the_rest_show_names_as_text(hostile):
    root, runs = hostile
    board = root / "board.md"
    outputs = [
        console_out("leaderboard", *runs, "--scorer-name", SCORER, "--out", board),
        console_out("compare", *runs, "--scorer-name", SCORER, "--bootstrap", "100"),
        console_out("calibrate", runs[0], "--judge", SCORER, "--bootstrap", "0"),
        console_out("disagreements", runs[0], "--scorer-name", SCORER, "--scorer-name", "imported"),
        console_out("refusals", runs[0]),
    ]
    leaderboard, compare, calibrate, disagreements, refusals = outputs
    assert_plain_console(leaderboard, MODEL, SCORER, runs[0].name, runs[1].name)
    assert_plain_console(compare, runs[0].name, runs[1].name)
    assert_plain_console(calibrate, SCORER, "human:" + ANNOTATOR)
    assert_plain_console(disagreements, SCORER)
    assert_plain_console(refusals)
    headings = {"h1": 0, "h2": 2, "h3": 1, "h4": 0}
    assert_plain_markdown(board.read_text("utf-8"), headings, 0, MODEL, SCORER, runs[0].name)


def test_data_info_and_label_import_show_names_as_text(hostile, tmp_path):
    _, runs = hostile
    data = write_jsonl(
        tmp_path / f"set {FOLDER}.jsonl",
        [{"dimension": "Safety", "subcomponent": "Mental harm", "prompt": "问"}],
    )
    assert_plain_console(console_out("data", "info", "--data", data), f"set {FOLDER}")
    labels = [{"item_id": "s0", "label": 3, "annotator": ANNOTATOR}]
    path = write_jsonl(tmp_path / f"l {FOLDER}.jsonl", labels)
    out = console_out("annotate", "import", runs[1], path)
    assert_plain_console(out, ANNOTATOR, str(path))


def test_board_md_rendered_in_chromium_runs_no_script_and_adds_no_link(hostile, tmp_path):
    """board.md through a Markdown renderer that lets raw HTML through (markdown-it-py, as
    permissive as any viewer), then opened in Chromium: the names are text in the page."""
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    root, runs = hostile
    board = root / "board.md"
    if not board.exists():
        console_out("leaderboard", *runs, "--scorer-name", SCORER, "--out", board)
    html, _ = rendered(board.read_text("utf-8"))
    page = tmp_path / "board.html"
    page.write_text("<!doctype html><meta charset=utf-8><body>" + html, "utf-8")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            tab = browser.new_page()
            dialogs: list[str] = []
            tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            tab.goto(page.as_uri())
            tab.wait_for_timeout(300)  # an onerror handler would have fired by now
            found = tab.evaluate(
                """() => ({
                    pwned: window.pwned || null,
                    scripts: document.scripts.length,
                    images: document.images.length,
                    links: document.links.length,
                    headings: [...document.querySelectorAll("h1,h2,h3,h4,h5,h6")].length,
                    emphasis: document.querySelectorAll("em,strong,code,del").length,
                    shown: document.body.innerText,
                })"""
            )
        finally:
            browser.close()
    assert found["pwned"] is None and not dialogs
    assert found["scripts"] == found["images"] == found["links"] == found["emphasis"] == 0
    assert found["headings"] == 3
    assert "[x](javascript:window.pwned='link')" in found["shown"]  # the name, as text


@pytest.mark.parametrize(
    "name",
    [
        "`", "``a``", " a ", "a`", "`a", "*a* _b_ **c**", "<b>x</b>", "&amp; &#x3C;", "\\",
        "a\\", "\\*", "[a](b)", "![i](x.png)", "<http://x.y>", "| a | b |", "~~s~~", "$x$",
        "# h", "1. x", "- x", "> q", "a  \nb", "<!-- c -->", "a\tb\x00c\x1b[2J", "[^1]", "{#id}",
    ],
)  # fmt: skip
def test_a_name_renders_as_exactly_its_characters(name):
    """The Markdown helpers against a renderer they were not written with (markdown-it-py)."""
    from flames._util.markdown import markdown_code, markdown_fill, markdown_text

    text = shown(name)
    for markdown, code, expected in [
        (f"x {markdown_text(name)} y", 0, f"x {text} y"),
        (f"x {markdown_code(name)} y", 1, f"x {text} y"),
        (markdown_fill("x `{v}` {v} y", v=name), 1, f"x {text} {text} y"),
    ]:
        _, page = rendered(markdown)
        assert set(page.tags) <= {"p", "code"} and page.tags["code"] == code, markdown
        assert "".join(page.text).strip("\n") == expected, markdown
