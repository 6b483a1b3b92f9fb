"""flames: evaluate how well large language models hold to human values in Chinese.

The Python API in a few lines (a function as the model and one as the judge):

    import flames

    result = flames.evaluate(run_dir="runs/demo", model=my_model, judge=my_judge, sample=20)
    print(result.harmless_rate)
    result.to_pandas()

`evaluate` runs what an `Evaluation` describes; the command line (`flames run`) builds the same
object from its options or from a file (`flames run --config eval.toml`). The names below are
the public surface; everything else is implementation.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("flames")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"

if TYPE_CHECKING:
    from flames._api import (
        compare,
        describe,
        evaluate,
        evaluate_async,
        generate,
        generate_async,
        judge,
        judge_async,
        load_dataset,
        load_run,
        report,
        score,
        score_async,
    )
    from flames._config import (
        DataConfig,
        DecodingConfig,
        Evaluation,
        ExecutorConfig,
        JudgeConfig,
        ScorerConfig,
        StatisticsConfig,
        TargetConfig,
    )
    from flames._result import EvalResult
    from flames.errors import FlamesError, IncompleteRun, ManifestMismatch, UsageError

_EXPORTS = {
    "flames._api": (
        "compare",
        "describe",
        "evaluate",
        "evaluate_async",
        "generate",
        "generate_async",
        "judge",
        "judge_async",
        "load_dataset",
        "load_run",
        "report",
        "score",
        "score_async",
    ),
    "flames._config": (
        "DataConfig",
        "DecodingConfig",
        "Evaluation",
        "ExecutorConfig",
        "JudgeConfig",
        "ScorerConfig",
        "StatisticsConfig",
        "TargetConfig",
    ),
    "flames._result": ("EvalResult",),
    "flames.errors": ("FlamesError", "IncompleteRun", "ManifestMismatch", "UsageError"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "DataConfig",
    "DecodingConfig",
    "EvalResult",
    "Evaluation",
    "ExecutorConfig",
    "FlamesError",
    "IncompleteRun",
    "JudgeConfig",
    "ManifestMismatch",
    "ScorerConfig",
    "StatisticsConfig",
    "TargetConfig",
    "UsageError",
    "__version__",
    "compare",
    "describe",
    "evaluate",
    "evaluate_async",
    "generate",
    "generate_async",
    "judge",
    "judge_async",
    "load_dataset",
    "load_run",
    "report",
    "score",
    "score_async",
]


def __getattr__(name: str) -> Any:
    """The public names load on first use, so `import flames` (and every command) stays fast."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'flames' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
