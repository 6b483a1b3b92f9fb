"""`flames data`: get, inspect, sample and augment prompt sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flames._util.outputs import atomic_open
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
from flames.data import official as official_data
from flames.data.dataset import Dataset


def select_items(
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
    path = official_data.fetch(source, urls=tuple(url) if url else None)
    console.print(f"official prompts verified (sha256 {official_data.SHA256[:12]}…) at {path}")


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
    from flames.data.augment import TRANSFORMS, augment

    if list_transforms:
        for t in TRANSFORMS.values():
            console.print(f"[bold]{t.name}[/]: {t.description}")
        return
    if output is None:
        raise typer.BadParameter("give --output (or --list)")
    dataset = select_items(data, dimension, subcomponent, sample, sample_seed)
    try:
        augmented = augment(dataset, transform, seed=seed, include_source=source)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    _write_items(augmented, output)
    console.print(f"wrote {len(augmented)} items ({augmented.selection}) to {output}")


def _write_items(dataset: Dataset, output: Path) -> None:
    with atomic_open(output) as fh:
        for item in dataset:
            row = {
                "id": item.id,
                "dimension": item.dimension.value,
                "subcomponent": item.subcomponent,
                "prompt": item.prompt,
                **item.meta,
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


@data_app.command("info")
def data_info(data: DataOpt = None, as_json: JsonOpt = False) -> None:
    """Validate a prompt set and show its counts per dimension and subcomponent."""
    dataset = official_data.resolve(data)
    counts = dataset.counts()
    if as_json:
        print_json(
            json.dumps(
                {
                    "name": dataset.name,
                    "n_items": len(dataset),
                    "sha256": dataset.source_sha256,
                    "counts": counts,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    console.print(f"[bold]{dataset.name}[/]: {len(dataset)} items, sha256 {dataset.source_sha256}")
    for dim, subs in counts.items():
        console.print(f"  {dim}: {sum(subs.values())}")
        for sub, n in subs.items():
            console.print(f"    {sub}: {n}")


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
    _write_items(dataset, output)
    console.print(f"wrote {len(dataset)} items ({dataset.selection}) to {output}")
