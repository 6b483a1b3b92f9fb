"""What a run's batch jobs asked for and cost: requests and tokens per stage, and, where a price
was given, the cost at the batch price against the same tokens live."""

from __future__ import annotations

from pydantic import BaseModel

from flames.runs.records import Price
from flames.runs.store import RunStore


class BatchUsage(BaseModel):
    """One stage's batch jobs ('generate', or a judge's name), all together."""

    stage: str
    api: str
    jobs: int
    requests: int
    """Requests sent (a judge's verdict asked again counts each time)."""
    ok: int
    errors: int
    """Requests that failed, expired or were cancelled: stored as errors, never scored."""
    pending: int
    """Requests of jobs not collected yet."""
    prompt_tokens: int
    completion_tokens: int
    cost: float | None = None
    """At the batch price, where a price was given."""
    cost_live: float | None = None
    """The same tokens at the live price."""


def batch_usage(store: RunStore) -> list[BatchUsage]:
    """Per stage, in the order its first job was made."""
    tallies = store.batch_tallies()
    stages: dict[str, BatchUsage] = {}
    prices: dict[str, Price | None] = {}
    for job in store.batch_jobs():
        if job.state == "cancelled":
            continue
        tally = tallies.get(job.job, {})
        usage = stages.setdefault(
            job.stage,
            BatchUsage(
                stage=job.stage,
                api=job.api,
                jobs=0,
                requests=0,
                ok=0,
                errors=0,
                pending=0,
                prompt_tokens=0,
                completion_tokens=0,
            ),
        )
        usage.jobs += 1
        usage.requests += sum(n for k, n in tally.items() if not k.endswith("_tokens"))
        usage.ok += tally.get("ok", 0) + tally.get("retry", 0) + tally.get("retry-cut", 0)
        usage.errors += tally.get("error", 0)
        usage.pending += tally.get("pending", 0)
        usage.prompt_tokens += tally.get("prompt_tokens", 0)
        usage.completion_tokens += tally.get("completion_tokens", 0)
        prices.setdefault(job.stage, job.price)
    for stage, usage in stages.items():
        price = prices[stage]
        if price is not None:
            tokens = (usage.prompt_tokens, usage.completion_tokens)
            usage.cost = price.cost(*tokens, batch=True)
            usage.cost_live = price.cost(*tokens, batch=False)
    return list(stages.values())


def cost_text(cost: float) -> str:
    """A cost with enough digits to read small ones (no currency: prices are given in one)."""
    return f"{cost:,.2f}" if cost >= 10 else f"{cost:.4g}"
