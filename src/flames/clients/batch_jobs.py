"""A run's batch jobs: written to the run store before anything is sent, submitted once, polled,
collected; a killed process resumes by reattaching to the same jobs.

A job's life (`BATCH_STATES`), each step recorded before the next is taken:

- planning -> planned: its requests, each with a custom_id naming the run, the job, the item
  and the sample, are written to the store. A planning that was cut is dropped: nothing of it
  was sent.
- uploading -> uploaded (OpenAI): its JSONL file goes up under a name holding the job's id. A
  cut upload is looked up by that name before the file is sent again.
- submitting -> submitted: the batch is created. If the reply is lost or the process killed
  before its id is recorded, the job is looked up on the server before anything is sent again:
  by its input file (OpenAI: exact), or by its size and time (Anthropic: a candidate is proved
  by the custom_ids of its results, and one that is someone else's is left alone).
- submitted -> collected: polled until it ends, then its results are joined to its requests by
  custom_id and handed to the caller to store; a request with no result (expired, cancelled, or
  a batch refused as a whole) is stored as an error. A cut collection downloads again and skips
  the requests already settled.

A request is in at most one unfinished job: those in flight are never planned again, so a
request is sent again only after it finished in error or expired (and only when asked to).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from flames._util.progress import Tracker
from flames._util.terminal import inline
from flames.clients.batch import BatchApi, BatchSettings, RemoteBatch, Uncertain, api_for_job
from flames.clients.chat import ApiError, Reply
from flames.errors import FlamesError, UsageError
from flames.runs.records import BatchJob
from flames.runs.store import RunStore

T = TypeVar("T")

CHUNK = 500
"""Requests written (or results handed over) at a time."""
JOB_ID_BYTES = 4
JOB_ID_SHAPE = "0" * 2 * JOB_ID_BYTES
"""A job's id is 8 hex digits: its requests' custom_ids are RUN-JOB-POSITION-SAMPLE (the run's
tag, the job, the item's position in the run, the answer's sample), 64 characters at most."""


@dataclass(frozen=True)
class BatchRequest:
    """One request of a batch: the chat-completions body for answer `sample` of `item_id`."""

    item_id: str
    sample: int
    body: dict[str, Any]


@dataclass(frozen=True)
class BatchResult:
    """A request's result: the request as sent, and the reply (or error) it got."""

    item_id: str
    sample: int
    body: dict[str, Any]
    reply: Reply


Record = Callable[[list[BatchResult]], list[str]]
"""Stores results (as answers, verdicts ...) and gives each one's outcome: 'ok', 'error', or
'retry' (a judge's answer it will ask again)."""


@dataclass
class BatchSummary:
    """What one pass over a stage's batch jobs did."""

    planned: int = 0
    """Requests put in new jobs."""
    jobs: int = 0
    """Jobs driven to their end (new and reattached)."""
    reattached: int = 0
    """Jobs found unfinished in the run and taken up again."""
    results: int = 0
    """Results stored (each request once)."""


def refuse_live_while_batched(store: RunStore, stage: str) -> None:
    """UsageError when some of `stage`'s requests are in batch jobs not collected yet: asking
    them live would pay for them twice."""
    unfinished = store.batch_jobs(stage, unfinished=True)
    if unfinished:
        waiting = sum(job.requests for job in unfinished)
        raise UsageError(
            f"{store.run_dir}: {waiting} requests of {stage} are in {len(unfinished)} batch "
            "jobs not collected yet; asked live they would be paid twice. Run the same command "
            f"with --batch to collect them (`flames batch cancel {store.run_dir}` stops them "
            "first)."
        )


class BatchJobs:
    """One stage's batch jobs in one run (`stage`: 'generate', or a judge's name)."""

    def __init__(
        self,
        store: RunStore,
        stage: str,
        api: BatchApi,
        settings: BatchSettings,
        progress: bool = True,
    ):
        self.store = store
        self.stage = stage
        self.api = api
        self.settings = settings
        self.progress = progress
        self.max_requests = min(settings.max_requests or api.limits.requests, api.limits.requests)
        self._where = (api.name, api.base_url, api.api_key_env)
        self._apis: dict[tuple[str, str, str], BatchApi] = {}
        self._done: dict[str, int] = {}
        self._bar: Tracker | None = None

    # -- the whole pass ------------------------------------------------------------------------

    async def run(self, requests: Iterable[BatchRequest], record: Record) -> BatchSummary:
        """Put `requests` not already in flight into new jobs, then drive every unfinished job
        of the stage (new and reattached) to its end, handing results to `record` as they are
        downloaded."""
        summary = BatchSummary()
        self._drop_cut_planning()
        reattached = self.store.batch_jobs(self.stage, unfinished=True)
        summary.reattached = len(reattached)
        in_flight = self.store.batch_keys_in_flight(self.stage)
        fresh = (r for r in requests if (r.item_id, r.sample) not in in_flight)
        summary.planned = self._plan(fresh, record)
        jobs = self.store.batch_jobs(self.stage, unfinished=True)
        summary.jobs = len(jobs)
        if not jobs:
            return summary
        self._apis = {}
        async with AsyncExitStack() as stack:
            for job in jobs:  # a job reattached is driven through the API it was sent to
                where = (job.api, job.base_url, job.api_key_env)
                if where not in self._apis:
                    api = api_for_job(job, self.api) if where != self._where else self.api
                    self._apis[where] = await stack.enter_async_context(api)
            with self._progress(jobs):
                try:
                    async with asyncio.TaskGroup() as group:
                        tasks = [group.create_task(self._drive(job, record)) for job in jobs]
                except BaseExceptionGroup as failed:  # the first job to fail says why
                    raise failed.exceptions[0] from None
        summary.results = sum(task.result() for task in tasks)
        return summary

    def _drop_cut_planning(self) -> None:
        for job in self.store.batch_jobs(self.stage, unfinished=True):
            if job.state == "planning":  # killed while writing its requests: never sent
                self.store.drop_batch_job(job.job)

    # -- planning ------------------------------------------------------------------------------

    def _plan(self, requests: Iterator[BatchRequest], record: Record) -> int:
        """Write the requests into new jobs, split at the provider's limits; how many."""
        limits = self.api.limits
        planned = 0
        job: BatchJob | None = None
        line_bytes = 0
        tag = self.store.run_tag
        while chunk := list(islice(requests, CHUNK)):
            positions = self.store.item_positions(r.item_id for r in chunk)
            rows: list[tuple[str, str, int, str]] = []
            for request in chunk:
                body = json.dumps(request.body, ensure_ascii=False)
                key = f"{positions.get(request.item_id, 0)}-{request.sample}"
                # Every job id has the same length: the size does not depend on the job.
                size = len(self.api.request_line(f"{tag}-{JOB_ID_SHAPE}-{key}", request.body))
                over_line = limits.line_bytes is not None and size > limits.line_bytes
                if over_line or self.api.frame(1, size) > limits.bytes:
                    too_big = f"a request of {size} bytes: more than the batch API takes"
                    self._hand_over(
                        [(request.item_id, request.sample, body, Reply(error=too_big))], record
                    )
                    continue
                if job is not None and (
                    job.requests >= self.max_requests
                    or self.api.frame(job.requests + 1, line_bytes + size) > limits.bytes
                ):
                    self.store.add_batch_requests(job.job, rows)
                    rows = []
                    self._close_plan(job, line_bytes)
                    job = None
                if job is None:
                    job, line_bytes = self._new_job(), 0
                rows.append((f"{tag}-{job.job}-{key}", request.item_id, request.sample, body))
                job.requests += 1
                line_bytes += size
                planned += 1
            if job is not None:
                self.store.add_batch_requests(job.job, rows)
        if job is not None:
            self._close_plan(job, line_bytes)
        return planned

    def _new_job(self) -> BatchJob:
        taken = {j.job for j in self.store.batch_jobs()}
        name = secrets.token_hex(JOB_ID_BYTES)
        while name in taken:
            name = secrets.token_hex(JOB_ID_BYTES)
        job = BatchJob(
            job=name,
            stage=self.stage,
            api=self.api.name,
            base_url=self.api.base_url,
            api_key_env=self.api.api_key_env,
            state="planning",
            requests=0,
            bytes=0,
            price=self.settings.price,
        )
        self.store.add_batch_job(job)
        return job

    def _close_plan(self, job: BatchJob, line_bytes: int) -> None:
        job.bytes = self.api.frame(job.requests, line_bytes)
        job.state = "planned"
        self.store.update_batch_job(job)

    # -- one job -------------------------------------------------------------------------------

    async def _drive(self, job: BatchJob, record: Record) -> int:
        """Take `job` from wherever it stands to collected; the results stored."""
        stored = 0
        while job.state != "collected":
            if job.state == "submitted":
                stored += await self._collect(job, await self._wait(job), record)
            else:
                await self._submit(job)
        return stored

    def _api_of(self, job: BatchJob) -> BatchApi:
        """The batch API the job was (or is to be) sent to."""
        return self._apis[(job.api, job.base_url, job.api_key_env)]

    @contextmanager
    def _job_file(self, job: BatchJob) -> Iterator[Path]:
        """The job's requests as the provider takes them, in a temporary file."""
        api = self._api_of(job)
        fd, name = tempfile.mkstemp(prefix=f"flames-{job.job}-", suffix=".jsonl")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                lines = (
                    api.request_line(custom_id, json.loads(body))
                    for custom_id, _, _, body, _ in self.store.batch_requests(job.job)
                )
                size = api.write_job(lines, out)
            if size != job.bytes:
                raise FlamesError(
                    f"{self.store.run_dir}: batch job {job.job} rebuilt to {size} bytes, not the "
                    f"{job.bytes} planned; cancel it with `flames batch cancel` and run again"
                )
            yield path
        finally:
            path.unlink(missing_ok=True)

    def file_name(self, job: BatchJob) -> str:
        return f"flames-{self.store.run_tag}-{job.job}.jsonl"

    def _save(self, job: BatchJob) -> None:
        self.store.update_batch_job(job)

    async def _submit(self, job: BatchJob) -> None:
        """Upload (OpenAI) and create the job's batch, each looked up first if a try was cut."""
        api = self._api_of(job)
        with self._job_file(job) as path:
            if api.needs_upload and job.input_file_id is None:
                name = self.file_name(job)
                since = (job.submit_started_at or time.time()) - 600
                if job.state == "uploading":  # a cut upload may have arrived
                    job.input_file_id = await api.find_upload(name, job.bytes, since)
                if job.input_file_id is None:
                    job.state, job.submit_started_at = "uploading", time.time()
                    self._save(job)
                    job.input_file_id = await self._create(
                        api,
                        lambda: api.upload(name, path),
                        lambda: api.find_upload(name, job.bytes, since),
                    )
                job.state = "uploaded"
                self._save(job)
            found = None
            if job.state == "submitting":  # a cut submission may have been accepted
                candidates = await api.find(job)
                found = candidates[0] if candidates else None
            if found is None:
                job.state, job.submit_started_at = "submitting", time.time()
                self._save(job)

                async def lookup() -> RemoteBatch | None:
                    candidates = await api.find(job)
                    return candidates[0] if candidates else None

                found = await self._create(api, lambda: api.create(job, path), lookup)
        job.batch_id, job.status, job.counts = found.id, found.status, found.counts
        job.state = "submitted"
        self._save(job)

    async def _create(
        self,
        api: BatchApi,
        create: Callable[[], Coroutine[Any, Any, T]],
        find: Callable[[], Coroutine[Any, Any, T | None]],
    ) -> T:
        """`create()`; when it fails after the server may have acted on it, `find()` before
        trying again, so that nothing is created twice."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await create()
            except Uncertain as error:
                if attempt >= api.max_attempts:
                    raise FlamesError(
                        f"{self.store.run_dir}: could not submit a batch job ({error}). Run the "
                        "same command again: it looks for the job on the server before sending "
                        "anything again."
                    ) from None
                await asyncio.sleep(api._delay(attempt, error))
                found = await find()
                if found is not None:
                    return found
            except ApiError as error:
                raise FlamesError(
                    f"{self.store.run_dir}: the batch API refused a job: {error}. Fix the cause "
                    f"and run the same command again, or drop the job with `flames batch cancel "
                    f"{self.store.run_dir}`."
                ) from None

    async def _wait(self, job: BatchJob) -> RemoteBatch:
        """Poll the job's batch until it ends, recording its status; backoff from a second (or
        less) up to the poll setting."""
        assert job.batch_id is not None
        api = self._api_of(job)
        interval = min(1.0, self.settings.poll)
        while True:
            try:
                batch = await api.retrieve(job.batch_id)
            except ApiError as error:
                raise FlamesError(
                    f"{self.store.run_dir}: cannot check batch {job.batch_id}: {error}. It stays "
                    "recorded in the run: run the same command again to reattach to it."
                ) from None
            if (batch.status, batch.counts) != (job.status, job.counts) or batch.ended:
                job.status, job.counts = batch.status, batch.counts
                job.output_file_id, job.error_file_id = batch.output_file_id, batch.error_file_id
                job.note = batch.errors
                self._save(job)
            self._advance(job, batch.done, batch.status)
            if batch.ended:
                return batch
            await asyncio.sleep(interval)
            interval = min(interval * 2, self.settings.poll)

    async def _collect(self, job: BatchJob, batch: RemoteBatch, record: Record) -> int:
        """Hand the job's results to `record` as they download, then its requests without
        one as errors; mark it collected. A cut download is asked again (what was stored is
        skipped). A batch none of whose results are the job's is someone else's: the job goes
        back to submitting, with that batch ruled out."""
        prefix = f"{self.store.run_tag}-{job.job}-"
        api = self._api_of(job)
        attempt = 0
        while True:
            attempt += 1
            stored = ours = foreign = 0
            part: list[tuple[str, Reply]] = []
            try:
                async for custom_id, reply in api.results(batch):
                    if not custom_id.startswith(prefix):
                        foreign += 1
                        continue
                    ours += 1
                    part.append((custom_id, reply))
                    if len(part) >= CHUNK:
                        stored += self._settle_results(job, part, record)
                        part = []
                stored += self._settle_results(job, part, record)
                break
            except ApiError as error:
                if not error.retryable or attempt >= api.max_attempts:
                    raise FlamesError(
                        f"{self.store.run_dir}: cannot download the results of batch "
                        f"{batch.id}: {api.masked(str(error))}. Run the same command again "
                        "to download them."
                    ) from None
                await asyncio.sleep(api._delay(attempt, error))
        if foreign and not ours:
            job.not_ours = [*job.not_ours, batch.id]
            job.batch_id, job.status, job.counts = None, None, {}
            job.state = "submitting"
            self._save(job)
            return 0
        why = f"no result for this request: the batch ended {batch.status}"
        if job.note:
            why += f" ({job.note})"
        if api.oversized:
            why += (
                f"; {api.oversized} results were longer than the limit of "
                f"{api.max_reply_bytes:,} bytes (--max-reply-bytes) and were not kept"
            )
        failed = api.failed(why)
        while missing := list(islice(self.store.batch_requests(job.job, unsettled=True), CHUNK)):
            stored += self._settle(
                [(cid, item, sample, body, failed) for cid, item, sample, body, _ in missing],
                record,
            )
        job.state = "collected"
        self._save(job)
        self._advance(job, job.requests, "collected")
        return stored

    def _settle_results(self, job: BatchJob, part: list[tuple[str, Reply]], record: Record) -> int:
        """Store the results of `part` that are this job's and not settled yet."""
        rows = self.store.batch_request_rows(cid for cid, _ in part)
        return self._settle(
            [
                (cid, rows[cid][1], rows[cid][2], rows[cid][3], reply)
                for cid, reply in part
                if cid in rows and rows[cid][0] == job.job and rows[cid][4] is None
            ],
            record,
        )

    def _settle(self, rows: list[tuple[str, str, int, str, Reply]], record: Record) -> int:
        if not rows:
            return 0
        results = [
            BatchResult(item, sample, json.loads(body), reply)
            for _, item, sample, body, reply in rows
        ]
        outcomes = record(results)
        self.store.settle_batch_requests(
            (outcome, r.reply.prompt_tokens, r.reply.completion_tokens, row[0])
            for outcome, r, row in zip(outcomes, results, rows, strict=True)
        )
        return len(rows)

    def _hand_over(self, rows: list[tuple[str, int, str, Reply]], record: Record) -> None:
        """Results that never went into a job (a request too large to send)."""
        record(
            [
                BatchResult(item, sample, json.loads(body), reply)
                for item, sample, body, reply in rows
            ]
        )

    # -- progress ------------------------------------------------------------------------------

    @contextmanager
    def _progress(self, jobs: list[BatchJob]) -> Iterator[None]:
        # A bar on a terminal; off one (CI logs, nohup), a line every few seconds: a job may
        # take hours.
        bar = Tracker(
            f"batch {inline(self.stage)}",
            sum(job.requests for job in jobs),
            enabled=self.progress,
            unit="requests",
            fields={"status": "submitting"},
            field_format="{value}",
        )
        self._bar = bar
        self._done = {job.job: 0 for job in jobs}
        with bar:
            try:
                yield
            finally:
                self._bar = None

    def _advance(self, job: BatchJob, done: int, status: str) -> None:
        self._done[job.job] = done
        if self._bar is not None:
            jobs = len(self._done)
            what = f"{jobs} jobs" if jobs > 1 else "1 job"
            self._bar.advance(sum(self._done.values()) - self._bar.done, status=f"{what}: {status}")
