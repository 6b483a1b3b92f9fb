"""Human labels: export and import them, label in a browser, and measure judges against them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flames.errors import FlamesError, UsageError
from flames.runs.store import RunStore

if TYPE_CHECKING:
    from flames.analysis.calibration import Calibration, Disagreements, KappaWeights
    from flames.analysis.refusal import RefusalStats


def _check_scorers(store: RunStore, names: Sequence[str]) -> None:
    known = store.scorers()
    for name in names:
        if name not in known:
            have = ", ".join(sorted(known)) or "none yet"
            raise UsageError(f"{store.run_dir}: no scorer named {name!r} (it has: {have})")


def export_for_labelling(
    run_dir: str | Path,
    path: str | Path,
    *,
    disagreements_of: Sequence[str] = (),
    sample: int | None = None,
    seed: int = 0,
) -> int:
    """Write a run's answers to label by hand to a .csv or .jsonl file; return how many.

    All answers (those the scorers `disagreements_of` disagree on first), or a seeded random
    `sample` of them: only labels on a random sample give `calibrate` unbiased corrections."""
    from flames.scoring.annotate import export_items

    if sample is not None and disagreements_of:
        raise UsageError(
            "--random and --disagreements-of select answers in different ways; pick one"
        )
    with RunStore.open(run_dir) as store:
        _check_scorers(store, disagreements_of)
        return export_items(store, Path(path), disagreements_of, sample, seed)


def import_labels(
    run_dir: str | Path, path: str | Path, *, annotator: str | None = None, wait: bool = False
) -> dict[str, int]:
    """Import a file of human labels (.csv or .jsonl, as `export_for_labelling` writes them);
    each annotator's labels become the verdicts of scorer ``human:NAME``. `annotator` names
    who labelled a file without an annotator column. Returns the number of labels by annotator.
    With `wait`, a run another process is writing is waited for instead of refused."""
    from flames.scoring.annotate import import_labels as import_file

    with RunStore.open_writer(run_dir, "annotate import", wait) as store:
        return import_file(store, Path(path), annotator)


def serve_labelling(
    run_dir: str | Path,
    annotator: str,
    *,
    port: int = 8765,
    disagreements_of: Sequence[str] = (),
    wait: bool = False,
    ready: Callable[[str], None] = print,
) -> None:
    """Serve a local web page (http://127.0.0.1:PORT/) to label a run's answers one at a time,
    each label saved at once as a verdict of ``human:ANNOTATOR``; runs until interrupted, writing
    the run all the while (with `wait`, after waiting for another process writing it). `ready`
    is given the page's URL once the server listens; a port in use is an error in one line."""
    from flames.scoring.annotate_server import serve

    if not 1 <= port <= 65535:
        raise UsageError(f"{port} is not a port: give 1 to 65535", param_hint="--port")
    serve(Path(run_dir), annotator, port, disagreements_of, wait, ready)


def calibrate(
    run_dir: str | Path,
    judge: str,
    annotators: Sequence[str] = (),
    *,
    kappa_weights: KappaWeights | None = None,
    bootstrap: int = 2000,
    seed: int = 0,
) -> Calibration:
    """How far the scorer `judge` agrees with human labels on a run: accuracy, Cohen's kappa
    (also weighted, with `kappa_weights` 'linear' or 'quadratic'), confusion, and harmless rates
    corrected for its errors. `annotators` default to everyone whose labels the run holds."""
    from flames.analysis.calibration import calibrate as against_humans
    from flames.scoring.annotate import HUMAN_PREFIX, human_scorer

    with RunStore.open(run_dir) as store:
        humans = [human_scorer(a) for a in annotators] or [
            name for name in store.scorers() if name.startswith(HUMAN_PREFIX)
        ]
        if not humans:
            raise FlamesError(f"{run_dir}: no human labels (flames annotate import)")
        return against_humans(store, judge, humans, kappa_weights, bootstrap, seed)


def disagreements(run_dir: str | Path, scorers: Sequence[str]) -> Disagreements:
    """Where two or more scorers (judges, or ``human:NAME``) disagree on a run's answers: the
    agreement and Cohen's kappa of each pair, and how many answers are contested."""
    from flames.analysis.calibration import Disagreements, pair_agreements
    from flames.scoring.annotate import disagreement_keys

    if len(scorers) < 2:
        raise UsageError("name at least two scorers")
    with RunStore.open(run_dir) as store:
        _check_scorers(store, scorers)
        contested = len(disagreement_keys(store, scorers))
        return Disagreements(pairs=pair_agreements(store, scorers), contested=contested)


def refusals(run_dir: str | Path) -> dict[str, RefusalStats]:
    """How often a run's answers refuse, per dimension and over all answers (key 'all'), by a
    phrase heuristic; no scorer needed. A model can score well by refusing everything."""
    from flames.analysis.refusal import refusal_stats

    with RunStore.open(run_dir) as store:
        dims = {item.id: item.dimension.value for item in store.items()}
        return refusal_stats(
            (dims[a.item_id], a.response or "") for a in store.answers() if a.status == "ok"
        )
