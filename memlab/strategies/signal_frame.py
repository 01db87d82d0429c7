"""The signal frame every strategy returns, and helpers to build it.

A strategy is a function ``f(ohlcv, **params) -> DataFrame`` aligned with ``ohlcv``:

==============  =====  ================================================================
column          type   meaning (decided at the bar's close, using nothing later)
==============  =====  ================================================================
``entry``       bool   open (or keep) a long position
``exit``        bool   close a long position
``short_entry`` bool   open a short position (used when shorting is allowed)
``short_exit``  bool   close a short position
``confidence``  float  the strategy's own confidence in the bar's signal, 0-1 (NaN if none)
==============  =====  ================================================================

The backtest fills these at the next bar's open by default, and the paper trader acts
on the last row of a rolling window, so both see the same decisions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SIGNAL_COLUMNS: tuple[str, ...] = ("entry", "exit", "short_entry", "short_exit", "confidence")


def signal_frame(
    index: pd.Index,
    entry: pd.Series | np.ndarray,
    exit: pd.Series | np.ndarray,
    short_entry: pd.Series | np.ndarray | None = None,
    short_exit: pd.Series | np.ndarray | None = None,
    confidence: pd.Series | np.ndarray | float | None = None,
) -> pd.DataFrame:
    """Assemble a signal frame; NaN-driven comparisons become False."""

    def flag(values: pd.Series | np.ndarray | None) -> np.ndarray:
        if values is None:
            return np.zeros(len(index), dtype=bool)
        return np.nan_to_num(np.asarray(values, dtype=float), nan=0.0).astype(bool)

    conf = np.full(len(index), np.nan) if confidence is None else np.broadcast_to(np.asarray(confidence, dtype=float), (len(index),)).copy()
    return pd.DataFrame(
        {"entry": flag(entry), "exit": flag(exit), "short_entry": flag(short_entry),
         "short_exit": flag(short_exit), "confidence": conf},
        index=index,
    )


def crossed_above(a: pd.Series, b: pd.Series | float) -> pd.Series:
    """True on the bar where ``a`` moves from at or below ``b`` to above it."""
    prev_a = a.shift(1)
    prev_b = b.shift(1) if isinstance(b, pd.Series) else b
    return (a > b) & (prev_a <= prev_b)


def crossed_below(a: pd.Series, b: pd.Series | float) -> pd.Series:
    """True on the bar where ``a`` moves from at or above ``b`` to below it."""
    prev_a = a.shift(1)
    prev_b = b.shift(1) if isinstance(b, pd.Series) else b
    return (a < b) & (prev_a >= prev_b)
