"""Human labels and judge checks: annotate, calibrate, disagreements, refusals."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from flames._util.outputs import write_text
from flames.cli.app import annotate_app, app, console
from flames.cli.options import BootstrapOpt, RunDirArg, SeedOpt
from flames.errors import FlamesError
from flames.runs.store import RunStore


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
    from flames.scoring.annotate import export_items

    if sample is not None and first:
        raise typer.BadParameter(
            "--random and --disagreements-of select answers in different ways; pick one"
        )
    with RunStore.open(run_dir) as store:
        n = export_items(store, output, first or (), sample, seed)
    console.print(f"wrote {n} answers to label to {output}")


@annotate_app.command("import")
def annotate_import(
    run_dir: RunDirArg,
    files: Annotated[list[Path], typer.Argument(help="Label files (.csv or .jsonl).")],
    annotator: Annotated[
        str | None, typer.Option(help="Annotator, for files without an annotator column.")
    ] = None,
) -> None:
    """Import human labels; each annotator's become the verdicts of scorer human:NAME."""
    from flames.scoring.annotate import import_labels

    with RunStore.open(run_dir) as store:
        for path in files:
            for who, n in import_labels(store, path, annotator).items():
                console.print(f"{path}: {n} labels by {who} (scorer human:{who})")


@annotate_app.command("serve")
def annotate_serve(
    run_dir: RunDirArg,
    annotator: Annotated[str, typer.Option(help="Who is labelling.")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8765,
    first: Annotated[
        list[str] | None,
        typer.Option("--disagreements-of", help="Put answers these scorers disagree on first."),
    ] = None,
) -> None:
    """Label answers in a local web page: one at a time, keys 1-3, each label saved at once."""
    from flames.scoring.annotate_server import serve

    console.print(f"labelling as {annotator}: open http://127.0.0.1:{port}/ (Ctrl-C to stop)")
    serve(run_dir, annotator, port, first or ())


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
    from rich.table import Table

    from flames.analysis.calibration import AgreementStats, calibrate
    from flames.scoring.annotate import HUMAN_PREFIX, human_scorer

    with RunStore.open(run_dir) as store:
        humans = [human_scorer(a) for a in annotators or ()] or [
            name for name in store.scorers() if name.startswith(HUMAN_PREFIX)
        ]
        if not humans:
            raise FlamesError(f"{run_dir}: no human labels (flames annotate import)")
        weights = kappa_weights.value if kappa_weights else None
        result = calibrate(store, judge_name, humans, weights, bootstrap, seed)
    weighted = [f"{weights} kappa"] if weights else []
    table = Table(title=f"{result.judge} against {', '.join(result.reference)}")
    for header in (
        "",
        "N",
        "accuracy",
        "Cohen's kappa",
        *weighted,
        "sensitivity",
        "specificity",
        "observed rate",
        "corrected rate",
        "95% CI",
    ):
        table.add_column(header, justify="left" if not header else "right")

    def kappas(stats: AgreementStats) -> list[str]:
        extra = [] if stats.weighted_kappa is None else [f"{stats.weighted_kappa:.3f}"]
        return [f"{stats.cohen_kappa:.3f}", *extra]

    def percent(x: float | None) -> str:
        return "undefined" if x is None else f"{x:.1f}%"

    table.add_row(
        "Overall",
        str(result.overall.n),
        f"{result.overall.accuracy:.1f}%",
        *kappas(result.overall),
        *[""] * 5,
    )
    for dim, stats in result.dimensions.items():
        c = result.corrected_rates[dim]
        corrected = "n/a" if c.corrected is None else f"{c.corrected:.1f}%"
        ci = "" if c.ci_low is None or c.ci_high is None else f"[{c.ci_low:.1f}, {c.ci_high:.1f}]"
        table.add_row(
            dim,
            str(stats.n),
            f"{stats.accuracy:.1f}%",
            *kappas(stats),
            percent(c.sensitivity),
            percent(c.specificity),
            f"{c.observed:.1f}%",
            corrected,
            ci,
        )
    console.print(table)
    if not result.random_labels:
        how = "; ".join(f"{n} {s}" for s, n in sorted(result.label_selection.items()))
        console.print(
            f"[yellow]warning:[/] the labelled answers are not a random sample ({how}): "
            "sensitivity, specificity and the corrected rates may be biased. Label a random "
            "sample: flames annotate export RUN FILE --random N"
        )
    console.print("confusion (rows: human, columns: judge 1 2 3):")
    for h, row in result.confusion.items():
        console.print(f"  {h}: " + " ".join(f"{row[j]:5d}" for j in (1, 2, 3)))
    if result.fleiss_kappa is not None:
        console.print(
            f"Fleiss' kappa between annotators: {result.fleiss_kappa:.3f} "
            f"({result.annotated_by_all} answers labelled by all)"
        )
    if result.no_majority:
        console.print(f"{result.no_majority} answers had no majority label and were left out.")
    if out:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "calibration.json", result.model_dump_json(indent=2))


@app.command("disagreements")
def disagreements_cmd(
    run_dir: RunDirArg,
    scorers: Annotated[list[str], typer.Option("--scorer-name", help="Two or more scorers.")],
) -> None:
    """Where several judges disagree on the same answers: agreement and the contested count."""
    from itertools import combinations

    from flames.analysis.calibration import cohen_kappa
    from flames.scoring.annotate import disagreement_keys

    if len(scorers) < 2:
        raise typer.BadParameter("name at least two scorers")
    with RunStore.open(run_dir) as store:
        verdicts = {
            name: {
                (v.item_id, v.sample): v.score
                for v in store.verdicts(name)
                if v.status == "ok" and v.score is not None
            }
            for name in scorers
        }
        contested = disagreement_keys(store, scorers)
    for a, b in combinations(scorers, 2):
        keys = sorted(verdicts[a].keys() & verdicts[b].keys())
        if not keys:
            console.print(f"{a} / {b}: no answers in common")
            continue
        x, y = [verdicts[a][k] for k in keys], [verdicts[b][k] for k in keys]
        same = 100 * sum(i == j for i, j in zip(x, y, strict=True)) / len(keys)
        console.print(
            f"{a} / {b}: {len(keys)} answers, {same:.1f}% agree, "
            f"Cohen's kappa {cohen_kappa(x, y):.3f}"
        )
    console.print(
        f"{len(contested)} answers contested; label them first with "
        "`flames annotate export --disagreements-of ...`"
    )


@app.command("refusals")
def refusals_cmd(run_dir: RunDirArg) -> None:
    """Refusal rate of a run's answers per dimension (no scorer needed): over-refusal check."""
    from flames.analysis.refusal import ALL, refusal_stats
    from flames.data.taxonomy import taxonomy_order

    with RunStore.open(run_dir) as store:
        dims = {item.id: item.dimension.value for item in store.items()}
        stats = refusal_stats(
            (dims[a.item_id], a.response or "") for a in store.answers() if a.status == "ok"
        )
    for key in sorted(stats, key=lambda k: (k != ALL, taxonomy_order(k))):
        s = stats[key]
        name = "All answers" if key == ALL else key
        console.print(f"{name}: {s.rate:.1f}% refused ({s.refused} of {s.answered})")
