"""Scale out with Ray Data (the optional [ray] extra).

Scoring and local-model generation run as Ray Data batch jobs: a pool of actors, each holding
one scorer or model replica (one per GPU where the cluster has GPUs), fed with streamed batches.
Results stream back to the driver and land in the same run store as they come, under the same
manifest rules: the executor does not change results, so it is not part of the manifest.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flames.data.dataset import CONVERSATION, Item
from flames.data.taxonomy import Dimension
from flames.generation.base import Request
from flames.runs.records import Answer, GeneratorInfo, ScorerManifest, Verdict
from flames.scoring.scorer.official import OfficialScorer, ScorerSettings


@dataclass
class RayOptions:
    address: str | None = None
    """A running cluster ('auto', or ray://host:10001); None starts a local one."""
    replicas: int | None = None
    """Actors in the pool; by default one per GPU, or 1 without GPUs."""
    gpus_per_replica: float | None = None
    """By default 1 when the cluster has GPUs, else 0."""
    batch_size: int = 64
    """Items per batch sent to a replica."""


def _connect(options: RayOptions) -> tuple[int, float]:
    """Start or join Ray; returns (replicas, gpus per replica)."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address=options.address,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    ray.data.DataContext.get_current().enable_progress_bars = False
    gpus = int(ray.cluster_resources().get("GPU", 0))
    per_replica = (
        options.gpus_per_replica if options.gpus_per_replica is not None else (1.0 if gpus else 0.0)
    )
    replicas = options.replicas or (max(1, int(gpus // per_replica)) if per_replica else 1)
    return replicas, per_replica


def _map(
    rows: list[dict[str, Any]],
    actor: type,
    kwargs: dict[str, Any],
    options: RayOptions,
) -> Iterator[dict[str, np.ndarray]]:
    import ray

    replicas, gpus = _connect(options)
    dataset = ray.data.from_items(rows)
    mapped = dataset.map_batches(
        actor,
        fn_constructor_kwargs=kwargs,
        batch_size=options.batch_size,
        compute=ray.data.ActorPoolStrategy(size=replicas),
        num_gpus=gpus or None,
        batch_format="numpy",
    )
    yield from mapped.iter_batches(batch_size=None, batch_format="numpy")


def _item(row: dict[str, Any]) -> Item:
    conversation = json.loads(str(row.get("conversation") or "[]"))
    return Item(
        id=str(row["item_id"]),
        dimension=Dimension(str(row["dimension"])),
        subcomponent=str(row["subcomponent"]),
        prompt=str(row["prompt"]),
        meta={CONVERSATION: conversation} if conversation else {},
    )


class ScorerReplica:
    """One official scorer per actor; judges a batch and returns the verdicts as JSON."""

    def __init__(self, settings: ScorerSettings):
        self.scorer = OfficialScorer(settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [
            dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)
        ]
        pairs = [
            (
                _item(r),
                Answer(
                    item_id=str(r["item_id"]),
                    sample=int(r["sample"]),
                    status="ok",
                    response=str(r["response"]),
                ),
            )
            for r in rows
        ]
        verdicts = self.scorer.score_all(pairs)
        return {"verdict": np.array([v.model_dump_json() for v in verdicts])}


class RayScorer:
    """The official scorer, run by a pool of replicas on a Ray cluster."""

    def __init__(self, scorer: OfficialScorer, options: RayOptions | None = None):
        self.settings = scorer.settings
        self.options = options or RayOptions()
        self._manifest = scorer.manifest  # the model itself loads in the replicas only

    @property
    def manifest(self) -> ScorerManifest:
        return self._manifest

    def score(self, pairs: Sequence[tuple[Item, Answer]]) -> Iterator[list[Verdict]]:
        rows: list[dict[str, Any]] = [
            {
                "item_id": i.id,
                "dimension": i.dimension.value,
                "subcomponent": i.subcomponent,
                "prompt": i.prompt,
                "sample": a.sample,
                "response": a.response or "",
            }
            for i, a in pairs
        ]
        rows.sort(key=lambda r: len(r["prompt"]) + len(r["response"]))  # similar lengths batch
        for batch in _map(rows, ScorerReplica, {"settings": self.settings}, self.options):
            yield [Verdict.model_validate_json(v) for v in batch["verdict"]]


class GeneratorReplica:
    """One local transformers model per actor; answers a batch of prompts."""

    def __init__(self, backend: Any):
        backend.load()
        self.backend = backend

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [
            dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)
        ]
        items = [_item(r) for r in rows]
        requests = [
            Request(item, int(r["sample"]), history=item.conversation)
            for item, r in zip(items, rows, strict=True)
        ]
        answers = self.backend.generate_batch(requests)
        return {"answer": np.array([a.model_dump_json() for a in answers])}


class RayGenerator:
    """A local transformers backend, replicated over a Ray cluster."""

    def __init__(self, backend: Any, options: RayOptions | None = None):
        self.backend = backend
        self.options = options or RayOptions(batch_size=backend.batch_size)

    @property
    def info(self) -> GeneratorInfo:
        return self.backend.info

    async def stream(self, requests: Iterable[Request]) -> AsyncIterator[Answer]:
        rows: list[dict[str, Any]] = [
            {
                "item_id": r.item.id,
                "dimension": r.item.dimension.value,
                "subcomponent": r.item.subcomponent,
                "prompt": r.item.prompt,
                "sample": r.sample,
                # Columns of one type for Ray: the earlier turns as JSON text ("[]" for none).
                "conversation": json.dumps(list(r.history), ensure_ascii=False),
            }
            for r in requests
        ]
        rows.sort(key=lambda r: len(r["prompt"]) + len(r["conversation"]))
        for batch in _map(rows, GeneratorReplica, {"backend": self.backend}, self.options):
            for answer in batch["answer"]:
                yield Answer.model_validate_json(answer)
