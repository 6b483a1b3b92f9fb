"""The `flames` command line.

Exit codes: 0 success; 1 failure; 2 bad usage; 3 bad input data; 4 settings differ from the
run's manifest; 5 the run finished with failed items; 6 the official data could not be fetched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from flames import official_data
from flames.dataset import Dataset
from flames.errors import FlamesError
from flames.imports import import_answers
from flames.report import FORMATS, build_report, print_report, write_reports
from flames.results import load_results

app = typer.Typer(
    help="Evaluate how well LLMs hold to human values in Chinese (the Flames benchmark).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Get, inspect and sample prompt sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err = Console(stderr=True)

DataOpt = Annotated[
    str | None,
    typer.Option("--data", help="Prompt set: a JSONL path, or 'official' (the default)."),
]
RunDirArg = Annotated[Path, typer.Argument(help="Run directory.")]
ScorerNameOpt = Annotated[
    str | None, typer.Option("--scorer-name", help="Which scorer's verdicts (if several).")
]
BootstrapOpt = Annotated[
    int, typer.Option("--bootstrap", help="Bootstrap resamples for the 95% CIs (0 turns off).")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")]
FormatOpt = Annotated[
    list[str] | None, typer.Option("--format", "-f", help=f"Report formats: {', '.join(FORMATS)}.")
]


def _select(
    data: str | None,
    dimension: list[str] | None,
    subcomponent: list[str] | None,
    sample: int | None,
    seed: int,
) -> Dataset:
    dataset = official_data.resolve(data)
    try:
        dataset = dataset.filter(dimension or (), subcomponent or ())
        if sample is not None:
            dataset = dataset.sample(sample, seed=seed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return dataset


@data_app.command("fetch")
def data_fetch(
    source: Annotated[
        Path | None, typer.Option("--from", help="Verify and cache a local copy instead.")
    ] = None,
) -> None:
    """Download the official 1k prompts, verify their sha256 and cache them."""
    path = official_data.fetch(source)
    console.print(f"official prompts verified (sha256 {official_data.SHA256[:12]}…) at {path}")


@data_app.command("info")
def data_info(data: DataOpt = None) -> None:
    """Validate a prompt set and show its counts per dimension and subcomponent."""
    dataset = official_data.resolve(data)
    console.print(f"[bold]{dataset.name}[/]: {len(dataset)} items, sha256 {dataset.source_sha256}")
    for dim, subs in dataset.counts().items():
        console.print(f"  {dim}: {sum(subs.values())}")
        for sub, n in subs.items():
            console.print(f"    {sub}: {n}")


@data_app.command("sample")
def data_sample(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the JSONL.")],
    data: DataOpt = None,
    n: Annotated[int | None, typer.Option("--n", help="Stratified sample size.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    dimension: Annotated[list[str] | None, typer.Option(help="Keep this dimension.")] = None,
    subcomponent: Annotated[list[str] | None, typer.Option(help="Keep this subcomponent.")] = None,
) -> None:
    """Write a filtered and/or stratified sample of a prompt set, with ids, as JSONL."""
    dataset = _select(data, dimension, subcomponent, n, seed)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as fh:
        for item in dataset:
            row = {
                "id": item.id,
                "dimension": item.dimension.value,
                "subcomponent": item.subcomponent,
                "prompt": item.prompt,
                **item.meta,
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    console.print(f"wrote {len(dataset)} items ({dataset.selection}) to {output}")


def _report(
    run_dir: Path,
    scorer_name: str | None,
    out: Path | None,
    formats: list[str] | None,
    bootstrap: int,
    seed: int,
) -> None:
    chosen = tuple(formats or FORMATS)
    unknown = set(chosen) - set(FORMATS)
    if unknown:
        raise typer.BadParameter(f"unknown format(s): {', '.join(sorted(unknown))}")
    results = load_results(run_dir, scorer_name)
    report = build_report(results, bootstrap_samples=bootstrap, seed=seed)
    print_report(report, console)
    for path in write_reports(report, out or run_dir / "report", chosen):
        console.print(f"wrote {path}")


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
) -> None:
    """Import already scored answers (the official scorer's output) and report on them."""
    run_dir = run or Path("runs") / file.stem
    ref = official_data.resolve(reference) if reference else None
    with import_answers(file, run_dir, model=model, reference=ref) as store:
        if not store.scorers():
            raise FlamesError(f"{file}: the rows have no 'predicted' field; nothing to report")
    _report(run_dir, None, None, formats, bootstrap, seed)


@app.command("report")
def report(
    run_dir: RunDirArg,
    scorer_name: ScorerNameOpt = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default RUN/report).")] = None,
    formats: FormatOpt = None,
    bootstrap: BootstrapOpt = 2000,
    seed: SeedOpt = 0,
) -> None:
    """Print a scored run's metrics and write them as JSON, CSV and Markdown."""
    _report(run_dir, scorer_name, out, formats, bootstrap, seed)


def main() -> None:
    """Entry point: expected failures print one clear line and exit with their code."""
    try:
        app()
    except FlamesError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise SystemExit(exc.exit_code) from None
