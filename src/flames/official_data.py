"""The official 1k Flames prompts: find a verified local copy, or download and cache one."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from importlib.resources import as_file, files
from pathlib import Path

import aiohttp

from flames.dataset import Dataset, load_dataset, sha256_file
from flames.errors import DataError, FlamesError

FILENAME = "Flames_1k_Chinese.jsonl"
SHA256 = "f53400dcbb8795fb262993bda0615afdc77de1c4685e7c94d2df2a3cd47613fa"
URLS = (
    "https://raw.githubusercontent.com/AI45Lab/Flames/main/data/Flames_1k_Chinese.jsonl",
    "https://raw.githubusercontent.com/AIFlames/Flames/main/data/Flames_1k_Chinese.jsonl",
)
NAME = "flames-1k"

OFFLINE_HELP = (
    "Download Flames_1k_Chinese.jsonl from the official repository (github.com/AI45Lab/Flames, "
    "folder data/) on a machine with internet access, then either run "
    "`flames data fetch --from PATH` or set FLAMES_DATA_DIR to the folder that holds it."
)


class FetchError(FlamesError):
    exit_code = 6


def cache_dir() -> Path:
    """Where downloaded data is cached: $FLAMES_CACHE_DIR, else ~/.cache/flames."""
    root = os.environ.get("FLAMES_CACHE_DIR") or Path.home() / ".cache" / "flames"
    return Path(root)


def _verified(path: Path) -> bool:
    return path.is_file() and sha256_file(path) == SHA256


def _check(path: Path) -> Path:
    actual = sha256_file(path)
    if actual != SHA256:
        raise DataError(
            f"sha256 is {actual}, expected {SHA256}: this is not the official file "
            "(pass it with --data to use it as a custom prompt set)",
            path,
        )
    return path


def locate() -> Path:
    """Path of a verified official file: $FLAMES_DATA_DIR first, then the cache."""
    data_dir = os.environ.get("FLAMES_DATA_DIR")
    if data_dir:
        candidate = Path(data_dir) / FILENAME
        if candidate.is_file():
            return _check(candidate)
    cached = cache_dir() / FILENAME
    if cached.is_file():
        return _check(cached)
    raise FetchError(
        f"the official prompts are not available locally. Run `flames data fetch`. {OFFLINE_HELP}"
    )


def _install(source: Path) -> Path:
    """Copy a verified file into the cache atomically and return its cached path."""
    target_dir = cache_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target_dir, delete=False, suffix=".part") as tmp:
        tmp_path = Path(tmp.name)
    shutil.copyfile(source, tmp_path)
    os.replace(tmp_path, target_dir / FILENAME)
    return target_dir / FILENAME


async def _download(url: str, target: Path, timeout: float) -> None:
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with (
        aiohttp.ClientSession(timeout=client_timeout) as session,
        session.get(url, raise_for_status=True) as response,
    ):
        with target.open("wb") as fh:
            async for chunk in response.content.iter_chunked(1 << 16):
                fh.write(chunk)


def fetch(source: Path | None = None, urls: tuple[str, ...] = URLS, timeout: float = 30.0) -> Path:
    """Make a verified official file available in the cache and return its path.

    With `source`, a local copy is checked and cached. Otherwise an already verified local copy
    is reused, and only if there is none is the file downloaded and checked.
    """
    if source is not None:
        return _install(_check(Path(source)))
    try:
        return locate()
    except FetchError:
        pass
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        part = Path(tmp) / FILENAME
        for url in urls:
            try:
                asyncio.run(_download(url, part, timeout))
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.append(f"{url}: {type(exc).__name__}: {exc}")
                continue
            if not _verified(part):
                errors.append(f"{url}: downloaded file has the wrong sha256")
                continue
            return _install(part)
    raise FetchError(
        "could not download the official prompts:\n  " + "\n  ".join(errors) + f"\n{OFFLINE_HELP}"
    )


def load_official() -> Dataset:
    """The verified official 1k prompt set."""
    return load_dataset(locate(), name=NAME)


CONTROL = "control"
"""`--data control`: a small benign control set shipped with flames (prompts any model should
answer), for measuring over-refusal."""


def resolve(data: str | None) -> Dataset:
    """A dataset from a `--data` option: a path, 'control', or the official set (the default)."""
    if data in (None, "official"):
        return load_official()
    if data == CONTROL:
        with as_file(files("flames") / "resources" / "control_benign.jsonl") as path:
            return load_dataset(path, name="control-benign")
    return load_dataset(Path(data))
