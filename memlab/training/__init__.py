"""Historical training: walk-forward parameter choice, experience for the agent, nightly runs.

- :func:`walk_forward` — train/test folds with in- vs out-of-sample results.
- :func:`train` — walk-forward per symbol (optionally on Dask), then write parameters,
  decisions with outcomes, and the learned strategy into memory; all or nothing.
- :func:`run_nightly` — execute ``notebooks/nightly_training.ipynb`` with papermill into
  ``runs/YYYY-MM-DD/``.
"""

from memlab.training.distributed import fan_out
from memlab.training.experience import trades_to_decisions
from memlab.training.runner import NightlyRunError, run_nightly
from memlab.training.trainer import TrainingConfig, TrainingError, load_symbol, train
from memlab.training.walkforward import WalkForwardReport, walk_forward

__all__ = [
    "NightlyRunError",
    "TrainingConfig",
    "TrainingError",
    "WalkForwardReport",
    "fan_out",
    "load_symbol",
    "run_nightly",
    "trades_to_decisions",
    "train",
    "walk_forward",
]
