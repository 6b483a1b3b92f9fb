"""Prompt sets: load, fetch, augment; and the scorer checkpoint's safetensors copy."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flames._api.pieces import (
    build_dataset,
)
from flames._config import (
    DataConfig,
    validated,
)
from flames.data import official as official_data
from flames.data.dataset import Dataset
from flames.errors import UsageError

if TYPE_CHECKING:
    pass


def load_dataset(
    source: str = "official",
    *,
    dimensions: Sequence[str] = (),
    subcomponents: Sequence[str] = (),
    sample: int | None = None,
    sample_seed: int = 0,
) -> Dataset:
    """A prompt set: 'official' (the 1k official prompts, from $FLAMES_DATA_DIR or the cache),
    'control' (benign control prompts) or a JSONL path, filtered and stratified-sampled."""
    config = validated(
        DataConfig,
        {
            "source": source,
            "dimensions": [dimensions] if isinstance(dimensions, str) else list(dimensions),
            "subcomponents": (
                [subcomponents] if isinstance(subcomponents, str) else list(subcomponents)
            ),
            "sample": sample,
            "sample_seed": sample_seed,
        },
    )
    return build_dataset(config)


def fetch_data(source: str | Path | None = None, *, urls: Sequence[str] = ()) -> Path:
    """The official 1k prompts, verified by sha256 and cached; returns the cached file.

    `source` (a local file or its folder) is checked and cached instead of a download; `urls`
    are mirrors tried in order (default: $FLAMES_DATA_URL, else the official repository).
    """
    return official_data.fetch(
        Path(source) if source is not None else None, urls=tuple(urls) or None
    )


def transforms() -> dict[str, str]:
    """The adversarial prompt transforms `augment` knows, with what each does."""
    from flames.data.augment import TRANSFORMS

    return {t.name: t.description for t in TRANSFORMS.values()}


def augment(
    dataset: Dataset,
    transforms: Sequence[str] = (),
    *,
    seed: int = 0,
    include_source: bool = True,
) -> Dataset:
    """A new prompt set: each item under each transform (default: all), plus the untransformed
    sources to pair with; reports then show each transform's effect."""
    from flames.data.augment import augment as augmented

    if not isinstance(dataset, Dataset):
        raise UsageError(f"augment takes a prompt set (load_dataset), not {type(dataset).__name__}")
    names = [transforms] if isinstance(transforms, str) else list(transforms)
    try:
        return augmented(dataset, names or None, seed=seed, include_source=include_source)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def convert_scorer(source: str, target: str | Path, *, revision: str | None = None) -> list[Path]:
    """Write a safetensors copy of the scorer checkpoint `source` (a folder or hub id) into
    `target`, which loads much faster; returns the files written."""
    from flames.scoring.scorer.checkpoint import convert, resolve

    directory, _ = resolve(source, revision)
    return convert(directory, Path(target))
