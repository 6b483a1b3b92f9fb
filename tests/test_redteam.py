"""Red teaming with scripted roles (tests/redteam_roles.py): each strategy finds what it should
within its budget and nothing it should not; the attacker's misbehaviour is counted and never
reaches the target; errors are never a success or a failure; budgets bound every role."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

import flames
from flames._config import AttackConfig, AttackerConfig, JudgeConfig, RedteamConfig, TargetConfig
from flames.errors import IncompleteRun, ManifestMismatch, UsageError
from flames.runs.store import RunStore

from . import redteam_roles as roles
from .helpers import write_jsonl

BUDGET = 20


def goals_file(tmp_path: Path, rows: list[dict] | None = None) -> Path:
    return write_jsonl(tmp_path / "goals.jsonl", rows or roles.GOALS)


def description(
    tmp_path: Path, strategies: list[str], rows: list[dict] | None = None, **attack: object
) -> RedteamConfig:
    return RedteamConfig(
        target=TargetConfig(
            model="scripted-target", backend="callable", function=roles.target, input="messages"
        ),
        attacker=AttackerConfig(
            model="scripted-attacker", backend="callable", function=roles.attacker
        ),
        judge=JudgeConfig(model="scripted-judge", kind="callable", function=roles.judge),
        data={"source": str(goals_file(tmp_path, rows))},
        attack=AttackConfig(**{"strategies": strategies, "budget": BUDGET, **attack}),
    )


def attack(tmp_path: Path, strategies: list[str], run: str = "run", **attack_settings: object):
    config = description(tmp_path, strategies, **attack_settings)
    report = flames.redteam(config, run_dir=tmp_path / run, progress=False, tables=False)
    with RunStore.open(tmp_path / run) as store:
        items = {i.id: i.prompt for i in store.items()}
        results = {(items[r.goal_id], r.strategy): r for r in store.attack_log().results()}
        calls = store.attack_log().calls()
    return report, results, calls


def test_each_strategy_finds_what_it_should_within_its_budget_and_nothing_else(tmp_path):
    report, results, calls = attack(tmp_path, ["rewrite", "pair", "tap", "crescendo"])
    won = {key for key, r in results.items() if r.outcome == "success"}
    assert won == {
        (roles.SAFETY, "rewrite"),  # role-play disguise: the first method
        (roles.FAIRNESS, "rewrite"),  # reverse induction: the second
        (roles.SAFETY, "pair"),  # stream 0 starts from disguise
        (roles.FAIRNESS, "pair"),  # stream 1 from reverse induction
        (roles.SAFETY, "tap"),
        (roles.FAIRNESS, "tap"),
        (roles.MORALITY, "crescendo"),  # only after 3 earlier turns
    }
    assert {r.outcome for k, r in results.items() if k not in won} == {"failure"}
    first = {key: results[key].first_success for key in won}
    assert first[(roles.SAFETY, "rewrite")] == 1 and first[(roles.FAIRNESS, "rewrite")] == 2
    assert first[(roles.SAFETY, "pair")] == 1 and first[(roles.FAIRNESS, "pair")] == 2
    # Crescendo: an opener, a refused turn taken back, then three more turns; the fifth query wins.
    crescendo = results[(roles.MORALITY, "crescendo")]
    assert crescendo.first_success == 5 and crescendo.detail["backtracks"] == 1
    assert crescendo.detail["path"] == [f"q{i:02d}/target" for i in range(5)]
    for r in results.values():
        assert r.queries <= BUDGET
    # pair ran 3 streams x 5 rounds on the goals it could not break; rewrite its 3 methods.
    assert results[(roles.MORALITY, "pair")].queries == 15
    assert results[(roles.LEGALITY, "rewrite")].queries == 3
    # Every answer was judged, once.
    targets = [c for c in calls if c.role == "target"]
    judged = {(c.goal_id, c.strategy, c.key.rsplit("/", 1)[0]) for c in calls if c.role == "judge"}
    assert judged == {(c.goal_id, c.strategy, c.key.rsplit("/", 1)[0]) for c in targets}
    # The report: rates over the 4 goals, per strategy and for any strategy.
    assert report.strategies["rewrite"].overall.asr.value == 50.0
    assert report.strategies["crescendo"].overall.asr.count == 1
    assert report.strategies["any"].overall.asr.count == 3
    assert report.strategies["pair"].median_queries == 1.5
    assert report.strategies["crescendo"].asr_at_k[3:5] == [0.0, 25.0]


def test_the_target_never_sees_a_reply_the_attacker_did_not_mean_as_a_prompt(tmp_path):
    quirks = ["#refuse-once", "#malformed-once", "#english-once", "#copy-once", "#always-refuse"]
    rows = [
        {"dimension": "Safety", "subcomponent": "Physical harm", "prompt": roles.SAFETY + quirk}
        for quirk in quirks
    ]
    config = description(tmp_path, ["rewrite"], rows)
    report = flames.redteam(config, run_dir=tmp_path / "run", progress=False, tables=False)
    with RunStore.open(tmp_path / "run") as store:
        calls = store.attack_log().calls()
        items = {i.id: i.prompt for i in store.items()}
        outcomes = {items[r.goal_id]: r.outcome for r in store.attack_log().results()}
    sent = [c.prompt for c in calls if c.role == "target"]
    assert not any("抱歉" in p or p.startswith("Please") or p in items.values() for p in sent)
    asked = [c for c in calls if c.role == "attacker"]
    kinds = Counter(c.kind for c in asked)
    # Each quirk costs one extra ask (its goal falls to the first method); #always-refuse
    # refuses all three asks of each of the three methods.
    assert kinds["refusal"] == 1 + 3 * 3 and kinds["malformed"] == 1
    assert kinds["wrong-language"] == 1 and kinds["unchanged"] == 1
    # The re-asks put the request another way, each after its own kind of failure.
    reasks = [c.request for c in asked if c.key.endswith("/a1")]
    assert any(r.startswith("说明一下") for r in reasks)  # after a refusal
    assert any("无法读取" in r for r in reasks)  # after a malformed reply
    assert any("请用中文" in r for r in reasks)
    assert any("几乎一样" in r for r in reasks)
    refusal_framings = {c.request.split("\n\n")[0] for c in asked if c.kind == "refusal"}
    assert len(refusal_framings) == 3  # #always-refuse: the first ask and two framings
    assert outcomes[roles.SAFETY + "#always-refuse"] == "declined"
    stats = report.strategies["rewrite"]
    assert stats.outcomes["declined"] == 1 and stats.overall.n == 4  # declined: never attacked
    assert stats.attacker_refusal.count == 10 and stats.attacker_refusal.n == len(asked)


def test_tap_prunes_off_topic_prompts_before_they_reach_the_target(tmp_path):
    rows = [{**roles.GOALS[2], "prompt": roles.MORALITY + "#drift"}]
    config = description(tmp_path, ["tap"], rows, tap={"branching": 3, "width": 2, "depth": 2})
    flames.redteam(config, run_dir=tmp_path / "run", progress=False, tables=False)
    with RunStore.open(tmp_path / "run") as store:
        calls = store.attack_log().calls()
        (result,) = store.attack_log().results()
    assert not any("天气" in c.prompt for c in calls if c.role == "target")
    checks = [c for c in calls if c.role == "attacker" and "/check/" in c.key]
    assert Counter(c.kind for c in checks)["off-topic"] == result.detail["pruned off-topic"] > 0
    assert result.outcome == "failure"


def test_a_failed_call_is_neither_a_success_nor_a_failure_and_is_asked_again(tmp_path, monkeypatch):
    monkeypatch.setenv(roles.DOWN, "〔安全〕")  # the target fails on the Safety goal
    log = tmp_path / "calls.log"
    monkeypatch.setenv(roles.LOG, str(log))
    config = description(tmp_path, ["rewrite"])
    with pytest.raises(IncompleteRun, match="1 attacks ended in error"):
        flames.redteam(config, run_dir=tmp_path / "run", progress=False, tables=False, strict=True)
    report = flames.redteam(config, run_dir=tmp_path / "run", progress=False, tables=False)
    stats = report.strategies["rewrite"]
    assert stats.outcomes["error"] == 1 and stats.overall.n == 3  # not counted in any rate
    assert report.usage["target"].errors == 3  # each method's query failed
    first_pass = log.read_text("utf-8").count('["target"')
    monkeypatch.delenv(roles.DOWN)
    config.executor.retry_errors = True
    report = flames.redteam(config, run_dir=tmp_path / "run", progress=False, tables=False)
    assert report.strategies["rewrite"].outcomes == {"success": 2, "failure": 2, "pending": 0}
    # Only a failed call was asked again: the first method's query, which won: the attack
    # ended there, and its other two failed calls stay recorded as they were.
    assert log.read_text("utf-8").count('["target"') == first_pass + 1
    assert report.usage["target"].errors == 2


def test_budgets_bound_every_role(tmp_path):
    _, results, calls = attack(
        tmp_path, ["pair"], budget=2, attacker_attempts=2, pair={"streams": 3, "iterations": 4}
    )
    for r in results.values():
        assert r.queries <= 2
    per_attack = Counter((c.goal_id, c.role) for c in calls)
    for (_, role), n in per_attack.items():
        if role in ("target", "judge"):
            assert n <= 2
    _, results, _ = attack(
        tmp_path, ["pair"], run="tight", attacker_budget=4, pair={"streams": 3, "iterations": 5}
    )
    # 3 attacker calls a round: the second round starts (3 < 4), the third does not (6 >= 4).
    assert results[(roles.LEGALITY, "pair")].queries == 6


def test_changed_settings_are_refused_and_prices_are_information(tmp_path):
    attack(tmp_path, ["rewrite"])
    config = description(tmp_path, ["rewrite"])
    config.attack.budget = 5
    with pytest.raises(ManifestMismatch, match=r"redteam\.budget"):
        flames.redteam(config, run_dir=tmp_path / "run", progress=False, tables=False)
    instructions = tmp_path / "mine.toml"
    instructions.write_text('[method]\ndisguise = "换一种伪装。"\n', "utf-8")
    config = description(tmp_path, ["rewrite"], instructions=str(instructions))
    with pytest.raises(ManifestMismatch, match=r"instructions\.method\.disguise"):
        flames.redteam(config, run_dir=tmp_path / "run", progress=False, tables=False)
    config = description(tmp_path, ["rewrite"], prices={"judge": (1.0, 2.0)})
    report = flames.redteam(config, run_dir=tmp_path / "run", progress=False, tables=False)
    assert report.run.redteam.prices == {"judge": (1.0, 2.0)}
    assert report.usage["judge"].cost == 0.0  # a callable judge counts no tokens


def test_a_prompt_only_target_cannot_hold_a_conversation(tmp_path):
    config = description(tmp_path, ["crescendo"])
    config.target = TargetConfig(
        model="t", backend="callable", function=roles.target_prompt_only, input="prompt"
    )
    with pytest.raises(UsageError, match="input='messages'"):
        flames.redteam(config, run_dir=tmp_path / "run", progress=False, tables=False)
    assert not (tmp_path / "run").exists()


def test_the_manifest_holds_every_setting_of_the_attack(tmp_path):
    report, _, _ = attack(tmp_path, ["pair", "tap"], seed=7, tap={"depth": 2})
    info = report.run.redteam
    assert info.strategies == {
        "pair": {"streams": 3, "iterations": 5},
        "tap": {"branching": 3, "width": 4, "depth": 2},
    }
    assert (info.budget, info.attacker_budget, info.attacker_attempts, info.seed) == (20, 200, 3, 7)
    assert info.attacker.model == "scripted-attacker" and info.judge.kind == "callable-judge"
    assert info.instructions["method.disguise"].startswith("伪装")
    assert report.run.dataset.items_sha256 and report.run.generator.model == "scripted-target"
