"""`flames data`: get, inspect, sample and augment prompt sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flames import _api
from flames._config import OFFICIAL_SHA256
from flames._util.terminal import inline
from flames.cli.app import console, data_app, err
from flames.cli.options import (
    DataOpt,
    DimensionOpt,
    JsonOpt,
    SampleOpt,
    SampleSeedOpt,
    SubcomponentOpt,
)
from flames.cli.output import print_json
from flames.errors import UsageError

if TYPE_CHECKING:
    from flames.data.dataset import Dataset


def select_items(
    data: str | None,
    dimension: list[str] | None,
    subcomponent: list[str] | None,
    sample: int | None,
    seed: int,
) -> Dataset:
    try:
        return _api.load_dataset(
            data or "official",
            dimensions=dimension or (),
            subcomponents=subcomponent or (),
            sample=sample,
            sample_seed=seed,
        )
    except UsageError as exc:
        raise typer.BadParameter(str(exc)) from None


@data_app.command("fetch")
def data_fetch(
    source: Annotated[
        Path | None,
        typer.Option("--from", help="Verify and cache a local copy (the file or its folder)."),
    ] = None,
    url: Annotated[
        list[str] | None,
        typer.Option(
            help="Download from this URL (a mirror or an internal copy) instead of GitHub; "
            "repeat to try several in order. Default: $FLAMES_DATA_URL, else the official "
            "repository. The sha256 is checked either way."
        ),
    ] = None,
) -> None:
    """Download the official 1k prompts, verify their sha256 and cache them."""
    path = _api.fetch_data(source, urls=url or ())
    console.print(
        f"official prompts verified (sha256 {OFFICIAL_SHA256[:12]}…) at {inline(path)}",
        highlight=False,
    )


@data_app.command("augment")
def data_augment(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to write the JSONL.")
    ] = None,
    data: DataOpt = None,
    transform: Annotated[
        list[str] | None, typer.Option(help="Transform to apply (default: all); see --list.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the transforms.")] = 0,
    source: Annotated[
        bool, typer.Option(help="Include the untransformed prompts, to pair with.")
    ] = True,
    dimension: DimensionOpt = None,
    subcomponent: SubcomponentOpt = None,
    sample: SampleOpt = None,
    sample_seed: SampleSeedOpt = 0,
    list_transforms: Annotated[
        bool, typer.Option("--list", help="List the transforms and exit.")
    ] = False,
) -> None:
    """Write an adversarially augmented prompt set (pinyin, homophones, role-play, ...)."""
    if list_transforms:
        for name, description in _api.transforms().items():
            console.print(f"[bold]{name}[/]: {description}")
        return
    if output is None:
        raise typer.BadParameter("give --output (or --list)")
    dataset = select_items(data, dimension, subcomponent, sample, sample_seed)
    try:
        augmented = _api.augment(dataset, transform or (), seed=seed, include_source=source)
    except UsageError as exc:
        raise typer.BadParameter(str(exc)) from None
    augmented.to_jsonl(output)
    selection = inline(augmented.selection)
    console.print(
        f"wrote {len(augmented)} items ({selection}) to {inline(output)}", highlight=False
    )


@data_app.command("info")
def data_info(data: DataOpt = None, as_json: JsonOpt = False) -> None:
    """Validate a prompt set and show its counts per dimension and subcomponent."""
    dataset = _api.load_dataset(data or "official")
    counts = dataset.counts()
    multi_turn = sum(1 for item in dataset if item.conversation)
    if as_json:
        print_json(
            json.dumps(
                {
                    "name": dataset.name,
                    "n_items": len(dataset),
                    "sha256": dataset.source_sha256,
                    "counts": counts,
                    "multi_turn": multi_turn,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    console.print(
        f"[bold]{inline(dataset.name)}[/]: {len(dataset)} items, sha256 {dataset.source_sha256}",
        highlight=False,
    )
    if multi_turn:
        console.print(f"  {multi_turn} multi-turn prompts (their conversations are replayed first)")
    for dim, subs in counts.items():
        console.print(f"  {inline(dim)}: {sum(subs.values())}", highlight=False)
        for sub, n in subs.items():
            console.print(f"    {inline(sub)}: {n}", highlight=False)


@data_app.command("sample")
def data_sample(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the JSONL.")],
    data: DataOpt = None,
    sample: SampleOpt = None,
    sample_seed: SampleSeedOpt = 0,
    dimension: DimensionOpt = None,
    subcomponent: SubcomponentOpt = None,
    old_n: Annotated[int | None, typer.Option("--n", min=1, hidden=True)] = None,
    old_seed: Annotated[int | None, typer.Option("--seed", hidden=True)] = None,
) -> None:
    """Write a filtered and/or stratified sample of a prompt set, with ids, as JSONL."""
    if old_n is not None or old_seed is not None:
        err.print("[yellow]note:[/] --n and --seed are now --sample and --sample-seed")
    if sample is None:
        sample = old_n
    if old_seed is not None:
        sample_seed = old_seed
    dataset = select_items(data, dimension, subcomponent, sample, sample_seed)
    dataset.to_jsonl(output)
    selection = inline(dataset.selection)
    console.print(f"wrote {len(dataset)} items ({selection}) to {inline(output)}", highlight=False)
