"""`flames redteam`: attack a model (`flames redteam RUN_DIR ...`, short for `flames redteam
attack RUN_DIR ...`) and export the prompts that broke it (`flames redteam export`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from flames import _api
from flames.cli.app import app, console, state
from flames.cli.describe import describe_redteam, usage_errors
from flames.cli.options import (
    API_OPTIONS,
    ATTACK_OPTIONS,
    ATTACKER_OPTIONS,
    DECODING_OPTIONS,
    LLM_JUDGE_OPTIONS,
    LOCAL_MODEL_OPTIONS,
    PROGRESS_OPTIONS,
    PROMPT_OPTIONS,
    RETRY_OPTIONS,
    RUN_JUDGE_OPTIONS,
    WAIT_OPTIONS,
    ConfigOpt,
    LangOpt,
    scorer_options,
    target_options,
    with_options,
)
from flames.reporting.i18n import Lang

ATTACK = "attack"


class AttackByDefault(TyperGroup):
    """A group whose `attack` command needs no name: `flames redteam RUN_DIR --model ...` is
    `flames redteam attack RUN_DIR --model ...`. Only --help (and a subcommand's name) go to
    the group itself; a run directory called like a subcommand needs the explicit form."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [ATTACK, *args]
        return super().parse_args(ctx, args)


redteam_app = typer.Typer(
    cls=AttackByDefault,
    help="Red teaming: attack a model with an attacker model and a judge, and export the "
    "prompts that broke it as a prompt set. `flames redteam RUN_DIR ...` attacks.",
    no_args_is_help=True,
)
app.add_typer(redteam_app, name="redteam")


def _given(context: typer.Context, name: str) -> bool:
    source = context.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


@redteam_app.command(ATTACK)
@with_options(
    target_options(model_required=False),
    API_OPTIONS,
    LOCAL_MODEL_OPTIONS,
    DECODING_OPTIONS,
    ATTACKER_OPTIONS,
    RUN_JUDGE_OPTIONS,
    LLM_JUDGE_OPTIONS,
    scorer_options(),
    ATTACK_OPTIONS,
    PROMPT_OPTIONS,
    RETRY_OPTIONS,
    WAIT_OPTIONS,
    PROGRESS_OPTIONS,
)
def attack(
    context: typer.Context,
    run_dir: Annotated[
        Path | None, typer.Argument(help="Run directory (default: run_dir of --config).")
    ] = None,
    config: ConfigOpt = None,
    lang: LangOpt = Lang.en,
    **options: Any,
) -> None:
    """Attack the model under test: every goal (seed prompt) with every strategy, until an
    answer is scored 1 or the budget is spent; resumes where it stopped."""
    if config is None and not options.get("attacker_model"):
        raise typer.BadParameter("name the attacker", param_hint="--attacker-model")
    if config is None and not options.get("model"):
        raise typer.BadParameter("name the model under test", param_hint="--model")
    given = {name for name in options if _given(context, name)}
    description = describe_redteam(options, config, given)
    state.run_dir = run_dir or (Path(description.run_dir) if description.run_dir else None)
    state.attacks = True
    with usage_errors():
        _api.redteam(
            description,
            run_dir=run_dir,
            progress=options["progress"],
            strict=True,
            lang=lang,
            console=console,
        )


@redteam_app.command("export")
def export(
    run_dir: Annotated[Path, typer.Argument(help="A red-team run directory.")],
    out: Annotated[Path, typer.Argument(help="The prompt file to write (JSONL).")],
    every: Annotated[
        bool,
        typer.Option("--all", help="Every prompt the target answered, not only those that won."),
    ] = False,
    similarity: Annotated[
        float,
        typer.Option(
            min=0,
            max=1,
            help="Drop a prompt when this share of its character bigrams (or of the other's, if "
            "shorter) is found in a reference prompt, a seed prompt or an earlier exported one.",
        ),
    ] = 0.8,
    reference: Annotated[
        str,
        typer.Option(
            help="Prompt set the new prompts must not repeat: 'official' (Flames-1k), a path, "
            "or 'none'."
        ),
    ] = "official",
) -> None:
    """Write the prompts that broke the target as a Flames-format prompt file (with their
    strategy, seed prompt and, for conversations, the earlier turns), near-duplicates dropped."""
    with usage_errors():
        summary = _api.export_attacks(
            run_dir, out, every=every, similarity=similarity, reference=reference
        )
    console.print(summary.line(), highlight=False, soft_wrap=True)
