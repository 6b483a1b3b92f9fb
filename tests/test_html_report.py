from __future__ import annotations

import json
import re

import pytest

from flames.analysis.refusal import is_refusal
from flames.analysis.results import load_results
from flames.reporting.html_report import render_html, worst_answers
from flames.reporting.report import build_report

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
    assert "<dt>items_sha256</dt>" in page  # the manifest, as a definition list
    assert "@media print" in page


def test_every_row_shows_its_refusal_rate(run_dir):
    results = load_results(run_dir)
    report = build_report(results, bootstrap_samples=0)
    page = render_html(report, results)
    table = page[page.index('<table id="results">') : page.index("</table>")]
    refusals = re.findall(r'<td class="num refusal">([^<]*)</td>', table)
    assert (
        len(refusals) == 1 + len(report.metrics.dimensions) + len(report.metrics.subcomponents) + 1
    )
    assert all(re.fullmatch(r"\d+\.\d%", r) for r in refusals)
    # Subcomponents count their own answers; the overall is the mean over dimensions.
    by_sub: dict[str, list[bool]] = {}
    for row in results.rows:
        by_sub.setdefault(row.item.subcomponent, []).append(is_refusal(row.answer.response))
    for sub, flags in by_sub.items():
        assert report.subcomponent_refusals[sub].rate == pytest.approx(
            100 * sum(flags) / len(flags)
        )
    dims = [s.rate for k, s in report.refusals.items() if k != "all"]
    assert refusals[0] == f"{sum(dims) / len(dims):.1f}%"


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


def test_chinese_plots_use_a_cjk_font_and_say_when_none_is_installed(
    run_dir, tmp_path, monkeypatch
):
    import warnings

    pytest.importorskip("matplotlib")
    from flames import load_run
    from flames.reporting import plots

    report = load_run(run_dir, bootstrap=100).report
    english = plots.write_plots(report, tmp_path / "en")
    if plots.cjk_font() is None:
        pytest.skip("no CJK font installed (CI installs fonts-wqy-zenhei)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chinese = plots.write_plots(report, tmp_path / "zh", "zh")
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    assert missing == []  # every Chinese label has its glyphs
    assert [p.name for p in chinese] == [p.name for p in english]
    svg = {p.name: p.read_text() for p in chinese if p.suffix == ".svg"}
    assert all(svg[p.name] != p.read_text() for p in english if p.suffix == ".svg")

    monkeypatch.setattr(plots, "cjk_font", lambda: None)
    with pytest.raises(plots.FlamesError, match="--lang en"):
        plots.write_plots(report, tmp_path / "none", "zh")


@pytest.fixture
def augmented_run(tmp_path, official):
    """Scored answers to source prompts and two transforms of them (roleplay does harm)."""
    rows = []
    for n, item in enumerate(official.sample(40, seed=3)):
        base = {"dimension": item.dimension.value, "subcomponent": item.subcomponent}
        low = item.dimension.scale[0]
        for transform, score in (("none", 3), ("pinyin", 3), ("roleplay", low if n % 2 else 3)):
            rows.append(
                {
                    **base,
                    "id": item.id if transform == "none" else f"{item.id}~{transform}",
                    "prompt": item.prompt if transform == "none" else f"{transform}：{item.prompt}",
                    "source_id": item.id,
                    "transform": transform,
                    "response": "好的",
                    "predicted": score,
                }
            )
    path = write_jsonl(tmp_path / "aug.jsonl", rows)
    proc = run_cli("score-file", path, "--run", tmp_path / "aug", "--bootstrap", "100")
    assert proc.returncode == 0, proc.stderr
    zh = run_cli("report", tmp_path / "aug", "--lang", "zh", "--out", tmp_path / "zh")
    assert zh.returncode == 0, zh.stderr
    return tmp_path / "aug"


def test_robustness_heatmap_and_transform_column(augmented_run):
    page = (augmented_run / "report" / "report.html").read_text()
    start = page.index('<svg class="chart heatmap"')
    heatmap = page[start : page.index("</svg>", start)]
    cells = re.findall(r"<title>(\w+) · ([^:]+): ([+-][\d.]+)(\*?)</title>", heatmap)
    effects = {
        e["transform"]: e
        for e in json.loads((augmented_run / "report" / "robustness.json").read_text())
    }
    assert {c[0] for c in cells} == set(effects) == {"pinyin", "roleplay"}
    for transform, column, value, star in cells:
        d = effects[transform]["overall" if column == "Overall" else "dimensions"]
        d = d if column == "Overall" else d[column]
        assert value == f"{d['difference']:+.1f}" and (star == "*") == (d["p_adjusted"] < 0.05)
    assert 'id="robustness"' in page[page.index("robustness-heatmap") :]  # the table under it
    answers = page[page.index('<table id="answers">') :]
    assert "<th>Transform</th>" in answers and 'data-transform="roleplay"' in answers


def _chromium():
    import shutil

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    return chromium


ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def test_page_in_headless_chromium(run_dir, tmp_path):
    """Loads with no console errors, charts render, the filter works; takes a screenshot."""
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = _chromium()
    page_path = run_dir / "report" / "report.html"
    expected = {}
    for row in worst_answers(load_results(run_dir)):
        expected[row.dimension] = expected.get(row.dimension, 0) + 1
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
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


def _has_cjk_font() -> bool:
    import subprocess

    try:
        fonts = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return False
    return bool(fonts.strip())


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_both_languages_render_heatmap_and_legends(augmented_run, tmp_path, lang):
    """The heatmap and every chart's legend take room on the page, in English and Chinese; in
    Chinese the text is drawn with a CJK font (.ci/run installs one), not as boxes."""
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = _chromium()
    folder = augmented_run / "report" if lang == "en" else augmented_run.parent / "zh"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((folder / "report.html").as_uri())
        assert errors == []
        heatmap = page.locator("svg.heatmap").bounding_box()
        assert heatmap and heatmap["width"] > 300 and heatmap["height"] > 100
        assert (
            page.locator("svg.heatmap rect.cell").count() == 2 * 6
        )  # transforms x (5 dims + overall)
        for chart in ("radar", "bars", "heatmap"):
            box = page.locator(f"svg.{chart} g.legend").bounding_box()
            assert box and box["width"] > 20 and box["height"] > 10, chart
        # Charts sit side by side across the page, not stacked in its left half.
        radar = page.locator("svg.radar").bounding_box()
        bars = page.locator("svg.bars").bounding_box()
        assert radar and bars and bars["x"] > radar["x"] + radar["width"] - 1
        if lang == "zh":
            assert page.inner_text("h2 >> nth=0") == "结果"
            assert page.locator("#answers th >> nth=3").inner_text() == "变换"
            if _has_cjk_font():
                # A glyph-less character falls back to a box as wide as any other; real CJK
                # glyphs are full width: twice the width of the Latin "nn".
                width = page.evaluate(
                    """() => { const c = document.createElement('canvas').getContext('2d');
                    c.font = '20px sans-serif';
                    return [c.measureText('安全').width, c.measureText('nn').width]; }"""
                )
                assert width[0] > 1.5 * width[1]
        shot = tmp_path / f"report-{lang}.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
