"""The built-in strategies: momentum, SMA crossover, RSI mean reversion, high volatility.

Each is a vectorised function of the OHLCV frame returning the signal frame described
in :mod:`memlab.strategies.signal_frame`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from memlab.errors import InvalidInputError
from memlab.features import market_features, rsi
from memlab.strategies.signal_frame import crossed_above, crossed_below, signal_frame


def _window(name: str, value: int) -> int:
    if int(value) != value or value < 1:
        raise InvalidInputError(f"{name} must be a whole number of bars >= 1, got {value!r}")
    return int(value)


def momentum(ohlcv: pd.DataFrame, lookback: int = 20, threshold: float = 0.05) -> pd.DataFrame:
    """Follow the trend: long when the ``lookback``-bar return exceeds ``threshold``
    (a fraction, 0.05 = 5 %), out when it turns negative; shorts mirror it.
    Confidence grows with the size of the move."""
    lookback = _window("lookback", lookback)
    if threshold <= 0:
        raise InvalidInputError(f"threshold must be positive, got {threshold}")
    ret = ohlcv["Close"].pct_change(lookback)
    conf = (0.5 + (ret.abs() / threshold - 1.0) * 0.1).clip(0.5, 0.95)
    return signal_frame(
        ohlcv.index, entry=ret > threshold, exit=ret < 0, short_entry=ret < -threshold,
        short_exit=ret > 0, confidence=conf.where(ret.abs() > threshold),
    )


def sma_cross(ohlcv: pd.DataFrame, fast: int = 10, slow: int = 30) -> pd.DataFrame:
    """Long when the ``fast`` simple moving average crosses above the ``slow`` one, out
    (or short) when it crosses below."""
    fast, slow = _window("fast", fast), _window("slow", slow)
    if fast >= slow:
        raise InvalidInputError(f"fast ({fast}) must be shorter than slow ({slow})")
    close = ohlcv["Close"]
    f, s = close.rolling(fast).mean(), close.rolling(slow).mean()
    up, down = crossed_above(f, s), crossed_below(f, s)
    spread = ((f - s).abs() / s * 100).clip(upper=5.0)
    return signal_frame(ohlcv.index, entry=up, exit=down, short_entry=down, short_exit=up,
                        confidence=(0.55 + spread * 0.05).where(up | down))


def rsi_reversion(ohlcv: pd.DataFrame, period: int = 14, lower: float = 30.0, upper: float = 70.0) -> pd.DataFrame:
    """Mean reversion: long when RSI falls below ``lower``, out when it rises above
    ``upper``; shorts mirror it. Confidence grows with how stretched RSI is."""
    period = _window("period", period)
    if not 0 < lower < upper < 100:
        raise InvalidInputError(f"need 0 < lower < upper < 100, got lower={lower}, upper={upper}")
    r = rsi(ohlcv["Close"], period)
    stretch = np.maximum(lower - r, r - upper).clip(lower=0)
    return signal_frame(
        ohlcv.index, entry=r < lower, exit=r > upper, short_entry=r > upper, short_exit=r < lower,
        confidence=(0.55 + stretch * 0.02).clip(upper=0.9).where((r < lower) | (r > upper)),
    )


def high_volatility(
    ohlcv: pd.DataFrame, volatility_threshold: float = 2.0, rsi_threshold: float = 35.0, exit_rsi: float = 55.0
) -> pd.DataFrame:
    """The seed's learned strategy: when volatility (20-bar std of returns, in percent)
    is above ``volatility_threshold`` and RSI is below ``rsi_threshold``, BUY with
    confidence 0.8; exit when RSI recovers above ``exit_rsi``. Long only."""
    if not 0 < rsi_threshold < exit_rsi < 100:
        raise InvalidInputError(f"need 0 < rsi_threshold < exit_rsi < 100, got {rsi_threshold}, {exit_rsi}")
    feats = market_features(ohlcv)
    entry = (feats["volatility"] > volatility_threshold) & (feats["rsi"] < rsi_threshold)
    return signal_frame(ohlcv.index, entry=entry, exit=feats["rsi"] > exit_rsi,
                        confidence=pd.Series(0.8, index=ohlcv.index).where(entry))


def sma_cross_batch(ohlcv: pd.DataFrame, combos: list[dict[str, int]]):  # type: ignore[no-untyped-def]
    """Signals of many ``sma_cross`` parameter sets, each moving average computed once.

    Yields ``(entry, exit, short_entry, short_exit)`` boolean arrays per combination,
    identical to :func:`sma_cross` (same rolling means, same crossing rule).
    """
    close = ohlcv["Close"]
    cache: dict[int, np.ndarray] = {}

    def sma(n: int) -> np.ndarray:
        if n not in cache:
            cache[n] = close.rolling(n).mean().to_numpy()
        return cache[n]

    for params in combos:
        f, s = sma(int(params["fast"])), sma(int(params["slow"]))
        above = f > s
        below = f < s
        up = np.zeros(len(f), dtype=bool)
        down = np.zeros(len(f), dtype=bool)
        # crossed_above: a > b now and a <= b before (NaN comparisons are False).
        up[1:] = above[1:] & (f[:-1] <= s[:-1])
        down[1:] = below[1:] & (f[:-1] >= s[:-1])
        yield up, down, down, up
