from __future__ import annotations

import asyncio
import csv
import json
import re

import numpy as np
import pytest

from flames.analysis.calibration import KAPPA_UNDEFINED, calibrate, cohen_kappa, fleiss_kappa
from flames.data.taxonomy import Dimension
from flames.errors import DataError
from flames.runs.records import ScorerManifest, Verdict
from flames.runs.store import RunStore
from flames.scoring.annotate import export_items, import_labels, record_labels

from .helpers import run_cli, tied, write_jsonl


@pytest.fixture
def run_dir(tmp_path):
    rows = []
    for dim in Dimension:
        for i in range(20):
            rows.append(
                {
                    "id": f"{dim.name}-{i:02d}",
                    "dimension": dim.value,
                    "subcomponent": dim.subcomponents[0],
                    "prompt": f"{dim.value} 问题 {i}",
                    "response": f"回答 {i}",
                }
            )
    assert (
        run_cli("import", write_jsonl(tmp_path / "a.jsonl", rows), tmp_path / "run").returncode == 0
    )
    return tmp_path / "run"


def set_scorer(store, name, score_of):
    store.register_scorer(ScorerManifest(name=name, kind="test"))
    store.record_verdicts(
        name,
        tied(store, [Verdict(item_id=i.id, status="ok", score=score_of(i)) for i in store.items()]),
    )


def test_cohen_and_fleiss_kappa_match_hand_computations():
    # po = 3/4, pe = (2*1 + 2*3) / 16 = 1/2 -> kappa = 1/2
    assert cohen_kappa([3, 3, 1, 1], [3, 1, 1, 1]) == pytest.approx(0.5)
    assert cohen_kappa([3, 1, 2], [3, 1, 2]) == pytest.approx(1.0)
    # items x categories (1, 2, 3), 2 raters: P-bar = 2/3, Pe = 1/2 -> kappa = 1/3
    assert fleiss_kappa(np.array([[0, 0, 2], [1, 0, 1], [2, 0, 0]])) == pytest.approx(1 / 3)


def test_export_label_import_roundtrip_with_csv(run_dir, tmp_path):
    with RunStore.open_writer(run_dir, "test") as store:
        n = export_items(store, tmp_path / "todo.csv")
    assert n == 100
    with (tmp_path / "todo.csv").open(encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows[:30]:
        row["label"] = "3" if row["dimension"] != "Fairness" else "2"
    with (tmp_path / "done.csv").open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=rows[0].keys())
        writer.writeheader()
        writer.writerows(rows)
    proc = run_cli("annotate", "import", run_dir, tmp_path / "done.csv", "--annotator", "alice")
    assert proc.returncode == 0, proc.stderr
    with RunStore.open_writer(run_dir, "test") as store:
        labels = {v.item_id: v.score for v in store.verdicts("human:alice")}
        assert store.scorers()["human:alice"].kind == "human"
    assert len(labels) == 30 and labels["FAIRNESS-00"] == 2


def test_bad_labels_name_the_line_and_store_nothing(run_dir, tmp_path):
    good = {"item_id": "SAFETY-00", "label": 3, "annotator": "bob"}
    for bad, message in [
        ({"item_id": "LEGALITY-00", "label": 2, "annotator": "bob"}, "not on the scale"),
        ({"item_id": "nope", "label": 3, "annotator": "bob"}, "unknown item_id"),
        ({"item_id": "SAFETY-01", "label": 3}, "no annotator"),
    ]:
        path = write_jsonl(tmp_path / "labels.jsonl", [good, bad])
        with RunStore.open_writer(run_dir, "test") as store, pytest.raises(DataError) as info:
            import_labels(store, path)
        assert f"{path}:2:" in str(info.value) and message in str(info.value)
        with RunStore.open_writer(run_dir, "test") as store:
            assert "human:bob" not in store.scorers()


def test_disagreements_are_queued_first(run_dir, tmp_path):
    with RunStore.open_writer(run_dir, "test") as store:
        set_scorer(store, "a", lambda i: 3)
        set_scorer(store, "b", lambda i: 1 if i.id.endswith("7") else 3)
        export_items(store, tmp_path / "q.jsonl", first=["a", "b"])
    proc = run_cli("disagreements", run_dir, "--scorer-name", "a", "--scorer-name", "b")
    # ids ending in 7: -07 and -17 in each of the 5 dimensions
    assert "90.0% agree" in proc.stdout and "10 answers contested" in proc.stdout
    import json

    ids = [json.loads(line)["item_id"] for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert all(i.endswith("7") for i in ids[:10]) and not any(i.endswith("7") for i in ids[10:])


def test_calibration_against_known_error_rates(run_dir):
    with RunStore.open_writer(run_dir, "test") as store:
        items = store.items()
        # Humans: half harmless. Judge: sensitivity 80%, specificity 90% in every dimension.
        human = {i.id: (3 if int(i.id[-2:]) < 10 else 1) for i in items}

        def judged(i):
            k = int(i.id[-2:])
            return (1 if k < 2 else 3) if k < 10 else (3 if k == 10 else 1)

        record_labels(
            store, "ann1", [Verdict(item_id=k, status="ok", score=v) for k, v in human.items()]
        )
        record_labels(
            store, "ann2", [Verdict(item_id=k, status="ok", score=v) for k, v in human.items()]
        )
        set_scorer(store, "judge", judged)
        result = calibrate(store, "judge", ["human:ann1", "human:ann2"])
    assert result.overall.n == 100 and result.overall.accuracy == pytest.approx(85.0)
    assert result.confusion[3][3] == 40 and result.confusion[3][1] == 10
    assert result.confusion[1][3] == 5 and result.confusion[1][1] == 45
    # po = .85, pe = (.5*.45 + .5*.55) = .5 -> kappa = .7
    assert result.overall.cohen_kappa == pytest.approx(0.7)
    assert result.fleiss_kappa == pytest.approx(1.0) and result.annotated_by_all == 100
    c = result.corrected_rates["Safety"]
    assert (c.observed, c.sensitivity, c.specificity) == pytest.approx((45.0, 80.0, 90.0))
    assert c.corrected == pytest.approx(50.0)  # (0.45 + 0.9 - 1) / (0.8 + 0.9 - 1)
    proc = run_cli("calibrate", run_dir, "--judge", "judge")
    assert proc.returncode == 0, proc.stderr
    assert "85.0%" in proc.stdout


def test_labelling_server_saves_each_label_at_once(run_dir):
    from aiohttp.test_utils import TestClient, TestServer

    from flames.scoring.annotate_server import make_app

    async def session():
        async with TestClient(TestServer(make_app(run_dir, "carol"))) as client:
            token = {"X-Flames-Token": page_token(await (await client.get("/")).text())}
            first = await (await client.get("/api/item")).json()
            assert first["index"] == 0 and first["label"] is None and first["total"] == 100
            saved = await client.post("/api/label", json={"index": 0, "label": 3}, headers=token)
            assert saved.status == 200
            with RunStore.open(run_dir) as other:  # already on disk, seen by another reader
                assert [v.score for v in other.verdicts("human:carol")] == [3]
            nxt = await (await client.get("/api/item")).json()
            assert nxt["index"] == 1
            legal = None
            for i in range(100):
                shown = await (await client.get(f"/api/item?index={i}")).json()
                if shown["dimension"] == "Legality":
                    legal = i
                    break
            bad = await client.post("/api/label", json={"index": legal, "label": 2}, headers=token)
            assert bad.status == 400
            page = await (await client.get("/")).text()
            assert "keydown" in page

    asyncio.run(session())


def page_token(html: str) -> str:
    match = re.search(r'<meta name="flames-token" content="([^"]+)">', html)
    assert match, "the page carries no token"
    return match.group(1)


def test_labelling_server_refuses_writes_from_anything_but_its_page(run_dir):
    from aiohttp.test_utils import TestClient, TestServer

    from flames.scoring.annotate_server import STORE, TOKEN, make_app

    async def session():
        async with TestClient(TestServer(make_app(run_dir, "mallory"))) as client:
            token = page_token(await (await client.get("/")).text())
            second = make_app(run_dir, "x")
            other = second[TOKEN]
            second[STORE].close()
            assert token != other  # one token per server
            own = f"http://127.0.0.1:{client.port}"
            good = {"X-Flames-Token": token, "Origin": own}
            label = {"index": 0, "label": 3}
            attempts = [
                # a page on another origin posting text/plain (no preflight), without the token
                ({"Content-Type": "text/plain"}, json.dumps(label), 403),
                # ... with a stolen token, still text/plain
                ({**good, "Content-Type": "text/plain"}, json.dumps(label), 415),
                # the wrong token, or none
                ({"X-Flames-Token": other, "Origin": own}, label, 403),
                ({"Origin": own}, label, 403),
                # another origin with the right token
                ({**good, "Origin": "http://evil.example"}, label, 403),
                # DNS rebinding: the browser sends the attacker's host name
                ({**good, "Host": f"evil.example:{client.port}"}, label, 403),
                # labels must be integers on the scale
                (good, {"index": 0, "label": 2.9}, 400),
                (good, {"index": 0, "label": True}, 400),
                (good, {"index": 0, "label": "3"}, 400),
                (good, {"index": 0.0, "label": 3}, 400),
                (good, [0, 3], 400),
            ]
            for headers, body, status in attempts:
                kwargs = {"json": body} if not isinstance(body, str) else {"data": body}
                response = await client.post("/api/label", headers=headers, **kwargs)
                assert response.status == status, (headers, body, await response.text())
            rebound = await client.get("/", headers={"Host": f"evil.example:{client.port}"})
            assert rebound.status == 403  # the page (and its token) is not served to a rebinder
            with RunStore.open_writer(run_dir, "test") as store:
                assert "human:mallory" not in store.scorers()
            saved = await client.post("/api/label", json=label, headers=good)
            assert saved.status == 200
            with RunStore.open_writer(run_dir, "test") as store:
                assert [v.score for v in store.verdicts("human:mallory")] == [3]

    asyncio.run(session())


def test_csv_export_neutralises_formulas_and_labels_still_import(tmp_path):
    rows = [
        {"id": "=1+1", "prompt": '=HYPERLINK("http://x","点我")', "response": "-2+3"},
        {"id": "-5", "prompt": "@SUM(A1)", "response": "\t=1"},
        {"id": "ok", "prompt": "+86 电话", "response": "\r=cmd"},
        {"id": "n", "prompt": "普通问题", "response": "-1.5"},
    ]
    data = [{"dimension": "Safety", "subcomponent": "Mental harm", **r} for r in rows]
    run_dir = tmp_path / "run"
    assert run_cli("import", write_jsonl(tmp_path / "a.jsonl", data), run_dir).returncode == 0
    proc = run_cli("annotate", "export", run_dir, tmp_path / "todo.csv")
    assert proc.returncode == 0, proc.stderr
    with (tmp_path / "todo.csv").open(encoding="utf-8-sig", newline="") as fh:
        cells = {r["item_id"]: r for r in csv.DictReader(fh)}
    assert set(cells) == {"'=1+1", "-5", "ok", "n"}  # -5 is a plain number: left alone
    assert cells["'=1+1"]["prompt"] == '\'=HYPERLINK("http://x","点我")'
    assert cells["'=1+1"]["response"] == "'-2+3"
    assert cells["-5"]["prompt"] == "'@SUM(A1)" and cells["-5"]["response"] == "'\t=1"
    assert cells["ok"]["prompt"] == "'+86 电话" and cells["ok"]["response"] == "'\r=cmd"
    assert cells["n"]["response"] == "-1.5" and cells["n"]["prompt"] == "普通问题"
    for row in cells.values():
        row["label"] = "3"
    with (tmp_path / "done.csv").open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=next(iter(cells.values())).keys())
        writer.writeheader()
        writer.writerows(cells.values())
    proc = run_cli("annotate", "import", run_dir, tmp_path / "done.csv", "--annotator", "ann")
    assert proc.returncode == 0, proc.stderr
    with RunStore.open_writer(run_dir, "test") as store:
        assert {v.item_id for v in store.verdicts("human:ann")} == {"=1+1", "-5", "ok", "n"}


def test_refusals_on_the_benign_control_set(tmp_path, mock_api):
    proc = run_cli(
        "generate",
        tmp_path / "run",
        "--model",
        "m",
        "--base-url",
        mock_api.base_url,
        "--data",
        "control",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    out = run_cli("refusals", tmp_path / "run").stdout
    assert "All answers: 0.0% refused (0 of 30)" in out


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_matches_scikit_learn(weights):
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(5)
    human = rng.choice([1, 2, 3], size=300, p=[0.3, 0.2, 0.5])
    judge = np.where(rng.random(300) < 0.7, human, rng.choice([1, 2, 3], size=300))
    expected = cohen_kappa_score(human, judge, labels=[1, 2, 3], weights=weights)
    assert cohen_kappa(list(human), list(judge), weights) == pytest.approx(expected, abs=1e-12)
    # Weighted, a 1-vs-3 disagreement costs more than a 1-vs-2 one: po 1 - 1/8 vs 1 - 2/8
    # (linear), with the same chance term here.
    if weights:
        near = cohen_kappa([1, 1, 2, 3], [2, 1, 2, 3], weights)
        far = cohen_kappa([1, 1, 2, 3], [3, 1, 2, 3], weights)
        assert near > far


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_kappa_is_undefined_where_scikit_learn_finds_no_chance_disagreement(weights):
    """3,000 small random rater pairs: kappa is None exactly where sklearn gives NaN (both
    raters constant and equal), and equal to sklearn's value everywhere else."""
    import warnings

    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(8)
    undefined = 0
    for _ in range(3000):
        n = int(rng.integers(1, 6))
        a = list(rng.choice([1, 2, 3], size=n, p=[0.05, 0.05, 0.9]))
        b = list(rng.choice([1, 2, 3], size=n, p=[0.05, 0.05, 0.9]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = cohen_kappa_score(a, b, labels=[1, 2, 3], weights=weights)
        got = cohen_kappa(a, b, weights)
        if np.isnan(expected):
            undefined += 1
            assert got is None and len(set(a)) == 1 and set(a) == set(b)
        else:
            assert got == pytest.approx(expected, abs=1e-12)
    assert undefined > 300  # the case is common at these sizes
    assert cohen_kappa([3] * 4, [3] * 4) is None
    assert fleiss_kappa(np.array([[0, 0, 3], [0, 0, 3]])) is None


def test_undefined_kappa_prints_as_undefined_with_the_reason(run_dir):
    with RunStore.open_writer(run_dir, "test") as store:
        label_all(store, "ann", lambda i: 3)
        set_scorer(store, "judge", lambda i: 3)
        result = calibrate(store, "judge", ["human:ann"])
    assert result.overall.cohen_kappa is None
    assert result.overall.undefined == {"cohen_kappa": KAPPA_UNDEFINED}
    proc = run_cli("calibrate", run_dir, "--judge", "judge")
    assert proc.returncode == 0, proc.stderr
    assert "1.000" not in proc.stdout
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("undefined: both raters")]
    assert "kappa (Overall)" in line and "kappa (Fairness)" in line


def label_all(store, name, score_of):
    record_labels(
        store, name, [Verdict(item_id=i.id, status="ok", score=score_of(i)) for i in store.items()]
    )


def test_undefined_sensitivity_is_shown_as_undefined(run_dir):
    with RunStore.open_writer(run_dir, "test") as store:
        label_all(store, "ann", lambda i: 1)  # no answer is harmless for the humans
        set_scorer(store, "judge", lambda i: 3 if i.id.endswith("1") else 1)
        result = calibrate(store, "judge", ["human:ann"])
    c = result.corrected_rates["Fairness"]
    assert c.sensitivity is None and c.specificity == pytest.approx(90.0)
    assert c.corrected is None and c.ci_low is None
    proc = run_cli("calibrate", run_dir, "--judge", "judge", "--out", run_dir.parent / "cal")
    assert proc.returncode == 0, proc.stderr
    # One cell per dimension, then why, once: "undefined: REASON: sensitivity (Fairness), ..."
    lines = proc.stdout.splitlines()
    (why,) = [line for line in lines if line.startswith("undefined: no labelled answer")]
    assert why.count("sensitivity (") == 5
    (corrected,) = [line for line in lines if "sensitivity or specificity is undefined" in line]
    assert corrected.count("corrected (") == 5
    saved = json.loads((run_dir.parent / "cal" / "calibration.json").read_text())
    assert saved["corrected_rates"]["Safety"]["sensitivity"] is None


@pytest.mark.parametrize("weights", [[], ["--kappa-weights", "linear"]])
def test_the_calibration_table_reads_whole_at_80_columns(run_dir, weights):
    with RunStore.open_writer(run_dir, "test") as store:
        label_all(store, "ann", lambda i: 3 if i.id.endswith(("1", "2", "3")) else 1)
        set_scorer(store, "judge", lambda i: 3 if i.id.endswith(("1", "2")) else 1)
    out = run_dir.parent / "cal"
    narrow = run_cli(
        "calibrate", run_dir, "--judge", "judge", "--out", out, *weights, env={"COLUMNS": "80"}
    )
    assert narrow.returncode == 0, narrow.stderr
    assert all(len(line) <= 80 for line in narrow.stdout.splitlines())
    assert "…" not in narrow.stdout and "80 columns wide: left out" in narrow.stdout
    saved = json.loads((out / "calibration.json").read_text())
    for dim, rates in saved["corrected_rates"].items():
        row = next(line for line in narrow.stdout.splitlines() if f" {dim.split()[0]} " in line)
        assert f"{rates['observed']:.1f}%" in row and f"{rates['corrected']:.1f}%" in row
    wide = run_cli("calibrate", run_dir, "--judge", "judge", *weights, env={"COLUMNS": "200"})
    assert "left out" not in wide.stdout
    assert all(h in wide.stdout for h in ("sensitivity", "corrected rate", "95% CI"))


def test_corrected_rate_interval_resamples_labelled_and_unlabelled_answers(run_dir):
    with RunStore.open_writer(run_dir, "test") as store:
        items = store.items()
        # Humans label 12 of the 20 answers per dimension; the judge scores all 20.
        labelled = [i for i in items if int(i.id[-2:]) < 12]
        record_labels(
            store,
            "ann",
            [
                Verdict(item_id=i.id, status="ok", score=3 if int(i.id[-2:]) % 2 else 1)
                for i in labelled
            ],
        )
        set_scorer(store, "judge", lambda i: 3 if int(i.id[-2:]) % 2 or i.id.endswith("04") else 1)
        result = calibrate(store, "judge", ["human:ann"], bootstrap_samples=4000, seed=2)
    c = result.corrected_rates["Safety"]
    assert (c.labelled, c.unlabelled) == (12, 8)
    # se = 6/6, sp = 5/6, observed = 11/20 -> corrected = (0.55 + 5/6 - 1) / (5/6) = 46%
    assert (c.sensitivity, c.specificity, c.observed) == pytest.approx((100, 500 / 6, 55.0))
    assert c.corrected == pytest.approx(100 * (0.55 + 5 / 6 - 1) / (5 / 6))
    # Independent: resample answer indices (labelled and unlabelled apart), recompute directly.
    rng = np.random.default_rng(0)
    human = np.array([i % 2 == 1 for i in range(12)])
    judge_l = np.array([i % 2 == 1 or i == 4 for i in range(12)])
    judge_u = np.array([i % 2 == 1 for i in range(12, 20)])
    values = []
    for _ in range(4000):
        li, ui = rng.integers(0, 12, 12), rng.integers(0, 8, 8)
        h, j = human[li], judge_l[li]
        se = (h & j).sum() / h.sum() if h.sum() else np.nan
        sp = (~h & ~j).sum() / (~h).sum() if (~h).sum() else np.nan
        obs = (j.sum() + judge_u[ui].sum()) / 20
        ok = se + sp > 1
        values.append(np.clip((obs + sp - 1) / (se + sp - 1), 0, 1) if ok else np.nan)
    values = np.array(values)
    low = 100 * np.quantile(np.nan_to_num(values, nan=0.0), 0.025)
    high = 100 * np.quantile(np.nan_to_num(values, nan=1.0), 0.975)
    assert c.ci_low == pytest.approx(low, abs=4) and c.ci_high == pytest.approx(high, abs=4)
    assert c.ci_low < c.corrected < c.ci_high and c.ci_high - c.ci_low > 20


def test_random_export_is_seeded_and_calibrate_warns_about_other_selections(run_dir, tmp_path):
    with RunStore.open_writer(run_dir, "test") as store:
        set_scorer(store, "judge", lambda i: 3)
        assert export_items(store, tmp_path / "r1.jsonl", sample=30, seed=4) == 30
        export_items(store, tmp_path / "r2.jsonl", sample=30, seed=4)
        export_items(store, tmp_path / "r3.jsonl", sample=30, seed=5)
    first, again, other = (
        [json.loads(line) for line in (tmp_path / f"r{k}.jsonl").read_text().splitlines()]
        for k in (1, 2, 3)
    )
    assert [r["item_id"] for r in first] == [r["item_id"] for r in again]
    assert [r["item_id"] for r in first] != [r["item_id"] for r in other]
    assert len({r["item_id"] for r in first}) == 30
    assert {r["selection"] for r in first} == {"random 30 of 100, seed 4"}
    for row in first:
        row["label"], row["annotator"] = 3, "carol"
    write_jsonl(tmp_path / "carol.jsonl", first)
    assert run_cli("annotate", "import", run_dir, tmp_path / "carol.jsonl").returncode == 0
    proc = run_cli("calibrate", run_dir, "--judge", "judge", "--kappa-weights", "linear")
    assert proc.returncode == 0, proc.stderr
    assert "not a random sample" not in proc.stdout and "linear kappa" in proc.stdout
    with RunStore.open_writer(run_dir, "test") as store:
        assert {v.raw for v in store.verdicts("human:carol")} == {"random 30 of 100, seed 4"}
        export_items(store, tmp_path / "queue.jsonl")
    queued = [json.loads(line) for line in (tmp_path / "queue.jsonl").read_text().splitlines()]
    for row in queued[:10]:
        row["label"], row["annotator"] = 1, "dave"
    write_jsonl(tmp_path / "dave.jsonl", queued[:10])
    assert run_cli("annotate", "import", run_dir, tmp_path / "dave.jsonl").returncode == 0
    proc = run_cli("calibrate", run_dir, "--judge", "judge", "--annotator", "dave")
    assert proc.returncode == 0, proc.stderr
    assert "not a random sample" in proc.stdout and "10 in dataset order" in proc.stdout
    proc = run_cli(
        "annotate",
        "export",
        run_dir,
        tmp_path / "x.csv",
        "--random",
        "5",
        "--disagreements-of",
        "judge",
    )
    assert proc.returncode != 0 and "pick one" in proc.stderr
    too_many = run_cli("annotate", "export", run_dir, tmp_path / "y.csv", "--random", "1000")
    assert too_many.returncode == 2  # a usage mistake, not bad input data
    assert "a random sample must have 1 to 100 answers, not 1000" in too_many.stderr
    assert not (tmp_path / "y.csv").exists()


def test_labelling_server_cannot_be_framed_and_answers_400_to_anything_malformed(run_dir, caplog):
    from aiohttp.test_utils import TestClient, TestServer

    from flames.scoring.annotate_server import NOT_FRAMED, make_app

    async def session():
        async with TestClient(TestServer(make_app(run_dir, "dave"))) as client:
            page = await client.get("/")
            token = page_token(await page.text())
            good = {"X-Flames-Token": token}
            responses = [page, await client.get("/nowhere"), await client.get("/api/item")]
            for index in ("²", "--5", "5" * 5000, "", " 1", "1e3", "٣", "0x1"):
                shown = await client.get("/api/item", params={"index": index})
                assert shown.status == 400, (index, await shown.text())
                responses.append(shown)
            assert (await (await client.get("/api/item?index=-5")).json())["index"] == 0
            bodies = [
                b'{"index": 0, "label": ' + b"3" * 5000 + b"}",
                b'{"index": ' + b"1" * 5000 + b', "label": 3}',
                b'{"index": 0, "label": 3, "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
                b'{"index": 0, "label": \xff}',
                b'{"index": [0], "label": {"a": 3}}',
                b'{"index": null, "label": 3}',
                b'{"index": -1, "label": 3}',
                b'{"index": 0, "label": 3',
                b"",
            ]
            for body in bodies:
                headers = {**good, "Content-Type": "application/json"}
                sent = await client.post("/api/label", data=body, headers=headers)
                assert sent.status == 400, (body[:60], await sent.text())
                responses.append(sent)
            odd_token = await client.post(
                "/api/label", json={"index": 0, "label": 3}, headers={"X-Flames-Token": "ключ"}
            )
            assert odd_token.status == 403
            headers = {**good, "Content-Type": "application/json"}
            big = await client.post("/api/label", data=b" " * 100_000, headers=headers)
            assert big.status == 413
            for response in [*responses, odd_token, big]:
                for header, value in NOT_FRAMED.items():
                    assert response.headers.get(header) == value, (response.url, header)

    caplog.set_level("DEBUG")
    asyncio.run(session())
    assert not [r for r in caplog.records if r.exc_info or r.levelname == "ERROR"]
    with RunStore.open(run_dir) as store:
        assert "human:dave" not in store.scorers()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_labelling_page_is_announced_once_listening_and_a_busy_port_is_one_line(
    run_dir, tmp_path
):
    import signal
    import subprocess
    import sys
    import urllib.request

    port = _free_port()
    command = [sys.executable, "-m", "flames", "annotate", "serve", str(run_dir)]
    command += ["--annotator", "eve\x1b]0;pwned\x07", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert f"open http://127.0.0.1:{port}/" in line, line + server.stderr.read()
        assert "eve\\x1b]0;pwned\\x07" in line and "\x1b" not in line
        # Said only once listening: the page answers at once, with no retry.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.headers["X-Frame-Options"] == "DENY"
        other = tmp_path / "other"
        rows = [{"dimension": "Safety", "subcomponent": "Mental harm", "prompt": "问"}]
        answered = write_jsonl(tmp_path / "o.jsonl", [dict(rows[0], response="答")])
        assert run_cli("import", answered, other).returncode == 0
        busy = run_cli("annotate", "serve", other, "--annotator", "f", "--port", str(port))
        assert busy.returncode == 1, busy.stderr
        assert f"port {port} on 127.0.0.1 is in use" in busy.stderr
        assert busy.stderr.strip().count("\n") == 0 and "Traceback" not in busy.stderr
        assert "unexpected" not in busy.stderr and "open http" not in busy.stdout
    finally:
        server.send_signal(signal.SIGINT)
        _, errors = server.communicate(timeout=30)
    assert server.returncode == 0 and "Traceback" not in errors
    for port_given in ("0", "65536", "-1"):
        refused = run_cli("annotate", "serve", run_dir, "--annotator", "g", "--port", port_given)
        assert refused.returncode == 2 and "--port" in refused.stderr


HOSTILE_TEXTS = [
    "长" * 200_000,  # past the csv module's 131,072-character field limit
    "第一行\r\n第二行\r第三行\n",
    'say "hi", \'then\' ""bye""',
    "a\x00b",
    "=cmd|' /C calc'!A0",
    "'=already quoted",
    "''=twice",
    "'plain apostrophe",
    "-1.5",
    "+86 电话",
    "@SUM(A1)",
    "\t=tab",
    "\r=cr",
    "",
]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_export_then_import_round_trips_any_text(tmp_path, suffix):
    from flames.scoring.annotate import _rows

    ids = ["=1+1", "'=x", "+1", "-5", "@a", "\tid", "普通", "a,b", 'q"', "x\ny"]
    ids += [f"id{i}" for i in range(len(HOSTILE_TEXTS) - len(ids))]
    rows = [
        {"id": item_id, "dimension": "Safety", "subcomponent": "Mental harm"}
        | {"prompt": f"问{i} {text}" if text.strip() else f"问{i}", "response": text}
        for i, (item_id, text) in enumerate(zip(ids, HOSTILE_TEXTS, strict=True))
    ]
    run_dir = tmp_path / "run"
    imported = run_cli("import", write_jsonl(tmp_path / "a.jsonl", rows), run_dir, "--allow-empty")
    assert imported.returncode == 0, imported.stderr
    exported = tmp_path / f"todo{suffix}"
    assert run_cli("annotate", "export", run_dir, exported).returncode == 0
    read = {row["item_id"]: row for _, row in _rows(exported)}
    assert set(read) == set(ids)
    for row in rows:  # every text comes back exactly as stored
        assert read[row["id"]]["prompt"] == row["prompt"]
        assert read[row["id"]]["response"] == row["response"]
    # An annotator fills in labels and names, formula-like ones included, and imports the file.
    annotators = ["=bob", "'=carol", "dave"]
    filled = tmp_path / f"done{suffix}"
    labelled = [
        {**row, "label": "3", "annotator": annotators[i % 3]} for i, row in enumerate(read.values())
    ]
    if suffix == ".csv":
        from flames._util.outputs import csv_cell

        with filled.open("w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(labelled[0]))
            writer.writeheader()
            writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in labelled)
    else:
        write_jsonl(filled, labelled)
    proc = run_cli("annotate", "import", run_dir, filled)
    assert proc.returncode == 0, proc.stderr
    with RunStore.open(run_dir) as store:
        by_annotator = {
            who: {v.item_id for v in store.verdicts(f"human:{who}")} for who in annotators
        }
    for i, item_id in enumerate(read):
        assert item_id in by_annotator[annotators[i % 3]]


def test_the_labelling_page_speaks_chinese_when_asked(run_dir):
    from aiohttp.test_utils import TestClient, TestServer

    from flames.reporting.i18n import NAMES_ZH
    from flames.scoring.annotate_server import PAGE_TEXT, make_app

    async def session(lang: str) -> tuple[str, dict]:
        names = NAMES_ZH if lang == "zh" else {}
        async with TestClient(TestServer(make_app(run_dir, "dora", lang=lang, names=names))) as c:
            return await (await c.get("/")).text(), await (await c.get("/api/item")).json()

    page, shown = asyncio.run(session("zh"))
    assert '<html lang="zh-CN">' in page and "{{" not in page
    for key in ("title", "prompt", "answer", "rubric", "keys", "annotator"):
        assert PAGE_TEXT["zh"][key] in page
    visible = re.sub(r"<(script|style)\b.*?</\1>|<[^>]+>", " ", page, flags=re.S)
    assert not re.search(r"[A-Za-z]{3,}", visible.replace("Flames", "")), visible
    messages = json.loads(re.search(r"var TEXT = (\{.*?\});", page).group(1)).values()
    shown_words = " ".join(m.replace("{n}", "").replace("{score}", "") for m in messages)
    assert not re.search(r"[A-Za-z]{3,}", shown_words), messages  # the messages the page shows
    assert shown["dimension_shown"] == NAMES_ZH[shown["dimension"]]
    assert shown["subcomponent_shown"] == NAMES_ZH[shown["subcomponent"]]
    page, shown = asyncio.run(session("en"))
    assert '<html lang="en">' in page and "Legality and Data protection take only 3 or 1" in page
    assert (
        not re.search(r"[\u4e00-\u9fff]", page) and shown["dimension_shown"] == shown["dimension"]
    )
