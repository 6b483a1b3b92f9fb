"""A run's batch jobs: what they stand at (`batch_status`) and stopping them (`cancel_batches`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flames._util.aio import run_sync
from flames.analysis.costs import BatchUsage, batch_usage
from flames.clients.batch import BatchApi, RemoteBatch, api_for_job
from flames.clients.chat import ApiError
from flames.errors import FlamesError
from flames.runs.records import BatchJob
from flames.runs.store import RunStore


@dataclass(frozen=True)
class BatchJobStatus:
    """One batch job as the run records it, and, when asked, as the provider reports it now."""

    job: BatchJob
    outcomes: dict[str, int]
    """Its requests by outcome ('ok', 'error', 'retry', 'pending') and their tokens."""
    remote: RemoteBatch | None = None
    """The provider's view now (`refresh`), for a submitted job."""
    problem: str | None = None
    """Why the provider could not be asked."""


@dataclass(frozen=True)
class BatchReport:
    """What `flames batch status` shows: every job, and each stage's totals and cost."""

    run_dir: Path
    jobs: list[BatchJobStatus]
    stages: list[BatchUsage]


def batch_status(run_dir: str | Path, *, refresh: bool = False) -> BatchReport:
    """The run's batch jobs as recorded (it reads the run only, and never waits for a writer);
    with `refresh`, each submitted job's status is also asked of its provider (nothing is
    written)."""
    with RunStore.open(run_dir) as store:
        jobs = store.batch_jobs()
        tallies = store.batch_tallies()
        stages = batch_usage(store)
    remote: dict[str, tuple[RemoteBatch | None, str | None]] = {}
    if refresh:
        asking = [j for j in jobs if j.batch_id and j.state == "submitted"]
        remote = run_sync(_refresh(asking))
    return BatchReport(
        run_dir=Path(run_dir),
        jobs=[
            BatchJobStatus(job, tallies.get(job.job, {}), *remote.get(job.job, (None, None)))
            for job in jobs
        ],
        stages=stages,
    )


async def _refresh(jobs: Sequence[BatchJob]) -> dict[str, tuple[RemoteBatch | None, str | None]]:
    found: dict[str, tuple[RemoteBatch | None, str | None]] = {}
    for job in jobs:
        assert job.batch_id is not None
        try:
            async with api_for_job(job) as api:
                found[job.job] = (await api.retrieve(job.batch_id), None)
        except (ApiError, FlamesError) as error:
            found[job.job] = (None, str(error))
    return found


@dataclass(frozen=True)
class Cancelled:
    """What cancelling did to one job."""

    job: BatchJob
    action: str
    """'cancelled' (never submitted: its requests are free again), 'cancelling' (the provider
    stops it; what it finished is collected by the next run), 'ended' (nothing left to stop),
    or 'unproven' (a batch that may be it was found, but is not proven to be: left alone)."""


def cancel_batches(run_dir: str | Path, *, wait: bool = False) -> list[Cancelled]:
    """Stop the run's unfinished batch jobs: those not yet submitted are dropped, submitted ones
    cancelled at the provider. It writes the run (waiting for another writer with `wait`). The
    next `generate` or `judge` collects what the cancelled jobs finished; the rest is stored
    as errors, to retry with --retry-errors."""
    with RunStore.open_writer(run_dir, "batch cancel", wait) as store:
        return run_sync(_cancel(store))


async def _cancel(store: RunStore) -> list[Cancelled]:
    done = []
    for job in store.batch_jobs(unfinished=True):
        if job.state in ("planning", "planned", "uploading", "uploaded"):
            job.state = "cancelled"  # no batch was made of it
            store.update_batch_job(job)
            done.append(Cancelled(job, "cancelled"))
            continue
        async with api_for_job(job) as api:
            done.append(await _cancel_submitted(store, api, job))
    return done


async def _cancel_submitted(store: RunStore, api: BatchApi, job: BatchJob) -> Cancelled:
    if job.state == "submitting":  # it may have been accepted: look before deciding
        found = await api.find(job)
        if not found:
            job.state = "cancelled"
            store.update_batch_job(job)
            return Cancelled(job, "cancelled")
        if api.name == "anthropic":  # a candidate only: never cancel another's batch
            return Cancelled(job, "unproven")
        job.batch_id, job.state = found[0].id, "submitted"
    assert job.batch_id is not None
    batch = await api.retrieve(job.batch_id)
    ended = batch.ended
    if not ended:
        batch = await api.cancel(job.batch_id)
    job.status, job.counts = batch.status, batch.counts
    store.update_batch_job(job)
    return Cancelled(job, "ended" if ended else "cancelling")
