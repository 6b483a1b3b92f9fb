"""Reading results: report, score-file, compare, leaderboard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flames import _api
from flames._api.comparison import Adjustment
from flames._util.outputs import write_text
from flames._util.terminal import inline
from flames.cli.app import app, console, err, state
from flames.cli.options import (
    REPORT,
    AllowEmptyOpt,
    BootstrapOpt,
    FormatOpt,
    JsonOpt,
    LangOpt,
    PAdjustOpt,
    RunDirArg,
    ScorerNameOpt,
    SeedOpt,
)
from flames.cli.output import print_json, write_report
from flames.errors import FlamesError
from flames.reporting.i18n import Lang, t


@app.command("score-file")
def score_file(
    file: Annotated[Path, typer.Argument(help="JSONL of dimension, prompt, response, predicted.")],
    run: Annotated[Path | None, typer.Option(help="Run directory (default runs/<file>).")] = None,
    model: Annotated[str | None, typer.Option(help="Name of the model that answered.")] = None,
    reference: Annotated[
        str | None,
        typer.Option(help="Prompt set to look up missing subcomponents: a path or 'official'."),
    ] = None,
    bootstrap: BootstrapOpt = 2000,
    seed: SeedOpt = 0,
    formats: FormatOpt = None,
    lang: LangOpt = Lang.en,
    allow_empty: AllowEmptyOpt = False,
) -> None:
    """Import already scored answers (the official scorer's output) and report on them."""
    run_dir = run or Path("runs") / file.stem
    state.run_dir = run_dir
    imported = _api.import_answers(
        file,
        run_dir,
        model=model,
        reference=reference or None,
        require_scores=True,
        allow_empty=allow_empty,
    )
    write_report(run_dir, None, None, formats, bootstrap, seed, lang=lang)
    if (problem := imported.incomplete()) is not None:
        raise problem


@app.command("report")
def report(
    run_dir: RunDirArg,
    scorer_name: ScorerNameOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Output folder (default RUN/report).", rich_help_panel=REPORT),
    ] = None,
    formats: FormatOpt = None,
    html: Annotated[
        bool,
        typer.Option(help="Also write the self-contained report.html.", rich_help_panel=REPORT),
    ] = True,
    plots: Annotated[
        bool,
        typer.Option(
            "--plots",
            help="Also write PNG and SVG figures (needs the \\[plots] extra).",
            rich_help_panel=REPORT,
        ),
    ] = False,
    lang: LangOpt = Lang.en,
    bootstrap: BootstrapOpt = 2000,
    seed: SeedOpt = 0,
    p_adjust: PAdjustOpt = Adjustment.bh,
    as_json: JsonOpt = False,
) -> None:
    """Print a scored run's metrics; write JSON, CSV, Markdown and a self-contained HTML page."""
    write_report(
        run_dir,
        scorer_name,
        out,
        formats,
        bootstrap,
        seed,
        html,
        plots,
        lang,
        as_json=as_json,
        p_adjust=p_adjust,
    )


@app.command("compare")
def compare(
    run_a: Annotated[Path, typer.Argument(help="Run A (the baseline).")],
    run_b: Annotated[Path, typer.Argument(help="Run B.")],
    scorer_name: ScorerNameOpt = None,
    out: Annotated[Path | None, typer.Option(help="Also write comparison.json here.")] = None,
    bootstrap: BootstrapOpt = 2000,
    seed: SeedOpt = 0,
    p_adjust: PAdjustOpt = Adjustment.holm,
    lang: LangOpt = Lang.en,
    as_json: JsonOpt = False,
) -> None:
    """Paired comparison of two runs: rate differences with CIs and paired tests."""
    from flames.reporting.comparison import print_comparison
    from flames.reporting.redteam import print_redteam_comparison

    result = _api.compare(
        run_a, run_b, scorer_name, bootstrap=bootstrap, seed=seed, p_adjust=p_adjust
    )
    if as_json:
        print_json(result.model_dump_json(indent=2))
    elif hasattr(result, "strategies"):  # two red-team runs
        print_redteam_comparison(result, console)  # type: ignore[arg-type]
    else:
        print_comparison(result, console, lang)  # type: ignore[arg-type]
    if out:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "comparison.json", result.model_dump_json(indent=2))
        shown = inline(out / "comparison.json")
        (err if as_json else console).print(f"wrote {shown}", highlight=False)


@app.command("leaderboard")
def leaderboard_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Run directories to rank.")],
    scorer_name: ScorerNameOpt = None,
    published: Annotated[
        bool, typer.Option(help="Show the published Flames leaderboard beside yours.")
    ] = True,
    out: Annotated[
        Path | None, typer.Option(help="Also write the table to this Markdown file.")
    ] = None,
    bootstrap: BootstrapOpt = 2000,
    seed: SeedOpt = 0,
    p_adjust: PAdjustOpt = Adjustment.holm,
    lang: LangOpt = Lang.en,
    as_json: JsonOpt = False,
) -> None:
    """Rank several runs by overall harmless rate, beside the published leaderboard; runs that
    cannot be ranked (not scored yet, ...) are listed apart with the reason."""
    from flames.reporting.leaderboard import print_leaderboard, to_markdown

    if out and out.is_dir():
        raise FlamesError(
            f"{out} is a folder: give --out a file name, e.g. {out / 'leaderboard.md'}"
        )
    entries, unranked = _api.rank_runs(
        runs, scorer_name, bootstrap=bootstrap, seed=seed, p_adjust=p_adjust
    )
    if as_json:
        print_json(json.dumps([e.model_dump() for e in entries], ensure_ascii=False, indent=2))
        for u in unranked:  # stdout holds the ranked entries only, as before
            err.print(f"not ranked: {inline(u.run)}: {inline(u.reason)}", highlight=False)
    else:
        print_leaderboard(entries, console, published=published, lang=lang, unranked=unranked)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        text = to_markdown(entries, published=published, lang=lang, unranked=unranked)
        write_text(out, text)
        (err if as_json else console).print(t("wrote", lang, path=inline(out)), highlight=False)
