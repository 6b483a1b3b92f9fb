"""Shared fixtures. The official prompts are read from $FLAMES_DATA_DIR or ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flames import official_data
from flames.dataset import Dataset

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    if "FLAMES_DATA_DIR" not in os.environ and (SHARED_DATA / official_data.FILENAME).is_file():
        os.environ["FLAMES_DATA_DIR"] = str(SHARED_DATA)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FLAMES_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def official_path() -> Path:
    data_dir = os.environ.get("FLAMES_DATA_DIR")
    path = Path(data_dir or SHARED_DATA) / official_data.FILENAME
    if not path.is_file():
        pytest.skip("official Flames data not available (set FLAMES_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def official(official_path: Path) -> Dataset:
    from flames.dataset import load_dataset

    return load_dataset(official_path, name=official_data.NAME)
