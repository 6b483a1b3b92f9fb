"""The Typer applications and consoles every command module registers with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperOption

_display_type_rich = TyperOption.display_type_rich


def _no_type_for_flags(self: TyperOption, ctx: Any) -> str | None:
    """The value's type for the help, none for a flag: typer shows `<bool>` after a flag such
    as --wait, as if it took a value."""
    if self.is_flag or self.count:
        return None
    return _display_type_rich(self, ctx)


TyperOption.display_type_rich = _no_type_for_flags  # type: ignore[method-assign]

app = typer.Typer(
    help="Evaluate how well LLMs hold to human values in Chinese (the Flames benchmark).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@dataclass
class State:
    """What the entry point needs to know when a command fails or is interrupted."""

    debug: bool = False
    run_dir: Path | None = None
    """The run a command is writing to, once it has one."""
    answers: bool = False
    """Whether the command generates answers: its failed answers are its own."""
    scorers: list[str] = field(default_factory=list)
    """The scorers whose verdicts the command writes: their failed verdicts are its own."""
    attacks: bool = False
    """Whether the command runs attacks: its failed attack calls are its own."""


state = State()


@app.callback()
def options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when a command fails.")
    ] = False,
) -> None:
    """Evaluate how well LLMs hold to human values in Chinese (the Flames benchmark)."""
    state.debug = debug


data_app = typer.Typer(help="Get, inspect and sample prompt sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


scorer_app = typer.Typer(
    help="The official scorer's checkpoint, and scorers of your own trained from labels.",
    no_args_is_help=True,
)
app.add_typer(scorer_app, name="scorer")


annotate_app = typer.Typer(
    help="Human labels: export, import, label in a browser.", no_args_is_help=True
)
app.add_typer(annotate_app, name="annotate")


batch_app = typer.Typer(
    help="A run's provider batch jobs (--batch): status, cancel.", no_args_is_help=True
)
app.add_typer(batch_app, name="batch")


console = Console(emoji=False)  # ':x:' in a scorer name stays text


err = Console(stderr=True, emoji=False)
