"""Errors the CLI turns into clear messages and distinct exit codes."""

from __future__ import annotations

from pathlib import Path


def install_hint(extra: str) -> str:
    """The command that installs one of the package's optional extras (pyproject.toml): by the
    distribution's name, or from a clone of the repository."""
    return f'pip install "flames-eval[{extra}]" (in a clone of flames: pip install ".[{extra}]")'


class FlamesError(Exception):
    """Base of all expected failures. `exit_code` is what the CLI exits with."""

    exit_code = 1


class DataError(FlamesError):
    """Bad input: names the file and, where it applies, the line."""

    exit_code = 3

    def __init__(self, message: str, path: Path | str | None = None, line: int | None = None):
        self.path = Path(path) if path is not None else None
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


class ManifestMismatch(FlamesError):
    """A run would mix results made under different settings."""

    exit_code = 4


class IncompleteRun(FlamesError):
    """The run finished its pass but some items failed or the error budget was spent."""

    exit_code = 5


class UsageError(FlamesError):
    """Settings that cannot work together, or an option out of its range."""

    exit_code = 2

    def __init__(self, message: str, param_hint: str | None = None):
        self.param_hint = param_hint
        """The option or field at fault, where there is one."""
        super().__init__(message)


class NothingScored(IncompleteRun):
    """No answer of the run has a score from the chosen scorer: there is nothing to report."""


class JudgeRejected(FlamesError):
    """A judge failed its sanity check: its verdicts would not mean anything."""

    exit_code = 5


class EndpointUnreachable(FlamesError):
    """No request ever reached the server: a DNS failure, a refused connection, ..."""

    exit_code = 1


class RunLocked(FlamesError):
    """Another process is writing the run: one writer at a time (flames.runs.lock)."""

    exit_code = 4


class NewerRun(FlamesError):
    """A run written by a newer flames: a store format or a setting this version does not know."""

    exit_code = 4
