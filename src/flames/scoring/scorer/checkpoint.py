"""Finding, loading and converting the official scorer checkpoint (CaasiHUANG/flames-scorer).

The official layout: config.json (InternLM), tokenizer.model (sentencepiece), and pickled
fp16 shards pytorch_model-0000{1,2}-of-00002.bin with pytorch_model.bin.index.json. Shards are
loaded one at a time with ``torch.load(weights_only=True)`` and cast to the target dtype;
`convert` writes a safetensors copy that loads faster. Keys the scorer does not use (lm_head,
the leftover single-label `score` head, rotary buffers) are skipped and listed in the log.

A scorer trained by flames (flames.training) is loaded by the same code: its folder also holds
the model card (`flames.scoring.scorer.card`), which says whether config.json is InternLM's (the
official layout, loaded exactly as above) or another backbone's own transformers config.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from flames.errors import FlamesError
from flames.scoring.scorer.card import CARD_FILE, Card, read_card
from flames.scoring.scorer.layout import read_json
from flames.scoring.scorer.model import HEAD_SIZES, FlamesScorerModel, Pooling, llama_config

log = logging.getLogger(__name__)

BIN_INDEX = "pytorch_model.bin.index.json"
SAFE_INDEX = "model.safetensors.index.json"
SIDE_FILES = (
    "config.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)
TRAINED_SIDE_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "vocab.txt", CARD_FILE)
"""Files of a trained scorer's transformers tokenizer and card, also part of its fingerprint."""
IGNORED = re.compile(r"^(lm_head\.|score\.)|rotary_emb\.inv_freq$")
HUB_PATTERNS = ["*.json", "tokenizer.model", "*.safetensors", "pytorch_model*.bin"]


class CheckpointError(FlamesError):
    pass


@dataclass
class LoadReport:
    shards: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def shard_files(directory: Path) -> list[Path]:
    """The weight files of a checkpoint, safetensors preferred, in index order."""
    for index_name, single in ((SAFE_INDEX, "model.safetensors"), (BIN_INDEX, "pytorch_model.bin")):
        index = read_json(directory / index_name, CheckpointError)
        if index is not None:
            weight_map = index.get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise CheckpointError(f"{directory / index_name}: no weight_map")
            return [directory / str(name) for name in sorted(set(weight_map.values()))]
        if (directory / single).is_file():
            return [directory / single]
    raise CheckpointError(
        f"{directory}: no weights (expected {SAFE_INDEX}, model.safetensors, {BIN_INDEX} or "
        "pytorch_model.bin)"
    )


def check_folder(directory: Path) -> dict[str, Any]:
    """config.json of a usable scorer checkpoint; one clear line about anything missing."""
    config = read_json(directory / "config.json", CheckpointError)
    if config is None:
        raise CheckpointError(f"{directory}: no config.json: not a Flames-scorer checkpoint?")
    missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers") if k not in config]
    if missing:
        raise CheckpointError(f"{directory / 'config.json'}: missing {', '.join(missing)}")
    for shard in shard_files(directory):
        if not shard.is_file():
            raise CheckpointError(f"{shard}: listed in the index but missing")
    return config


def resolve(model: str, revision: str | None = None) -> tuple[Path, str]:
    """A local checkpoint folder for `model` (a path or a Hugging Face repo id) and its revision.

    The revision is the hub commit for downloads, and a fingerprint of the config, tokenizer and
    index files for local folders.
    """
    path = Path(model)
    if path.is_dir():
        digest = hashlib.sha256()
        extra = TRAINED_SIDE_FILES if (path / CARD_FILE).is_file() else ()
        for name in (*SIDE_FILES, BIN_INDEX, SAFE_INDEX, *extra):
            if (path / name).is_file():
                digest.update(name.encode() + b"\0" + (path / name).read_bytes())
        return path, "local:" + digest.hexdigest()[:16]
    if path.suffix or path.is_absolute() or model.count("/") != 1:
        raise CheckpointError(f"{model}: no such folder, and not a Hugging Face repo id")
    from huggingface_hub import snapshot_download

    try:
        local = Path(snapshot_download(model, revision=revision, allow_patterns=HUB_PATTERNS))
    except Exception as exc:  # network, auth or missing repo: say so plainly, in one line
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        why = (lines[0] if lines else type(exc).__name__).rstrip(".")
        raise CheckpointError(
            f"could not download {model}: {why}. Download the checkpoint where there is a "
            "connection and pass its folder with --scorer-model FOLDER, or score with an LLM "
            "judge instead: flames judge RUN --model MODEL"
        ) from exc
    return local, local.name


def _read_shard(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # truncated or foreign files: name the file, no traceback
        reason = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise CheckpointError(f"{path}: cannot be read ({type(exc).__name__}: {reason})") from exc


def build_model(directory: Path, card: Card | None) -> FlamesScorerModel:
    """The scorer network a folder describes, its weights not loaded yet (on the meta device for
    the official layout; uninitialised on the CPU for other backbones, whose buffers must be
    computed for real)."""
    config_json = check_folder(directory)
    if card is None or card.layout == "internlm":
        pooling = Pooling.LAST if card is None else Pooling(card.pooling)
        with torch.device("meta"):
            return FlamesScorerModel(llama_config(config_json), pooling)
    from transformers import AutoConfig

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4
        from transformers.modeling_utils import no_init_weights  # type: ignore[no-redef]

    try:
        config = AutoConfig.from_pretrained(directory, trust_remote_code=card.trust_remote_code)
    except (ValueError, OSError, KeyError) as exc:
        raise CheckpointError(f"{directory / 'config.json'}: not a usable config ({exc})") from None
    with no_init_weights():
        return FlamesScorerModel(config, Pooling(card.pooling))


def load_model(
    directory: Path, dtype: torch.dtype, device: str, heads: bool = True
) -> tuple[FlamesScorerModel, LoadReport]:
    """Build the scorer from a checkpoint folder, one shard at a time.

    With ``heads=False`` the folder may lack the classifiers (a backbone in InternLM's layout to
    train them on); they are then left for the caller to initialise.
    """
    card = read_card(directory)
    model = build_model(directory, card)
    expected = set(model.state_dict())
    if not heads:
        expected = {k for k in expected if not k.startswith("classifiers.")}
    loaded: set[str] = set()
    report = LoadReport()
    for shard in shard_files(directory):
        tensors = {}
        for key, value in _read_shard(shard).items():
            if IGNORED.search(key):
                report.ignored.append(key)
            elif key in expected or (not heads and key.startswith("classifiers.")):
                tensors[key] = value.to(dtype)
            else:
                raise CheckpointError(f"{shard}: unexpected key {key!r}: not a Flames-scorer?")
        model.load_state_dict(tensors, strict=False, assign=True)
        loaded |= tensors.keys()
        report.shards.append(shard.name)
        del tensors
    missing = sorted(expected - loaded)
    if missing:
        raise CheckpointError(f"{directory}: missing weights: {', '.join(missing[:8])}")
    if not heads:  # fresh heads, for training: real tensors in place of the meta ones
        for index, size in enumerate(HEAD_SIZES):
            if f"classifiers.{index}.weight" not in loaded:
                layer = torch.nn.Linear(model.config.hidden_size, size, bias=False, dtype=dtype)
                model.classifiers[index] = layer
    if card is None or card.layout == "internlm":
        # Non-persistent buffers (rotary frequencies) are not in checkpoints: rebuild them.
        model.model.rotary_emb = type(model.model.rotary_emb)(config=model.config)
    if report.ignored:
        log.info("ignored %d checkpoint keys: %s", len(report.ignored), ", ".join(report.ignored))
    return model.to(device).eval(), report


def convert(source: Path, target: Path) -> list[Path]:
    """Write a safetensors copy of a checkpoint (same keys, unused ones dropped)."""
    from safetensors.torch import save_file

    shards = shard_files(source)
    target.mkdir(parents=True, exist_ok=True)
    weight_map: dict[str, str] = {}
    written = []
    for number, shard in enumerate(shards, start=1):
        name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        tensors = {
            k: v.contiguous() for k, v in _read_shard(shard).items() if not IGNORED.search(k)
        }
        save_file(tensors, target / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))
        written.append(target / name)
    (target / SAFE_INDEX).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    for side in SIDE_FILES:
        if (source / side).is_file():
            shutil.copyfile(source / side, target / side)
    return written
