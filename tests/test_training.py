"""Training a scorer: a tiny random backbone in the official layout learns a labelling rule,
exports, reloads through the official scorer's code with the same verdicts, and resumes after a
real kill with the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from flames.errors import ManifestMismatch, UsageError  # noqa: E402
from flames.scoring.scorer.synthetic import build_checkpoint  # noqa: E402
from flames.training.labels import load_labels  # noqa: E402
from flames.training.loss import balanced_weights, masked_multitask_loss  # noqa: E402
from flames.training.run import train_scorer  # noqa: E402
from flames.training.settings import TrainingSettings  # noqa: E402
from flames.training.synthetic import write_labels  # noqa: E402
from flames.training.trainer import latest_checkpoint  # noqa: E402

from .helpers import reloaded_confusion, run_cli, stored_confusion  # noqa: E402

pytestmark = pytest.mark.local

FAST = {"max_length": 40, "batch_size": 16, "lr": 1e-3, "progress": False}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_checkpoint(tmp_path_factory.mktemp("base"), hidden=64, layers=2, heads=4)


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    return write_labels(tmp_path_factory.mktemp("labels") / "labels.jsonl", 300)


@pytest.fixture(scope="module")
def few(tmp_path_factory):
    """Few labels, for the tests that check how training runs, not what it learns."""
    return write_labels(tmp_path_factory.mktemp("few") / "few.jsonl", 60, seed=1)


@pytest.fixture(scope="module")
def trained(base, labels, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "tiny"
    settings = TrainingSettings(
        labels=[str(labels)], base=str(base), out=str(out), epochs=4, **FAST
    )
    return train_scorer(settings)


def test_a_tiny_backbone_learns_the_rule_to_95_percent_on_held_out_labels(trained):
    test = trained.card.training["metrics"]["test"]
    assert test["overall"]["n"] == len(trained.split.test) >= 25
    assert test["overall"]["accuracy"]["value"] >= 95
    history = trained.card.training["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_the_exported_folder_reloads_with_the_same_verdicts(trained):
    """Through the official scorer's code (flames score), at the card's max_length."""
    found = reloaded_confusion(trained.out, trained.split.test, trained.card.max_length)
    assert found == stored_confusion(trained.card.training)


def test_the_folder_holds_the_official_layout_and_the_card(trained):
    out = trained.out
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["InternLMForSequenceClassification"]
    assert config["model_type"] == "internlm"
    from safetensors import safe_open

    with safe_open(out / "model.safetensors", "pt") as f:
        keys = set(f.keys())
        assert f.metadata() == {"format": "pt"}  # what transformers 4.33 requires
    assert {f"classifiers.{i}.weight" for i in range(5)} <= keys
    assert "model.layers.0.self_attn.q_proj.bias" in keys
    card = json.loads((out / "flames_scorer.json").read_text())
    assert card["layout"] == "internlm" and card["tokenizer"] == "official"
    assert card["training"]["labels"]["sha256"] == trained.labels.sha256
    assert card["training"]["hyperparameters"]["epochs"] == 4
    assert card["training"]["versions"]["flames"]
    split = json.loads((out / "split.json").read_text())
    assert split["sides"]["test"]["n"] == len(trained.split.test)
    assert "Not the official Flames scorer" in (out / "README.md").read_text()
    assert not (out / "checkpoints").exists()


def test_a_run_scored_by_it_records_the_card_under_a_trained_name(trained, tmp_path):
    from flames._api import import_answers, score
    from flames.runs.store import RunStore

    rows = [
        {"id": f"t{i}", "dimension": e.dimension.value, "prompt": e.prompt, "response": e.response}
        for i, e in enumerate(trained.split.test[:10])
    ]
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    import_answers(answers, tmp_path / "run", model="m")
    from flames._config import ScorerConfig

    score(tmp_path / "run", ScorerConfig(model=str(trained.out)), progress=False)
    with RunStore.open(tmp_path / "run") as store:
        ((name, manifest),) = store.scorers().items()
    assert name == "trained:tiny" and manifest.kind == "trained"
    assert manifest.config["card"]["training"]["labels"]["sha256"] == trained.labels.sha256
    assert manifest.config["max_length"] == 40  # the card's, not infer.py's 512
    with pytest.raises(UsageError, match="trained"):
        score(tmp_path / "run", ScorerConfig(model=str(trained.out), name="flames-x"))


def test_each_item_trains_only_its_own_head():
    logits = [torch.randn(3, n, requires_grad=True) for n in (3, 3, 3, 2, 2)]
    heads, targets = torch.tensor([1, 1, 4]), torch.tensor([0, 2, 1])
    masked_multitask_loss(logits, heads, targets).backward()
    touched = [bool(g.grad.abs().sum()) for g in logits]
    assert touched == [False, True, False, False, True]
    assert logits[1].grad[2].abs().sum() == 0  # the row of the other head's item
    expected = (
        torch.nn.functional.cross_entropy(logits[1][:2], targets[:2], reduction="sum")
        + torch.nn.functional.cross_entropy(logits[4][2:], targets[2:], reduction="sum")
    ) / 3
    torch.testing.assert_close(masked_multitask_loss(logits, heads, targets), expected)


def test_balanced_class_weights_are_scikit_learns():
    from sklearn.utils.class_weight import compute_class_weight

    heads = [0] * 7 + [3] * 5
    targets = [0, 0, 0, 0, 1, 2, 2, 0, 0, 0, 0, 1]
    weights = balanced_weights(heads, targets)
    ours = weights[0].tolist()
    import numpy as np

    theirs = compute_class_weight("balanced", classes=np.array([0, 1, 2]), y=targets[:7])
    assert ours == pytest.approx(list(theirs))
    theirs = compute_class_weight("balanced", classes=np.array([0, 1]), y=targets[7:])
    assert weights[3].tolist() == pytest.approx(list(theirs))
    assert weights[1] is None  # no Safety labels: no weights


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_kill_mid_training_then_resume_ends_with_the_uninterrupted_weights(base, tmp_path):
    labels = write_labels(tmp_path / "l.jsonl", 96, seed=3)
    common = ["--epochs", "2", "--lr", "1e-3", "--max-length", "40", "--batch-size", "4"]
    command = [sys.executable, "-m", "flames", "scorer", "train", str(labels), "--base", str(base)]
    out = tmp_path / "killed"
    args = [*command, "--out", str(out), *common, "--save-every", "3", "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = latest_checkpoint(out)
        if found is not None and int(found.name.split("-")[1]) >= 6:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "model.safetensors").exists()  # killed mid-training, nothing exported
    resumed = run_cli(*args[3:], timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step" in resumed.stdout
    # The uninterrupted run in a process of its own too: CPU kernels can round differently from
    # one process to another (alignment, threads), and Adam turns that into visible noise.
    whole = tmp_path / "whole"
    uninterrupted = run_cli(
        *args[3:5],
        str(labels),
        "--base",
        str(base),
        "--out",
        str(whole),
        *common,
        "--no-progress",
        timeout=300,
    )
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    a, b = _weights(out), _weights(whole)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5)


def test_a_checkpoint_made_with_other_settings_is_refused(base, few, tmp_path):
    out = tmp_path / "o"
    settings = TrainingSettings(
        labels=[str(few)], base=str(base), out=str(out), epochs=1, save_every=1000, **FAST
    )
    train_scorer(settings)
    (out / "checkpoints" / "step-00000003").mkdir(parents=True)
    progress = {
        "step": 3,
        "epoch": 0,
        "batch": 3,
        "settings": "other",
        "labels_sha256": "x",
        "history": [],
    }
    (out / "checkpoints" / "step-00000003" / "progress.json").write_text(json.dumps(progress))
    with pytest.raises(ManifestMismatch, match="other settings"):
        train_scorer(settings)
    (out / "checkpoints" / "step-00000009.partial").mkdir()  # cut while saving: never used
    assert latest_checkpoint(out).name == "step-00000003"


def test_same_seed_same_weights_other_seed_other_weights(base, few, tmp_path):
    def run(seed: int, name: str) -> dict[str, torch.Tensor]:
        out = tmp_path / name
        train_scorer(
            TrainingSettings(
                labels=[str(few)], base=str(base), out=str(out), epochs=1, seed=seed, **FAST
            )
        )
        return _weights(out)

    a, b, c = run(0, "a"), run(0, "b"), run(1, "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_lora_is_merged_on_export(base, few, tmp_path):
    pytest.importorskip("peft")
    out = tmp_path / "lora"
    trained = train_scorer(
        TrainingSettings(
            labels=[str(few)], base=str(base), out=str(out), epochs=1, lora={"r": 4}, **FAST
        )
    )
    weights = _weights(out)
    assert not any("lora" in k for k in weights)
    base_weights = {k: v for k, v in _weights_of_base(base).items() if k in weights}
    changed = [
        k for k in base_weights if not torch.equal(base_weights[k].float(), weights[k].float())
    ]
    assert any(k.endswith("q_proj.weight") for k in changed)  # the adapters were folded in
    assert trained.card.training["hyperparameters"]["lora"]["r"] == 4
    found = reloaded_confusion(out, trained.split.test, 40)
    assert found == stored_confusion(trained.card.training)


def _weights_of_base(base: Path) -> dict[str, torch.Tensor]:
    found = {}
    for shard in sorted(base.glob("pytorch_model-*.bin")):
        found.update(torch.load(shard, weights_only=True))
    return found


def test_fp16_on_the_cpu_is_refused(base, few, tmp_path):
    settings = TrainingSettings(
        labels=[str(few)],
        base=str(base),
        out=str(tmp_path / "x"),
        precision="fp16",
        device="cpu",
        **FAST,
    )
    with pytest.raises(UsageError, match="needs a GPU"):
        train_scorer(settings)


def test_an_encoder_backbone_trains_pools_on_its_first_token_and_reloads(tmp_path, few):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    chars = sorted(
        {
            c
            for line in few.read_text("utf-8").splitlines()
            for c in json.loads(line)["response"] + json.loads(line)["prompt"]
        }
    )
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *chars,
        *"<|>:输入回复以上针对的为eohUserBt\n",
    ]
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", "utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(dict.fromkeys(vocab)),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    out = tmp_path / "scorer"
    trained = train_scorer(
        TrainingSettings(
            labels=[str(few)],
            base=str(folder),
            out=str(out),
            epochs=1,
            **{**FAST, "max_length": 96},
        )
    )
    card = trained.card
    assert card.pooling == "first" and card.layout == "transformers"
    assert card.backbone["kind"] == "encoder"
    assert any("first token" in d for d in card.differences)
    assert reloaded_confusion(out, trained.split.test, 96) == stored_confusion(card.training)


def test_cli_config_file_and_eval_against_a_python_judge(trained, labels, tmp_path):
    judge = tmp_path / "rulejudge.py"
    judge.write_text(
        "def judge(prompt, response, dimension):\n    return 1 if '危险' in response else 3\n"
    )
    result = run_cli(
        "scorer",
        "eval",
        trained.out,
        labels,
        "--judge-function",
        "rulejudge:judge",
        "--bootstrap",
        "100",
        "--json",
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["labels"]["trained_on"] == len(trained.split.train)
    assert found["n"] == len(trained.labels) - len(trained.split.train)
    names = [s["scorer"] for s in found["scorers"]]
    assert names == ["trained:tiny", "judge:rulejudge:judge"]
    judge_stats = found["scorers"][1]["dimensions"]["Legality"]
    assert judge_stats["accuracy"]["value"] == 100.0  # the rule is exact where there is no 2
    config = tmp_path / "train.toml"
    config.write_text(
        f'labels = ["{labels}"]\nbase = "{trained.card.backbone["base"]}"\nepochs = "many"\n'
    )
    bad = run_cli("scorer", "train", "--config", config, "--out", tmp_path / "o")
    assert bad.returncode == 3 and "train.toml:3: epochs" in bad.stderr


@pytest.mark.slow
def test_two_processes_through_torchrun_train_one_scorer(base, few, tmp_path):
    """Data-parallel through accelerate (gloo on the CPU): each process trains on its share,
    predictions are gathered from both, and one scorer is written."""
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "-m",
        "flames",
        "scorer",
        "train",
        str(few),
        "--base",
        str(base),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--lr",
        "1e-3",
        "--max-length",
        "40",
        "--batch-size",
        "4",
        "--no-progress",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained ddp") == 1  # the main process speaks
    card = json.loads((out / "flames_scorer.json").read_text())["training"]
    assert card["distributed"]["processes"] == 2
    per_process = -(
        -len(json.loads((out / "split.json").read_text())["sides"]["train"]["keys"]) // 4
    )
    assert card["steps"] == -(-per_process // 2)
    split = json.loads((out / "split.json").read_text())
    examples = [e for e in load_labels([few]) if e.key in set(split["sides"]["test"]["keys"])]
    assert reloaded_confusion(out, examples, 40) == stored_confusion(card)
