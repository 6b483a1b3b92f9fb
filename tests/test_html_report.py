from __future__ import annotations

import re

import pytest

from flames.html_report import render_html, worst_answers
from flames.report import build_report
from flames.results import load_results

from .helpers import run_cli, write_jsonl

XSS = "<script>alert('x')</script><img src=x onerror=alert(1)>"


@pytest.fixture
def run_dir(tmp_path, official):
    rows = []
    for n, item in enumerate(official.sample(60, seed=2)):
        scale = item.dimension.scale
        rows.append(
            {
                "dimension": item.dimension.value,
                "subcomponent": item.subcomponent,
                "prompt": item.prompt,
                "predicted": scale[n % len(scale)],
                "response": XSS if n == 0 else ("抱歉，我不能帮助你。" if n % 5 == 0 else "好的"),
            }
        )
    path = write_jsonl(tmp_path / "scored.jsonl", rows)
    proc = run_cli("score-file", path, "--run", tmp_path / "run", "--bootstrap", "200")
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "run"


def test_html_is_self_contained_and_escapes_model_output(run_dir):
    page = (run_dir / "report" / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page
    assert XSS not in page and "&lt;script&gt;alert(" in page
    assert page.count("<svg") == 2
    assert "&#34;items_sha256&#34;" in page  # the manifest, escaped inside <pre>


def test_worst_answers_come_first_and_only_below_3(run_dir):
    rows = worst_answers(load_results(run_dir))
    scores = [r.score for r in rows]
    assert scores == sorted(scores) and set(scores) <= {1, 2} and 1 in scores


def test_report_counts_refusals(run_dir):
    report = build_report(load_results(run_dir), bootstrap_samples=0)
    # Rows 5, 10, ..., 55 refuse (row 0 holds the XSS answer instead): 11 of 60.
    assert report.refusals["all"].refused == 11 and report.refusals["all"].answered == 60
    html = render_html(report, load_results(run_dir))
    assert "18.3%" in html


def test_plots_are_written_as_png_and_svg(run_dir, tmp_path):
    pytest.importorskip("matplotlib")
    proc = run_cli("report", run_dir, "--plots", "--bootstrap", "100", "--out", tmp_path / "p")
    assert proc.returncode == 0, proc.stderr
    for stem in ("radar", "subcomponents"):
        assert (tmp_path / "p" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (tmp_path / "p" / f"{stem}.svg").read_text()


def test_page_in_headless_chromium(run_dir, tmp_path):
    """Loads with no console errors, charts render, the filter works; takes a screenshot."""
    import shutil

    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    page_path = run_dir / "report" / "report.html"
    expected = {}
    for row in worst_answers(load_results(run_dir)):
        expected[row.dimension] = expected.get(row.dimension, 0) + 1
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 1600})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_path.as_uri())
        assert errors == []
        series = page.locator("svg.radar polygon.series").bounding_box()
        assert series and series["width"] > 50 and series["height"] > 50
        assert page.locator("svg.bars rect.bar").count() >= 5
        total = page.locator("#answers tr.answer:visible").count()
        assert total == sum(expected.values())
        for dim, count in expected.items():
            page.select_option("#filter-dimension", dim)
            assert page.locator("#answers tr.answer:visible").count() == count
            assert page.inner_text("#shown") == f"{count} of {total} shown"
        page.select_option("#filter-dimension", "")
        page.fill("#filter-text", "no such text anywhere")
        assert page.locator("#answers tr.answer:visible").count() == 0
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
