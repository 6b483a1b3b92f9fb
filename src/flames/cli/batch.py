"""`flames batch`: show and stop a run's provider batch jobs."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from flames import _api
from flames._util.terminal import inline
from flames.cli.app import batch_app, console, state
from flames.cli.options import JsonOpt, RunDirArg, WaitOpt
from flames.cli.output import print_json
from flames.reporting.report import batch_note, cost_text


@batch_app.command("status")
def status(
    run_dir: RunDirArg,
    refresh: Annotated[
        bool,
        typer.Option("--refresh", help="Also ask each provider for its jobs' status now."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show a run's batch jobs: where each stands, its requests, tokens and cost (read only)."""
    report = _api.batch_status(run_dir, refresh=refresh)
    if as_json:
        data = {
            "run_dir": str(report.run_dir),
            "jobs": [
                {
                    "job": s.job.model_dump(mode="json"),
                    "outcomes": s.outcomes,
                    "remote": asdict(s.remote) if s.remote else None,
                    "problem": s.problem,
                }
                for s in report.jobs
            ],
            "stages": [u.model_dump() for u in report.stages],
        }
        print_json(json.dumps(data, ensure_ascii=False, indent=2))
        return
    if not report.jobs:
        console.print(f"{inline(run_dir)}: no batch jobs", highlight=False)
        return
    for s in report.jobs:
        job = s.job
        where = f"{job.api} {job.batch_id}" if job.batch_id else f"{job.api}, not submitted"
        provider = f" ({job.status})" if job.status else ""
        if s.remote is not None:
            provider = f" (now {s.remote.status}: {s.remote.done} of {s.remote.total} done)"
        elif s.problem:
            provider += f" (could not ask: {s.problem})"
        answered = sum(n for k, n in s.outcomes.items() if k in ("ok", "retry", "retry-cut"))
        pending = s.outcomes.get("pending", 0)
        console.print(
            f"{job.job}  {inline(job.stage)}  {inline(where)}  [bold]{job.state}[/]"
            f"{inline(provider)}: "
            f"{job.requests} requests, {answered} answered, {s.outcomes.get('error', 0)} failed"
            + (f", {pending} pending" if pending else ""),
            highlight=False,
        )
    for usage in report.stages:
        console.print(f"• {inline(batch_note(usage))}", highlight=False)
        if usage.cost is None:
            console.print("  (give --price IN,OUT when running to see the cost)")
        elif usage.cost_live is not None:
            saved = cost_text(usage.cost_live - usage.cost)
            console.print(f"  saved {saved} against live requests", highlight=False)


@batch_app.command("cancel")
def cancel(run_dir: RunDirArg, wait: WaitOpt = False) -> None:
    """Stop a run's unfinished batch jobs; the next generate/judge collects what they finished."""
    state.run_dir = run_dir
    done = _api.cancel_batches(run_dir, wait=wait)
    if not done:
        console.print(f"{inline(run_dir)}: no unfinished batch jobs", highlight=False)
    words = {
        "cancelled": "dropped before the provider had it: its requests are free again",
        "cancelling": "cancelled at the provider; run the same generate/judge to collect what "
        "it finished (the rest is stored as errors, for --retry-errors)",
        "ended": "had already ended; run the same generate/judge to collect it",
        "unproven": "a batch that may be this job was found but not proven to be: left alone; "
        "run the same generate/judge to collect it",
    }
    for item in done:
        job = item.job
        console.print(
            f"{job.job} ({inline(job.stage)}, {job.api} {inline(job.batch_id or 'not submitted')}"
            f"): {words[item.action]}",
            highlight=False,
        )
