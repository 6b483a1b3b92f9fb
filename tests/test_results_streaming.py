"""The streamed, array-backed results against a straightforward computation over the store's
answer and verdict objects, on a small run with every kind of gap."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from flames.analysis.refusal import is_refusal, refusal_stats
from flames.analysis.results import load_results
from flames.data.dataset import Item
from flames.data.taxonomy import HARMLESS, SUBCOMPONENTS, Dimension
from flames.reporting.html_report import worst_answers
from flames.reporting.report import write_scored
from flames.runs.records import (
    Answer,
    DatasetInfo,
    Decoding,
    GeneratorInfo,
    RunManifest,
    ScorerManifest,
    Verdict,
)
from flames.runs.store import RunStore

from .helpers import tied

SAMPLES = 3


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """60 prompts x 3 samples: some answers missing or failed, some verdicts missing or failed,
    probabilities on some, truncation on some, refusals and augmented items."""
    rng = random.Random(7)
    items = []
    for i in range(60):
        dim = list(Dimension)[i % 5]
        meta = {"source_id": f"i{i - i % 2}", "transform": "none" if i % 2 == 0 else "pinyin"}
        items.append(
            Item(
                id=f"i{i}",
                dimension=dim,
                subcomponent=SUBCOMPONENTS[dim][i % len(SUBCOMPONENTS[dim])],
                prompt=f"问题 {i}",
                meta=meta if i < 40 else {},
            )
        )
    manifest = RunManifest(
        dataset=DatasetInfo(
            name="t", source_sha256="0" * 64, items_sha256="0" * 64, selection="all", n_items=60
        ),
        generator=GeneratorInfo(backend="test", model="m", decoding=Decoding(samples=SAMPLES)),
    )
    run_dir = tmp_path_factory.mktemp("run") / "run"
    store = RunStore.create_or_resume(run_dir, manifest, items)
    store.register_scorer(ScorerManifest(name="s", kind="test"))
    answers, verdicts = [], []
    for item in items:
        for sample in range(SAMPLES):
            u = rng.random()
            if u < 0.05:
                continue  # never generated
            if u < 0.1:
                answers.append(Answer(item_id=item.id, sample=sample, status="error", error="x"))
                continue
            response = "抱歉，我不能回答。" if rng.random() < 0.3 else f"回答 {item.id}/{sample}"
            answers.append(
                Answer(
                    item_id=item.id,
                    sample=sample,
                    status="ok",
                    response=response,
                    prompt_tokens=rng.randint(1, 9),
                    completion_tokens=rng.randint(1, 9),
                )
            )
            v = rng.random()
            if v < 0.05:
                continue  # not scored
            if v < 0.1:
                verdicts.append(Verdict(item_id=item.id, sample=sample, status="error", error="y"))
                continue
            score = rng.choice(item.dimension.scale)
            probs = [rng.random() for _ in item.dimension.scale] if rng.random() < 0.7 else None
            verdicts.append(
                Verdict(
                    item_id=item.id,
                    sample=sample,
                    status="ok",
                    score=score,
                    probabilities=probs,
                    truncated=rng.random() < 0.2,
                )
            )
    # An item none of whose samples were generated (so none was judged either).
    answers = [a for a in answers if a.item_id != "i59"]
    verdicts = [v for v in verdicts if v.item_id != "i59"]
    store.record_answers(answers)
    store.record_verdicts("s", tied(store, verdicts))
    store.close()
    return run_dir


def naive_rows(run_dir):
    """(item, sample, answer, verdict, score, problem) the plain way, from the store's objects."""
    with RunStore.open(run_dir) as store:
        answers = {(a.item_id, a.sample): a for a in store.answers()}
        verdicts = {(v.item_id, v.sample): v for v in store.verdicts("s")}
        rows = []
        for item in store.items():
            for s in range(SAMPLES):
                a, v = answers.get((item.id, s)), verdicts.get((item.id, s))
                if a is None:
                    problem = "not generated"
                elif a.status == "error":
                    problem = "generation error"
                elif v is None:
                    problem = "not scored"
                elif v.status == "error":
                    problem = "judge error"
                else:
                    problem = None
                score = v.score if problem is None else None
                rows.append((item, s, a, v, score, problem))
        return rows


def test_scored_items_problems_usage_and_refusals_match_the_plain_computation(run_dir):
    results = load_results(run_dir)
    rows = naive_rows(run_dir)
    expected = []
    for i in range(0, len(rows), SAMPLES):
        group = rows[i : i + SAMPLES]
        scores = [r[4] for r in group if r[4] is not None]
        problems = sorted({r[5] for r in group if r[5]})
        expected.append((group[0][0].dimension, group[0][0].subcomponent, scores, problems))
    got = [(s.dimension, s.subcomponent, list(s.scores), s.problem) for s in results.scored_items()]
    assert got == [(d, sub, sc, None if sc else ", ".join(p)) for d, sub, sc, p in expected]
    assert any(not sc for _, _, sc, _ in expected)  # the fixture has unscored items

    assert results.problem_counts() == dict(Counter(r[5] for r in rows if r[5]))
    assert results.truncated == sum(1 for r in rows if r[3] and r[3].truncated)
    assert results.usage == {
        "prompt_tokens": sum(r[2].prompt_tokens or 0 for r in rows if r[2]),
        "completion_tokens": sum(r[2].completion_tokens or 0 for r in rows if r[2]),
    }
    ok = [(r[0].dimension.value, r[2].response) for r in rows if r[2] and r[2].status == "ok"]
    assert results.refusals["all"].answered == len(ok)
    assert results.refusals["all"].refused == sum(is_refusal(t) for _, t in ok) > 0
    expected_refusals = refusal_stats(ok)
    assert results.refusals == expected_refusals
    assert list(results.refusals) == list(expected_refusals)  # same order in report.json

    rates = {}
    for item in {r[0].id: r[0] for r in rows}.values():
        scores = [r[4] for r in rows if r[0].id == item.id and r[4] is not None]
        if scores:
            rates[item.id] = (item.dimension, sum(s == HARMLESS for s in scores) / len(scores))
    assert results.item_rates() == rates
    assert results.transform_names() == ["pinyin"]


def test_scored_jsonl_holds_every_row_as_the_plain_computation_writes_it(run_dir, tmp_path):
    results = load_results(run_dir)
    path = write_scored(results, tmp_path / "scored.jsonl")
    expected = [
        {
            "id": item.id,
            "dimension": item.dimension.value,
            "subcomponent": item.subcomponent,
            "sample": s,
            "prompt": item.prompt,
            "response": a.response if a else None,
            "predicted": score,
            "problem": problem,
            "probabilities": v.probabilities if v else None,
            "truncated": v.truncated if v else None,
        }
        for item, s, a, v, score, problem in naive_rows(run_dir)
    ]
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == expected
    assert len(lines) == 60 * SAMPLES


def test_worst_answers_match_a_plain_sort_and_respect_the_limit(run_dir):
    results = load_results(run_dir)
    candidates = []
    for item, s, a, v, score, _ in naive_rows(run_dir):
        if score is not None and score != HARMLESS:
            p_harm = 1 - v.probabilities[0] if v.probabilities else None
            candidates.append((score, -(p_harm or 0), item.id, s, p_harm, a.response))
    candidates.sort(key=lambda c: c[:2])
    for limit in (5, 500):
        shown = worst_answers(results, limit=limit)
        assert len(shown) == min(limit, len(candidates))
        assert [(w.score, w.p_harm) for w in shown] == [
            (c[0], pytest.approx(c[4]) if c[4] is not None else None) for c in candidates[:limit]
        ]
        # Ties on (score, p_harm) may come in any order; the texts must belong to their rows.
        texts = {(c[0], c[5]) for c in candidates}
        assert all((w.score, w.response) in texts for w in shown)


def test_import_stores_the_rows_answer_and_verdict_objects_would(tmp_path):
    from flames.runs.imports import import_answers
    from flames.runs.store import text_sha

    from .helpers import write_jsonl

    rows = [
        {"dimension": d.value, "prompt": f"问题 {i}", "response": f"回答 {i}", "predicted": 3}
        for i, d in enumerate(Dimension)
    ]
    with import_answers(write_jsonl(tmp_path / "a.jsonl", rows), tmp_path / "run") as store:
        answers, verdicts = store.answers(), store.verdicts("imported")
    expected_answers = [
        Answer(item_id=a.item_id, status="ok", response=a.response).model_dump(
            exclude={"created_at"}
        )
        for a in answers
    ]
    assert [a.model_dump(exclude={"created_at"}) for a in answers] == expected_answers
    assert sorted(a.response for a in answers) == sorted(r["response"] for r in rows)
    expected_verdicts = [
        Verdict(item_id=a.item_id, status="ok", score=3, answer_sha=text_sha(a.response))
        for a in answers
    ]
    assert [v.model_dump(exclude={"created_at"}) for v in verdicts] == [
        v.model_dump(exclude={"created_at"}) for v in expected_verdicts
    ]


def test_rows_for_python_users_match_the_arrays(run_dir):
    results = load_results(run_dir)
    rows = results.rows
    assert [(r.item.id, r.sample, r.score, r.problem) for r in rows] == [
        (item.id, s, score, problem) for item, s, _, _, score, problem in naive_rows(run_dir)
    ]
    assert [r.score or 0 for r in rows] == results.scores.ravel().tolist()


def test_import_streams_in_chunks_and_fingerprints_items_as_a_loaded_dataset_would(
    tmp_path, monkeypatch
):
    import flames.runs.imports as imports
    from flames.data.dataset import Dataset

    from .helpers import write_jsonl

    monkeypatch.setattr(imports, "CHUNK", 3)  # several chunks, the last one short
    rows = [
        {
            "dimension": d.value,
            "subcomponent": SUBCOMPONENTS[d][0],
            "prompt": f"问题 {d.value} {k}",
            "response": f"回答 {k}",
            "predicted": 3 if k % 2 else 1,
            "source": f"s{k}",
        }
        for d in Dimension
        for k in range(2)
    ]
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    with imports.import_answers(path, tmp_path / "run") as store:
        manifest, items = store.manifest, store.items()
        answers, verdicts = store.answers(), store.verdicts("imported")
    assert [(i.prompt, i.meta) for i in items] == [
        (r["prompt"], {"source": r["source"]}) for r in rows
    ]
    expected = Dataset(name="a", source_sha256="-", items=items)
    assert manifest.dataset.items_sha256 == expected.items_sha256
    assert manifest.dataset.n_items == len(rows) == len(answers) == len(verdicts)
    by_id = {i.id: i.prompt for i in items}
    score_of = {r["prompt"]: r["predicted"] for r in rows}
    assert all(v.score == score_of[by_id[v.item_id]] for v in verdicts)


def test_an_import_mixing_scored_and_unscored_rows_names_the_row_and_leaves_no_run(tmp_path):
    from .helpers import run_cli, write_jsonl

    rows = [
        {"dimension": "Safety", "prompt": f"问题 {k}", "response": "答", "predicted": 3}
        for k in range(4)
    ]
    del rows[2]["predicted"]
    proc = run_cli("import", write_jsonl(tmp_path / "mixed.jsonl", rows), tmp_path / "run")
    assert proc.returncode == 3, proc.stderr
    assert "mixed.jsonl:3: this row is the first whose 'predicted' differs" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "run.db").exists()


def test_import_reads_its_file_once_and_records_the_bytes_it_read(tmp_path, monkeypatch):
    import hashlib
    from pathlib import Path

    import flames.runs.imports as imports
    from flames.errors import ManifestMismatch
    from flames.runs.store import RunStore

    from .helpers import write_jsonl

    rows = [
        {"dimension": "Safety", "prompt": f"问题 {k}", "response": "答", "predicted": 3}
        for k in range(3)
    ]
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    original = path.read_bytes()
    opened = []
    real_open = Path.open

    def counting_open(self, *args, **kwargs):
        if self == path:
            opened.append(args)
        return real_open(self, *args, **kwargs)

    fill = imports._fill

    def fill_then_append(*args):
        manifest = fill(*args)
        with real_open(path, "a", encoding="utf-8") as fh:  # too late: the pass is over
            fh.write(
                '{"dimension": "Safety", "prompt": "后来加的", "response": "答", "predicted": 1}\n'
            )
        return manifest

    monkeypatch.setattr(Path, "open", counting_open)
    monkeypatch.setattr(imports, "_fill", fill_then_append)
    with imports.import_answers(path, tmp_path / "run") as store:
        manifest = store.manifest
        assert store.count_answers() == 3
    assert len(opened) == 1  # one pass: validated, fingerprinted and stored as it was read
    assert manifest.dataset.source_sha256 == hashlib.sha256(original).hexdigest()
    assert manifest.dataset.n_items == 3
    monkeypatch.setattr(imports, "_fill", fill)
    with pytest.raises(ManifestMismatch):  # the longer file is another file
        imports.import_answers(path, tmp_path / "run").close()
    with RunStore.open(tmp_path / "run") as store:
        assert store.count_answers() == 3
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")) == []


def test_a_bad_line_leaves_an_existing_run_as_it_was_and_a_good_import_adds_nothing_twice(
    tmp_path,
):
    import sqlite3

    from flames.errors import DataError
    from flames.runs import imports

    from .helpers import write_jsonl

    rows = [
        {"dimension": "Safety", "prompt": f"问题 {k}", "response": "答", "predicted": 3}
        for k in range(5)
    ]
    good = write_jsonl(tmp_path / "a.jsonl", rows)
    run_dir = tmp_path / "run"
    imports.import_answers(good, run_dir).close()

    def dump() -> list:
        with sqlite3.connect(run_dir / "run.db") as db:
            return [
                db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
                for t in ("items", "answers", "scorers", "verdicts", "meta")
            ]

    before = dump()
    bad = tmp_path / "bad" / "a.jsonl"  # the same name, a bad last line
    bad.parent.mkdir()
    bad.write_bytes(good.read_bytes() + b'{"dimension": "Safety", "prompt": 1}\n')
    with pytest.raises(DataError, match=":6: field 'prompt' must be a string"):
        imports.import_answers(bad, run_dir)
    imports.import_answers(good, run_dir).close()  # the same file again: nothing changes
    assert dump() == before
    assert not [p.name for p in run_dir.iterdir() if "partial" in p.name]  # no temporary left


def test_import_and_score_file_refuse_what_they_cannot_read_in_one_line(tmp_path):
    from .helpers import run_cli, write_jsonl

    unscored = write_jsonl(
        tmp_path / "unscored.jsonl", [{"dimension": "Safety", "prompt": "问", "response": "答"}]
    )
    (tmp_path / "a-file").write_text("x")
    cases = [
        (("import", tmp_path / "nope.jsonl", tmp_path / "r1"), 3, "nope.jsonl: no such file"),
        (("import", tmp_path, tmp_path / "r2"), 3, "not a regular file"),
        (("score-file", tmp_path / "nope.jsonl"), 3, "no such file"),
        (("import", unscored, tmp_path / "a-file"), 2, "a-file: not a directory"),
        (("score-file", unscored, "--run", tmp_path / "r3"), 3, "no 'predicted' field"),
    ]
    for args, code, message in cases:
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == code, (args, proc.stderr)
        assert message in proc.stderr and "unexpected" not in proc.stderr, proc.stderr
    assert not any((tmp_path / r).exists() for r in ("r1", "r2", "r3"))
    assert (tmp_path / "a-file").read_text() == "x"


def test_a_subcomponent_from_the_reference_is_named_as_such(tmp_path, official):
    from .helpers import run_cli, write_jsonl

    item = next(i for i in official if i.dimension.value == "Fairness")
    row = {"dimension": "Safety", "prompt": item.prompt, "response": "答"}  # not its dimension
    proc = run_cli(
        "import", write_jsonl(tmp_path / "a.jsonl", [row]), tmp_path / "run",
        "--reference", "official",
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "a.jsonl:1: subcomponent" in proc.stderr
    assert "(the reference's, for this prompt) does not belong to Safety" in proc.stderr
