"""Drive a backend over a run's pending requests, writing each answer as it arrives."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from flames._util.aio import in_thread, run_sync
from flames._util.progress import Tracker
from flames.clients.batch_jobs import (
    BatchJobs,
    BatchRequest,
    BatchResult,
    BatchSummary,
    refuse_live_while_batched,
)
from flames.errors import IncompleteRun
from flames.generation.base import Backend, Request, answer_from
from flames.generation.openai_api import OpenAIBackend
from flames.runs.records import Answer, is_clamped
from flames.runs.store import RunStore


@dataclass
class GenerationSummary:
    ok: int = 0
    errors: int = 0
    stopped_early: bool = False
    """True when the error budget was spent and the run stopped before finishing."""
    usage: dict[str, int] = field(
        default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0}
    )
    error_examples: list[str] = field(default_factory=list)
    error_budget: int | None = None
    """Failures allowed before the run stops."""
    clamped: int = 0
    """Answers cut for length before --max-tokens: the server lowered the limit (is_clamped)."""
    batch: BatchSummary | None = None
    """What went through the provider's batch API, when it was used."""


def summary_lines(summary: GenerationSummary, max_tokens: int | None) -> list[str]:
    """What a generation pass tells the user (rich markup; error examples not included)."""
    lines = [
        f"generated {summary.ok} answers, {summary.errors} errors; tokens: "
        f"{summary.usage['prompt_tokens']} in, {summary.usage['completion_tokens']} out"
    ]
    if summary.batch is not None:
        lines.append(batch_line(summary.batch))
    if summary.clamped:
        lines.append(
            f"[yellow]warning:[/] {summary.clamped} answers were cut by the server before "
            f"--max-tokens {max_tokens} (finish 'length' with fewer tokens): it lowered the "
            "limit, usually to fit its context window. Lower --max-tokens or serve a longer "
            "context; reports count these answers as clamped."
        )
    return lines


def batch_line(batch: BatchSummary) -> str:
    """What a pass over batch jobs did, in one line."""
    jobs = "1 batch job" if batch.jobs == 1 else f"{batch.jobs} batch jobs"
    again = f", {batch.reattached} reattached" if batch.reattached else ""
    return f"{jobs}{again}: {batch.planned} requests sent, {batch.results} results collected"


def incomplete_run(
    run_dir: object, summary: GenerationSummary, failed: int
) -> IncompleteRun | None:
    """The error for a pass that stopped early or left `failed` answers stored as errors."""
    if summary.stopped_early:
        plural = "s" if summary.errors != 1 else ""
        return IncompleteRun(
            f"{run_dir}: stopped after {summary.errors} failure{plural}, the error budget "
            f"(--max-errors {summary.error_budget}); {failed} answers are stored as errors. "
            "Fix the cause, then run the same command with --retry-errors to retry them and "
            "resume."
        )
    if failed:
        return IncompleteRun(
            f"{run_dir}: {failed} answers failed and are recorded as errors (never scored). "
            "Run again with --retry-errors to retry only those."
        )
    return None


def default_error_budget(pending: int) -> int:
    """Stop after this many failures: 10% of the work, but never fewer than 5."""
    return max(5, pending // 10)


def first_batch(backend: Backend) -> int:
    """Answers that arrive together first: a local model's batch (vLLM's chunk), the requests
    an API backend has in flight."""
    for name in ("batch_size", "chunk_size", "concurrency"):
        size = getattr(backend, name, None)
        if isinstance(size, int) and size > 0:
            return size
    return backend.info.concurrency or 1


async def _generate(
    store: RunStore,
    backend: Backend,
    requests: Iterable[Request],
    total: int,
    max_errors: int,
    progress: bool,
) -> GenerationSummary:
    summary = GenerationSummary(error_budget=max_errors)
    max_tokens = backend.info.decoding.max_tokens
    batch = first_batch(backend)
    load = getattr(backend, "load", None)  # a local model: loaded first, so that the
    if callable(load):  # estimate after the first batch counts generation only
        await in_thread(load)
    with Tracker("generate", total, enabled=progress, first_batch=batch, fields=("errors",)) as bar:
        stream = backend.stream(requests)
        try:
            async for answer in stream:
                store.record_answers([answer])
                _count(summary, answer, max_tokens)
                bar.advance(errors=summary.errors)
                if answer.status == "error" and summary.errors >= max_errors:
                    summary.stopped_early = True
                    break
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
    return summary


def _count(summary: GenerationSummary, answer: Answer, max_tokens: int | None) -> None:
    if answer.status == "ok":
        summary.ok += 1
        summary.usage["prompt_tokens"] += answer.prompt_tokens or 0
        summary.usage["completion_tokens"] += answer.completion_tokens or 0
        summary.clamped += is_clamped(answer, max_tokens)
    else:
        summary.errors += 1
        if len(summary.error_examples) < 3 and answer.error:
            summary.error_examples.append(answer.error)


BATCH_STAGE = "generate"
"""The stage name of a run's generation batch jobs."""


async def _generate_in_batches(
    store: RunStore, backend: OpenAIBackend, retry_errors: bool, progress: bool
) -> GenerationSummary:
    """Every pending answer through the provider's batch API: jobs left unfinished by an
    earlier pass are reattached, the rest planned into new jobs (`BatchJobs`)."""
    assert backend.batch is not None
    summary = GenerationSummary()
    max_tokens = backend.info.decoding.max_tokens
    requests = (  # the very bodies the live backend sends, earlier turns included
        BatchRequest(
            item.id, sample, backend.request_body(Request(item, sample, item.conversation))
        )
        for item, sample in store.pending_answers(retry_errors)
    )

    def record(results: list[BatchResult]) -> list[str]:
        answers = [answer_from(r.item_id, r.sample, r.reply) for r in results]
        store.record_answers(answers)
        for answer in answers:
            _count(summary, answer, max_tokens)
        return [answer.status for answer in answers]

    jobs = BatchJobs(store, BATCH_STAGE, backend.batch_api(), backend.batch, progress)
    summary.batch = await jobs.run(requests, record)
    return summary


async def run_generation_async(
    store: RunStore,
    backend: Backend,
    retry_errors: bool = False,
    max_errors: int | None = None,
    progress: bool = True,
) -> GenerationSummary:
    """Generate every pending answer of the run (failed ones too, with `retry_errors`); through
    the provider's batch API for a backend set to (jobs an earlier pass left unfinished are
    collected first)."""
    if isinstance(backend, OpenAIBackend) and backend.batch is not None:
        return await _generate_in_batches(store, backend, retry_errors, progress)
    refuse_live_while_batched(store, BATCH_STAGE)
    total = store.count_pending_answers(retry_errors)
    if not total:
        return GenerationSummary()
    # Streamed from the store page by page: a backend that takes requests as it goes holds
    # only what is in flight.
    pending = (
        Request(item, sample, history=item.conversation)  # a multi-turn prompt's earlier turns
        for item, sample in store.pending_answers(retry_errors)
    )
    budget = default_error_budget(total) if max_errors is None else max_errors
    return await _generate(store, backend, pending, total, budget, progress)


def run_generation(
    store: RunStore,
    backend: Backend,
    retry_errors: bool = False,
    max_errors: int | None = None,
    progress: bool = True,
) -> GenerationSummary:
    """`run_generation_async` from synchronous code, also where an event loop is running."""
    return run_sync(run_generation_async(store, backend, retry_errors, max_errors, progress))
