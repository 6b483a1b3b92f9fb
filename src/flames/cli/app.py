"""The Typer applications and consoles every command module registers with."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    help="Evaluate how well LLMs hold to human values in Chinese (the Flames benchmark).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


data_app = typer.Typer(help="Get, inspect and sample prompt sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


scorer_app = typer.Typer(help="Manage the official scorer checkpoint.", no_args_is_help=True)
app.add_typer(scorer_app, name="scorer")


annotate_app = typer.Typer(
    help="Human labels: export, import, label in a browser.", no_args_is_help=True
)
app.add_typer(annotate_app, name="annotate")


console = Console()


err = Console(stderr=True)
