"""Writing a run's report files and printing its tables, for the commands that end in one."""

from __future__ import annotations

import sys
from pathlib import Path

from flames import _api
from flames.cli.app import console, err
from flames.cli.describe import usage_errors
from flames.reporting.i18n import Lang


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
    p_adjust: str = "bh",
) -> None:
    with usage_errors():
        result = _api.report(
            run_dir,
            scorer_name,
            out=out,
            formats=formats,
            bootstrap=bootstrap,
            seed=seed,
            html=html,
            plots=plots,
            lang=lang,
            tables=not as_json,
            p_adjust=p_adjust,
            console=err if as_json else console,
        )
    if as_json:  # an evaluation run's report, or a red-team run's
        print_json(getattr(result, "report", result).model_dump_json(indent=2))
