"""The `flames` command line.

Exit codes: 0 success; 1 failure; 2 bad usage; 3 bad input data; 4 settings differ from the
run's manifest; 5 the run finished with failed items (or nothing could be scored); 6 the
official data could not be fetched; 130 interrupted (Ctrl-C); 143 stopped by SIGTERM. No
failure prints a traceback unless `flames --debug` is given.
"""

from __future__ import annotations

from typing import NoReturn

from rich.markup import escape

from flames import _api
from flames._util import interrupt
from flames._util.terminal import remote
from flames.cli import (  # noqa: F401  (registers commands)
    batch,
    data,
    evaluate,
    human,
    redteam,
    reports,
    training,
)
from flames.cli.app import app, err, state
from flames.errors import FlamesError, install_hint, known_failure

__all__ = ["app", "main"]

EXTRAS = {
    "torch": "local",
    "transformers": "local",
    "safetensors": "local",
    "sentencepiece": "local",
    "huggingface_hub": "local",
    "gguf": "local",
    "accelerate": "local",
    "peft": "train",
    "matplotlib": "plots",
    "pypinyin": "augment",
    "opencc": "augment",
    "ray": "ray",
    "vllm": "vllm",
    "pandas": "pandas",
    "yaml": "yaml",
}
"""Optional packages and the extra that installs each (pyproject.toml)."""

INTERRUPTED = interrupt.INTERRUPTED


def _fail(message: str, code: int) -> SystemExit:
    err.print(f"[red]error:[/] {remote(message)}", highlight=False)
    return SystemExit(code)


def _resume_hint() -> str:
    """How to go on after Ctrl-C: the same command, with --retry-errors if it stored errors of
    its own (failed answers for generate, that judge's failed verdicts for judge, ...)."""
    hint = "interrupted; everything received so far is saved. Run the same command to resume"
    if state.run_dir is None:
        return hint + "."
    if not (state.run_dir / "run.db").exists():
        return "interrupted before the run was created: nothing was written. Run the command again."
    errors = _api.failed_items(state.run_dir, state.answers, state.scorers, state.attacks)
    if errors:
        hint += f" ({errors} failed items are stored: add --retry-errors to retry them)"
    return hint + "."


def _interrupted() -> NoReturn:
    """Say how to resume, then exit with 130 (143 after SIGTERM) without waiting on work that
    cannot stop."""
    try:
        err.print(f"[yellow]{escape(_resume_hint())}[/]", highlight=False)
    except KeyboardInterrupt:  # a second Ctrl-C while the hint is worked out
        err.print("[yellow]interrupted; run the same command to resume.[/]", highlight=False)
    interrupt.finish(interrupt.exit_code())


def main() -> None:
    """Entry point: every failure prints one clear line and exits with its documented code."""
    interrupt.install()
    try:
        app()
    except SystemExit as exc:
        # typer turns Ctrl-C into exit 130; a command that ends on Ctrl-C by design (the
        # labelling page) exits 0, unless SIGTERM stopped it.
        if exc.code == INTERRUPTED or interrupt.exit_code() == interrupt.TERMINATED:
            _interrupted()
        raise
    except KeyboardInterrupt:  # outside the command itself (typer handles it inside)
        _interrupted()
    except FlamesError as exc:
        if state.debug:
            raise
        raise _fail(str(exc), exc.exit_code) from None
    except ImportError as exc:
        if state.debug:
            raise
        package = (exc.name or "").split(".")[0]
        if package not in EXTRAS:
            raise _fail(f"{exc} (rerun with `flames --debug` for the traceback)", 1) from None
        raise _fail(
            f"this needs the optional package {package!r}: {install_hint(EXTRAS[package])}", 1
        ) from None
    except Exception as exc:
        if state.debug:
            raise
        if (known := known_failure(exc, state.run_dir)) is not None:
            raise _fail(str(known), known.exit_code) from None
        raise _fail(
            f"unexpected {type(exc).__name__}: {exc} "
            "(rerun with `flames --debug` for the traceback, and please report it)",
            1,
        ) from None
