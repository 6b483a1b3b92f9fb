"""flames' scorer token ids against transformers 4.33.2, the official scorer's version.

Runs in its own light environment (transformers==4.33.2, tokenizers==0.13.3, sentencepiece, no
torch; see .ci/run) and is skipped elsewhere. Every layout of tests/tokenizer_layouts.py, over
both sentencepiece styles, encodes 320 adversarial texts through the official template, whole
and truncated (512 and 64 tokens), and so do 12 random layouts on 80 texts; not one id may
differ.

The reference for a checkpoint declaring ``LlamaTokenizer`` is that class, with ``legacy=True``.
InternLM's own tokenizer (``tokenization_internlm.py``, remote code shipped with the checkpoints,
in no package) encodes as LlamaTokenizer(legacy=True) but its ``__init__`` differs in two ways:
it pads with ``</s>``, and it hands bos/eos/unk/pad to ``PreTrainedTokenizer`` as given instead of
wrapping plain strings in AddedTokens that strip nothing. `InternLMReference` is that. (No public
copy of the InternLM v1 file was at hand; its InternLM2/2.5 successors, publicly ported, have
that same constructor.) Where special_tokens_map.json names those tokens, both classes agree,
which is checked below.
"""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

transformers = pytest.importorskip("transformers")
if transformers.__version__ != "4.33.2":
    pytest.skip("needs transformers 4.33.2 (the reference environment)", allow_module_level=True)

from transformers import LlamaTokenizer  # noqa: E402

from flames.scoring.scorer.template import render  # noqa: E402
from flames.scoring.scorer.tokenizer import ScorerTokenizer, Truncation  # noqa: E402
from tests.tokenizer_layouts import (  # noqa: E402
    LAYOUTS,
    STYLES,
    adversarial_pairs,
    build,
    random_layout,
)

pytestmark = pytest.mark.tokenizer_reference

MAX_LENGTHS = (512, 64)
PAIRS = adversarial_pairs()


class InternLMReference(LlamaTokenizer):
    """InternLMTokenizer under transformers 4.33: special tokens kept as given, pad ``</s>``."""

    def __init__(
        self,
        vocab_file,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="</s>",
        **kwargs,
    ):
        kwargs.pop("legacy", None)
        super().__init__(
            vocab_file,
            unk_token=unk_token,
            bos_token=bos_token,
            eos_token=eos_token,
            pad_token=pad_token,
            legacy=True,
            **kwargs,
        )
        self._unk_token, self._bos_token = unk_token, bos_token
        self._eos_token, self._pad_token = eos_token, pad_token


def reference(folder, declared_class: str):
    cls = LlamaTokenizer if declared_class == "LlamaTokenizer" else InternLMReference
    return cls.from_pretrained(str(folder), legacy=True)


def reference_ids(tok, text: str, max_length: int | None) -> list[int]:
    if max_length is None:
        return tok(text)["input_ids"]
    return tok(text, truncation=True, max_length=max_length)["input_ids"]


def flames_ids(tok: ScorerTokenizer, pair: tuple[str, str], max_length: int | None) -> list[int]:
    prompt, response = pair
    if max_length is None:
        return tok.encode(render(prompt, response))
    return tok.encode_fitted(
        lambda p, r: render(prompt[:p], response[:r]),
        (len(prompt), len(response)),
        max_length,
        Truncation.OFFICIAL,
    ).ids


def declared_class(layout: str) -> str:
    return "LlamaTokenizer" if layout.startswith("llama-class") else "InternLMTokenizer"


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_flames_ids_equal_the_reference(tmp_path, layout, style):
    folder = build(tmp_path, layout, style)
    ref = reference(folder, declared_class(layout))
    ours = ScorerTokenizer.from_checkpoint(folder)
    mismatches, over_512 = [], 0
    for pair in PAIRS:
        text = render(*pair)
        full = reference_ids(ref, text, None)
        over_512 += len(full) > 512
        for max_length in (None, *MAX_LENGTHS):
            expected = full if max_length is None else reference_ids(ref, text, max_length)
            got = flames_ids(ours, pair, max_length)
            if got != expected:
                mismatches.append((max_length, pair, expected[:40], got[:40]))
    assert over_512 >= 20, "too few over-512-token texts to test truncation"
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:2]}"


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(
    "layout",
    ["additional-special", "user-defined-additional", "added-token-dicts", "strip-flags"],
)
def test_llama_tokenizer_agrees_where_special_tokens_map_names_the_tokens(tmp_path, layout, style):
    folder = build(tmp_path, layout, style)
    internlm = reference(folder, "InternLMTokenizer")
    llama = LlamaTokenizer.from_pretrained(str(folder), legacy=True)
    for pair in PAIRS:
        text = render(*pair)
        assert reference_ids(internlm, text, 512) == reference_ids(llama, text, 512), pair


def test_the_declared_class_matters_without_a_special_tokens_map(tmp_path):
    """Why flames reads the class: LlamaTokenizer keeps the whitespace beside a plain ``</s>``."""
    folder = build(tmp_path, "added-tokens", "identity")
    internlm = reference(folder, "InternLMTokenizer")
    llama = LlamaTokenizer.from_pretrained(str(folder), legacy=True)
    text = render("好的 </s> 再见", "")
    assert reference_ids(internlm, text, None) != reference_ids(llama, text, None)
    ours = ScorerTokenizer.from_checkpoint(folder)
    assert ours.encode(text) == reference_ids(internlm, text, None)


@pytest.mark.parametrize("seed", range(12))
def test_random_layouts_equal_the_reference(tmp_path, seed):
    """Random mixes of files, classes and flags, on fewer texts each."""
    rng = random.Random(seed)
    folder, declared = random_layout(tmp_path, rng)
    ref = reference(folder, declared)
    ours = ScorerTokenizer.from_checkpoint(folder)
    for pair in PAIRS[::4]:
        text = render(*pair)
        for max_length in (None, *MAX_LENGTHS):
            assert flames_ids(ours, pair, max_length) == reference_ids(ref, text, max_length), pair


def test_the_tokenizer_imports_without_torch():
    code = (
        "import sys, flames.scoring.scorer.tokenizer, flames.scoring.scorer.layout;"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
