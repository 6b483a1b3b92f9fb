"""Writing a run's report files and printing its tables, for the commands that end in one."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from flames.cli.app import console
from flames.outputs import write_text
from flames.report import FORMATS, build_report, print_report, write_reports, write_scored
from flames.results import load_results


def write_report(
    run_dir: Path,
    scorer_name: str | None,
    out: Path | None,
    formats: list[str] | None,
    bootstrap: int,
    seed: int,
    html: bool = True,
    plots: bool = False,
) -> None:
    chosen = tuple(formats or FORMATS)
    unknown = set(chosen) - set(FORMATS)
    if unknown:
        raise typer.BadParameter(f"unknown format(s): {', '.join(sorted(unknown))}")
    results = load_results(run_dir, scorer_name)
    report = build_report(results, bootstrap_samples=bootstrap, seed=seed)
    print_report(report, console)
    out_dir = out or run_dir / "report"
    written = write_reports(report, out_dir, chosen)
    written.append(write_scored(results, out_dir / "scored.jsonl"))
    if html:
        from flames.html_report import render_html

        written.append(write_text(out_dir / "report.html", render_html(report, results)))
    if plots:
        from flames.plots import write_plots

        written += write_plots(report, out_dir)
    if report.robustness:
        from flames.robustness import print_robustness

        print_robustness(report.robustness, console)
        text = json.dumps([e.model_dump() for e in report.robustness], indent=2)
        written.append(write_text(out_dir / "robustness.json", text))
    for path in written:
        console.print(f"wrote {path}")
