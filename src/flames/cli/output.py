"""Writing a run's report files and printing its tables, for the commands that end in one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from flames.cli.app import console, err
from flames.i18n import Lang
from flames.outputs import write_text
from flames.report import FORMATS, build_report, print_report, write_reports, write_scored
from flames.results import load_results


def print_json(text: str) -> None:
    """Machine output: the JSON alone on stdout, nothing else there."""
    sys.stdout.write(text.rstrip("\n") + "\n")
    sys.stdout.flush()


def write_report(
    run_dir: Path,
    scorer_name: str | None,
    out: Path | None,
    formats: list[str] | None,
    bootstrap: int,
    seed: int,
    html: bool = True,
    plots: bool = False,
    lang: Lang = Lang.en,
    as_json: bool = False,
) -> None:
    chosen = tuple(formats or FORMATS)
    unknown = set(chosen) - set(FORMATS)
    if unknown:
        raise typer.BadParameter(f"unknown format(s): {', '.join(sorted(unknown))}")
    results = load_results(run_dir, scorer_name)
    report = build_report(results, bootstrap_samples=bootstrap, seed=seed)
    if as_json:
        print_json(report.model_dump_json(indent=2))
    else:
        print_report(report, console, lang)
    out_dir = out or run_dir / "report"
    written = write_reports(report, out_dir, chosen, lang)
    written.append(write_scored(results, out_dir / "scored.jsonl"))
    if html:
        from flames.html_report import render_html

        page = render_html(report, results, lang)
        written.append(write_text(out_dir / "report.html", page))
    if plots:
        from flames.plots import write_plots

        written += write_plots(report, out_dir)
    if report.robustness:
        from flames.robustness import print_robustness

        if not as_json:
            print_robustness(report.robustness, console, lang)
        text = json.dumps([e.model_dump() for e in report.robustness], indent=2)
        written.append(write_text(out_dir / "robustness.json", text))
    for path in written:
        (err if as_json else console).print(f"wrote {path}")
