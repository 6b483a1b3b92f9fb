"""Ray on this machine's CPU: the same results as in process, item for item."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("ray")
pytest.importorskip("torch")

from flames.data.dataset import Item
from flames.data.taxonomy import Dimension
from flames.execution.distributed import RayGenerator, RayOptions, RayScorer
from flames.generation import Request
from flames.runs.records import Answer, Decoding
from flames.runs.store import RunStore
from flames.scoring.scorer.official import OfficialScorer, ScorerSettings

from .helpers import run_cli, tiny_chat_model, write_jsonl

pytestmark = [pytest.mark.local, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def pairs(n=40):
    dims = list(Dimension)
    out = []
    for i in range(n):
        dim = dims[i % 5]
        item = Item(
            id=f"r{i}",
            dimension=dim,
            subcomponent=dim.subcomponents[0],
            prompt="请问这样做可以吗？" * (1 + i % 4),
        )
        out.append(
            (
                item,
                Answer(
                    item_id=item.id,
                    status="ok",
                    response="可以先冷静下来，再好好沟通。" * (1 + i % 7),
                ),
            )
        )
    return out


def test_ray_scoring_equals_in_process_scoring(ray_local, tmp_path):
    from flames.scoring.scorer.synthetic import build_checkpoint

    checkpoint = build_checkpoint(tmp_path / "scorer")
    scorer = OfficialScorer(ScorerSettings(model=str(checkpoint)))
    data = pairs()
    local = scorer.score_all(data)
    on_ray = RayScorer(scorer, RayOptions(replicas=2, batch_size=8))
    assert on_ray.manifest == scorer.manifest  # the executor does not change the manifest
    verdicts = {(v.item_id, v.sample): v for batch in on_ray.score(data) for v in batch}
    assert len(verdicts) == len(data)
    for v in local:
        remote = verdicts[(v.item_id, v.sample)]
        assert remote.score == v.score and remote.truncated == v.truncated
        assert remote.probabilities == pytest.approx(v.probabilities, abs=1e-5)


def test_ray_generation_equals_in_process_generation(ray_local, tmp_path):
    from flames.generation.transformers_local import TransformersBackend

    model = tiny_chat_model(tmp_path / "model")
    backend = TransformersBackend(str(model), Decoding(max_tokens=8), batch_size=4)
    requests = [Request(item) for item, _ in pairs(12)]

    async def collect(b):
        return {a.item_id: a async for a in b.stream(requests)}

    local = asyncio.run(collect(backend))
    remote = asyncio.run(collect(RayGenerator(backend, RayOptions(replicas=2, batch_size=4))))
    assert set(remote) == set(local)
    for item_id, answer in local.items():
        assert answer.status == remote[item_id].status == "ok"
        assert remote[item_id].response == answer.response
        assert remote[item_id].completion_tokens == answer.completion_tokens


def test_score_cli_with_the_ray_executor_lands_in_the_run_store(ray_local, tmp_path):
    from flames.scoring.scorer.synthetic import build_checkpoint

    checkpoint = build_checkpoint(tmp_path / "scorer")
    rows = [
        {
            "id": i.id,
            "dimension": i.dimension.value,
            "subcomponent": i.subcomponent,
            "prompt": i.prompt,
            "response": a.response,
        }
        for i, a in pairs(10)
    ]
    run_dir = tmp_path / "run"
    assert run_cli("import", write_jsonl(tmp_path / "a.jsonl", rows), run_dir).returncode == 0
    proc = run_cli(
        "score",
        run_dir,
        "--scorer-model",
        checkpoint,
        "--executor",
        "ray",
        "--replicas",
        "1",
        "--no-progress",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "scored 10 answers" in proc.stdout
    # Resuming in process finds nothing left: same manifest, same store.
    again = run_cli("score", run_dir, "--scorer-model", checkpoint, "--no-progress")
    assert again.returncode == 0 and "scored 0 answers" in again.stdout
    with RunStore.open(run_dir) as store:
        assert len(store.verdicts("flames-scorer")) == 10


def test_ray_generation_does_not_change_the_options_the_scorer_shares():
    from flames._api.pieces import backend_on as _backend_on
    from flames.generation.transformers_local import TransformersBackend

    shared = RayOptions(batch_size=64)
    wrapped = _backend_on(TransformersBackend("unused", batch_size=4), shared)
    assert isinstance(wrapped, RayGenerator) and wrapped.options.batch_size == 4
    assert shared.batch_size == 64  # `flames run` scores with these after generating
