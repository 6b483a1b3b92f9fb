"""A local model served by vLLM's offline engine (the optional [vllm] extra, GPU only).

vLLM is imported only when this backend is used, so nothing else needs it. Prompts go through
the model's chat template with ``LLM.chat``; one request per (item, sample), batched by vLLM.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from flames.generation.base import Request, chat_messages
from flames.records import Answer, Decoding, GeneratorInfo


class VLLMBackend:
    def __init__(
        self,
        model: str,
        decoding: Decoding | None = None,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        chunk_size: int = 512,
    ):
        self.model_name = model
        self.decoding = decoding or Decoding()
        self.dtype = dtype
        self.tensor_parallel_size = tensor_parallel_size
        self.chunk_size = chunk_size
        self._llm: Any = None

    @property
    def info(self) -> GeneratorInfo:
        return GeneratorInfo(
            backend="vllm",
            model=self.model_name,
            decoding=self.decoding,
            options={"dtype": self.dtype, "tensor_parallel_size": self.tensor_parallel_size},
        )

    def load(self) -> None:
        if self._llm is None:
            from vllm import LLM

            self._llm = LLM(
                model=self.model_name,
                dtype=self.dtype,
                tensor_parallel_size=self.tensor_parallel_size,
                seed=self.decoding.seed or 0,
            )

    def _params(self, request: Request) -> Any:
        from vllm import SamplingParams

        d = self.decoding
        seed = None if d.seed is None else d.seed + request.sample
        return SamplingParams(
            temperature=d.temperature or 0.0,
            top_p=d.top_p or 1.0,
            max_tokens=d.max_tokens or 1024,
            seed=seed,
        )

    def _generate(self, requests: Sequence[Request]) -> list[Answer]:
        started = time.monotonic()
        conversations = [chat_messages(r.item.prompt, self.decoding) for r in requests]
        try:
            outputs = self._llm.chat(
                conversations, [self._params(r) for r in requests], use_tqdm=False
            )
        except Exception as exc:  # a failed chunk is recorded as errors, never dropped
            message = f"{type(exc).__name__}: {exc}"[:1000]
            return [
                Answer(item_id=r.item.id, sample=r.sample, status="error", error=message)
                for r in requests
            ]
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

    async def stream(self, requests: Sequence[Request]) -> AsyncIterator[Answer]:
        await asyncio.to_thread(self.load)
        for start in range(0, len(requests), self.chunk_size):
            chunk = requests[start : start + self.chunk_size]
            for answer in await asyncio.to_thread(self._generate, chunk):
                yield answer
