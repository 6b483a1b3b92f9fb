"""Readable everywhere: 80-column consoles, --json, help that fits, messages that guide, zh/en."""

from __future__ import annotations

import json
import random
import re

import pytest

from flames.data.taxonomy import SUBCOMPONENTS, Dimension
from flames.reporting.i18n import NAMES_ZH, TEXT
from flames.runs.store import RunStore

from .helpers import run_cli, write_jsonl

NARROW = {"COLUMNS": "80"}
COMMANDS = [
    [],
    ["run"],
    ["generate"],
    ["score"],
    ["judge"],
    ["report"],
    ["compare"],
    ["leaderboard"],
    ["score-file"],
    ["import"],
    ["refusals"],
    ["data", "info"],
    ["data", "sample"],
    ["data", "augment"],
    ["scorer", "convert"],
]


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory, official_path):
    from flames.data.dataset import load_dataset

    official = load_dataset(official_path)
    rng = random.Random(3)
    rows = [
        {
            "dimension": item.dimension.value,
            "subcomponent": item.subcomponent,
            "prompt": item.prompt,
            "response": "抱歉，我不能帮助你。" if rng.random() < 0.3 else "好的",
            "predicted": rng.choice(item.dimension.scale),
        }
        for item in official.sample(200, seed=4)
    ]
    tmp = tmp_path_factory.mktemp("scored")
    proc = run_cli(
        "score-file", write_jsonl(tmp / "m.jsonl", rows), "--run", tmp / "a", "--bootstrap", "100"
    )
    assert proc.returncode == 0, proc.stderr
    return tmp / "a"


def keys(value: object, prefix: str = "") -> set[str]:
    """Every key path in a JSON value."""
    if isinstance(value, dict):
        return {p for k, v in value.items() for p in {prefix + k} | keys(v, prefix + k + ".")}
    return set()


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(("│", "┃"))]


def cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]


def test_report_table_reads_whole_at_80_columns(scored_run):
    proc = run_cli("report", scored_run, "--bootstrap", "100", env=NARROW)
    assert proc.returncode == 0, proc.stderr
    lines = table_lines(proc.stdout)
    assert lines and all(len(line) <= 80 for line in proc.stdout.splitlines())
    assert "…" not in proc.stdout
    header = cells(lines[0])
    assert header[1:5] == ["N", "Rate", "CI", "Score"]
    report = json.loads((scored_run / "report" / "report.json").read_text())
    rows = {c[0]: c for c in map(cells, lines[1:]) if c[0]}
    for dim in Dimension:
        group = report["metrics"]["dimensions"][dim.value]
        low, high = group["harmless_rate"]["ci_low"], group["harmless_rate"]["ci_high"]
        assert rows[dim.value][1:4] == [
            str(group["n"]),
            f"{group['harmless_rate']['value']:.2f}%",
            f"[{low:.1f}, {high:.1f}]",
        ]
    assert "80 columns wide: left out the score's 95% CI" in proc.stdout
    wide = run_cli("report", scored_run, "--bootstrap", "100", env={"COLUMNS": "160"})
    assert cells(table_lines(wide.stdout)[0])[1:] == [
        "N",
        "Rate",
        "95% CI",
        "Score",
        "95% CI",
        "Refusal rate",
    ]
    assert "left out" not in wide.stdout


def test_leaderboard_and_compare_read_whole_at_80_columns(scored_run):
    proc = run_cli("leaderboard", scored_run, scored_run, env=NARROW)
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout and all(len(x) <= 80 for x in proc.stdout.splitlines())
    lines = table_lines(proc.stdout)
    assert cells(lines[0])[:5] == ["#", "≈", "Run", "Model", "Overall"]  # ≈: the ranks possible
    published = next(c for c in map(cells, lines) if c[1] == "Claude")
    assert published[2:] == ["63.77%", "53.41%", "28.44%", "77.11%", "71.74%", "88.16%"]
    compare = run_cli("compare", scored_run, scored_run, "--bootstrap", "100", env=NARROW)
    assert compare.returncode == 0, compare.stderr
    assert "…" not in compare.stdout and "+0.00" in compare.stdout


def test_json_output_is_alone_on_stdout(scored_run, tmp_path):
    report = json.loads(run_cli("report", scored_run, "--bootstrap", "0", "--json").stdout)
    assert set(report["metrics"]["dimensions"]) == {d.value for d in Dimension}
    compare = run_cli("compare", scored_run, scored_run, "--bootstrap", "100", "--json")
    assert json.loads(compare.stdout)["overall"]["difference"] == 0
    board = run_cli("leaderboard", scored_run, "--json", "--out", tmp_path / "board.md")
    entry = json.loads(board.stdout)[0]
    assert entry["overall_rate"] == pytest.approx(
        report["metrics"]["overall_harmless_rate"]["value"]
    )
    assert "wrote" in board.stderr and (tmp_path / "board.md").exists()
    info = json.loads(run_cli("data", "info", "--json").stdout)
    assert info["n_items"] == sum(sum(s.values()) for s in info["counts"].values())


def test_counts_and_refusals_list_rows_in_taxonomy_order(scored_run):
    info = json.loads(run_cli("data", "info", "--json").stdout)
    assert list(info["counts"]) == [d.value for d in Dimension]
    for dim in Dimension:
        assert list(info["counts"][dim.value]) == list(SUBCOMPONENTS[dim])
    refusals = run_cli("refusals", scored_run).stdout.splitlines()
    assert [line.split(":")[0] for line in refusals] == ["All answers"] + [
        d.value for d in Dimension
    ]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "flames")
def test_help_fits_80_columns_with_whole_option_names(command):
    proc = run_cli(*command, "--help", env=NARROW)
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    assert all(len(line) <= 80 for line in proc.stdout.splitlines())


def test_help_groups_options_and_keeps_brackets():
    run = run_cli("run", "--help", env=NARROW).stdout
    for panel in ("Model under test", "Decoding", "Prompts", "Official scorer", "LLM judge"):
        assert panel in run
    for option in ("--judge-base-url", "--scorer-vllm-arg", "--retry-errors", "--json-mode"):
        assert option in run
    report_help = run_cli("report", "--help", env=NARROW).stdout.replace("│", " ")
    assert "needs the [plots] extra" in " ".join(report_help.split())  # wrapped in its cell


@pytest.mark.parametrize(
    "option", [["--temperature", "-1"], ["--max-tokens", "0"], ["--rpm", "0"], ["--top-p", "0"]]
)
def test_option_values_are_range_checked(tmp_path, option):
    proc = run_cli("generate", tmp_path / "r", "--model", "m", *option)
    assert proc.returncode == 2 and option[0] in proc.stderr
    assert not (tmp_path / "r").exists()


def test_names_match_in_any_case_and_sample_is_one_option(tmp_path):
    out = tmp_path / "s.jsonl"
    proc = run_cli(
        "data", "sample", "-o", out, "--dimension", "safety", "--subcomponent", "PHYSICAL HARM"
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and {(r["dimension"], r["subcomponent"]) for r in rows} == {
        ("Safety", "Physical harm")
    }
    assert run_cli("data", "sample", "-o", out, "--sample", "7").returncode == 0
    assert len(out.read_text().splitlines()) == 7
    old = run_cli("data", "sample", "-o", out, "--n", "5")
    assert old.returncode == 0 and "--sample" in old.stderr
    assert len(out.read_text().splitlines()) == 5
    assert "--n " not in run_cli("data", "sample", "--help").stdout


def test_truncated_json_line_is_located_on_its_own_line(tmp_path):
    path = tmp_path / "cut.jsonl"
    path.write_text('{"dimension": "Safety", "prompt": "你好", "response": \n', "utf-8")
    proc = run_cli("data", "info", "--data", path)
    assert proc.returncode == 3
    assert "cut.jsonl:1: malformed JSON: Expecting value (at the end of the line)" in proc.stderr
    path.write_text('{"prompt": "你好" "dimension": "Safety"}\n', "utf-8")
    assert "(column 17)" in run_cli("data", "info", "--data", path).stderr


def test_score_checks_the_run_before_any_download(tmp_path):
    proc = run_cli(
        "score",
        tmp_path / "nope",
        "--scorer-model",
        "nobody/no-such-scorer",
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 1
    assert "not a flames run directory" in proc.stderr and "download" not in proc.stderr


def test_scorer_download_failure_names_the_next_steps(tmp_path):
    from flames.errors import FlamesError
    from flames.scoring.scorer.checkpoint import resolve

    with pytest.raises(FlamesError) as caught:
        resolve("nobody/no-such-scorer")
    message = str(caught.value)
    assert "could not download" in message
    assert "--scorer-model FOLDER" in message and "flames judge" in message
    assert "\n" not in message and ".." not in message  # one line, whatever the hub said


def test_run_takes_the_judge_options(tmp_path, mock_api):
    data = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {
                "dimension": "Safety",
                "subcomponent": "Mental harm",
                "prompt": f'问题{n}[[verdict:看不懂||{{"score": 3}}]]',
            }
            for n in range(3)
        ],
    )
    proc = run_cli(
        "run", tmp_path / "r", "--model", "m", "--base-url", mock_api.base_url, "--data", data,
        "--judge-model", "j", "--judge-base-url", mock_api.base_url, "--parse-attempts", "1",
        "--json-mode", "--scorer-name", "my-judge", "--judge-max-tokens", "64",
        "--skip-judge-check", "--bootstrap", "0", "--no-progress",
    )  # fmt: skip
    with RunStore.open(tmp_path / "r") as store:
        config = store.scorers()["my-judge"].config
        errors = [v.error for v in store.verdicts("my-judge")]
    assert config["json_mode"] is True and config["parse_attempts"] == 1
    assert config["decoding"]["max_tokens"] == 64
    # One ask per answer: the malformed first reply is not retried.
    assert len(errors) == 3 and all("after 1 attempt" in (e or "") for e in errors)
    assert proc.returncode != 0


def test_every_name_and_label_has_a_chinese_translation():
    names = [d.value for d in Dimension] + [s for subs in SUBCOMPONENTS.values() for s in subs]
    assert set(names) <= set(NAMES_ZH)
    assert len(set(NAMES_ZH.values())) == len(NAMES_ZH)  # no two names read the same
    for key, (en, zh) in TEXT.items():
        assert zh, key
        assert not en or sorted(re.findall(r"{(\w+)", en)) == sorted(re.findall(r"{(\w+)", zh))


def test_chinese_report_keeps_english_keys(scored_run, tmp_path):
    proc = run_cli(
        "report", scored_run, "--lang", "zh", "--bootstrap", "100", "--out", tmp_path, env=NARROW
    )
    assert proc.returncode == 0, proc.stderr
    assert "总体（各维度平均）" in proc.stdout and "数据保护" in proc.stdout
    assert "…" not in proc.stdout
    markdown = (tmp_path / "report.md").read_text()
    assert "| N | 无害率 | 95% 置信区间 |" in markdown
    assert "flames 自译" in markdown and "|   公平 |" not in markdown and "| 公平 |" in markdown
    zh = json.loads((tmp_path / "report.json").read_text())
    en = json.loads((scored_run / "report" / "report.json").read_text())
    assert keys(zh) == keys(en) and zh["metrics"]["dimensions"].keys() == {
        d.value for d in Dimension
    }
    csv_header = (tmp_path / "report.csv").read_text().splitlines()[0]
    assert csv_header.startswith("level,name,n,harmless_rate")
    html = (tmp_path / "report.html").read_text()
    assert '<html lang="zh-CN">' in html and "无害率" in html
