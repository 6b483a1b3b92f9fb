"""Labels and splits for training (no torch needed), and the held-out statistics against
scikit-learn and closed forms."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flames.analysis.scorer_eval import agreement, macro_f1
from flames.data.taxonomy import Dimension
from flames.errors import DataError, UsageError
from flames.training.labels import Example, load_labels, pair_key
from flames.training.split import SplitSettings, split_labels
from flames.training.synthetic import synthetic_labels, write_labels

from .helpers import write_jsonl
from .test_intervals import laud_scas


def test_a_score_off_its_scale_is_refused_naming_the_file_and_line(tmp_path):
    rows = synthetic_labels(3)
    rows[2] = {**rows[2], "dimension": "Legality", "score": 2}
    path = write_jsonl(tmp_path / "l.jsonl", rows)
    with pytest.raises(DataError, match=r"l.jsonl:3: score 2 is not on the Legality scale"):
        load_labels([path])
    rows[2] = {**rows[2], "dimension": "Virtue?", "score": 1}
    with pytest.raises(DataError, match=r":3: unknown dimension"):
        load_labels([write_jsonl(tmp_path / "l.jsonl", rows)])
    rows[2] = {**rows[2], "dimension": "Safety", "response": None}
    with pytest.raises(DataError, match=r":3: 'response' must be a string"):
        load_labels([write_jsonl(tmp_path / "l.jsonl", rows)])


def test_exported_label_files_are_read_and_unlabelled_rows_skipped(tmp_path):
    rows = [
        {k: v for k, v in r.items() if k != "score"} | {"label": str(r["score"])}
        for r in synthetic_labels(4)
    ]
    rows[1]["label"] = ""
    found = load_labels([write_jsonl(tmp_path / "export.jsonl", rows)])
    assert len(found) == 3 and all(e.human for e in found)


def test_verdicts_are_never_mixed_with_human_labels_unless_asked(tmp_path):
    rows = synthetic_labels(4)
    rows[0]["source"] = "scorer:flames-scorer"
    path = write_jsonl(tmp_path / "l.jsonl", rows)
    with pytest.raises(UsageError, match="mix human labels with verdicts of scorer:flames-scorer"):
        load_labels([path])
    assert len(load_labels([path], from_scorer="x", mix=True)) == 4


def test_the_label_hash_ignores_order_and_sees_a_changed_score(tmp_path):
    rows = synthetic_labels(20)
    a = load_labels([write_jsonl(tmp_path / "a.jsonl", rows)]).sha256
    b = load_labels([write_jsonl(tmp_path / "b.jsonl", rows[::-1])]).sha256
    rows[5] = {**rows[5], "score": 3 if rows[5]["score"] != 3 else 1}
    c = load_labels([write_jsonl(tmp_path / "c.jsonl", rows)]).sha256
    assert a == b != c


def test_human_labels_and_distillation_from_a_run(tmp_path):
    from flames._api import import_answers, import_labels

    rows = synthetic_labels(6)
    answers = [
        {
            "id": f"q{i}",
            "dimension": r["dimension"],
            "prompt": r["prompt"],
            "response": r["response"],
        }
        for i, r in enumerate(rows)
    ]
    import_answers(write_jsonl(tmp_path / "a.jsonl", answers), tmp_path / "run", model="m1")
    labels = [{"item_id": f"q{i}", "label": r["score"]} for i, r in enumerate(rows)]
    import_labels(tmp_path / "run", write_jsonl(tmp_path / "ann.jsonl", labels), annotator="ann")
    other = [
        {**x, "label": 3 if r["dimension"] in ("Legality", "Data protection") else 2}
        for x, r in zip(labels, rows, strict=True)
    ]
    import_labels(tmp_path / "run", write_jsonl(tmp_path / "b.jsonl", other[:2]), annotator="bob")
    found = load_labels([tmp_path / "run"], annotators=["ann"])
    assert [e.score for e in found] == [r["score"] for r in rows]
    assert {e.model for e in found} == {"m1"}
    majority = load_labels([tmp_path / "run"])  # ann and bob disagree on 2: no majority there
    assert majority.ties == sum(
        a["label"] != b["label"] for a, b in zip(labels[:2], other[:2], strict=True)
    )
    distilled = load_labels([tmp_path / "run"], from_scorer="human:bob")
    assert len(distilled) == 2
    with pytest.raises(UsageError, match="no scorer named 'judge:x'"):
        load_labels([tmp_path / "run"], from_scorer="judge:x")


def _examples(n: int = 200) -> list[Example]:
    return [
        Example(
            dimension=Dimension(r["dimension"]),
            prompt=r["prompt"],
            response=r["response"],
            score=r["score"],
            model=r["model"],
        )
        for r in synthetic_labels(n)
    ]


def test_a_split_by_model_leaks_no_prompt_and_response_pair():
    examples = _examples()
    # The same answer to the same prompt from a held-out model and a training model.
    twin = examples[0]
    examples.append(Example(twin.dimension, twin.prompt, twin.response, twin.score, "model-3"))
    assert twin.model != "model-3"
    split = split_labels(
        examples,
        SplitSettings(kind="model", test_models=["model-3"], validation_models=["model-2"]),
    )
    sides = [{e.key for e in split.side(s)} for s in ("train", "validation", "test")]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert twin.key in sides[2] and split.moved >= 1
    held_out_keys = {e.key for e in examples if e.model == "model-3"}
    assert all(e.model == "model-3" or e.key in held_out_keys for e in split.test)
    assert {e.model for e in split.train} <= {"model-0", "model-1"}
    stored = split.describe()
    assert set(stored["sides"]["test"]["keys"]) == sides[2]


def test_a_split_by_prompt_holds_out_whole_prompts_and_random_is_seeded():
    examples = _examples()
    split = split_labels(examples, SplitSettings(kind="prompt", test=0.2, validation=0.1))
    prompts = [{e.prompt for e in split.side(s)} for s in ("train", "validation", "test")]
    assert not (prompts[0] & prompts[2]) and prompts[2]
    a = split_labels(examples, SplitSettings(seed=1))
    b = split_labels(examples, SplitSettings(seed=1))
    c = split_labels(examples, SplitSettings(seed=2))
    assert [e.key for e in a.test] == [e.key for e in b.test] != [e.key for e in c.test]


def test_a_split_by_model_needs_models_it_knows():
    examples = _examples(20)
    with pytest.raises(UsageError, match="held-out models nobody"):
        split_labels(examples, SplitSettings(kind="model", test_models=["nobody"]))
    unknown = [Example(e.dimension, e.prompt, e.response, e.score) for e in examples]
    with pytest.raises(UsageError, match="do not say which model answered"):
        split_labels(unknown, SplitSettings(kind="model", test_models=["model-1"]))


def test_agreement_statistics_equal_scikit_learn_and_closed_forms():
    from sklearn.metrics import cohen_kappa_score, confusion_matrix, f1_score

    rng = np.random.default_rng(3)
    labels = rng.choice([1, 2, 3], size=300, p=[0.3, 0.2, 0.5])
    noisy = np.where(rng.random(300) < 0.3, rng.choice([1, 2, 3], size=300), labels)
    found = agreement(labels.tolist(), noisy.tolist(), (1, 2, 3), bootstrap=500)
    hits = int((labels == noisy).sum())
    assert found.accuracy.value == pytest.approx(100 * hits / 300)
    low, high = laud_scas(np.array([hits]), 300)  # the reports' rate interval, in closed form
    assert (found.accuracy.ci_low, found.accuracy.ci_high) == pytest.approx(
        (100 * low[0], 100 * high[0])
    )
    assert found.macro_f1.value == pytest.approx(100 * f1_score(labels, noisy, average="macro"))
    assert found.macro_f1.ci_low < found.macro_f1.value < found.macro_f1.ci_high
    for weights, ours in (
        (None, found.cohen_kappa),
        ("linear", found.kappa_linear),
        ("quadratic", found.kappa_quadratic),
    ):
        assert ours == pytest.approx(cohen_kappa_score(labels, noisy, weights=weights))
    matrix = confusion_matrix(labels, noisy, labels=[1, 2, 3])
    assert [[found.confusion[a][b] for b in (1, 2, 3)] for a in (1, 2, 3)] == matrix.tolist()
    gap = 100 * (np.mean(noisy == 3) - np.mean(labels == 3))
    assert found.harmless_gap.value == pytest.approx(gap)


def test_macro_f1_counts_a_class_never_seen_nor_predicted_as_scikit_learn_does():
    from sklearn.metrics import f1_score

    labels, predicted = np.array([1, 1, 3, 3]), np.array([1, 3, 3, 3])
    theirs = f1_score(labels, predicted, labels=[1, 2, 3], average="macro", zero_division=0)
    assert float(macro_f1(labels, predicted, (1, 2, 3))) == pytest.approx(theirs)


def test_pair_keys_separate_prompt_from_response():
    assert pair_key("ab", "c") != pair_key("a", "bc")


def test_the_synthetic_label_file_round_trips(tmp_path):
    path = write_labels(tmp_path / "s.jsonl", 10)
    assert [json.loads(line)["score"] for line in path.read_text("utf-8").splitlines()] == [
        r["score"] for r in synthetic_labels(10)
    ]


def test_kappa_is_undefined_when_labels_and_predictions_are_one_score():
    """scikit-learn's kappa is NaN there; flames says undefined, with the reason, and prints
    it as such instead of failing."""
    import io
    import warnings

    from rich.console import Console
    from sklearn.metrics import cohen_kappa_score

    from flames.analysis.calibration import KAPPA_UNDEFINED
    from flames.analysis.scorer_eval import ScorerComparison, evaluate_predictions
    from flames.reporting.scorer_eval import print_scorer_comparison

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns that it is undefined
        assert np.isnan(cohen_kappa_score([3] * 4, [3] * 4))
    found = agreement([3] * 4, [3] * 4, (1, 2, 3), bootstrap=50)
    assert found.cohen_kappa is None and found.kappa_quadratic is None
    assert found.undefined["cohen_kappa"] == KAPPA_UNDEFINED
    assert found.accuracy.value == 100.0
    evaluation = evaluate_predictions(
        "rule", "callable", ["Safety"] * 4, {"Safety": (1, 2, 3)}, [3] * 4, [3] * 4, bootstrap=50
    )
    comparison = ScorerComparison(
        n=4, selection="random", labels={}, scorers=[evaluation], bootstrap_samples=50, seed=0
    )
    out = io.StringIO()
    print_scorer_comparison(comparison, Console(file=out, width=200))
    assert f"undefined: {KAPPA_UNDEFINED}: kappa of rule (all), rule (Safety)" in out.getvalue()
