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
from typing import TYPE_CHECKING, Any

_DISTRIBUTION = "flames-eval"
"""The distribution name (pyproject.toml)."""


def _version() -> str:
    """The installed version (0.0.0 from a source tree without install). Looked up on first
    use: importlib.metadata takes longer to load than the rest of `import flames`."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(_DISTRIBUTION)
    except PackageNotFoundError:
        return "0.0.0"


if TYPE_CHECKING:  # the public names, for type checkers and editors (`X as X`: exported)
    from flames._api import (
        augment as augment,
        batch_status as batch_status,
        calibrate as calibrate,
        cancel_batches as cancel_batches,
        compare as compare,
        convert_scorer as convert_scorer,
        describe as describe,
        disagreements as disagreements,
        evaluate as evaluate,
        evaluate_async as evaluate_async,
        evaluate_scorer as evaluate_scorer,
        export_attacks as export_attacks,
        export_for_labelling as export_for_labelling,
        fetch_data as fetch_data,
        generate as generate,
        generate_async as generate_async,
        import_answers as import_answers,
        import_labels as import_labels,
        judge as judge,
        judge_async as judge_async,
        leaderboard as leaderboard,
        load_dataset as load_dataset,
        load_run as load_run,
        redteam as redteam,
        redteam_async as redteam_async,
        refusals as refusals,
        report as report,
        score as score,
        score_async as score_async,
        serve_labelling as serve_labelling,
        train_scorer as train_scorer,
        transforms as transforms,
    )
    from flames._config import (
        AttackConfig as AttackConfig,
        AttackerConfig as AttackerConfig,
        DataConfig as DataConfig,
        DecodingConfig as DecodingConfig,
        Evaluation as Evaluation,
        ExecutorConfig as ExecutorConfig,
        JudgeConfig as JudgeConfig,
        RedteamConfig as RedteamConfig,
        ScorerConfig as ScorerConfig,
        StatisticsConfig as StatisticsConfig,
        TargetConfig as TargetConfig,
    )
    from flames._result import EvalResult as EvalResult
    from flames.errors import (
        FlamesError as FlamesError,
        IncompleteRun as IncompleteRun,
        ManifestMismatch as ManifestMismatch,
        UsageError as UsageError,
    )
    from flames.training.settings import (
        LoraSettings as LoraSettings,
        TrainingSettings as TrainingSettings,
    )
    from flames.training.split import SplitSettings as SplitSettings

_EXPORTS = {
    "flames._api": (
        "augment",
        "batch_status",
        "calibrate",
        "cancel_batches",
        "compare",
        "convert_scorer",
        "describe",
        "disagreements",
        "evaluate",
        "evaluate_async",
        "evaluate_scorer",
        "export_attacks",
        "export_for_labelling",
        "fetch_data",
        "generate",
        "generate_async",
        "import_answers",
        "import_labels",
        "judge",
        "judge_async",
        "leaderboard",
        "load_dataset",
        "load_run",
        "redteam",
        "redteam_async",
        "refusals",
        "report",
        "score",
        "score_async",
        "serve_labelling",
        "train_scorer",
        "transforms",
    ),
    "flames._config": (
        "AttackConfig",
        "AttackerConfig",
        "DataConfig",
        "DecodingConfig",
        "Evaluation",
        "ExecutorConfig",
        "JudgeConfig",
        "RedteamConfig",
        "ScorerConfig",
        "StatisticsConfig",
        "TargetConfig",
    ),
    "flames._result": ("EvalResult",),
    "flames.errors": ("FlamesError", "IncompleteRun", "ManifestMismatch", "UsageError"),
    "flames.training.settings": ("LoraSettings", "TrainingSettings"),
    "flames.training.split": ("SplitSettings",),
}
"""Where each public name is defined; the imports above must name the same."""
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["__version__", *_WHERE]


def __getattr__(name: str) -> Any:
    """The public names load on first use, so `import flames` (and every command) stays fast."""
    if name == "__version__":
        globals()[name] = found = _version()
        return found
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'flames' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
