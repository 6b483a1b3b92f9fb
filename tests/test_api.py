"""The Python API: the evaluation description, functions as model and judge, event loops."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import threading

import pytest
from rich.console import Console

import flames
from flames._config import field_name, load_evaluation, toml_positions
from flames.data.taxonomy import HARMLESS
from flames.errors import DataError, IncompleteRun, ManifestMismatch
from flames.runs.records import DatasetInfo, GeneratorInfo, RunManifest
from flames.runs.store import RunStore

from .helpers import run_cli, write_jsonl

REFUSAL = "抱歉，我不能帮助你。"


def polite_model(prompt: str) -> str:
    """Refuses prompts whose text has an even length, answers the others."""
    return REFUSAL if len(prompt) % 2 == 0 else "好的。" + prompt[:10]


def strict_judge(prompt: str, response: str, dimension: str) -> int:
    """3 for a refusal, else the lowest score of the dimension's scale."""
    return 3 if response == REFUSAL else 1


def quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def small(run_dir, **changes) -> flames.Evaluation:
    settings = {
        "run_dir": str(run_dir),
        "target": {"function": polite_model, "version": "1"},
        "judges": [{"function": strict_judge, "version": "a"}],
        "data": {"source": "control", "sample": 12},
        "statistics": {"bootstrap": 200},
    }
    return flames.Evaluation.model_validate({**settings, **changes})


def expected_rate(dataset: flames.Evaluation) -> dict[str, float]:
    """Harmless rate per dimension, computed directly from the two functions."""
    items = flames.load_dataset("control", sample=12)
    by_dimension: dict[str, list[int]] = {}
    for item in items:
        answer = polite_model(item.prompt)
        score = strict_judge(item.prompt, answer, item.dimension.value)
        by_dimension.setdefault(item.dimension.value, []).append(score)
    return {d: 100 * sum(s == HARMLESS for s in v) / len(v) for d, v in by_dimension.items()}


def test_evaluate_with_functions_gives_the_official_formulas(tmp_path):
    result = flames.evaluate(small(tmp_path / "run"), progress=False, console=quiet())
    expected = expected_rate(small(tmp_path))
    got = {d: g.harmless_rate.value for d, g in result.metrics.dimensions.items()}
    assert got == pytest.approx(expected)
    assert result.harmless_rate.value == pytest.approx(sum(expected.values()) / len(expected))
    assert result.harmless_rate.interval is not None
    table = result.to_pandas()
    dims = table[table.level == "dimension"].set_index("name")["harmless_rate"].to_dict()
    assert dims == pytest.approx(expected)
    answers = result.to_pandas("answers")
    assert len(answers) == 12 and set(answers.score) <= {1, 3}
    assert (result.run_dir / "report" / "report.json").is_file()


def test_the_manifest_names_the_functions_and_records_the_description(tmp_path):
    flames.evaluate(small(tmp_path / "run"), progress=False, console=quiet())
    with RunStore.open(tmp_path / "run") as store:
        generator = store.manifest.generator
        recorded = store.manifest.evaluation
        judge = store.scorers()["judge:tests.test_api:strict_judge"]
    assert generator.backend == "callable"
    assert generator.model == "tests.test_api:polite_model"
    assert generator.options["version"] == "1"
    assert judge.kind == "callable-judge" and judge.config["version"] == "a"
    assert recorded["data"] == {
        "source": "control",
        "dimensions": [],
        "subcomponents": [],
        "sample": 12,
        "sample_seed": 0,
    }
    assert recorded["target"]["model"] == "tests.test_api:polite_model"
    assert "function" not in recorded["target"]


def test_a_new_version_of_the_function_is_not_mixed_into_the_run(tmp_path):
    flames.evaluate(small(tmp_path / "run"), progress=False, console=quiet())
    changed = small(tmp_path / "run", target={"function": polite_model, "version": "2"})
    with pytest.raises(ManifestMismatch, match="version"):
        flames.evaluate(changed, progress=False, console=quiet())


def test_settings_outside_the_identity_do_not_block_resuming(tmp_path):
    flames.evaluate(small(tmp_path / "run"), progress=False, console=quiet())
    more = small(
        tmp_path / "run", target={"function": polite_model, "version": "1", "concurrency": 3}
    )
    result = flames.evaluate(more, progress=False, console=quiet())
    assert result.metrics.n_scored == 12


def test_runs_made_before_the_description_was_recorded_still_resume(tmp_path):
    dataset = flames.load_dataset("control", sample=3)
    info = GeneratorInfo(backend="openai", model="m")
    old = RunManifest(dataset=DatasetInfo.of(dataset), generator=info)
    RunStore.create_or_resume(tmp_path / "run", old, dataset.items).close()
    new = RunManifest(dataset=DatasetInfo.of(dataset), generator=info, evaluation={"any": 1})
    with RunStore.create_or_resume(tmp_path / "run", new, dataset.items) as store:
        assert store.manifest.evaluation is None  # what the run was created with stays


def test_function_failures_are_recorded_not_scored_and_resume(tmp_path):
    prompts = [item.prompt for item in flames.load_dataset("control", sample=12)]
    calls: list[str] = []

    def flaky(prompt: str) -> object:
        calls.append(prompt)
        position = prompts.index(prompt)
        if position % 4 == 0:
            raise RuntimeError("model down")
        if position % 4 == 1:
            return 42  # not text
        return "好的"

    evaluation = small(
        tmp_path / "run",
        target={"function": flaky, "version": "1"},
        executor={"max_errors": 100},
    )
    with pytest.raises(IncompleteRun, match="recorded as errors"):
        flames.evaluate(evaluation, progress=False, strict=True, console=quiet())
    result = flames.load_run(tmp_path / "run")
    assert result.unscored == {"generation error": 6}
    assert result.metrics.n_scored == 6
    errors = sorted({r.answer.error.split(":")[0] for r in result.rows if r.answer.error})
    assert errors == ["RuntimeError", "TypeError"]
    # Run again: nothing is asked twice; with retry_errors only the failures are.
    flames.evaluate(evaluation, progress=False, console=quiet())
    assert len(calls) == 12
    retry = evaluation.model_copy(
        update={"executor": flames.ExecutorConfig(max_errors=100, retry_errors=True)}
    )
    flames.evaluate(retry, progress=False, console=quiet())
    assert len(calls) == 18


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_functions_run_concurrently_up_to_the_limit(tmp_path, kind):
    lock = threading.Lock()
    active, peak = [0], [0]

    def enter() -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])

    def leave() -> None:
        with lock:
            active[0] -= 1

    def sync_model(prompt: str) -> str:
        enter()
        threading.Event().wait(0.05)
        leave()
        return "好的"

    async def async_model(prompt: str) -> str:
        enter()
        await asyncio.sleep(0.05)
        leave()
        return "好的"

    model = sync_model if kind == "sync" else async_model
    target = {"function": model, "concurrency": 3}
    flames.generate(small(tmp_path / "run", target=target), progress=False, console=quiet())
    assert peak[0] == 3


def test_messages_input_carries_the_system_prompt(tmp_path):
    seen = []

    def chat(messages: list[dict[str, str]]) -> str:
        seen.append(messages)
        return "好的"

    decoding = {"system_prompt": "你是助手"}
    target = {"function": chat, "input": "messages", "decoding": decoding}
    flames.generate(small(tmp_path / "run", target=target), progress=False, console=quiet())
    assert len(seen) == 12
    assert all(m[0] == {"role": "system", "content": "你是助手"} for m in seen)
    assert all(m[1]["role"] == "user" for m in seen)
    with pytest.raises(flames.UsageError, match="system prompt"):
        flames.generate(
            small(tmp_path / "other", target={"function": chat, "decoding": decoding}),
            progress=False,
            console=quiet(),
        )


def test_judge_function_errors_and_off_scale_scores_are_judge_errors(tmp_path):
    flames.generate(small(tmp_path / "run"), progress=False, console=quiet())

    def sloppy(prompt: str, response: str, dimension: str) -> object:
        if dimension == "Safety":
            raise ValueError("cannot judge")
        if dimension == "Fairness":
            return True  # a bool is not a score
        return 2  # off the scale of Legality and Data protection only

    summary = flames.judge(tmp_path / "run", sloppy, version="x", progress=False, console=quiet())
    result = flames.load_run(tmp_path / "run", bootstrap=0)
    assert result.scorer.name.endswith("<locals>.sloppy")
    by_dim: dict[str, set] = {}
    for row in result.rows:
        by_dim.setdefault(row.item.dimension.value, set()).add(row.score or row.verdict.error)
    assert by_dim["Morality"] == {2}
    assert all("not on the" in e for e in by_dim["Legality"] | by_dim["Data protection"])
    assert all("not on the" in e for e in by_dim["Fairness"])
    assert by_dim["Safety"] == {"ValueError: cannot judge"}
    assert summary.scored == len([r for r in result.rows if r.score is not None])


def test_the_sync_api_works_inside_a_running_event_loop(tmp_path):
    """As in a Jupyter cell: asyncio.run() refuses to run there, the API must not."""

    async def cell():
        return flames.evaluate(small(tmp_path / "run"), progress=False, console=quiet())

    result = asyncio.run(cell())
    assert result.metrics.n_scored == 12


def test_evaluate_async_runs_an_async_model_on_the_callers_loop(tmp_path):
    loops = set()

    async def model(prompt: str) -> str:
        loops.add(asyncio.get_running_loop())
        return REFUSAL

    async def main():
        evaluation = small(tmp_path / "run", target={"function": model})
        result = await flames.evaluate_async(evaluation, progress=False, console=quiet())
        return result, asyncio.get_running_loop()

    result, loop = asyncio.run(main())
    assert loops == {loop}
    assert result.harmless_rate.value == 100.0


def test_llm_judge_inside_a_running_loop(tmp_path, mock_api):
    flames.generate(
        run_dir=tmp_path / "run",
        model="mock",
        base_url=mock_api.base_url,
        data="control",
        sample=4,
        progress=False,
        console=quiet(),
    )

    async def cell():
        judge = flames.JudgeConfig(model="judge-model", base_url=mock_api.base_url, skip_check=True)
        return flames.judge(tmp_path / "run", judge, progress=False, console=quiet())

    summary = asyncio.run(cell())
    # The mock echoes JSON without a score: every verdict is a judge error, none is lost.
    assert (summary.scored, summary.errors) == (0, 4)
    assert len(mock_api.requests()) == 4 + 4 * 3  # answers, then 3 parse attempts each


def test_fetch_inside_a_running_loop(tmp_path, official_path, monkeypatch):
    import http.server

    from flames.data import official as official_data

    served = tmp_path / "www"
    served.mkdir()
    (served / official_data.FILENAME).write_bytes(official_path.read_bytes())

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("FLAMES_DATA_DIR", raising=False)
    url = f"http://127.0.0.1:{server.server_port}/{official_data.FILENAME}"

    async def cell():
        return official_data.fetch(urls=(url,))

    try:
        assert asyncio.run(cell()) == official_data.cache_dir() / official_data.FILENAME
    finally:
        server.shutdown()


# -- the description and its files --------------------------------------------------------------

TOML = """\
run_dir = "runs/x"

[data]
source = "control"
sample = 0

[target]
model = "gpt"
decoding.temperature = "hot"

[[judges]]
model = "a"

[[judges]]
model = "b"
parse_attempts = 0
"""


def test_toml_errors_name_the_file_line_and_field(tmp_path):
    path = tmp_path / "eval.toml"
    path.write_text(TOML, encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load_evaluation(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:5: data.sample: Input should be greater than or equal")
    assert "line 9: target.decoding.temperature: Input should be a valid number" in message
    assert "line 16: judges[1].parse_attempts: Input should be greater than" in message
    assert caught.value.exit_code == 3


def test_toml_positions_follow_tables_dotted_keys_and_arrays():
    positions = toml_positions(TOML + '\n[judges.x]\n"quoted.key" = 1\n')
    assert positions[("target", "decoding", "temperature")] == 9
    assert positions[("judges", 0, "model")] == 12
    assert positions[("judges", 1)] == 14
    assert positions[("judges", 1, "x", "quoted.key")] == 19
    assert field_name(("judges", 1, "model")) == "judges[1].model"


def test_unknown_keys_missing_fields_and_syntax_errors(tmp_path):
    path = tmp_path / "e.toml"
    path.write_text('[target]\nmodel = "m"\n\n[target.decoding]\ntemprature = 1\n', "utf-8")
    with pytest.raises(DataError, match=r"e.toml:5: target.decoding.temprature: Extra inputs"):
        load_evaluation(path)
    path.write_text('[data]\nsource = "control"\n', "utf-8")
    with pytest.raises(DataError, match=r"e.toml: target: Field required"):
        load_evaluation(path)
    path.write_text('[target]\nmodel = "m"\nmodel = "n"\n', "utf-8")
    with pytest.raises(DataError, match=r"e.toml:3: invalid TOML"):
        load_evaluation(path)
    path.write_text('[target]\nbackend = "callable"\nmodel = "nowhere:fn"\n', "utf-8")
    with pytest.raises(DataError, match=r"e.toml:1: target: model: cannot import 'nowhere'"):
        load_evaluation(path)


def test_yaml_errors_name_the_line(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "eval.yaml"
    path.write_text("target:\n  model: m\njudges:\n  - model: a\n  - model: b\n    rpm: -1\n")
    with pytest.raises(DataError, match=r"eval.yaml:6: judges\[1\].rpm: Input should be greater"):
        load_evaluation(path)
    path.write_text("target: [unclosed\n")
    with pytest.raises(DataError, match=r"eval.yaml:2: invalid YAML"):
        load_evaluation(path)


def test_a_file_and_keyword_arguments_build_the_same_description(tmp_path):
    path = tmp_path / "eval.toml"
    path.write_text(
        'run_dir = "r"\n[target]\nbackend = "callable"\nmodel = "tests.test_api:polite_model"\n'
        'version = "1"\n[data]\nsource = "control"\nsample = 12\n'
        '[[judges]]\nkind = "callable"\nmodel = "tests.test_api:strict_judge"\nversion = "a"\n',
        "utf-8",
    )
    from_file = load_evaluation(path)
    from_python = flames.describe(
        model=polite_model,
        version="1",
        judge=strict_judge,
        judge_version="a",
        data="control",
        sample=12,
        run_dir="r",
    )
    assert from_file.record() == from_python.record()
    assert from_file.target.function is polite_model


def test_the_description_refuses_a_scorer_and_judges_together():
    with pytest.raises(ValueError, match="either a scorer or judges"):
        flames.Evaluation(
            target=flames.TargetConfig(model="m"),
            scorer=flames.ScorerConfig(),
            judges=[flames.JudgeConfig(model="j")],
        )
    assert flames.Evaluation(target=flames.TargetConfig(model="m")).scorer == flames.ScorerConfig()


# -- the public surface ---------------------------------------------------------------------------


def test_every_public_name_is_documented_and_the_functions_are_not_hidden_by_modules():
    # Submodules named like the functions: importing them must not hide the functions.
    import flames.analysis.compare
    import flames.reporting.report
    import flames.scoring.judge

    for name in flames.__all__:
        value = getattr(flames, name)
        if name != "__version__":
            assert (value.__doc__ or "").strip(), name
    assert callable(flames.report) and callable(flames.judge) and callable(flames.compare)
    with pytest.raises(AttributeError):
        flames.no_such_name  # noqa: B018


def test_compare_through_the_api(tmp_path):
    flames.evaluate(small(tmp_path / "a"), progress=False, console=quiet())

    def refuse_all(prompt: str) -> str:
        return REFUSAL

    flames.evaluate(
        small(tmp_path / "b", target={"function": refuse_all}), progress=False, console=quiet()
    )
    comparison = flames.compare(tmp_path / "a", tmp_path / "b", bootstrap=100)
    expected = expected_rate(small(tmp_path))
    assert comparison.overall.rate_b == 100.0
    assert comparison.overall.rate_a == pytest.approx(sum(expected.values()) / len(expected))


def test_to_pandas_without_pandas_names_the_extra_in_one_line(tmp_path, monkeypatch):
    result = flames.evaluate(small(tmp_path / "run"), progress=False, console=quiet())
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now fails
    for table in ("metrics", "answers"):
        with pytest.raises(flames.FlamesError) as caught:
            result.to_pandas(table)
        message = str(caught.value)
        assert "\n" not in message
        assert (
            'pip install "flames-eval[pandas]"' in message and 'pip install ".[pandas]"' in message
        )


def test_run_generation_inside_a_running_loop(tmp_path):
    from flames.generation import run_generation
    from flames.generation.callable import CallableBackend

    dataset = flames.load_dataset("control", sample=5)
    backend = CallableBackend(polite_model)
    manifest = RunManifest(dataset=DatasetInfo.of(dataset), generator=backend.info)

    async def cell():
        with RunStore.create_or_resume(tmp_path / "run", manifest, dataset.items) as store:
            return run_generation(store, backend, progress=False)

    assert asyncio.run(cell()).ok == 5


# -- the functions behind the other commands -----------------------------------------------------


def test_the_public_names_are_imported_for_type_checkers_exactly_as_exported():
    """`flames/__init__.py` lists each name twice: the lazy table, and the imports type checkers
    read (as `X as X`, which marks a re-export). The two must agree."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(flames.__file__).read_text(encoding="utf-8"))
    guarded = next(n for n in tree.body if isinstance(n, ast.If))  # if TYPE_CHECKING:
    imported = {
        (node.module, alias.name)
        for node in guarded.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.asname == alias.name
    }
    exported = {(module, name) for module, names in flames._EXPORTS.items() for name in names}
    assert imported == exported
    assert sorted(flames.__all__) == sorted(["__version__", *(n for _, n in exported)])


@pytest.mark.parametrize("name", ["generate", "score", "judge", "evaluate"])
def test_each_async_twin_has_its_functions_signature_and_its_own_doc(name):
    import inspect

    plain, twin = getattr(flames, name), getattr(flames, f"{name}_async")
    assert inspect.iscoroutinefunction(twin) and not inspect.iscoroutinefunction(plain)
    assert twin.__name__ == f"{name}_async"
    assert str(inspect.signature(twin)) == str(inspect.signature(plain, eval_str=True))
    assert twin.__doc__ != plain.__doc__ and f"`{name}`" in twin.__doc__


def test_generate_async_calls_an_async_model_on_the_callers_loop(tmp_path):
    loops = set()

    async def model(prompt: str) -> str:
        loops.add(asyncio.get_running_loop())
        return REFUSAL

    async def main():
        summary = await flames.generate_async(
            run_dir=tmp_path / "run",
            model=model,
            data="control",
            sample=6,
            progress=False,
            console=quiet(),
        )
        return summary, asyncio.get_running_loop()

    summary, loop = asyncio.run(main())
    assert loops == {loop}
    assert (summary.ok, summary.errors) == (6, 0)


def test_cancelling_generate_async_stops_the_model_calls(tmp_path):
    calls = 0
    started = asyncio.Event()

    async def model(prompt: str) -> str:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.sleep(0.1)
        return REFUSAL

    async def main():
        evaluation = flames.Evaluation(
            target={"function": model, "concurrency": 1}, data={"source": "control", "sample": 8}
        )
        task = asyncio.create_task(
            flames.generate_async(
                evaluation, run_dir=tmp_path / "run", progress=False, console=quiet()
            )
        )
        await asyncio.wait_for(started.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        seen = calls
        await asyncio.sleep(1)  # a generation still running would answer all 8 by now
        return seen

    seen = asyncio.run(asyncio.wait_for(main(), 60))
    assert calls == seen < 8


def scored_rows(items, answer) -> list[dict]:
    """An official scorer output file: the answers with `predicted` from strict_judge."""
    rows = []
    for item in items:
        response = answer(item.prompt)
        rows.append(
            {
                "dimension": item.dimension.value,
                "subcomponent": item.subcomponent,
                "prompt": item.prompt,
                "response": response,
                "predicted": strict_judge(item.prompt, response, item.dimension.value),
            }
        )
    return rows


def test_import_answers_then_load_run_gives_what_the_cli_reports(tmp_path):
    items = list(flames.load_dataset("control", sample=12))
    path = write_jsonl(tmp_path / "scored.jsonl", scored_rows(items, polite_model))
    summary = flames.import_answers(path, tmp_path / "run", model="polite")
    assert (summary.answers, summary.scorers) == (12, ["imported"])
    result = flames.load_run(tmp_path / "run", bootstrap=0)
    expected = expected_rate(small(tmp_path))
    assert result.harmless_rate.value == pytest.approx(sum(expected.values()) / len(expected))
    printed = json.loads(run_cli("report", tmp_path / "run", "--bootstrap", "0", "--json").stdout)
    assert printed["metrics"] == json.loads(result.report.metrics.model_dump_json())

    unscored = [
        {k: v for k, v in row.items() if k != "predicted"}
        for row in scored_rows(items, polite_model)
    ]
    summary = flames.import_answers(write_jsonl(tmp_path / "u.jsonl", unscored), tmp_path / "u")
    assert (summary.answers, summary.scorers) == (12, [])


def test_leaderboard_ranks_runs_as_the_cli_prints_them(tmp_path):
    flames.evaluate(small(tmp_path / "polite"), progress=False, console=quiet())

    def refuse_all(prompt: str) -> str:
        return REFUSAL

    evaluation = small(tmp_path / "refusing", target={"function": refuse_all})
    flames.evaluate(evaluation, progress=False, console=quiet())
    runs = [tmp_path / "polite", tmp_path / "refusing"]
    entries = flames.leaderboard(runs, bootstrap=100)
    assert [e.run for e in entries] == ["refusing", "polite"]
    expected = expected_rate(small(tmp_path))
    assert entries[1].overall_rate == pytest.approx(sum(expected.values()) / len(expected))
    printed = run_cli("leaderboard", *runs, "--bootstrap", "100", "--json").stdout
    assert json.loads(printed) == [json.loads(e.model_dump_json()) for e in entries]


def test_labels_exported_imported_and_calibrated_from_python(tmp_path):
    run_dir = tmp_path / "run"
    flames.evaluate(small(run_dir), progress=False, console=quiet())
    assert flames.export_for_labelling(run_dir, tmp_path / "all.csv") == 12
    assert flames.export_for_labelling(run_dir, tmp_path / "some.jsonl", sample=5) == 5
    with pytest.raises(flames.UsageError):
        flames.export_for_labelling(run_dir, tmp_path / "x.csv", sample=5, disagreements_of=["a"])
    judge = flames.load_run(run_dir, bootstrap=0).scorer.name
    with pytest.raises(flames.FlamesError, match="no human labels"):
        flames.calibrate(run_dir, judge)

    # The annotator agrees with the judge except on refusals, which they call 2.
    rows = [json.loads(line) for line in (tmp_path / "some.jsonl").read_text().splitlines()]
    for row in rows:
        judged = strict_judge(row["prompt"], row["response"], row["dimension"])
        row["label"] = 2 if row["response"] == REFUSAL else judged
    write_jsonl(tmp_path / "labels.jsonl", rows)
    assert flames.import_labels(run_dir, tmp_path / "labels.jsonl", annotator="ann") == {"ann": 5}

    calibration = flames.calibrate(run_dir, judge, bootstrap=100)
    refused = sum(row["response"] == REFUSAL for row in rows)
    assert calibration.reference == ["human:ann"]
    assert calibration.overall.n == 5
    assert calibration.overall.accuracy == pytest.approx(100 * (5 - refused) / 5)
    assert calibration.confusion[2][3] == refused


def test_disagreements_and_refusals_from_python(tmp_path):
    run_dir = tmp_path / "run"
    flames.evaluate(small(run_dir), progress=False, console=quiet())

    def lenient_judge(prompt: str, response: str, dimension: str) -> int:
        return 3

    strict = flames.load_run(run_dir, bootstrap=0).scorer.name
    lenient = flames.JudgeConfig(function=lenient_judge, version="1", name="lenient")
    flames.judge(run_dir, lenient, progress=False, console=quiet())
    items = list(flames.load_dataset("control", sample=12))
    answers = [polite_model(item.prompt) for item in items]
    refused = sum(a == REFUSAL for a in answers)

    scorers = [strict, "lenient"]
    found = flames.disagreements(run_dir, scorers)
    (pair,) = found.pairs
    assert pair.n == 12
    assert pair.agreement == pytest.approx(100 * refused / 12)  # they agree on refusals only
    assert found.contested == 12 - refused
    with pytest.raises(flames.UsageError):
        flames.disagreements(run_dir, scorers[:1])
    with pytest.raises(flames.UsageError, match="no scorer named 'judge:x'"):
        flames.disagreements(run_dir, [strict, "judge:x"])
    with pytest.raises(flames.UsageError, match="no scorer named 'nope'"):
        flames.export_for_labelling(run_dir, tmp_path / "q.jsonl", disagreements_of=["nope"])
    assert not (tmp_path / "q.jsonl").exists()
    # A name such as judge:x: is printed as text, never turned into an emoji.
    proc = run_cli("disagreements", run_dir, "--scorer-name", "lenient", "--scorer-name", "x:x:")
    assert proc.returncode == 2 and "'x:x:'" in proc.stderr and "❌" not in proc.stderr

    stats = flames.refusals(run_dir)
    assert (stats["all"].refused, stats["all"].answered) == (refused, 12)
    printed = run_cli("refusals", run_dir).stdout
    assert f"{stats['all'].rate:.1f}% refused ({refused} of 12)" in printed


def test_data_functions_do_what_the_data_commands_do(tmp_path, official_path, monkeypatch):
    import hashlib

    monkeypatch.setenv("FLAMES_CACHE_DIR", str(tmp_path / "cache"))
    cached = flames.fetch_data(official_path.parent)
    expected = hashlib.sha256(official_path.read_bytes()).hexdigest()
    assert cached.parent == tmp_path / "cache"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == expected
    forged = tmp_path / "forged" / official_path.name
    forged.parent.mkdir()
    forged.write_bytes(official_path.read_bytes() + b"\n")
    with pytest.raises(DataError, match=expected[:12]):
        flames.fetch_data(forged)

    listed = run_cli("data", "augment", "--list").stdout
    assert sorted(flames.transforms()) == sorted(
        line.split(":")[0] for line in listed.splitlines() if ":" in line
    )

    out = tmp_path / "augmented.jsonl"
    proc = run_cli(
        "data", "augment", "--sample", "10", "--transform", "pinyin", "--seed", "3", "-o", out
    )
    assert proc.returncode == 0, proc.stderr
    dataset = flames.load_dataset(sample=10)
    augmented = flames.augment(dataset, ["pinyin"], seed=3)
    assert len(augmented) == 2 * len(dataset)  # each item, and its source to pair with
    written = augmented.to_jsonl(tmp_path / "api.jsonl")
    assert written.read_text("utf-8") == out.read_text("utf-8")
    with pytest.raises(flames.UsageError, match="unknown transform"):
        flames.augment(dataset, ["no-such-transform"])


def test_plain_arguments_are_checked_with_one_clear_error(tmp_path):
    with pytest.raises(flames.UsageError, match=r"^sample: Input should be greater than or"):
        flames.load_dataset("control", sample=0)
    with pytest.raises(flames.UsageError, match=r"^data\.sample: "):
        flames.describe(model=polite_model, sample=-3)
    dataset = flames.load_dataset("control", sample=4)
    one = flames.augment(dataset, "pinyin")  # one name, not its letters
    assert len(one) == 2 * len(dataset)
    with pytest.raises(flames.UsageError, match=r"unknown transform\(s\): nope "):
        flames.augment(dataset, "nope")
    with pytest.raises(flames.UsageError, match="not list"):
        flames.augment([1, 2])  # type: ignore[arg-type]
    run_dir = tmp_path / "run"
    flames.evaluate(small(run_dir), progress=False, console=quiet())
    (entry,) = flames.leaderboard(run_dir, bootstrap=0)  # one run, not its characters
    assert entry.run == run_dir.name and entry.n_scored == len(flames.load_run(run_dir).rows)
