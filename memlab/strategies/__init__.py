"""Strategies as vectorised signal functions, by name, with parameters from ``params/``.

>>> from memlab.data import sample
>>> signals = compute_signals("sma_cross", sample("GOOG"), {"fast": 10, "slow": 30})
>>> int(signals["entry"].sum()) > 0
True

The signal frame's columns are documented in :mod:`memlab.strategies.signal_frame`. To add a
strategy, write ``f(ohlcv, **params) -> signal frame`` and :func:`register` it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from memlab.errors import InvalidInputError
from memlab.strategies.library import (
    high_volatility,
    momentum,
    rsi_reversion,
    sma_cross,
    sma_cross_batch,
)
from memlab.strategies.params import default_params, load_params
from memlab.strategies.signal_frame import SIGNAL_COLUMNS, signal_frame

StrategyFn = Callable[..., pd.DataFrame]

REGISTRY: dict[str, StrategyFn] = {
    "momentum": momentum,
    "sma_cross": sma_cross,
    "rsi_reversion": rsi_reversion,
    "high_volatility": high_volatility,
}

#: Optional fast paths for sweeps: ``f(ohlcv, combos)`` yielding signal arrays per combo.
BATCH: dict[str, Callable[..., Any]] = {"sma_cross": sma_cross_batch}


def register(name: str, fn: StrategyFn) -> None:
    """Make ``fn`` available by ``name`` everywhere (backtest, training, trader)."""
    if not name.isidentifier():
        raise InvalidInputError(f"strategy name {name!r} must be an identifier")
    REGISTRY[name] = fn
    BATCH.pop(name, None)  # a replaced strategy must not keep the old fast path


def get(name: str) -> StrategyFn:
    """The strategy function called ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise InvalidInputError(f"unknown strategy {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def check_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` merged over the function's defaults; unknown names are an error."""
    fn = get(name)
    sig = inspect.signature(fn)
    accepted = [p for p in list(sig.parameters)[1:]]
    unknown = set(params) - set(accepted)
    if unknown:
        raise InvalidInputError(f"{name} has no parameter(s) {sorted(unknown)}; it takes {accepted}")
    merged = {p: sig.parameters[p].default for p in accepted}
    merged.update(params)
    return merged


def compute_signals(name: str, ohlcv: pd.DataFrame, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Run strategy ``name`` over ``ohlcv`` with ``params`` (defaults from ``params/``)."""
    chosen = check_params(name, {**load_params(name), **(params or {})})
    return get(name)(ohlcv, **chosen)


__all__ = [
    "BATCH",
    "REGISTRY",
    "SIGNAL_COLUMNS",
    "check_params",
    "compute_signals",
    "default_params",
    "get",
    "load_params",
    "register",
    "signal_frame",
]
