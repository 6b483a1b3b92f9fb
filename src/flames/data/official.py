"""The official 1k Flames prompts: find a verified local copy, or download and cache one."""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib.resources import as_file, files
from pathlib import Path

import aiohttp

from flames._util.aio import run_sync
from flames._util.redaction import masked_url
from flames.data.dataset import Dataset, load_dataset, sha256_file
from flames.errors import DataError, FlamesError

FILENAME = "Flames_1k_Chinese.jsonl"
SHA256 = "f53400dcbb8795fb262993bda0615afdc77de1c4685e7c94d2df2a3cd47613fa"
MAX_DOWNLOAD_BYTES = 16 * 1024 * 1024
"""The official file is 280,190 bytes: a download that grows past this is not it."""
NAME = "flames-1k"

# Checked against the official repository's published tree and history: the file sits at the
# root (Flames_1k_Chinese.jsonl beside README.md, LICENSE and images/; there is no data/ folder).
# The repository moved from AIFlames to AI45Lab (the old name redirects); its default branch is
# `main`. The file last changed in commit 8e51f47 (2024-04-03), the version with the sha256
# above. The pinned commit comes first, so a later change on `main` cannot break the hash check.
RAW_HOST = "https://raw.githubusercontent.com"
ORGS = ("AI45Lab", "AIFlames")
COMMIT = "8e51f47418c713ef6d9fb257504a854e41b8e38e"
BRANCH = "main"
URL_ENV = "FLAMES_DATA_URL"


def official_urls(host: str = RAW_HOST) -> tuple[str, ...]:
    """Raw-file URLs of the official file, in the order tried: the pinned commit, then `main`,
    each under the current organisation name first."""
    return tuple(
        f"{host}/{org}/Flames/{ref}/{FILENAME}" for ref in (COMMIT, BRANCH) for org in ORGS
    )


URLS = official_urls()

OFFLINE_HELP = (
    "Behind a firewall, set FLAMES_DATA_URL (or pass --url) to a mirror or an internal copy of "
    f"{FILENAME}; offline, download it on a machine with internet access "
    f"({URLS[0]}), then either run `flames data fetch --from PATH` or set FLAMES_DATA_DIR to the "
    "folder that holds it."
)


class FetchError(FlamesError):
    exit_code = 6


def cache_dir() -> Path:
    """Where downloaded data is cached: $FLAMES_CACHE_DIR, else ~/.cache/flames."""
    root = os.environ.get("FLAMES_CACHE_DIR") or Path.home() / ".cache" / "flames"
    return Path(root)


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
                if fh.tell() > MAX_DOWNLOAD_BYTES:
                    raise ValueError(f"more than {MAX_DOWNLOAD_BYTES:,} bytes: not the file")


def mirror_urls() -> tuple[str, ...] | None:
    """The URL given by $FLAMES_DATA_URL, if set: a mirror or an internal copy of the file."""
    url = os.environ.get(URL_ENV, "").strip()
    return (url,) if url else None


def _local_source(source: Path) -> Path:
    """The file behind `--from`: the file itself, or the official file name inside a folder."""
    if source.is_dir():
        source = source / FILENAME
    if not source.is_file():
        raise DataError(f"no such file; give the path of {FILENAME} or of its folder", source)
    return source


def fetch(
    source: Path | None = None, urls: tuple[str, ...] | None = None, timeout: float = 30.0
) -> Path:
    """Make a verified official file available in the cache and return its path.

    With `source` (a file or its folder), a local copy is checked and cached. Otherwise an
    already verified local copy is reused, and only if there is none is the file downloaded
    from `urls`: by default $FLAMES_DATA_URL if set, else the official repository. Every copy,
    downloaded or local, must have the official sha256.
    """
    if source is not None:
        return _install(_check(_local_source(Path(source))))
    try:
        return locate()
    except FetchError:
        pass
    urls = urls or mirror_urls() or URLS
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        part = Path(tmp) / FILENAME
        for url in urls:
            try:
                run_sync(_download(url, part, timeout))
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                errors.append(masked_url(f"{url}: {type(exc).__name__}: {exc}"))
                continue
            actual = sha256_file(part)
            if actual != SHA256:
                errors.append(f"{masked_url(url)}: wrong sha256 {actual}, expected {SHA256}")
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
