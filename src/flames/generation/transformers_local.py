"""A local Hugging Face model, run with transformers (the optional `[local]` extra)."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

from flames._util.aio import Stopped, in_thread
from flames.clients.chat import Reply
from flames.errors import FlamesError
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


def split_gguf(model: str, gguf_file: str | None) -> tuple[str, str | None]:
    """Accept a path to a .gguf file as the model: it becomes (its folder, its file name)."""
    path = Path(model)
    if gguf_file is None and path.suffix == ".gguf" and path.is_file():
        return str(path.parent), path.name
    return model, gguf_file


def pick_device(device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(dtype: str, device: str) -> Any:
    """'auto' is bf16 on GPU and fp32 on CPU."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


def stop_criteria(stop: threading.Event) -> Any:
    """A transformers stopping criterion that ends generation at the next token once `stop`
    is set; its `fired` says whether it did (the replies are then cut, not finished)."""
    import torch
    from transformers import StoppingCriteria

    class OnStop(StoppingCriteria):
        fired = False

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            self.fired = self.fired or stop.is_set()
            return torch.full((input_ids.shape[0],), self.fired, device=input_ids.device)

    return OnStop()


class TransformersBackend:
    """Batched generation with the model's own chat template, on CPU or GPU."""

    def __init__(
        self,
        model: str,
        decoding: Decoding | None = None,
        gguf_file: str | None = None,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int = 8,
    ):
        self.model_name, self.gguf_file = split_gguf(model, gguf_file)
        self.decoding = decoding or Decoding()
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def info(self) -> GeneratorInfo:
        return GeneratorInfo(
            backend="transformers",
            model=self.model_name,
            decoding=self.decoding,
            options={"gguf_file": self.gguf_file, "dtype": self.dtype},
            concurrency=self.batch_size,
        )

    def environment(self) -> dict[str, str]:
        """Libraries and device, for the manifest's information (`local_environment`)."""
        return local_environment(pick_device(self.device))

    def load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = pick_device(self.device)
        extra = {"gguf_file": self.gguf_file} if self.gguf_file else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model_name, **extra)
            model = AutoModelForCausalLM.from_pretrained(
                self.model_name, dtype=pick_dtype(self.dtype, self.device), **extra
            )
        except (OSError, ValueError) as exc:  # a folder or repo that holds no usable model
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            name = self.model_name + (f" ({self.gguf_file})" if self.gguf_file else "")
            raise FlamesError(f"{name}: transformers cannot load it: {reason}") from None
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        # transformers types PreTrainedModel.to through a decorator that mypy misreads.
        self._model = model.to(self.device).eval()  # type: ignore[arg-type]
        self._tokenizer = tokenizer

    def _encode(self, messages: list[Message]) -> list[int]:
        encoded = self._tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(encoded["input_ids"])

    def complete(
        self,
        chats: Sequence[Sequence[Message]],
        max_tokens: int | None = None,
        seed: int | None = None,
        stop: threading.Event | None = None,
    ) -> list[Reply]:
        """One reply to each chat (its messages as given), generated as one batch under this
        backend's decoding, with `max_tokens` and `seed` instead of the decoding's if given.
        Raises `Stopped` if `stop` is set before the batch is finished."""
        import torch

        self.load()
        if stop is not None and stop.is_set():
            raise Stopped
        started = time.monotonic()
        tok = self._tokenizer
        ids = [self._encode(list(chat)) for chat in chats]
        padded = tok.pad({"input_ids": ids}, padding=True, return_tensors="pt").to(self.device)
        d = self.decoding
        sampling = bool(d.temperature)
        args: dict[str, Any] = {
            "max_new_tokens": max_tokens or d.max_tokens or DEFAULT_MAX_TOKENS,
            "do_sample": sampling,
        }
        if sampling:
            args["temperature"] = d.temperature
            if d.top_p is not None:
                args["top_p"] = d.top_p
        else:
            args.update(temperature=None, top_p=None, top_k=None)
        if seed is not None:
            torch.manual_seed(seed)
        criteria = [stop_criteria(stop)] if stop is not None else []
        if criteria:
            args["stopping_criteria"] = criteria
        with torch.inference_mode():
            output = self._model.generate(**padded, **args, pad_token_id=tok.pad_token_id)
        if any(c.fired for c in criteria):
            raise Stopped
        new_tokens = output[:, padded["input_ids"].shape[1] :]
        elapsed = round(time.monotonic() - started, 4)
        stop_ids = self._stop_ids()
        replies = []
        for prompt_ids, row in zip(ids, new_tokens.tolist(), strict=True):
            stop = next((i for i, t in enumerate(row) if t in stop_ids), None)
            generated = row if stop is None else row[:stop]
            text = tok.decode(generated, skip_special_tokens=True)
            if stop is None:  # cut at the length limit: drop a half-decoded character, as vLLM does
                text = text.rstrip("\ufffd")
            replies.append(
                Reply(
                    content=text,
                    finish_reason="length" if stop is None else "stop",
                    prompt_tokens=len(prompt_ids),
                    # the stop token counts, as vLLM and OpenAI-compatible servers count it
                    completion_tokens=len(row) if stop is None else stop + 1,
                    latency_s=elapsed,
                )
            )
        return replies

    def _generate(self, batch: list[Request], stop: threading.Event | None) -> list[Answer]:
        seed = sample_seed(self.decoding.seed, batch[0].sample)  # a batch holds one sample number
        replies = self.complete([r.messages(self.decoding) for r in batch], seed=seed, stop=stop)
        return [answer_of(request, reply) for request, reply in zip(batch, replies, strict=True)]

    def _stop_ids(self) -> set[int]:
        eos = self._model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        return (ids | {self._tokenizer.eos_token_id, self._tokenizer.pad_token_id}) - {None}

    def generate_batch(
        self, batch: Sequence[Request], stop: threading.Event | None = None
    ) -> list[Answer]:
        """Answers for a batch; each sample number is generated apart, under its own seed.
        Raises `Stopped` if `stop` is set before the batch is finished."""
        answers = []
        for sample in sorted({r.sample for r in batch}):
            same_sample = [r for r in batch if r.sample == sample]
            try:
                answers += self._generate(same_sample, stop)
            except Exception as exc:  # a failed batch is recorded as errors, never dropped
                answers += [error_answer(r, exc) for r in same_sample]
        return answers

    async def stream(self, requests: Iterable[Request]) -> AsyncIterator[Answer]:
        await in_thread(self.load)
        ordered = sorted(requests, key=lambda r: (r.sample, len(r.item.prompt)))
        for start in range(0, len(ordered), self.batch_size):
            batch = ordered[start : start + self.batch_size]
            async for answer in answers_in_thread(self.generate_batch, batch):
                yield answer
