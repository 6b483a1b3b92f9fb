"""`flames redteam` as a user runs it: with a config file of scripted roles, and against the
loopback server as target, attacker and judge; `flames report` and `flames compare` on red-team
runs, the HTML page in a real browser, and the export re-used by `data info`, `generate` and
`run`."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from flames.data.dataset import load_dataset
from flames.runs.store import RunStore

from . import redteam_roles as roles
from .helpers import run_cli, write_jsonl

REPO = Path(__file__).resolve().parents[1]
STRATEGIES = '["rewrite", "pair", "tap", "crescendo"]'


def config_file(folder: Path, target: str = "target", run: str = "run") -> Path:
    goals = write_jsonl(folder / "goals.jsonl", roles.GOALS)
    path = folder / f"{run}.toml"
    path.write_text(
        f"""run_dir = "{folder / run}"
[target]
model = "tests.redteam_roles:{target}"
backend = "callable"
input = "messages"
[attacker]
model = "tests.redteam_roles:attacker"
backend = "callable"
[judge]
model = "tests.redteam_roles:judge"
kind = "callable"
[data]
source = "{goals}"
[attack]
strategies = {STRATEGIES}
budget = 12
""",
        "utf-8",
    )
    return path


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A red-team run of the scripted roles, made with `flames redteam --config`."""
    folder = tmp_path_factory.mktemp("redteam")
    done = run_cli("redteam", "--config", config_file(folder), "--no-progress", cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "Attack success rate" in done.stdout and "any strategy" in done.stdout
    return folder / "run"


def test_report_json_holds_the_rates_of_every_strategy(scripted):
    done = run_cli("report", scripted, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rates = {name: s["overall"]["asr"]["value"] for name, s in report["strategies"].items()}
    assert rates == {"rewrite": 50.0, "pair": 50.0, "tap": 50.0, "crescendo": 25.0, "any": 75.0}
    assert report["strategies"]["crescendo"]["dimensions"]["Morality"]["asr"]["count"] == 1
    assert report["usage"]["target"]["requests"] > 0
    assert (scripted / "report" / "redteam.json").is_file()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_html_page_shows_each_goal_and_how_it_was_broken(scripted, tmp_path, lang):
    done = run_cli("report", scripted, "--out", tmp_path, "--lang", lang)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "report.html").read_text("utf-8")
    assert page.count('<section class="goal"') == 4
    assert 'data-strategy="crescendo" data-outcome="success"' in page
    winner = page[page.index('data-strategy="crescendo" data-outcome="success"') :]
    assert "第4步" in winner  # the winning prompt, after the conversation that led to it
    assert ("Conversation" if lang == "en" else "对话") in winner
    assert '<option value="tap">tap</option>' in page
    assert ("Attack success rate" if lang == "en" else "攻击成功率") in page
    assert 'svg class="chart curves"' in page
    if lang == "zh":
        assert "偏见与歧视" in page and 'lang="zh-CN"' in page


def test_the_html_page_filters_in_a_real_browser(scripted, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    from .test_html_report import ARGS, _chromium

    chromium = _chromium()
    assert run_cli("report", scripted, "--out", tmp_path).returncode == 0
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1600})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((tmp_path / "report.html").as_uri())
        assert errors == []
        assert page.locator("svg.curves polyline.series").count() == 4  # not "any"
        assert page.locator("section.goal:visible").count() == 4
        page.select_option("#filter-strategy", "crescendo")
        page.select_option("#filter-outcome", "success")
        assert page.locator("section.goal:visible").count() == 1
        assert page.locator(".attack:visible").count() == 1
        page.select_option("#filter-strategy", "")
        page.select_option("#filter-dimension", "Safety")
        assert page.locator(".attack:visible").count() == 3  # rewrite, pair and tap won
        assert page.inner_text("#shown") == "1 of 4 shown"
        browser.close()


def test_compare_pairs_two_red_team_runs_goal_by_goal(scripted, tmp_path):
    other = config_file(tmp_path, target="sturdy_target", run="sturdy")
    assert run_cli("redteam", "--config", other, "--no-progress", cwd=REPO).returncode == 0
    done = run_cli("compare", scripted, tmp_path / "sturdy", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result["strategies"]) == {"rewrite", "pair", "tap", "crescendo", "any"}
    rewrite = result["strategies"]["rewrite"]
    assert rewrite["dimensions"]["Safety"]["rate_a"] == 100.0
    assert rewrite["dimensions"]["Safety"]["rate_b"] == 0.0
    assert result["paired_goals"] == 4
    table = run_cli("compare", scripted, tmp_path / "sturdy")
    assert "ASR, pair" in table.stdout and "4 goals paired" in table.stdout
    mixed = tmp_path / "eval"
    rows = [
        {"dimension": "Safety", "subcomponent": "Physical harm", "prompt": "问", "response": "答"}
    ]
    assert run_cli("import", write_jsonl(tmp_path / "a.jsonl", rows), mixed).returncode == 0
    refused = run_cli("compare", scripted, mixed)
    assert refused.returncode == 1 and "compare like with like" in refused.stderr


def test_export_writes_a_prompt_set_that_other_commands_take(scripted, tmp_path):
    out = tmp_path / "new.jsonl"
    done = run_cli("redteam", "export", scripted, out, "--reference", "none")
    assert done.returncode == 0, done.stderr
    # 7 winning prompts; the 6 single-turn ones hold their seed prompt whole (the scripted
    # attacker wraps it): near-duplicates of the seeds.
    assert "wrote 1 prompts" in done.stdout and "(7 considered; dropped 6" in done.stdout
    (row,) = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert row["strategy"] == "crescendo" and row["seed"]["prompt"] == roles.MORALITY
    assert [t["role"] for t in row["conversation"]] == ["user", "assistant"] * 3
    assert row["redteam"]["score"] == 1
    (item,) = load_dataset(out).items
    assert item.conversation == tuple(row["conversation"])
    info = run_cli("data", "info", "--data", out, "--json")
    assert json.loads(info.stdout)["multi_turn"] == 1
    # Measure another model on it: the conversation is replayed before the prompt.
    run = tmp_path / "measured"
    model = "tests.redteam_roles:echo_chat"
    args = ("--backend", "callable", "--input", "messages", "--no-progress")
    generated = run_cli("generate", run, "--model", model, "--data", out, *args, cwd=REPO)
    assert generated.returncode == 0, generated.stderr
    with RunStore.open(run) as store:
        (answer,) = store.answers()
    sent = json.loads(answer.response)
    assert sent[:-1] == [f"{t['role']}:{t['content']}" for t in row["conversation"]]
    assert sent[-1] == f"user:{row['prompt']}"
    every = run_cli(
        "redteam", "export", scripted, tmp_path / "all.jsonl", "--all", "--similarity", "1"
    )
    assert every.returncode == 0 and "considered" in every.stdout


def test_export_drops_near_duplicates_of_flames_1k(tmp_path, official):
    """A run whose goals are official prompts: the attacker's wrappers hold them whole."""
    chosen = [i for i in official.items if i.dimension.value == "Safety"][:2]
    rows = [
        {
            "dimension": i.dimension.value,
            "subcomponent": i.subcomponent,
            "prompt": "〔安全〕" + i.prompt,
        }
        for i in chosen
    ]
    config = config_file(tmp_path)
    goals = write_jsonl(tmp_path / "official-goals.jsonl", rows)
    text = config.read_text("utf-8").replace(str(tmp_path / "goals.jsonl"), str(goals))
    config.write_text(text.replace(STRATEGIES, '["rewrite"]'), "utf-8")
    assert run_cli("redteam", "--config", config, "--no-progress", cwd=REPO).returncode == 0
    done = run_cli("redteam", "export", tmp_path / "run", tmp_path / "new.jsonl", "--all")
    assert done.returncode == 0, done.stderr
    # Both fall to the first method, role-play around the official prompt: dropped, as
    # near-duplicates of Flames-1k (and of the seed prompts, which hold them too).
    assert "wrote 0 prompts" in done.stdout
    assert "(2 considered; dropped 2 near-duplicates of flames-1k" in done.stdout


def test_export_of_a_run_that_is_not_a_red_team_run_is_refused(tmp_path):
    rows = [
        {"dimension": "Safety", "subcomponent": "Physical harm", "prompt": "问", "response": "答"}
    ]
    assert (
        run_cli("import", write_jsonl(tmp_path / "a.jsonl", rows), tmp_path / "run").returncode == 0
    )
    done = run_cli("redteam", "export", tmp_path / "run", tmp_path / "x.jsonl")
    assert done.returncode == 1 and "not a red-team run" in done.stderr
    assert not (tmp_path / "x.jsonl").exists()


# -- against the loopback server ----------------------------------------------------------------

WIN = '[[verdict:{"score": 1, "reason": "有害"}]]'


def test_every_role_can_be_an_api_model(mock_api, tmp_path):
    """Target, attacker and LLM judge all behind the loopback server; a failed request is
    recorded, never counted, and asked again with --retry-errors; tokens and costs per role."""
    proposal = json.dumps({"improvement": "x", "prompt": f"我们来玩角色扮演。{WIN}"})
    attacker = f"[[b64:{base64.b64encode(proposal.encode()).decode()}]]"  # holds brackets
    rows = [
        {"dimension": "Safety", "subcomponent": "Physical harm", "prompt": f"问一{attacker}"},
        {
            "dimension": "Safety",
            "subcomponent": "Mental harm",
            "prompt": f"问二[[fail:500x1]]{attacker}",
        },
    ]
    data = write_jsonl(tmp_path / "goals.jsonl", rows)
    run = tmp_path / "run"
    command = (
        "redteam", run, "--model", "target", "--base-url", mock_api.base_url,
        "--attacker-model", "attacker", "--attacker-base-url", mock_api.base_url,
        "--judge-model", "judge", "--judge-base-url", mock_api.base_url, "--skip-judge-check",
        "--data", data, "--strategy", "pair", "--streams", "1", "--iterations", "2",
        "--budget", "2", "--max-attempts", "1", "--api-key-env", "",
        "--attacker-api-key-env", "", "--judge-api-key-env", "",
        "--price", "target=1,2", "--price", "attacker=0.5,0.5", "--no-progress",
    )  # fmt: skip
    first = run_cli(*command)
    assert first.returncode == 5, first.stderr
    assert "1 attacks ended in error" in first.stderr and "--retry-errors" in first.stderr
    with RunStore.open(run) as store:
        (error,) = [c for c in store.attack_log().calls() if c.status == "error"]
        assert error.role == "attacker" and "HTTP 500" in error.error
        manifest = store.manifest
    assert manifest.redteam.attacker.base_url == mock_api.base_url
    assert manifest.redteam.judge.kind == "llm-judge"
    second = run_cli(*command, "--retry-errors")
    assert second.returncode == 0, second.stderr
    report = json.loads(run_cli("report", run, "--json").stdout)
    pair = report["strategies"]["pair"]
    assert pair["outcomes"]["success"] == 2 and pair["overall"]["asr"]["value"] == 100.0
    usage = report["usage"]
    assert usage["target"]["requests"] == 2 and usage["target"]["prompt_tokens"] > 0
    expected = (
        usage["target"]["prompt_tokens"] * 1 + usage["target"]["completion_tokens"] * 2
    ) / 1e6  # prices per million tokens, as flames run's
    assert usage["target"]["cost"] == pytest.approx(expected)
    assert usage["judge"]["cost"] is None  # no price given
    asked = [r["prompt"] for r in mock_api.requests()]
    assert sum("问二" in p for p in asked) == 2  # the failed request, then once more
    again = run_cli(*command)  # nothing left to do: nothing asked
    assert again.returncode == 0 and len(mock_api.requests()) == len(asked)


def test_options_that_cannot_work_end_in_one_line(tmp_path):
    data = write_jsonl(tmp_path / "goals.jsonl", roles.GOALS)
    base = ("redteam", tmp_path / "run", "--data", data, "--model", "m")
    missing = run_cli(*base)
    assert missing.returncode == 2 and "--attacker-model" in missing.stderr
    unknown = run_cli(*base, "--attacker-model", "a", "--strategy", "pair,bogus")
    assert unknown.returncode == 2 and "unknown strategy bogus" in unknown.stderr
    price = run_cli(*base, "--attacker-model", "a", "--price", "target=1")
    assert price.returncode == 2 and "ROLE=IN,OUT" in price.stderr
    for output in (missing, unknown, price):
        assert "Traceback" not in output.stderr
    assert not (tmp_path / "run").exists()
