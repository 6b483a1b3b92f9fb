"""Human labels and judge checks: annotate, calibrate, disagreements, refusals."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from flames import _api
from flames._util.outputs import write_text
from flames._util.terminal import inline
from flames.cli.app import annotate_app, app, console
from flames.cli.options import BootstrapOpt, RunDirArg, SeedOpt, WaitOpt
from flames.reporting.i18n import Lang


class KappaWeightsName(StrEnum):
    linear = "linear"
    quadratic = "quadratic"


@annotate_app.command("export")
def annotate_export(
    run_dir: RunDirArg,
    output: Annotated[Path, typer.Argument(help="A .csv or .jsonl file to write.")],
    first: Annotated[
        list[str] | None,
        typer.Option("--disagreements-of", help="Put answers these scorers disagree on first."),
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(
            "--random",
            min=1,
            help="Export a seeded random sample of this many answers (for calibrate).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random sample.")] = 0,
) -> None:
    """Write a run's answers for labelling (CSV for spreadsheets, or JSONL)."""
    if sample is not None and first:
        raise typer.BadParameter(
            "--random and --disagreements-of select answers in different ways; pick one"
        )
    n = _api.export_for_labelling(
        run_dir, output, disagreements_of=first or (), sample=sample, seed=seed
    )
    console.print(f"wrote {n} answers to label to {inline(output)}", highlight=False)


@annotate_app.command("import")
def annotate_import(
    run_dir: RunDirArg,
    files: Annotated[list[Path], typer.Argument(help="Label files (.csv or .jsonl).")],
    annotator: Annotated[
        str | None, typer.Option(help="Annotator, for files without an annotator column.")
    ] = None,
    wait: WaitOpt = False,
) -> None:
    """Import human labels; each annotator's become the verdicts of scorer human:NAME."""
    for path in files:
        for who, n in _api.import_labels(run_dir, path, annotator=annotator, wait=wait).items():
            who = inline(who)
            console.print(f"{inline(path)}: {n} labels by {who} (scorer human:{who})")


@annotate_app.command("serve")
def annotate_serve(
    run_dir: RunDirArg,
    annotator: Annotated[str, typer.Option(help="Who is labelling.")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 8765,
    first: Annotated[
        list[str] | None,
        typer.Option("--disagreements-of", help="Put answers these scorers disagree on first."),
    ] = None,
    wait: WaitOpt = False,
    lang: Annotated[
        Lang,
        typer.Option(help="Language of the page (rubric, buttons, messages, dimension names)."),
    ] = Lang.en,
) -> None:
    """Label answers in a local web page: one at a time, keys 1-3, each label saved at once."""

    def ready(url: str) -> None:
        if lang is Lang.zh:
            console.print(f"以 {inline(annotator)} 的身份标注：请打开 {url}（Ctrl-C 停止）")
        else:
            console.print(f"labelling as {inline(annotator)}: open {url} (Ctrl-C to stop)")

    _api.serve_labelling(
        run_dir,
        annotator,
        port=port,
        disagreements_of=first or (),
        wait=wait,
        ready=ready,
        lang=lang,
    )


@app.command("calibrate")
def calibrate_cmd(
    run_dir: RunDirArg,
    judge_name: Annotated[str, typer.Option("--judge", help="The scorer to check.")],
    annotators: Annotated[
        list[str] | None,
        typer.Option("--annotator", help="Reference annotators (default: all human labels)."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write calibration.json here.")] = None,
    kappa_weights: Annotated[
        KappaWeightsName | None,
        typer.Option(help="Also show Cohen's kappa weighted for the ordinal 1-2-3 scale."),
    ] = None,
    bootstrap: BootstrapOpt = 2000,
    seed: SeedOpt = 0,
) -> None:
    """Agreement of a judge with human labels: accuracy, kappa, confusion, corrected rates."""
    from flames.reporting.checks import print_calibration

    weights = kappa_weights.value if kappa_weights else None
    result = _api.calibrate(
        run_dir,
        judge_name,
        annotators or (),
        kappa_weights=weights,
        bootstrap=bootstrap,
        seed=seed,
    )
    print_calibration(result, console)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "calibration.json", result.model_dump_json(indent=2))


@app.command("disagreements")
def disagreements_cmd(
    run_dir: RunDirArg,
    scorers: Annotated[list[str], typer.Option("--scorer-name", help="Two or more scorers.")],
) -> None:
    """Where several judges disagree on the same answers: agreement and the contested count."""
    if len(scorers) < 2:
        raise typer.BadParameter("name at least two scorers")
    from flames.reporting.checks import number

    found = _api.disagreements(run_dir, scorers)
    for pair in found.pairs:
        if not pair.n:
            console.print(f"{inline(pair.a)} / {inline(pair.b)}: no answers in common")
            continue
        kappa = number(pair.cohen_kappa, pair.undefined.get("cohen_kappa"), "{:.3f}")
        console.print(
            f"{inline(pair.a)} / {inline(pair.b)}: {pair.n} answers, {pair.agreement:.1f}% agree, "
            f"Cohen's kappa {kappa}"
        )
    console.print(
        f"{found.contested} answers contested; label them first with "
        "`flames annotate export --disagreements-of ...`"
    )


@app.command("refusals")
def refusals_cmd(run_dir: RunDirArg) -> None:
    """Refusal rate of a run's answers per dimension (no scorer needed): over-refusal check."""
    from flames.reporting.checks import print_refusals

    print_refusals(_api.refusals(run_dir), console)
