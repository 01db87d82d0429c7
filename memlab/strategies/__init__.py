"""Strategies as vectorised signal functions, by name, with parameters from ``params/``.

>>> from memlab.data import sample
>>> signals = compute_signals("sma_cross", sample("GOOG"), {"fast": 10, "slow": 30})
>>> int(signals["entry"].sum()) > 0
True

The signal frame's columns are documented in :mod:`memlab.strategies.signal_frame`. To add a
strategy, write ``f(ohlcv, **params) -> signal frame`` and declare it with :func:`strategy`
(or :func:`register`), with its default grid and parameter bounds
(:mod:`memlab.strategies.registry`). In a file of your own, it works by name from every
command with ``--strategy-file`` or ``MEMLAB_STRATEGIES``, and from an installed package
through the ``memlab.strategies`` entry point group (:mod:`memlab.strategies.plugins`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from memlab.strategies.library import (
    high_volatility,
    momentum,
    rsi_reversion,
    sma_cross,
    sma_cross_batch,
)
from memlab.strategies.params import default_params, load_params
from memlab.strategies.plugins import load_strategy_file, use_strategy_files
from memlab.strategies.registry import (
    BATCH,
    REGISTRY,
    StrategyFn,
    StrategySpec,
    check_grid,
    check_params,
    default_grid,
    get,
    register,
    spec_of,
    strategy,
)
from memlab.strategies.signal_frame import SIGNAL_COLUMNS, check_signal_frame, signal_frame


def compute_signals(name: str, ohlcv: pd.DataFrame, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Run strategy ``name`` over ``ohlcv`` with ``params`` (defaults from ``params/``); a
    result that is not a signal frame for ``ohlcv`` is an error naming the column."""
    chosen = check_params(name, {**load_params(name), **(params or {})})
    return check_signal_frame(name, ohlcv, get(name)(ohlcv, **chosen))


__all__ = [
    "BATCH",
    "REGISTRY",
    "SIGNAL_COLUMNS",
    "StrategyFn",
    "StrategySpec",
    "check_grid",
    "check_params",
    "check_signal_frame",
    "compute_signals",
    "default_grid",
    "default_params",
    "get",
    "high_volatility",
    "load_params",
    "load_strategy_file",
    "momentum",
    "register",
    "rsi_reversion",
    "signal_frame",
    "sma_cross",
    "sma_cross_batch",
    "spec_of",
    "strategy",
    "use_strategy_files",
]
