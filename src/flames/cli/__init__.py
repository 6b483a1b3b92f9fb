"""The `flames` command line.

Exit codes: 0 success; 1 failure; 2 bad usage; 3 bad input data; 4 settings differ from the
run's manifest; 5 the run finished with failed items; 6 the official data could not be fetched.
"""

from __future__ import annotations

from rich.markup import escape

from flames.cli import data, evaluate, human, reports  # noqa: F401  (registers commands)
from flames.cli.app import app, err
from flames.errors import FlamesError

__all__ = ["app", "main"]


def main() -> None:
    """Entry point: expected failures print one clear line and exit with their code."""
    try:
        app()
    except FlamesError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise SystemExit(exc.exit_code) from None
