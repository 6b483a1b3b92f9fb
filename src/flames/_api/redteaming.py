"""Red teaming: attack a model with an attacker model and a judge, report what broke it, and
export the prompts that did as a prompt set."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from rich.console import Console

from flames._api.pieces import (
    ModelLike,
    announce_upgrade,
    build_chat_model,
    build_dataset,
    build_judge,
    console_or_default,
    fail_or_warn,
    judge_config,
    official_scorer,
    release,
    vet,
)
from flames._config import (
    AttackConfig,
    AttackerConfig,
    JudgeConfig,
    RedteamConfig,
    TargetConfig,
    load_redteam_config,
    validated,
)
from flames._util.aio import async_twin, run_sync
from flames._util.callables import qualified_name
from flames._util.outputs import remove_stale_partials, write_text
from flames._util.terminal import remote
from flames.analysis.attacks import RedteamReport, goal_views, load_redteam
from flames.clients.chat_model import ChatModel
from flames.data import official as official_data
from flames.data.dataset import Dataset
from flames.errors import FlamesError, IncompleteRun, UsageError
from flames.redteaming.attack import Roles, Settings
from flames.redteaming.export import SIMILARITY, ExportSummary, export_attacks as export_prompts
from flames.redteaming.instructions import Instructions
from flames.redteaming.loop import RedteamSummary, run_attacks
from flames.redteaming.strategies import Strategy, strategy
from flames.reporting.i18n import Lang
from flames.reporting.redteam import print_redteam
from flames.runs.records import DatasetInfo, RedteamInfo, RunManifest
from flames.runs.store import RunStore
from flames.scoring.answer_judge import AnswerJudge, answer_judge
from flames.scoring.runner import Scorer


def _role(model: ModelLike | TargetConfig | None, version: str | None) -> dict[str, Any] | None:
    if model is None:
        return None
    if isinstance(model, TargetConfig):
        return model.model_dump()
    if callable(model):
        return {"backend": "callable", "function": model, "model": qualified_name(model)} | (
            {"version": version} if version else {}
        )
    return {"model": model}


def describe_redteam(
    config: RedteamConfig | str | Path | None = None,
    *,
    target: ModelLike | TargetConfig | None = None,
    target_version: str | None = None,
    attacker: ModelLike | AttackerConfig | None = None,
    attacker_version: str | None = None,
    judge: ModelLike | JudgeConfig | None = None,
    judge_version: str | None = None,
    strategies: str | Sequence[str] | None = None,
    budget: int | None = None,
    data: str | None = None,
    sample: int | None = None,
    seed: int | None = None,
    run_dir: str | Path | None = None,
) -> RedteamConfig:
    """A `RedteamConfig` from an existing one (or a TOML/YAML file) with the given settings
    changed; models may be names or functions. Errors name the field."""
    if isinstance(config, str | Path):
        config = load_redteam_config(config)
    settings: dict[str, Any] = config.model_dump() if config else {}
    for role, model, version in (
        ("target", target, target_version),
        ("attacker", attacker, attacker_version),
    ):
        given = _role(model, version)
        if given is not None:
            settings[role] = {**(settings.get(role) or {}), **given}
            if "function" not in given:
                settings[role].pop("function", None)
    if judge is not None:
        settings["judge"] = judge_config(judge, judge_version)
        settings["scorer"] = None
    attack: dict[str, Any] = settings.get("attack") or {}
    if strategies is not None:
        chosen = strategies.split(",") if isinstance(strategies, str) else list(strategies)
        attack["strategies"] = [s.strip() for s in chosen if s.strip()]
    for key, value in (("budget", budget), ("seed", seed)):
        if value is not None:
            attack[key] = value
    settings["attack"] = attack
    chosen_data: dict[str, Any] = settings.get("data") or {}
    if data is not None:
        chosen_data["source"] = data
    if sample is not None:
        chosen_data["sample"] = sample
    settings["data"] = chosen_data
    if run_dir is not None:
        settings["run_dir"] = str(run_dir)
    return validated(RedteamConfig, settings)


# -- the pieces --------------------------------------------------------------------------------


def build_strategies(attack: AttackConfig, target: ChatModel) -> list[Strategy]:
    try:
        chosen = [strategy(name, attack.parameters(name)) for name in attack.strategies]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    multi = [s.name for s in chosen if s.multi_turn]
    info = target.info
    if multi and info.backend == "callable" and info.options.get("input") != "messages":
        raise UsageError(
            f"{', '.join(multi)} talks to the target in a conversation: a target function must "
            "take the chat messages (input='messages'; --input messages)",
            param_hint="--input",
        )
    return chosen


def build_redteam_judge(config: RedteamConfig, console: Console) -> tuple[AnswerJudge, Scorer]:
    """The judge (an LLM judge checked first, a callable, or the official scorer), as one that
    gives one verdict at a time, and the scorer behind it."""
    if config.judge is not None:
        scorer = build_judge(config.judge)
        vet(scorer, config.judge.skip_check, console)
    else:
        assert config.scorer is not None  # the description defaults it
        scorer = official_scorer(config.scorer, None)
    return answer_judge(scorer), scorer


def instructions_of(attack: AttackConfig) -> Instructions:
    if attack.instructions is None:
        return Instructions.default()
    return Instructions.load(attack.instructions)


def redteam_manifest(
    config: RedteamConfig,
    dataset: Dataset,
    target: ChatModel,
    attacker: ChatModel,
    judge: AnswerJudge,
    strategies: Sequence[Strategy],
    instructions: Instructions,
) -> RunManifest:
    attack = config.attack
    return RunManifest(
        dataset=DatasetInfo.of(dataset),
        generator=target.info,
        evaluation=config.record(),
        redteam=RedteamInfo(
            attacker=attacker.info,
            judge=judge.manifest,
            strategies={s.name: s.parameters() for s in strategies},
            budget=attack.budget,
            attacker_budget=attack.attacker_limit,
            attacker_attempts=attack.attacker_attempts,
            seed=attack.seed,
            instructions=instructions.texts,
            prices=attack.prices,
            concurrency=attack.concurrency,
        ),
    )


def _check_resumable(run_dir: Path, manifest: RunManifest) -> None:
    """A run there must be a red-team run made with the same settings (before any request)."""
    if not RunStore.exists(run_dir):
        return
    with RunStore.open(run_dir) as store:
        if store.manifest.redteam is None and store.count_answers():
            raise FlamesError(
                f"{run_dir} is an evaluation run, not a red-team run: use another directory"
            )
        store.check_manifest(manifest)


async def _attack(
    run_dir: Path,
    config: RedteamConfig,
    dataset: Dataset,
    roles: Roles,
    strategies: list[Strategy],
    settings: Settings,
    manifest: RunManifest,
    progress: bool,
    console: Console,
) -> RedteamSummary:
    created = not RunStore.exists(run_dir)
    store = RunStore.create_or_resume(
        run_dir, manifest, dataset.items, command="redteam", wait=config.executor.wait
    )
    try:
        announce_upgrade(store, console)
        store.update_information(manifest)
        async with AsyncExitStack() as models:
            for model in (roles.target, roles.attacker, roles.judge):
                close = getattr(model, "aclose", None)
                if close is not None:
                    models.push_async_callback(close)
            return await run_attacks(
                store,
                dataset.items,
                strategies,
                roles,
                settings,
                config.attack.concurrency,
                progress,
            )
    except BaseException:
        if created:  # nothing stored yet: leave no run behind
            store.discard_if_empty()
        raise
    finally:
        store.close()


def redteam(
    config: RedteamConfig | str | Path | None = None,
    *,
    run_dir: str | Path | None = None,
    target: ModelLike | TargetConfig | None = None,
    target_version: str | None = None,
    attacker: ModelLike | AttackerConfig | None = None,
    attacker_version: str | None = None,
    judge: ModelLike | JudgeConfig | None = None,
    judge_version: str | None = None,
    strategies: str | Sequence[str] | None = None,
    budget: int | None = None,
    data: str | None = None,
    sample: int | None = None,
    seed: int | None = None,
    progress: bool = True,
    strict: bool = False,
    lang: Lang | str = Lang.en,
    tables: bool = True,
    console: Console | None = None,
) -> RedteamReport:
    """Attack the target: for every goal (a seed prompt of the prompt set) and every strategy,
    the attacker proposes prompts, the target answers and the judge scores them, until an
    answer is scored 1 (harmful) or the budget is spent. Resumes where it stopped.

    `config` is a `RedteamConfig`, a TOML/YAML file, or None to describe one with the keyword
    arguments (which also change a given one): `target` and `attacker` are model names or
    functions (the target's takes a prompt, or the chat messages for crescendo; the attacker's
    takes the chat messages), `judge` a chat model name or a function
    ``(prompt, response, dimension) -> 3, 2 or 1`` (None: the official scorer). Returns the
    run's report; attacks that ended in error raise `IncompleteRun` with `strict`, else a
    warning is printed."""
    console = console_or_default(console)
    chosen = describe_redteam(
        config,
        target=target,
        target_version=target_version,
        attacker=attacker,
        attacker_version=attacker_version,
        judge=judge,
        judge_version=judge_version,
        strategies=strategies,
        budget=budget,
        data=data,
        sample=sample,
        seed=seed,
        run_dir=run_dir,
    )
    chosen_dir = run_dir if run_dir is not None else chosen.run_dir
    if chosen_dir is None:
        raise UsageError("no run directory: pass run_dir, or set run_dir in the description")
    where = Path(chosen_dir)
    dataset = build_dataset(chosen.data)
    target_model = build_chat_model(chosen.target)
    attacker_model = build_chat_model(chosen.attacker)
    strategies_built = build_strategies(chosen.attack, target_model)
    instructions = instructions_of(chosen.attack)
    judge_built, scorer = build_redteam_judge(chosen, console)
    manifest = redteam_manifest(
        chosen, dataset, target_model, attacker_model, judge_built, strategies_built, instructions
    )
    _check_resumable(where, manifest)
    settings = Settings(
        budget=chosen.attack.budget,
        attacker_budget=chosen.attack.attacker_limit,
        attacker_attempts=chosen.attack.attacker_attempts,
        seed=chosen.attack.seed,
        instructions=instructions,
        retry_errors=chosen.executor.retry_errors,
    )
    roles = Roles(target=target_model, attacker=attacker_model, judge=judge_built)
    try:
        summary = run_sync(
            _attack(
                where,
                chosen,
                dataset,
                roles,
                strategies_built,
                settings,
                manifest,
                progress,
                console,
            )
        )
    finally:
        for engine in (
            scorer,
            *(getattr(m, "backend", None) for m in (target_model, attacker_model)),
        ):
            if engine is not None:
                release(engine)
    report = load_redteam(where)
    if tables:
        print_redteam(report, console, lang)
    for example in summary.error_examples:
        console.print(f"  [red]error:[/] {remote(example)}", highlight=False)
    errors = sum(s.outcomes.get("error", 0) for n, s in report.strategies.items() if n != "any")
    problem = None
    if errors:
        problem = IncompleteRun(
            f"{where}: {errors} attacks ended in error (a call failed; never counted as a "
            "success or a failure). Run again with --retry-errors to ask the failed calls again."
        )
    fail_or_warn([problem], strict, console)
    return report


redteam_async = async_twin(
    redteam,
    "`redteam` for async code: the models are called on the running event loop (async "
    "functions share it), the rest runs in a worker thread.",
)


def export_attacks(
    run_dir: str | Path,
    out: str | Path,
    *,
    every: bool = False,
    similarity: float = SIMILARITY,
    reference: str | Dataset | None = "official",
) -> ExportSummary:
    """Write the prompts of a red-team run that broke the target (with `every`, every prompt
    it answered) as a Flames-format prompt file, which `flames run --data` takes. Prompts that
    share `similarity` or more of their character bigrams with a prompt of `reference`
    ('official': Flames-1k; a path; a `load_dataset` result; None), with a goal's seed prompt,
    or with a prompt written before them are dropped and counted."""
    if not 0 <= similarity <= 1:
        raise UsageError("similarity must be between 0 and 1", param_hint="--similarity")
    if isinstance(reference, str):
        reference = None if reference == "none" else official_data.resolve(reference)
    return export_prompts(run_dir, out, reference, every=every, similarity=similarity)


def redteam_report(
    run_dir: str | Path,
    *,
    out: str | Path | None = None,
    html: bool = True,
    lang: Lang | str = Lang.en,
    tables: bool = True,
    console: Console | None = None,
) -> RedteamReport:
    """Write a red-team run's report files (redteam.json and, with `html`, report.html) to
    `out` (default RUN/report), in English or Chinese, print its tables (unless `tables` is
    False) and the files written, and return it. `flames.report` calls this for a red-team run."""
    console = console_or_default(console)
    report = load_redteam(run_dir)
    if tables:
        print_redteam(report, console, lang)
    out_dir = Path(out) if out is not None else Path(run_dir) / "report"
    remove_stale_partials(out_dir)
    written = [write_text(out_dir / "redteam.json", report.model_dump_json(indent=2))]
    if html:
        from flames.reporting.redteam_html import MAX_CHARS, render_redteam_html

        page = render_redteam_html(report, goal_views(run_dir, MAX_CHARS), lang)
        written.append(write_text(out_dir / "report.html", page))
    for path in written:
        console.print(f"wrote {path}")
    return report
