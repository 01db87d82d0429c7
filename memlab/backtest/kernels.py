"""Fused sweep kernels: signals and position tracking in one numba loop per parameter set.

vectorbt's general simulation costs tens of nanoseconds per bar and set; a sweep of
thousands of sets over a year of minute bars needs a few. For ``sma_cross`` long-only
sweeps, this kernel computes the crossings from precomputed moving averages and tracks
cash, units and equity in one pass, parameter sets in parallel. It reproduces vectorbt's
accounting exactly (all-in sizing ``cash / (price * (1 + fees))``, slippage on the fill
price, equity marked at the close) and a test holds it to vectorbt's results. It also
records each set's equity at chosen bars (``marks_at``): the sub-period returns the
selection statistics of :mod:`memlab.backtest.selection` need, without a bars-by-sets
matrix.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always")
def _fill(signal: int, price: float, cash: float, units: float, cost: float, fees: float, slippage: float):  # type: ignore[no-untyped-def]
    """Apply one signal at ``price``: returns (cash, units, cost, closed_trade, won)."""
    if signal == 1 and units == 0.0:
        paid = price * (1.0 + slippage)
        return 0.0, cash / (paid * (1.0 + fees)), cash, False, False
    if signal == -1 and units > 0.0:
        proceeds = units * price * (1.0 - slippage) * (1.0 - fees)
        return proceeds, 0.0, cost, True, proceeds > cost
    return cash, units, cost, False, False


@numba.njit(parallel=True, cache=True)
def sma_cross_long_nb(
    open_: np.ndarray,
    close: np.ndarray,
    mas: np.ndarray,
    fast_idx: np.ndarray,
    slow_idx: np.ndarray,
    next_open: bool,
    fees: float,
    slippage: float,
    init_cash: float,
    marks_at: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per set: total_return, n_trades (closed), wins, mean and std of bar returns, max drawdown;
    and the equity at the bars ``marks_at``.

    ``mas[i]`` is the moving average of window ``i``; set ``j`` crosses ``mas[fast_idx[j]]``
    over ``mas[slow_idx[j]]``. Signals at bar t fill at bar t+1's open (``next_open``) or
    at bar t's close. ``marks_at`` (increasing bar positions, possibly empty) gives the
    second result, ``marks[j, q]`` = set j's equity at the close of bar ``marks_at[q]``.
    """
    n = close.shape[0]
    m = fast_idx.shape[0]
    n_marks = marks_at.shape[0]
    out = np.empty((m, 6))
    marks = np.empty((m, n_marks))
    for j in numba.prange(m):
        f = mas[fast_idx[j]]
        s = mas[slow_idx[j]]
        cash = init_cash
        units = 0.0
        cost = 0.0
        trades = 0
        wins = 0
        prev_value = init_cash
        peak = init_cash
        max_dd = 0.0
        count = 0
        mean = 0.0
        m2 = 0.0
        pending = 0  # +1 buy, -1 sell, to fill at this bar's open
        q = 0  # next mark
        for t in range(n):
            if next_open and pending != 0:
                cash, units, cost, closed, won = _fill(pending, open_[t], cash, units, cost, fees, slippage)
                trades += closed
                wins += won
                pending = 0
            signal = 0
            if t > 0:
                if f[t] > s[t] and f[t - 1] <= s[t - 1]:
                    signal = 1
                elif f[t] < s[t] and f[t - 1] >= s[t - 1]:
                    signal = -1
            if signal != 0:
                if next_open:
                    pending = signal
                else:
                    cash, units, cost, closed, won = _fill(signal, close[t], cash, units, cost, fees, slippage)
                    trades += closed
                    wins += won
            value = cash + units * close[t]
            if q < n_marks and marks_at[q] == t:
                marks[j, q] = value
                q += 1
            if t > 0:
                r = value / prev_value - 1.0
                count += 1
                delta = r - mean
                mean += delta / count
                m2 += delta * (r - mean)
            prev_value = value
            if value > peak:
                peak = value
            dd = 1.0 - value / peak
            if dd > max_dd:
                max_dd = dd
        out[j, 0] = prev_value / init_cash - 1.0
        out[j, 1] = trades
        out[j, 2] = wins
        out[j, 3] = mean
        out[j, 4] = np.sqrt(m2 / (count - 1)) if count > 1 else np.nan
        out[j, 5] = max_dd
    return out, marks
