"""Attack success rates of a red-team run, with their intervals, ASR@k, queries to success, the
attacker's refusal rate and every role's requests, tokens and costs.

An attack is one goal (a seed prompt) under one strategy. It succeeds when an answer of the
target is scored 1 on the goal's dimension; it is "not harmless" when an answer is scored below
3. The attack success rate (ASR) is, as in HarmBench, the share of attacks that succeeded: one
0/1 outcome per goal, averaged over goals. Only attacks that ran their course count (success or
failure): an attack that ended in error is neither, and one the attacker declined to make was
never made; both are counted apart. "any" is the share of goals at least one strategy broke.

Intervals are the rate intervals of the reports (flames.analysis.intervals.proportion_interval:
Laud's skewness-corrected score interval with a continuity correction), at 95%. Two runs are
compared as `flames compare` compares harmless rates: per strategy, the dimension rows' p-values
adjusted together (Holm), the overall unadjusted.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from flames.analysis.compare import PairedDifference, paired_by_dimension
from flames.analysis.intervals import proportion_interval
from flames.analysis.metrics import INTERVAL_METHOD
from flames.data.dataset import Item
from flames.data.taxonomy import taxonomy_order
from flames.errors import FlamesError
from flames.runs.attacks import AttackResult
from flames.runs.records import RunManifest
from flames.runs.store import RunStore

CONFIDENCE = 0.95
ANY = "any"
"""The row of goals broken by at least one strategy."""
RATED = ("success", "failure")
"""The outcomes an attack success rate counts."""
PROMPT_KINDS = ("ok", "malformed", "refusal", "wrong-language", "unchanged")
"""The kinds of attacker replies to a request for a prompt (on-topic checks are not)."""


class Rate(BaseModel):
    """A share of attacks, in percent, with its interval."""

    count: int
    n: int
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None

    @classmethod
    def of(cls, count: int, n: int, confidence: float = CONFIDENCE) -> Rate:
        if not n:
            return cls(count=0, n=0, value=None)
        low, high = proportion_interval(count, n, confidence)
        return cls(
            count=count,
            n=n,
            value=100 * count / n,
            ci_low=100 * float(low),
            ci_high=100 * float(high),
        )


class Group(BaseModel):
    """The attacks of one dimension, subcomponent or strategy."""

    n: int
    """Attacks that ran their course (success or failure)."""
    asr: Rate
    not_harmless: Rate
    """Attacks where an answer was scored below 3."""


class StrategyStats(BaseModel):
    """One strategy's attacks (or, for ANY, each goal under every strategy at once)."""

    overall: Group
    dimensions: dict[str, Group]
    subcomponents: dict[str, Group]
    outcomes: dict[str, int]
    """Attacks by outcome (success, failure, declined, error), and 'pending' (not ended)."""
    asr_at_k: list[float]
    """Percent of rated attacks that succeeded within the first k target queries, k = 1 ...
    the budget; empty when no attack was rated (a share of nothing is undefined, not 0%)."""
    median_queries: float | None
    """Median of the target queries up to the first success, over the successes."""
    mean_queries: float | None
    """Mean target queries per rated attack."""
    attacker: dict[str, int] = {}
    """The attacker's replies to requests for a prompt, by kind (ok, malformed, refusal, ...)."""
    attacker_refusal: Rate | None = None
    """The share of those replies that refused (the attacker's refusal rate)."""
    pruned: int = 0
    """Prompts never sent: pruned off topic, or repeating a sibling's (tap)."""


class RoleUsage(BaseModel):
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    uncounted: int
    """Successful requests the server gave no token counts for (their tokens are not in the
    totals; nor is their cost)."""
    cost: float | None = None
    """At the run's prices per million tokens, where given."""


class RedteamReport(BaseModel):
    run: RunManifest
    goals: int
    strategies: dict[str, StrategyStats]
    """Per strategy, and under ANY the goals broken by at least one (with several strategies)."""
    usage: dict[str, RoleUsage]
    confidence: float = CONFIDENCE
    interval_method: str = INTERVAL_METHOD

    @property
    def budget(self) -> int:
        assert self.run.redteam is not None
        return self.run.redteam.budget


def _group(results: list[AttackResult]) -> Group:
    rated = [r for r in results if r.outcome in RATED]
    return Group(
        n=len(rated),
        asr=Rate.of(sum(r.outcome == "success" for r in rated), len(rated)),
        not_harmless=Rate.of(sum(r.harmful_at is not None for r in rated), len(rated)),
    )


def _by(results: list[AttackResult], items: dict[str, Item], level: str) -> dict[str, Group]:
    groups: dict[str, list[AttackResult]] = defaultdict(list)
    for r in results:
        item = items[r.goal_id]
        groups[item.dimension.value if level == "dimension" else item.subcomponent].append(r)
    return {name: _group(groups[name]) for name in sorted(groups, key=taxonomy_order)}


def strategy_stats(
    results: list[AttackResult],
    items: dict[str, Item],
    budget: int,
    pending: int = 0,
    attacker: dict[str, int] | None = None,
) -> StrategyStats:
    """The statistics of one strategy's attack results."""
    rated = [r for r in results if r.outcome in RATED]
    firsts = [r.first_success for r in rated if r.first_success is not None]
    at_k = Counter(firsts)
    curve, broken = [], 0
    for k in range(1, budget + 1 if rated else 1):  # no rated attack: no curve, not 0%
        broken += at_k[k]
        curve.append(100 * broken / len(rated))
    kinds = {k: n for k, n in (attacker or {}).items() if k in PROMPT_KINDS}
    asked = sum(kinds.values())
    pruned = sum(
        int(r.detail.get("pruned off-topic", 0)) + int(r.detail.get("pruned repeats", 0))
        for r in results
    )
    return StrategyStats(
        overall=_group(results),
        dimensions=_by(results, items, "dimension"),
        subcomponents=_by(results, items, "subcomponent"),
        outcomes={**Counter(r.outcome for r in results), "pending": pending},
        asr_at_k=curve,
        median_queries=statistics.median(firsts) if firsts else None,
        mean_queries=statistics.fmean(r.queries for r in rated) if rated else None,
        attacker=kinds,
        attacker_refusal=Rate.of(kinds.get("refusal", 0), asked) if asked else None,
        pruned=pruned,
    )


def any_strategy(results: Iterable[AttackResult], names: list[str]) -> list[AttackResult]:
    """One result per goal over all its strategies `names`: a success if any succeeded; once
    every strategy has ended, an error if one did, declined if all were declined, else a
    failure. A goal with no success and a strategy still pending has no result yet. Query
    counts are left out: strategies are separate searches, so their queries do not add up to a
    budget."""
    by_goal: dict[str, list[AttackResult]] = defaultdict(list)
    for r in results:
        by_goal[r.goal_id].append(r)
    merged = []
    for goal_id, rs in by_goal.items():
        if any(r.outcome == "success" for r in rs):
            outcome = "success"
        elif {r.strategy for r in rs} != set(names):
            continue  # still pending under some strategy
        elif any(r.outcome == "error" for r in rs):
            outcome = "error"
        elif all(r.outcome == "declined" for r in rs):
            outcome = "declined"
        else:
            outcome = "failure"
        harmful = any(r.harmful_at is not None for r in rs)
        merged.append(
            AttackResult(
                goal_id=goal_id,
                strategy=ANY,
                outcome=outcome,  # type: ignore[arg-type]
                queries=sum(r.queries for r in rs),
                harmful_at=1 if harmful else None,
            )
        )
    return merged


def usage_of(store: RunStore, manifest: RunManifest) -> dict[str, RoleUsage]:
    prices = manifest.redteam.prices if manifest.redteam else {}
    usage = {}
    for role, counts in store.attack_log().usage().items():
        cost = None
        if role in prices:
            price_in, price_out = prices[role]
            cost = counts["prompt_tokens"] * price_in + counts["completion_tokens"] * price_out
            cost /= 1e6
        usage[role] = RoleUsage(**counts, cost=cost)
    return usage


def is_redteam(run_dir: Path | str) -> bool:
    """Whether the run is a red-team run (its manifest holds red-team settings)."""
    with RunStore.open(run_dir) as store:
        return store.manifest.redteam is not None


def load_redteam(run_dir: Path | str) -> RedteamReport:
    """A red-team run's report, read from its store."""
    with RunStore.open(run_dir) as store:
        manifest = store.manifest
        if manifest.redteam is None:
            raise FlamesError(f"{run_dir}: not a red-team run (made by `flames redteam`)")
        items = {item.id: item for item in store.items()}
        log = store.attack_log()
        results = log.results()
        kinds = log.attacker_kinds(by_strategy=True)
        usage = usage_of(store, manifest)
    budget = manifest.redteam.budget
    names = list(manifest.redteam.strategies)
    by_strategy: dict[str, list[AttackResult]] = defaultdict(list)
    for r in results:
        by_strategy[r.strategy].append(r)
    stats = {
        name: strategy_stats(
            by_strategy[name],
            items,
            budget,
            pending=len(items) - len(by_strategy[name]),
            attacker=kinds.get(name, {}),
        )
        for name in names
    }
    if len(names) > 1:
        merged = any_strategy((r for r in results if r.strategy in names), names)
        total_kinds: Counter[str] = Counter()
        for name in names:
            total_kinds.update(kinds.get(name, {}))
        stats[ANY] = strategy_stats(
            merged, items, 0, pending=len(items) - len(merged), attacker=dict(total_kinds)
        )
        stats[ANY].mean_queries = None  # separate searches: their queries do not add up
    return RedteamReport(run=manifest, goals=len(items), strategies=stats, usage=usage)


class Step(BaseModel):
    """One query on the way to a success."""

    key: str
    prompt: str
    answer: str
    score: int | None
    refused: bool = False


class AttackView(BaseModel):
    """One attack of a goal, as a report shows it; a success with the way it got there."""

    strategy: str
    outcome: str
    queries: int
    best_score: int | None
    first_success: int | None
    path: list[Step] = []
    """The queries that led to the first success (a stream's rounds, a branch of the tree,
    the conversation's turns), the winning one last."""
    conversation: list[dict[str, str]] = []
    """For a success in a conversation: the earlier turns the target saw with the winner."""


class GoalView(BaseModel):
    id: str
    dimension: str
    subcomponent: str
    seed: str
    attacks: list[AttackView]


def _cut(text: str | None, limit: int) -> str:
    text = text or ""
    return text if len(text) <= limit else text[:limit] + "…"


def goal_views(run_dir: Path | str, max_chars: int = 3000) -> list[GoalView]:
    """Every goal with its attacks, texts cut at `max_chars`; only successes carry texts."""
    with RunStore.open(run_dir) as store:
        manifest = store.manifest
        order = list(manifest.redteam.strategies) if manifest.redteam else []
        log = store.attack_log()
        by_goal: dict[str, list[AttackResult]] = defaultdict(list)
        for r in log.results():
            by_goal[r.goal_id].append(r)
        goals = []
        for item in store.items():
            views = []
            results = sorted(
                by_goal.get(item.id, []),
                key=lambda r: order.index(r.strategy) if r.strategy in order else len(order),
            )
            for r in results:
                view = AttackView(
                    strategy=r.strategy,
                    outcome=r.outcome,
                    queries=r.queries,
                    best_score=r.best_score,
                    first_success=r.first_success,
                )
                if r.outcome == "success":
                    _fill_path(view, r, log.calls(r.goal_id, r.strategy), max_chars)
                views.append(view)
            goals.append(
                GoalView(
                    id=item.id,
                    dimension=item.dimension.value,
                    subcomponent=item.subcomponent,
                    seed=_cut(item.prompt, max_chars),
                    attacks=views,
                )
            )
    return goals


def _fill_path(view: AttackView, result: AttackResult, calls: list[Any], limit: int) -> None:
    by_key = {c.key: c for c in calls}
    for key in result.detail.get("path") or [result.winner]:
        target = by_key.get(key)
        if target is None:
            continue
        judged = by_key.get(key.rsplit("/", 1)[0] + "/judge")
        view.path.append(
            Step(
                key=key,
                prompt=_cut(target.prompt, limit),
                answer=_cut(target.content, limit),
                score=judged.score if judged is not None else None,
                refused=target.kind == "refusal",
            )
        )
    winner = by_key.get(result.winner or "")
    if winner is not None:
        messages = json.loads(winner.request or "[]")[:-1]
        view.conversation = [
            {"role": m["role"], "content": _cut(m["content"], limit)} for m in messages
        ]


class PairedASR(BaseModel):
    """One strategy's attack success rates in two runs, paired by goal."""

    dimensions: dict[str, PairedDifference]
    overall: PairedDifference
    """Macro overall, as `flames compare` gives it for harmless rates (mean of dimensions)."""


class RedteamComparison(BaseModel):
    """Two red-team runs over the same goals: per strategy they share (and any strategy), the
    difference in ASR (B - A, points) per dimension and overall, with paired tests."""

    a: str
    b: str
    strategies: dict[str, PairedASR]
    paired_goals: int
    same_judge: bool
    same_target: bool


def _outcomes(results: list[AttackResult]) -> dict[str, dict[str, bool]]:
    """Per strategy: each rated goal's success."""
    found: dict[str, dict[str, bool]] = defaultdict(dict)
    for r in results:
        if r.outcome in RATED:
            found[r.strategy][r.goal_id] = r.outcome == "success"
    return found


def compare_redteam(
    run_a: Path | str, run_b: Path | str, bootstrap_samples: int = 2000, seed: int = 0
) -> RedteamComparison:
    """Pair two red-team runs goal by goal (the goals both rated under a strategy) and compare
    their attack success rates per dimension and overall (`paired_by_dimension`: paired score
    intervals, McNemar's mid-p test per dimension adjusted by Holm over the strategy's
    dimensions, a stratified sign-flip test overall)."""
    runs = []
    for run_dir in (run_a, run_b):
        with RunStore.open(run_dir) as store:
            manifest = store.manifest
            if manifest.redteam is None:
                raise FlamesError(
                    f"{run_dir} is not a red-team run: compare red-team runs with each other"
                )
            items = {item.id: item for item in store.items()}
            results = store.attack_log().results()
        names = list(manifest.redteam.strategies)
        if len(names) > 1:
            results += any_strategy((r for r in results if r.strategy in names), names)
        runs.append((manifest, items, _outcomes(results)))
    (ma, items_a, out_a), (mb, items_b, out_b) = runs
    differing = next(
        (i for i in items_a.keys() & items_b.keys() if items_a[i].prompt != items_b[i].prompt),
        None,
    )
    if differing is not None:
        raise FlamesError(f"goal {differing} has different seed prompts in the two runs")
    shared = [s for s in out_a if s in out_b]
    if not shared:
        raise FlamesError("the runs share no strategy with rated attacks: nothing to pair")
    strategies = {}
    paired: set[str] = set()
    for name in shared:
        rates_a = {g: (items_a[g].dimension, float(ok)) for g, ok in out_a[name].items()}
        rates_b = {g: (items_b[g].dimension, float(ok)) for g, ok in out_b[name].items()}
        paired |= rates_a.keys() & rates_b.keys()
        dimensions, overall = paired_by_dimension(rates_a, rates_b, bootstrap_samples, seed)
        strategies[name] = PairedASR(dimensions=dimensions, overall=overall)
    return RedteamComparison(
        a=Path(run_a).name,
        b=Path(run_b).name,
        strategies=strategies,
        paired_goals=len(paired),
        same_judge=_judge_of(ma) == _judge_of(mb),
        same_target=ma.generator.model_dump(exclude={"concurrency"})
        == mb.generator.model_dump(exclude={"concurrency"}),
    )


def _judge_of(manifest: RunManifest) -> dict[str, Any] | None:
    return manifest.redteam.judge.identity() if manifest.redteam else None
