from __future__ import annotations

import json

import pytest

pytest.importorskip("pypinyin")
pytest.importorskip("opencc")

from flames.data.augment import SOURCE, TRANSFORMS, augment
from flames.data.dataset import load_dataset

from .helpers import run_cli, write_jsonl


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_every_transform_is_deterministic_and_changes_every_official_prompt(name, official):
    transform = TRANSFORMS[name]
    for item in official:
        once = transform(item.prompt, 7, item.id)
        assert once != item.prompt
        assert once == transform(item.prompt, 7, item.id)


def test_random_transforms_depend_on_the_seed(official):
    items = official.items[:50]
    for name in ("pinyin", "homophone", "roleplay", "fiction", "reverse", "unsafe-inquiry"):
        changed = sum(
            TRANSFORMS[name](i.prompt, 1, i.id) != TRANSFORMS[name](i.prompt, 2, i.id)
            for i in items
        )
        assert changed > 10, name


def test_chinese_transforms_do_what_they_say():
    text = "我应该怎么办呢？这个问题很难。"
    assert TRANSFORMS["traditional"](text, 0, "x") == "我應該怎麼辦呢？這個問題很難。"
    assert TRANSFORMS["martian"](text, 0, "x").count("莪") == 1
    pinyin = TRANSFORMS["pinyin"](text, 0, "x")
    assert any(c.isascii() and c.isalpha() for c in pinyin)
    homophone = TRANSFORMS["homophone"](text, 0, "x")
    assert len(homophone) == len(text) and homophone != text
    framed = TRANSFORMS["reverse"](text, 0, "x")
    assert text in framed and len(framed) > len(text)


def test_augmented_items_keep_their_source_and_metadata(official, tmp_path):
    base = official.sample(20, seed=1)
    augmented = augment(base, ["pinyin", "roleplay"], seed=5)
    assert len(augmented) == 60
    sources = {i.id: i for i in base}
    for item in augmented:
        source = sources[item.meta["source_id"]]
        assert (item.dimension, item.subcomponent) == (source.dimension, source.subcomponent)
        if item.meta["transform"] == SOURCE:
            assert item.id == source.id and item.prompt == source.prompt
        else:
            assert item.id == f"{source.id}~{item.meta['transform']}"
            assert item.meta["seed"] == 5
    with pytest.raises(ValueError, match="unknown transform"):
        augment(base, ["leetspeak"])
    # The CLI writes the standard schema, which loads back with ids and metadata.
    out = tmp_path / "aug.jsonl"
    proc = run_cli(
        "data",
        "augment",
        "-o",
        out,
        "--sample",
        "20",
        "--sample-seed",
        "1",
        "--transform",
        "pinyin",
        "--transform",
        "roleplay",
        "--seed",
        "5",
    )
    assert proc.returncode == 0, proc.stderr
    loaded = load_dataset(out)
    assert [(i.id, i.prompt, i.meta["transform"]) for i in loaded] == [
        (i.id, i.prompt, i.meta["transform"]) for i in augmented
    ]


def test_report_shows_the_paired_drop_per_transform(tmp_path):
    rows = []
    for n in range(40):
        dim, sub = ("Safety", "Physical harm") if n % 2 else ("Legality", "Law violation")
        base = {"dimension": dim, "subcomponent": sub, "response": "回答"}
        rows.append(
            {
                **base,
                "id": f"s{n}",
                "prompt": f"问题{n}",
                "source_id": f"s{n}",
                "transform": "none",
                "predicted": 3,
            }
        )
        rows.append(
            {
                **base,
                "id": f"s{n}~roleplay",
                "prompt": f"扮演：问题{n}",
                "source_id": f"s{n}",
                "transform": "roleplay",
                "predicted": 1 if n % 4 < 2 else 3,
            }
        )
        rows.append(
            {
                **base,
                "id": f"s{n}~pinyin",
                "prompt": f"wenti{n}",
                "source_id": f"s{n}",
                "transform": "pinyin",
                "predicted": 3,
            }
        )
    path = write_jsonl(tmp_path / "scored.jsonl", rows)
    proc = run_cli("score-file", path, "--run", tmp_path / "run", "--bootstrap", "300")
    assert proc.returncode == 0, proc.stderr
    assert "Robustness" in proc.stdout
    effects = {
        e["transform"]: e
        for e in json.loads((tmp_path / "run" / "report" / "robustness.json").read_text())
    }
    assert set(effects) == {"roleplay", "pinyin"}
    role = effects["roleplay"]
    for dim in ("Safety", "Legality"):
        d = role["dimensions"][dim]
        assert (d["n"], d["rate_a"], d["rate_b"], d["difference"]) == (20, 100.0, 50.0, -50.0)
        assert d["ci_high"] < 0 and d["a_higher"] == 10 and d["b_higher"] == 0
    assert role["overall"]["difference"] == pytest.approx(-50.0)
    # The overall row is tested as the mean of dimensions, not by McNemar on pooled items.
    assert role["overall"]["test"] == "stratified sign-flip permutation, mid-p"
    # No sign pattern of 300 is as extreme: the mid-p counts the observed one half.
    assert role["overall"]["p_value"] == pytest.approx(0.5 / 301)
    # Every cell of the table is adjusted together for the false discovery rate (12 cells).
    assert role["overall"]["adjustment"] == "bh" and role["overall"]["p_adjusted"] > 0.5 / 301
    assert effects["pinyin"]["overall"]["difference"] == 0
    assert effects["pinyin"]["overall"]["p_value"] == 1
    page = (tmp_path / "run" / "report" / "report.html").read_text()
    assert "Robustness under prompt transforms" in page and "-50.0" in page
    markdown = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "| roleplay | Safety | 20 | 100.0% | 50.0% | -50.0 |" in markdown
