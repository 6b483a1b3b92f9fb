"""The description of an evaluation: one typed object built alike from the command line, from
Python and from a TOML or YAML file, and recorded whole in the run's manifest."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from flames._util.callables import qualified_name, resolve_callable
from flames._util.tomlfile import toml_positions
from flames.clients.batch import BatchSettings
from flames.clients.body import DEFAULT_MAX_REPLY_BYTES
from flames.clients.endpoint import Endpoint
from flames.data.official import SHA256
from flames.data.published import OFFICIAL_REPO
from flames.errors import DataError, FlamesError, UsageError, install_hint
from flames.runs.records import Decoding, Price

if TYPE_CHECKING:
    from flames.training.settings import TrainingSettings

OFFICIAL_SHA256 = SHA256
"""sha256 of the official 1k prompt file, which every copy must have."""


def _resolve(reference: str) -> Callable[..., Any]:
    try:
        return resolve_callable(reference)
    except ValueError as exc:
        raise ValueError(f"model: {exc}") from None


def _shown(url: str | None) -> str | None:
    """A base URL as manifests record it; one that cannot be used is not recorded at all."""
    if url is None:
        return None
    try:
        return Endpoint.parse(url).display
    except FlamesError:
        return "(not a usable URL; not recorded)"


def _named(data: Any, kind_field: str) -> Any:
    """A function given without a model name is a callable named by its qualified name."""
    if isinstance(data, dict) and callable(data.get("function")):
        data = {kind_field: "callable", **data}
        data.setdefault("model", qualified_name(data["function"]))
    return data


def batch_settings(section: TargetConfig | JudgeConfig) -> BatchSettings | None:
    if not section.batch:
        return None
    return BatchSettings(
        api=section.batch_api,
        max_requests=section.batch_max_requests,
        poll=section.batch_poll,
        price=section.price,
    )


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class DecodingConfig(Decoding):
    """Decoding settings (`flames.runs.records.Decoding`), refusing unknown keys."""

    model_config = ConfigDict(extra="forbid")


class DataConfig(_Section):
    """The prompt set and which of its items to use."""

    source: str = "official"
    """A JSONL path, 'official' (the 1k official prompts) or 'control' (benign control set)."""
    dimensions: list[str] = Field(default_factory=list)
    """Keep only these dimensions (empty keeps all)."""
    subcomponents: list[str] = Field(default_factory=list)
    """Keep only these subcomponents (empty keeps all)."""
    sample: int | None = Field(default=None, ge=1)
    """A stratified sample of this many items, after the filters."""
    sample_seed: int = 0
    """Seed of the sample."""


class TargetConfig(_Section):
    """The model under test: where answers come from, and how they are decoded."""

    model: str
    """Model name (API), path or hub id (transformers, vllm), or 'module:function' (callable)."""
    backend: Literal["openai", "transformers", "vllm", "callable"] = "openai"
    base_url: str | None = None
    """OpenAI-compatible endpoint, e.g. http://localhost:8000/v1."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable that holds the API key (the key itself is never recorded)."""
    concurrency: int = Field(default=16, ge=1)
    """Requests (or function calls) in flight at once."""
    rpm: float | None = Field(default=None, gt=0)
    """Limit on API requests per minute."""
    timeout: float = Field(default=120.0, gt=0)
    """Seconds before one API request is abandoned."""
    max_attempts: int = Field(default=6, ge=1)
    """Tries per API request, with backoff."""
    keep_alive: Literal["auto", "always", "never"] = "auto"
    """Reuse a connection for the next API request: "auto", only after a reply that names its
    request's id (vLLM's do), so that a stray extra reply can never be read as another
    request's answer; "always" (faster with servers that name no id); "never"."""
    max_reply_bytes: int = Field(default=DEFAULT_MAX_REPLY_BYTES, ge=1024)
    """A reply longer than this (decompressed) is an error, never stored (default 8 MiB); for
    batch results, each request's result."""
    batch: bool = False
    """Send the requests through the provider's batch API (OpenAI's, DashScope's, Anthropic's):
    half the price, results within 24 hours; a killed run reattaches to its jobs (API only)."""
    batch_api: Literal["auto", "openai", "anthropic"] = "auto"
    """Which batch API: 'auto' is Anthropic's for api.anthropic.com, OpenAI's otherwise."""
    batch_max_requests: int | None = Field(default=None, ge=1)
    """Requests per batch job at most (default: the provider's limit)."""
    batch_poll: float = Field(default=60.0, gt=0)
    """The longest wait between two checks of a batch job's status, in seconds."""
    price: Price | None = None
    """What the model's tokens cost live, per million (``{input = 0.15, output = 0.6}``; the
    batch price is `batch_factor` of that, half by default): shows the cost live against batch."""
    gguf_file: str | None = None
    """GGUF file inside the model folder (transformers)."""
    device: str | None = None
    """cpu, cuda, cuda:1 ... (local backends; default: best)."""
    dtype: str = "auto"
    """auto, float32, float16 or bfloat16 (local backends)."""
    batch_size: int = Field(default=8, ge=1)
    """Prompts per local generation batch (transformers)."""
    engine_args: dict[str, Any] = Field(default_factory=dict)
    """Arguments for vllm.LLM (vllm backend only)."""
    decoding: DecodingConfig = Field(default_factory=DecodingConfig)
    """Temperature, top_p, max tokens, seed, system prompt, answers per prompt."""
    version: str | None = None
    """For a callable: a version string of yours, recorded in the manifest."""
    input: Literal["prompt", "messages"] = "prompt"
    """For a callable: called with the prompt text, or with the chat messages."""
    function: Callable[..., Any] | None = Field(default=None, repr=False)
    """For a callable given from Python: the function itself (not recorded; its name is)."""

    @model_validator(mode="before")
    @classmethod
    def _name_the_function(cls, data: Any) -> Any:
        return _named(data, "backend")

    @field_validator("engine_args")
    @classmethod
    def _only_for_vllm(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if value and info.data.get("backend") != "vllm":
            raise ValueError("only the vllm backend takes them")
        return value

    @model_validator(mode="after")
    def _check(self) -> TargetConfig:
        if self.backend == "callable" and self.function is None:
            self.function = _resolve(self.model)
        if self.batch and self.backend != "openai":
            raise ValueError("batch: only an API model (backend 'openai') has a batch API")
        return self

    def batch_settings(self) -> BatchSettings | None:
        """The batch settings, when requests go through a batch API."""
        return batch_settings(self)


class ScorerConfig(_Section):
    """The official Flames-scorer and its settings (the defaults are infer.py's)."""

    model: str = OFFICIAL_REPO
    """Checkpoint: a folder or a Hugging Face repo id."""
    revision: str | None = None
    """Hub revision of the checkpoint."""
    max_length: int = Field(default=512, ge=1)
    """Input tokens (512 as the official infer.py)."""
    truncation: Literal["official", "keep-suffix"] = "official"
    dtype: str = "auto"
    """auto (fp32 on CPU, fp16 on GPU), float32, float16 or bfloat16."""
    device: str | None = None
    token_budget: int | None = Field(default=None, ge=1)
    """Padded tokens per batch (default: 2048 on CPU, 32768 on GPU)."""
    max_batch: int = Field(default=64, ge=1)
    """Items per batch at most."""
    name: str = "flames-scorer"
    """Name the verdicts are stored under."""
    engine: Literal["transformers", "vllm"] = "transformers"
    engine_args: dict[str, Any] = Field(default_factory=dict)
    """Arguments for the scorer's vllm.LLM (engine 'vllm' only)."""

    @field_validator("engine_args")
    @classmethod
    def _only_for_vllm(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if value and info.data.get("engine") != "vllm":
            raise ValueError("only engine 'vllm' takes them")
        return value


class JudgeConfig(_Section):
    """A judge other than the official scorer: a chat model (kind 'llm') or a Python function
    (kind 'callable')."""

    model: str
    """The judge's chat model, or 'module:function' for a callable."""
    kind: Literal["llm", "callable"] = "llm"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(default=16, ge=1)
    rpm: float | None = Field(default=None, gt=0)
    timeout: float = Field(default=120.0, gt=0)
    max_attempts: int = Field(default=6, ge=1)
    keep_alive: Literal["auto", "always", "never"] = "auto"
    """Reuse connections between judge requests (see TargetConfig.keep_alive)."""
    max_reply_bytes: int = Field(default=DEFAULT_MAX_REPLY_BYTES, ge=1024)
    """A judge reply longer than this (decompressed) is an error (default 8 MiB)."""
    backend: Literal["openai", "transformers", "vllm"] = "openai"
    """Where the judge model runs (llm): behind an OpenAI-compatible API, or in this process
    with transformers or vLLM (no server needed)."""
    gguf_file: str | None = None
    """GGUF file inside the judge model's folder (transformers)."""
    device: str | None = None
    """cpu, cuda, cuda:1 ... for a local judge (default: best)."""
    dtype: str = "auto"
    """auto, float32, float16 or bfloat16 for a local judge."""
    batch_size: int = Field(default=8, ge=1)
    """Verdicts a local judge generates in one batch."""
    engine_args: dict[str, Any] = Field(default_factory=dict)
    """Arguments for the judge's vllm.LLM (backend vllm only)."""
    parse_attempts: int = Field(default=3, ge=1)
    """Asks per answer before a malformed verdict is recorded as an error (llm)."""
    json_mode: bool = False
    """Ask the judge API for a JSON object response (llm)."""
    max_tokens: int = Field(default=256, ge=1)
    """Tokens per judge answer; a verdict cut at the limit is asked again with twice it (llm)."""
    skip_check: bool = False
    """Judge without the sanity check on flames' probe answers (llm; reports say so)."""
    batch: bool = False
    """Judge through the provider's batch API: half the price, within 24 hours (llm)."""
    batch_api: Literal["auto", "openai", "anthropic"] = "auto"
    batch_max_requests: int | None = Field(default=None, ge=1)
    batch_poll: float = Field(default=60.0, gt=0)
    price: Price | None = None
    """What the judge's tokens cost live, per million (see TargetConfig.price)."""
    name: str | None = None
    """Name the verdicts are stored under (default judge:MODEL)."""
    version: str | None = None
    """For a callable: a version string of yours, recorded in the scorer manifest."""
    function: Callable[..., Any] | None = Field(default=None, repr=False)
    """For a callable given from Python: the function itself (not recorded; its name is)."""

    @model_validator(mode="before")
    @classmethod
    def _name_the_function(cls, data: Any) -> Any:
        return _named(data, "kind")

    @model_validator(mode="after")
    def _check(self) -> JudgeConfig:
        if self.kind == "callable" and self.function is None:
            self.function = _resolve(self.model)
        if self.batch and (self.kind != "llm" or self.backend != "openai"):
            raise ValueError("batch: only an LLM judge behind an API (backend openai) has one")
        if self.engine_args and self.backend != "vllm":
            raise ValueError("engine_args: only the vllm backend takes them")
        if self.json_mode and self.backend != "openai":
            raise ValueError("json_mode: a request option of API judges (backend openai)")
        return self

    def batch_settings(self) -> BatchSettings | None:
        """The batch settings, when verdicts are asked through a batch API."""
        return batch_settings(self)

    @property
    def scorer_name(self) -> str:
        """The name its verdicts are stored under: `name`, else judge:MODEL (for a callable,
        judge: and the function's qualified name)."""
        if self.name:
            return self.name
        if self.kind == "callable" and self.function is not None:
            return f"judge:{qualified_name(self.function)}"
        return f"judge:{self.model}"


class ExecutorConfig(_Section):
    """Where local models run, and how failures are handled."""

    kind: Literal["local", "ray"] = "local"
    """In this process, or on a Ray cluster (transformers backend and official scorer)."""
    address: str | None = None
    """Ray cluster to join ('auto', ray://host:10001); default: a local one."""
    replicas: int | None = Field(default=None, ge=1)
    gpus_per_replica: float | None = Field(default=None, ge=0)
    max_errors: int | None = Field(default=None, ge=0)
    """Stop generating after this many failures (default: 10% of the work, at least 5)."""
    retry_errors: bool = False
    """Retry the answers and verdicts that failed before."""
    wait: bool = False
    """When another process is writing the run, wait for it to finish instead of stopping (one
    process writes a run at a time)."""


class StatisticsConfig(_Section):
    """How the confidence intervals are computed."""

    bootstrap: int = Field(default=2000, ge=0)
    """Resamples of the permutation tests and the calibration bootstrap (0 turns the 95% intervals
    off)."""
    seed: int = 0
    """Seed of the resampling."""


class Evaluation(_Section):
    """One evaluation: prompts, the model under test, the scorer or judges, the executor and the
    statistics. `flames.evaluate` runs it; `flames run --config FILE` reads it from a file."""

    target: TargetConfig
    data: DataConfig = Field(default_factory=DataConfig)
    scorer: ScorerConfig | None = None
    """The official scorer; used when no judges are given."""
    judges: list[JudgeConfig] = Field(default_factory=list)
    """Judges instead of the official scorer; the first one's verdicts are reported."""
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    statistics: StatisticsConfig = Field(default_factory=StatisticsConfig)
    run_dir: str | None = None
    """Run directory, when the caller names none."""

    @model_validator(mode="after")
    def _one_kind_of_scorer(self) -> Evaluation:
        if self.scorer is not None and self.judges:
            raise ValueError("give either a scorer or judges, not both")
        if self.scorer is None and not self.judges:
            self.scorer = ScorerConfig()
        return self

    def record(self) -> dict[str, Any]:
        """The description as JSON-ready data for the manifest: functions by name only, and
        endpoints as manifests show them (credential-like query values masked)."""
        functions = {"target": {"function"}, "judges": {"__all__": {"function"}}}
        data = self.model_dump(mode="json", exclude=functions)
        for section in (data["target"], *data["judges"]):
            section["base_url"] = _shown(section["base_url"])
        return data

    def settings(self) -> dict[str, Any]:
        """The description as settings to change and validate again. The model's answer length
        and batch size are left out where they were never set: unset, they are chosen for the
        device when the evaluation runs (smaller on CPU), and stay so."""
        data = self.model_dump()
        if "max_tokens" not in self.target.decoding.model_fields_set:
            del data["target"]["decoding"]["max_tokens"]
        if "batch_size" not in self.target.model_fields_set:
            del data["target"]["batch_size"]
        return data

    @classmethod
    def from_file(cls, path: Path | str) -> Evaluation:
        """Read a TOML (or, with pyyaml installed, YAML) file; errors name the file, the line
        and the field."""
        return load_evaluation(path)


class AttackerConfig(TargetConfig):
    """The attacker of a red-team run: any model flames can run, asked whole chats. It samples
    (temperature 1) so that the attacks it proposes differ."""

    input: Literal["prompt", "messages"] = "messages"
    decoding: DecodingConfig = Field(
        default_factory=lambda: DecodingConfig(temperature=1.0, max_tokens=1024)
    )

    @field_validator("input")
    @classmethod
    def _whole_chats(cls, value: str) -> str:
        if value != "messages":
            raise ValueError("the attacker is asked whole chats: input must be 'messages'")
        return value


STRATEGY_NAMES = ("rewrite", "pair", "tap", "crescendo")


class AttackConfig(_Section):
    """How a red-team run attacks: its strategies with their parameters, its budgets, its seed
    and the attacker's instructions (docs/redteam.md)."""

    strategies: list[str] = Field(default_factory=lambda: ["pair"], min_length=1)
    """Each goal is attacked with each, in this order: rewrite, pair, tap, crescendo."""
    budget: int = Field(default=20, ge=1, le=1000)
    """Target queries per attack (one goal under one strategy) at most."""
    attacker_budget: int | None = Field(default=None, ge=1)
    """Attacker requests per attack at most (default: 10 x budget); checked between rounds."""
    attacker_attempts: int = Field(default=3, ge=1, le=10)
    """Asks of the attacker per step: a reply with nothing to send is asked again another way."""
    seed: int = 0
    """Seeds the rule transforms and every attacker request's sampling seed."""
    instructions: str | None = None
    """A TOML file replacing some of the attacker's instructions (default: flames' own)."""
    rewrite: dict[str, Any] = Field(default_factory=dict)
    """rewrite's parameters: methods."""
    pair: dict[str, Any] = Field(default_factory=dict)
    """pair's parameters: streams, iterations."""
    tap: dict[str, Any] = Field(default_factory=dict)
    """tap's parameters: branching, width, depth."""
    crescendo: dict[str, Any] = Field(default_factory=dict)
    """crescendo's parameters: turns, backtracks."""
    concurrency: int = Field(default=16, ge=1)
    """Attacks worked on at once."""
    prices: dict[str, tuple[float, float]] = Field(default_factory=dict)
    """Per role (target, attacker, judge): price of a million input and of a million output
    tokens (as `TargetConfig.price`)."""

    @field_validator("strategies")
    @classmethod
    def _known_strategies(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in STRATEGY_NAMES]
        if unknown:
            known = ", ".join(STRATEGY_NAMES)
            raise ValueError(f"unknown strategy {', '.join(unknown)} (known: {known})")
        if len(set(value)) != len(value):
            raise ValueError("a strategy is named twice")
        return value

    @field_validator("prices")
    @classmethod
    def _known_roles(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for role, pair in value.items():
            if role not in ("target", "attacker", "judge"):
                raise ValueError(f"unknown role {role!r} (target, attacker or judge)")
            if min(pair) < 0:
                raise ValueError(f"{role}: a price cannot be negative")
        return value

    def parameters(self, name: str) -> dict[str, Any]:
        """The parameters given for strategy `name`."""
        return dict(getattr(self, name))

    @property
    def attacker_limit(self) -> int:
        return self.attacker_budget or 10 * self.budget


class RedteamConfig(_Section):
    """One red-team run: goals (the prompt set), the target, the attacker, the judge (the
    official scorer unless a judge is given) and how to attack. `flames.redteam` runs it;
    `flames redteam --config FILE` reads it from a file."""

    target: TargetConfig
    attacker: AttackerConfig
    judge: JudgeConfig | None = None
    """An LLM or callable judge; None: the official scorer (`scorer`)."""
    scorer: ScorerConfig | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    attack: AttackConfig = Field(default_factory=AttackConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    run_dir: str | None = None

    @model_validator(mode="after")
    def _one_judge(self) -> RedteamConfig:
        if self.judge is not None and self.scorer is not None:
            raise ValueError("give either a judge or the scorer's settings, not both")
        roles = {"target": self.target, "attacker": self.attacker, "judge": self.judge}
        batched = [name for name, role in roles.items() if role is not None and role.batch]
        if batched:
            raise ValueError(
                f"batch ({', '.join(batched)}): an attack asks each turn as it goes, live; "
                "batch APIs are for flames generate, judge and run"
            )
        if self.judge is None and self.scorer is None:
            self.scorer = ScorerConfig()
        return self

    def record(self) -> dict[str, Any]:
        """The description as JSON-ready data for the manifest (see `Evaluation.record`)."""
        functions = {"target": {"function"}, "attacker": {"function"}, "judge": {"function"}}
        data = self.model_dump(mode="json", exclude=functions)
        for role in ("target", "attacker", "judge"):
            if data.get(role):
                data[role]["base_url"] = _shown(data[role]["base_url"])
        return data

    @classmethod
    def from_file(cls, path: Path | str) -> RedteamConfig:
        """Read a TOML (or YAML) file; errors name the file, the line and the field."""
        return load_redteam_config(path)


# -- files -------------------------------------------------------------------------------------


def yaml_positions(node: Any, path: tuple[str | int, ...] = ()) -> dict[tuple[str | int, ...], int]:
    """Line number of each key and list entry of a composed YAML node, by path."""
    import yaml

    positions: dict[tuple[str | int, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            here = (*path, key.value)
            positions[here] = key.start_mark.line + 1
            positions.update(yaml_positions(value, here))
    elif isinstance(node, yaml.SequenceNode):
        for index, value in enumerate(node.value):
            here = (*path, index)
            positions[here] = value.start_mark.line + 1
            positions.update(yaml_positions(value, here))
    return positions


Model = TypeVar("Model", bound=BaseModel)


def validated(model: type[Model], data: dict[str, Any]) -> Model:
    """`model` from `data`, a mistake raised as a UsageError naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = f"{field_name(tuple(error['loc']))}: " if error["loc"] else ""
        raise UsageError(where + error["msg"].removeprefix("Value error, ")) from None


def field_name(loc: tuple[str | int, ...]) -> str:
    """A pydantic error location as one would write it: judges[0].model."""
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


def _line_of(loc: tuple[str | int, ...], positions: dict[tuple[str | int, ...], int]) -> int | None:
    """The line of the deepest key on `loc`'s path that the file has."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in positions:
            return positions[loc[:end]]
    return None


_LONG_NUMBER = re.compile(r"\d{4301,}")


def _read(path: Path) -> tuple[Any, dict[tuple[str | int, ...], int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError("no such file", path) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not valid UTF-8 (byte {exc.start})", path) from None
    try:
        return _parse(path, text)
    except RecursionError:
        raise DataError("tables or arrays nested too deeply to read", path) from None
    except ValueError:  # a number of over 4,300 digits, which Python does not read
        found = _LONG_NUMBER.search(text)
        line = text.count("\n", 0, found.start()) + 1 if found else None
        raise DataError("a number too long to read (over 4,300 digits)", path, line) from None


def _parse(path: Path, text: str) -> tuple[Any, dict[tuple[str | int, ...], int]]:
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            hint = install_hint("yaml")
            raise DataError(f"YAML needs pyyaml: {hint}; or use TOML", path) from None
        try:
            return yaml.safe_load(text), yaml_positions(yaml.compose(text))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or str(exc)
            raise DataError(f"invalid YAML: {problem}", path, mark and mark.line + 1) from None
    try:
        return tomllib.loads(text), toml_positions(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise DataError(f"invalid TOML: {message}", path, found and int(found.group(1))) from None


def load_evaluation(path: Path | str) -> Evaluation:
    """An `Evaluation` from a TOML or YAML file; errors name the file, line and field."""
    return load_settings(path, Evaluation, "target, data, scorer, ...")


def load_redteam_config(path: Path | str) -> RedteamConfig:
    """A `RedteamConfig` from a TOML or YAML file (`flames redteam --config`)."""
    return load_settings(path, RedteamConfig, "target, attacker, judge, data, attack, ...")


def load_training(path: Path | str) -> TrainingSettings:
    """`TrainingSettings` from a TOML or YAML file (`flames scorer train --config`)."""
    from flames.training.settings import TrainingSettings

    return load_settings(path, TrainingSettings, "labels, base, out, epochs, ...")


def load_settings(path: Path | str, model: type[Model], expected: str) -> Model:
    """`model` from a TOML or YAML file; errors name the file, line and field."""
    path = Path(path)
    data, positions = _read(path)
    if not isinstance(data, dict):
        raise DataError(f"expected a table of settings ({expected})", path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        lines = []
        for error in errors:
            loc = tuple(error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            line = _line_of(loc, positions)
            where = f"{field_name(loc)}: " if loc else ""
            lines.append((line, f"{where}{message}"))
        lines.sort(key=lambda entry: entry[0] or 0)
        first_line, first = lines[0]
        more = "; ".join(f"line {n}: {m}" if n else m for n, m in lines[1:])
        raise DataError(first + (f"; also {more}" if more else ""), path, first_line) from None
