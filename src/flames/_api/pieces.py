"""The pieces an `Evaluation` describes, built and checked: the prompt set, the backend, the
scorer or judges, and the steps that generate and score into a run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from flames._config import (
    DataConfig,
    Evaluation,
    ExecutorConfig,
    JudgeConfig,
    ScorerConfig,
    TargetConfig,
    load_evaluation,
    validated,
)
from flames._util.callables import qualified_name
from flames._util.terminal import inline, remote
from flames.analysis.costs import batch_usage, cost_text
from flames.clients.chat import ChatClient, ClientOptions
from flames.data import official as official_data
from flames.data.dataset import Dataset
from flames.errors import FlamesError, IncompleteRun, UsageError
from flames.generation import Backend, GenerationSummary, run_generation_async
from flames.generation.runner import BATCH_STAGE, batch_line, incomplete_run, summary_lines
from flames.reporting.i18n import Lang, t
from flames.reporting.report import batch_note
from flames.runs.records import (
    DatasetInfo,
    Decoding,
    GeneratorInfo,
    Price,
    RunManifest,
    check_scorer_name,
)
from flames.runs.store import SCHEMA_VERSION, UPGRADES, RunStore
from flames.scoring.runner import Scorer, ScoringSummary, run_scoring

if TYPE_CHECKING:
    from flames.clients.chat_model import ChatModel
    from flames.execution.distributed import RayOptions
    from flames.generation.transformers_local import TransformersBackend
    from flames.generation.vllm_local import VLLMBackend
    from flames.scoring.scorer.card import Card


ModelLike = str | Callable[..., Any]
"""A model name (or path, or hub id), or a Python function from a prompt to text."""

_default_console: Console | None = None


def console_or_default(console: Console | None) -> Console:
    global _default_console
    if console is not None:
        return console
    if _default_console is None:
        _default_console = Console(emoji=False)
    return _default_console


# -- the description ---------------------------------------------------------------------------


def judge_config(judge: ModelLike | JudgeConfig, version: str | None) -> JudgeConfig:
    if isinstance(judge, JudgeConfig):
        return judge
    if callable(judge):
        return JudgeConfig(function=judge, version=version)
    return JudgeConfig(model=judge)


def describe(
    evaluation: Evaluation | str | Path | None = None,
    *,
    model: ModelLike | None = None,
    version: str | None = None,
    backend: str | None = None,
    base_url: str | None = None,
    judge: ModelLike | JudgeConfig | Sequence[ModelLike | JudgeConfig] | None = None,
    judge_version: str | None = None,
    data: str | None = None,
    sample: int | None = None,
    run_dir: str | Path | None = None,
) -> Evaluation:
    """An `Evaluation` from an existing one (or a TOML/YAML file), with the given settings
    changed. `model` may be a function (then `version` is recorded with its name); `judge` a
    chat model name, a function, a `JudgeConfig`, or a list of them. Errors name the field."""
    if isinstance(evaluation, str | Path):
        evaluation = load_evaluation(evaluation)
    settings: dict[str, Any] = evaluation.settings() if evaluation else {}
    target: dict[str, Any] = settings.get("target") or {}
    if callable(model):
        target = {**target, "backend": "callable", "function": model}
        target["model"] = qualified_name(model)
    elif model is not None:
        target = {**target, "model": model, "function": None}
    for key, value in (("version", version), ("backend", backend), ("base_url", base_url)):
        if value is not None:
            target[key] = value
    if target:
        settings["target"] = target
    if judge is not None:
        judges = judge if isinstance(judge, Sequence) and not isinstance(judge, str) else [judge]
        settings["judges"] = [judge_config(j, judge_version) for j in judges]
        settings["scorer"] = None
    chosen: dict[str, Any] = settings.get("data") or {}
    if data is not None:
        chosen["source"] = data
    if sample is not None:
        chosen["sample"] = sample
    settings["data"] = chosen
    if run_dir is not None:
        settings["run_dir"] = str(run_dir)
    return validated(Evaluation, settings)


CPU_MAX_TOKENS = 256
"""Answer length of a local model on CPU where none is set (1024 elsewhere)."""
CPU_BATCH_SIZE = 4
"""Prompts per batch of a local transformers model on CPU where none is set (8 elsewhere)."""


def _stored_generator(run_dir: Path) -> GeneratorInfo | None:
    """The generator recorded in the run at `run_dir`, if there is a readable one."""
    if not RunStore.exists(run_dir):
        return None
    try:
        with RunStore.open(run_dir) as store:
            return store.manifest.generator
    except FlamesError:
        return None  # the step that opens it to write says what is wrong


def device_defaults(evaluation: Evaluation, run_dir: Path, console: Console) -> Evaluation:
    """The evaluation with a local model's answer length and batch size chosen where they were
    left unset: a run's own when it resumes, else smaller on CPU (`CPU_MAX_TOKENS`,
    `CPU_BATCH_SIZE`), where the defaults for a GPU would take hours. Chosen values are
    recorded in the manifest like any setting, and said."""
    target = evaluation.target
    if target.backend not in ("transformers", "vllm"):
        return evaluation
    tokens_unset = "max_tokens" not in target.decoding.model_fields_set
    batch_unset = target.backend == "transformers" and "batch_size" not in target.model_fields_set
    if not (tokens_unset or batch_unset):
        return evaluation
    max_tokens, batch_size = target.decoding.max_tokens, target.batch_size
    stored = _stored_generator(run_dir)
    if stored is not None and (stored.backend, stored.model) == (target.backend, target.model):
        max_tokens = stored.decoding.max_tokens if tokens_unset else max_tokens
        batch_size = (stored.concurrency or batch_size) if batch_unset else batch_size
    else:
        from flames.generation.transformers_local import pick_device

        if not pick_device(target.device).startswith("cpu"):
            return evaluation
        max_tokens = CPU_MAX_TOKENS if tokens_unset else max_tokens
        batch_size = CPU_BATCH_SIZE if batch_unset else batch_size
        chosen = [f"--max-tokens {max_tokens}"] * tokens_unset
        chosen += [f"--batch-size {batch_size}"] * batch_unset
        console.print(
            f"note: a local model on CPU: {' and '.join(chosen)} unless you set "
            f"{'them' if len(chosen) > 1 else 'it'} (the defaults for a GPU would take hours)",
            highlight=False,
        )
    decoding = target.decoding.model_copy(update={"max_tokens": max_tokens})
    changed = target.model_copy(update={"decoding": decoding, "batch_size": batch_size})
    return evaluation.model_copy(update={"target": changed})


def run_dir_of(evaluation: Evaluation, run_dir: str | Path | None) -> Path:
    chosen = run_dir if run_dir is not None else evaluation.run_dir
    if chosen is None:
        raise UsageError("no run directory: pass run_dir, or set run_dir in the evaluation")
    return Path(chosen)


# -- building the pieces -----------------------------------------------------------------------


def build_dataset(config: DataConfig) -> Dataset:
    dataset = official_data.resolve(config.source)
    try:
        dataset = dataset.filter(config.dimensions, config.subcomponents)
        if config.sample is not None:
            dataset = dataset.sample(config.sample, seed=config.sample_seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return dataset


def ray_options(executor: ExecutorConfig) -> RayOptions | None:
    if executor.kind == "local":
        return None
    from flames.execution.distributed import RayOptions

    return RayOptions(
        address=executor.address,
        replicas=executor.replicas,
        gpus_per_replica=executor.gpus_per_replica,
    )


def client_options(target: TargetConfig) -> ClientOptions:
    """The API client's settings of a model behind an OpenAI-compatible API."""
    return ClientOptions(
        base_url=target.base_url,
        api_key_env=target.api_key_env,
        concurrency=target.concurrency,
        requests_per_minute=target.rpm,
        timeout=target.timeout,
        max_attempts=target.max_attempts,
        keep_alive=target.keep_alive,
        max_reply_bytes=target.max_reply_bytes,
    )


def build_backend(target: TargetConfig) -> Backend:
    decoding = Decoding(**target.decoding.model_dump())
    if target.backend == "callable":
        from flames.generation.callable import CallableBackend

        assert target.function is not None  # the description resolves it
        try:
            return CallableBackend(
                target.function,
                version=target.version,
                input=target.input,
                decoding=decoding,
                concurrency=target.concurrency,
                name=target.model,
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if target.backend == "openai":
        from flames.generation.openai_api import OpenAIBackend

        return OpenAIBackend(
            target.model,
            decoding=decoding,
            batch=target.batch_settings(),
            **client_options(target),
        )
    return local_backend(target)


def local_backend(target: TargetConfig) -> TransformersBackend | VLLMBackend:
    """The transformers or vLLM backend a target names; its model is checked before any run
    directory is written (`flames.generation.model_source`)."""
    from flames.generation.model_source import check_model_source

    decoding = Decoding(**target.decoding.model_dump())
    backend: TransformersBackend | VLLMBackend
    if target.backend == "vllm":
        from flames.generation.vllm_local import VLLMBackend

        try:
            backend = VLLMBackend(target.model, decoding, target.dtype, target.engine_args)
        except ValueError as exc:
            raise UsageError(str(exc), param_hint="--vllm-arg") from None
        check_model_source(target.model)
        return backend
    from flames.generation.transformers_local import TransformersBackend

    check_model_source(target.model, target.gguf_file)
    return TransformersBackend(
        target.model,
        decoding=decoding,
        gguf_file=target.gguf_file,
        device=target.device,
        dtype=target.dtype,
        batch_size=target.batch_size,
    )


def build_chat_model(config: TargetConfig) -> ChatModel:
    """A model as one role of a conversation (`flames.clients.chat_model.ChatModel`: an
    attacker, a local judge, ...): an API model, a local transformers or vLLM model (concurrent
    chats batched), or a function."""
    decoding = Decoding(**config.decoding.model_dump())
    if config.backend == "openai":
        from flames.clients.chat_model import ApiChatModel

        return ApiChatModel(config.model, decoding, **client_options(config))
    if config.backend == "callable":
        from flames.generation.chat_model import CallableChatModel

        assert config.function is not None  # the description resolves it
        if config.input == "prompt" and decoding.system_prompt:
            raise UsageError(
                "a system prompt reaches a function only with input='messages'",
                param_hint="--system-prompt",
            )
        return CallableChatModel(
            config.function,
            input=config.input,
            version=config.version,
            name=config.model,
            decoding=decoding,
        )
    from flames.generation.chat_model import LocalChatModel

    # transformers batches what it is given; vLLM schedules as many chats as are in flight.
    batch = config.batch_size if config.backend == "transformers" else config.concurrency
    return LocalChatModel(local_backend(config), batch_size=batch)


def backend_on(backend: Backend, ray: RayOptions | None) -> Backend:
    if ray is None:
        return backend
    from flames.execution.distributed import RayGenerator
    from flames.generation.transformers_local import TransformersBackend

    if not isinstance(backend, TransformersBackend):
        raise UsageError(
            "--executor ray runs the transformers backend; API backends are already concurrent "
            "and vLLM spreads over GPUs itself (--vllm-arg tensor_parallel_size=N)",
            param_hint="--executor",
        )
    return RayGenerator(backend, replace(ray, batch_size=backend.batch_size))


def trained_card(model: str) -> Card | None:
    """The card of a scorer trained by flames, None for any other checkpoint."""
    from flames.scoring.scorer.card import read_card

    return read_card(Path(model)) if Path(model).is_dir() else None


def official_scorer(config: ScorerConfig, ray: RayOptions | None) -> Scorer:
    """The official scorer, or a scorer trained by flames (the folder's card says which)."""
    from flames.scoring.scorer.card import TRAINED_PREFIX

    if not config.name.startswith(TRAINED_PREFIX):  # a trained scorer checks its own name
        check_scorer_name(config.name, "official")
    from flames.scoring.scorer.official import OfficialScorer, ScorerSettings
    from flames.scoring.scorer.tokenizer import Truncation

    max_length, truncation = config.max_length, config.truncation
    card = trained_card(config.model)
    if card is not None:  # a trained scorer reads its inputs as it was trained, unless told
        given = config.model_fields_set
        max_length = config.max_length if "max_length" in given else card.max_length
        truncation = config.truncation if "truncation" in given else card.truncation
    settings = ScorerSettings(
        model=config.model,
        revision=config.revision,
        max_length=max_length,
        truncation=Truncation(truncation),
        dtype=config.dtype,
        device=config.device,
        token_budget=config.token_budget,
        max_batch=config.max_batch,
        name=config.name,
    )
    if config.engine == "vllm":
        if ray is not None:
            raise UsageError(
                "--executor ray runs the transformers scorer, not vLLM's", param_hint="--executor"
            )
        from flames.scoring.scorer.vllm_engine import VLLMScorer

        try:
            return VLLMScorer(settings, config.engine_args)
        except ValueError as exc:
            raise UsageError(str(exc), param_hint="--scorer-vllm-arg") from None
    scorer = OfficialScorer(settings)
    if ray is None:
        return scorer
    from flames.execution.distributed import RayScorer

    return RayScorer(scorer, ray)


def build_judge(config: JudgeConfig) -> Scorer:
    if config.name is not None:
        check_scorer_name(
            config.name, "callable-judge" if config.kind == "callable" else "llm-judge"
        )
    if config.kind == "callable":
        from flames.scoring.callable_judge import CallableJudge

        assert config.function is not None  # the description resolves it
        return CallableJudge(
            config.function,
            version=config.version,
            name=config.scorer_name,
            concurrency=config.concurrency,
        )
    from flames.scoring.judge import LLMJudge, judge_decoding

    if config.backend != "openai":  # a local judge, in this process
        local = TargetConfig(
            model=config.model,
            backend=config.backend,
            gguf_file=config.gguf_file,
            device=config.device,
            dtype=config.dtype,
            batch_size=config.batch_size,
            engine_args=config.engine_args,
            concurrency=config.concurrency,
            decoding=judge_decoding(config.max_tokens).model_dump(),
        )
        return LLMJudge(
            build_chat_model(local),
            parse_attempts=config.parse_attempts,
            max_tokens=config.max_tokens,
            name=config.scorer_name,  # judge:MODEL as given: a hub id, a .gguf file
            concurrency=config.concurrency,
        )
    return LLMJudge(
        config.model,
        base_url=config.base_url,
        api_key_env=config.api_key_env,
        concurrency=config.concurrency,
        requests_per_minute=config.rpm,
        timeout=config.timeout,
        max_attempts=config.max_attempts,
        keep_alive=config.keep_alive,
        max_reply_bytes=config.max_reply_bytes,
        parse_attempts=config.parse_attempts,
        max_tokens=config.max_tokens,
        json_mode=config.json_mode,
        name=config.scorer_name,
        batch=config.batch_settings(),
    )


def vet(scorer: Scorer, skip: bool, console: Console) -> None:
    """The sanity check of an LLM judge, before its verdicts count (flames.scoring.judge_check)."""
    from flames.scoring.judge import LLMJudge
    from flames.scoring.judge_check import vet_judge

    if isinstance(scorer, LLMJudge):
        console.print(vet_judge(scorer, skip), highlight=False)


def build_scorers(evaluation: Evaluation, ray: RayOptions | None) -> list[Scorer]:
    if evaluation.judges:
        return [build_judge(j) for j in evaluation.judges]
    assert evaluation.scorer is not None  # the description defaults it
    return [official_scorer(evaluation.scorer, ray)]


def release(engine: object) -> None:
    """Stop a vLLM engine once its work is done, so the next one (or the scorer) has the GPU."""
    close = getattr(engine, "close", None)
    if callable(close):
        close()


# -- the steps ---------------------------------------------------------------------------------


def announce_upgrade(store: RunStore, console: Console) -> None:
    """Say so when opening the run for writing upgraded its store format."""
    if store.upgraded_from is not None:
        gains = [UPGRADES[v] for v in range(store.upgraded_from + 1, SCHEMA_VERSION + 1)]
        console.print(
            f"upgraded {inline(store.run_dir)} from store format {store.upgraded_from} to "
            f"{SCHEMA_VERSION} ({'; '.join(gains)})",
            highlight=False,
        )


def open_run(run_dir: str | Path, command: str, wait: bool, console: Console) -> RunStore:
    """An existing run, opened to write it (its lock held until it is closed)."""
    store = RunStore.open_writer(run_dir, command, wait)
    announce_upgrade(store, console)
    return store


def run_manifest(evaluation: Evaluation, dataset: Dataset, backend: Backend) -> RunManifest:
    environment = getattr(backend, "environment", None)  # local backends: libraries, device
    return RunManifest(
        dataset=DatasetInfo.of(dataset),
        generator=backend.info,
        environment=environment() if callable(environment) else {},
        evaluation=evaluation.record(),
    )


async def generate_into(
    run_dir: Path,
    evaluation: Evaluation,
    dataset: Dataset,
    backend: Backend,
    progress: bool,
    console: Console,
    lang: Lang | str = Lang.en,
) -> tuple[GenerationSummary, IncompleteRun | None]:
    """Generate into the run (created or resumed); the error, if answers failed, is returned.
    The summary line is in `lang`."""
    manifest = run_manifest(evaluation, dataset, backend)
    executor = evaluation.executor
    created = not RunStore.exists(run_dir)
    store = RunStore.create_or_resume(
        run_dir, manifest, dataset.items, command="generate", wait=executor.wait
    )
    try:
        announce_upgrade(store, console)
        try:
            summary = await run_generation_async(
                store, backend, executor.retry_errors, executor.max_errors, progress
            )
        finally:
            release(backend)
        failed = store.count_answers("error")
        spent = spending(store, BATCH_STAGE, summary.batch is not None, evaluation.target.price)
    except BaseException:
        if created:  # nothing stored yet: leave no run behind, so the next attempt starts clean
            store.discard_if_empty()
        raise
    finally:
        store.close()
    lines = summary_lines(summary, backend.info.decoding.max_tokens)
    if Lang(lang) is Lang.zh:  # the first line is the count; a warning may follow
        usage = summary.usage
        lines[0] = t(
            "generated",
            lang,
            ok=summary.ok,
            errors=summary.errors,
            tokens_in=usage["prompt_tokens"],
            tokens_out=usage["completion_tokens"],
        )
    for line in lines:
        console.print(line)
    for line in spent(summary.usage):
        console.print(line, highlight=False)
    print_repairs(backend, console)
    for example in summary.error_examples:
        console.print(f"  [red]error:[/] {remote(example)}", highlight=False)
    return summary, incomplete_run(run_dir, summary, failed)


def spending(
    store: RunStore, stage: str, batched: bool, price: Price | None
) -> Callable[[dict[str, int]], list[str]]:
    """What a pass cost, to print once it is done: a batch stage's requests, tokens and cost
    (flames.analysis.costs); a live pass's cost at `price`, and what a batch API would charge."""
    usage = next((u for u in batch_usage(store) if u.stage == stage), None) if batched else None

    def lines(tokens: dict[str, int]) -> list[str]:
        if usage is not None:
            return [inline(batch_note(usage))]
        if price is None or not any(tokens.values()):
            return []
        counted = (tokens.get("prompt_tokens", 0), tokens.get("completion_tokens", 0))
        live, batch = price.cost(*counted), price.cost(*counted, batch=True)
        return [
            f"cost {cost_text(live)} at the live price (through a batch API, --batch: "
            f"{cost_text(batch)})"
        ]

    return lines


def score_into(
    store: RunStore,
    scorer: Scorer,
    retry_errors: bool,
    progress: bool,
    console: Console,
    lang: Lang | str = Lang.en,
) -> tuple[ScoringSummary, IncompleteRun | None]:
    """Score what is pending; the problem to report when verdicts failed, else None. The
    summary line is in `lang`."""
    try:
        summary = run_scoring(store, scorer, retry_errors, progress)
    finally:
        release(scorer)
    name = scorer.manifest.name
    console.print(
        t(
            "scored_with",
            lang,
            n=summary.scored,
            name=inline(name),
            errors=summary.errors,
            truncated=summary.truncated,
        ),
        highlight=False,
    )
    if summary.batch is not None:
        console.print(batch_line(summary.batch))
        for line in spending(store, name, True, None)({}):
            console.print(line, highlight=False)
    print_repairs(scorer, console)
    failed = store.failed_verdicts(name)
    if not failed:
        return summary, None
    return summary, IncompleteRun(
        f"{store.run_dir}: {failed} verdicts of {name} failed and are recorded as errors "
        "(never counted as scores). Run again with --retry-errors to retry only those."
    )


def print_repairs(model: object, console: Console) -> None:
    """Say what was repaired in the replies a model's API client kept (`ChatClient.repairs`):
    lone surrogates replaced, token counts recorded as unknown, ..."""
    clients = [getattr(m, "client", None) for m in (model, getattr(model, "model", None))]
    client = next((c for c in clients if isinstance(c, ChatClient)), None)  # a backend's, a judge's
    if client is None or not client.repairs:
        return
    parts = "; ".join(f"{n} with {what}" for what, n in sorted(client.repairs.items()))
    console.print(f"[yellow]note:[/] replies kept after a repair: {parts}", highlight=False)


def fail_or_warn(problems: Sequence[IncompleteRun | None], strict: bool, console: Console) -> None:
    """With `strict`, raise the first problem (after printing the others); else warn of each."""
    found = [p for p in problems if p is not None]
    if strict and found:
        for other in found[1:]:
            console.print(f"[red]error:[/] {remote(str(other))}", highlight=False)
        raise found[0]
    for problem in found:
        console.print(f"[yellow]warning:[/] {remote(str(problem))}", highlight=False)
