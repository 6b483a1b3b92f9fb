"""Checking where a local model comes from before anything is loaded or written: a file or
folder that exists and holds a model, or a Hugging Face repo id that is cached or reachable.

Without this, a mistyped path reaches transformers as a repo id (an error about repo-id
characters), a folder of GGUF files as a tokenizer error, and a hub id without network after
about a minute of retries.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from urllib.parse import urlsplit

from flames.errors import EndpointUnreachable, FlamesError, UsageError

REPO_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")
"""A Hugging Face repo id: "name" or "owner/name" (letters, digits, '-', '_', '.')."""

CONNECT_TIMEOUT_S = 5.0


def check_model_source(model: str, gguf_file: str | None = None, option: str = "--model") -> None:
    """UsageError (exit 2) for a path that holds no model; FlamesError (exit 1) for a hub id
    neither cached nor reachable. A model the hub may hold is otherwise left to the loader."""
    path = Path(model).expanduser()
    if path.is_file():
        if gguf_file is None and path.suffix != ".gguf":
            raise UsageError(f"{model}: a file, not a model folder or a .gguf file", option)
        return
    if path.is_dir():
        _check_folder(path, model, gguf_file, option)
        return
    if path.suffix == ".gguf" or not _repo_id(model):
        raise UsageError(f"{model}: no such file or folder, and not a Hugging Face repo id", option)
    check_hub(model, gguf_file)


def _repo_id(name: str) -> bool:
    return (
        REPO_ID.fullmatch(name) is not None
        and not name.startswith((".", "-"))
        and ".." not in name
        and "--" not in name
    )


def _check_folder(path: Path, model: str, gguf_file: str | None, option: str) -> None:
    if gguf_file is not None:
        if not (path / gguf_file).is_file():
            raise UsageError(f"{path / gguf_file}: no such file", "--gguf-file")
        return
    if (path / "config.json").is_file():
        return
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    if ggufs:
        raise UsageError(
            f"{model}: a folder of GGUF files ({', '.join(ggufs)}) with no config.json: give "
            f"the file itself ({option} {path / ggufs[0]}), or --gguf-file {ggufs[0]}",
            option,
        )
    raise UsageError(f"{model}: holds neither config.json nor a .gguf file: not a model", option)


def check_hub(repo_id: str, filename: str | None = None) -> None:
    """Fail at once, in one line, when `repo_id` is not in the local Hugging Face cache and the
    hub cannot be reached (HF_HUB_OFFLINE set, or no connection to its endpoint), instead of
    after the hub client's retries."""
    try:
        from huggingface_hub import constants, try_to_load_from_cache
    except ImportError:  # the loader names the missing extra
        return
    if isinstance(try_to_load_from_cache(repo_id, filename or "config.json"), str):
        return
    where = "give a local folder or .gguf file"
    if constants.HF_HUB_OFFLINE:
        raise FlamesError(
            f"{repo_id}: not in the Hugging Face cache, and the hub is offline (HF_HUB_OFFLINE "
            f"is set): download it once with network access, or {where}"
        )
    endpoint = constants.ENDPOINT
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise EndpointUnreachable(
            f"{repo_id}: not in the Hugging Face cache, and {endpoint} cannot be reached "
            f"({reason}): connect to the network (or set HF_ENDPOINT to a mirror), or {where}"
        ) from None
