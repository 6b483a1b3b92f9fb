"""The public functions, one module per stage: build the pieces an `Evaluation` describes and
run them.

The command line calls these same functions. Every function that talks to a model has an
``_async`` twin for code already inside an event loop; the plain ones also work there (a Jupyter
kernel): their event loop then runs in a worker thread.
"""

from __future__ import annotations

from flames._api.batch import (
    batch_status as batch_status,
    cancel_batches as cancel_batches,
)
from flames._api.comparison import (
    compare as compare,
    leaderboard as leaderboard,
    rank_runs as rank_runs,
)
from flames._api.data import (
    augment as augment,
    convert_scorer as convert_scorer,
    fetch_data as fetch_data,
    load_dataset as load_dataset,
    transforms as transforms,
)
from flames._api.evaluation import (
    evaluate as evaluate,
    evaluate_async as evaluate_async,
    failed_items as failed_items,
    generate as generate,
    generate_async as generate_async,
    import_answers as import_answers,
    judge as judge,
    judge_async as judge_async,
    load_run as load_run,
    report as report,
    score as score,
    score_async as score_async,
)
from flames._api.human import (
    calibrate as calibrate,
    disagreements as disagreements,
    export_for_labelling as export_for_labelling,
    import_labels as import_labels,
    refusals as refusals,
    serve_labelling as serve_labelling,
)
from flames._api.pieces import describe as describe
from flames._api.redteaming import (
    export_attacks as export_attacks,
    redteam as redteam,
    redteam_async as redteam_async,
)
from flames._api.training import (
    evaluate_scorer as evaluate_scorer,
    train_scorer as train_scorer,
)
