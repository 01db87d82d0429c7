"""The built-in strategies: momentum, SMA crossover, RSI mean reversion, high volatility.

Each is a vectorised function of the OHLCV frame returning the signal frame described
in :mod:`memlab.strategies.signal_frame`, declared with the grid training sweeps by
default and the bounds of its parameters (the trader's defaults are data, in
``params/strategies.json``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from memlab.errors import InvalidInputError
from memlab.features import market_features, rsi
from memlab.strategies.registry import BATCH, strategy
from memlab.strategies.signal_frame import crossed_above, crossed_below, signal_frame

if TYPE_CHECKING:  # memlab.backtest imports the strategies: no import back at run time
    from memlab.backtest.rules import Indicators, SignalRules


def _window(name: str, value: int) -> int:
    if int(value) != value or value < 1:
        raise InvalidInputError(f"{name} must be a whole number of bars >= 1, got {value!r}")
    return int(value)


@strategy("momentum", grid={"lookback": [10, 20, 40], "threshold": [0.01, 0.03, 0.05]},
          bounds={"lookback": (1, None), "threshold": (0.0, None)})
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


@strategy("sma_cross", grid={"fast": [5, 10, 15, 20], "slow": [30, 50, 80]},
          bounds={"fast": (1, None), "slow": (2, None)})
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


@strategy("rsi_reversion", grid={"period": [7, 14], "lower": [25, 30], "upper": [70, 75]},
          bounds={"period": (1, None), "lower": (0.0, 100.0), "upper": (0.0, 100.0)})
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


@strategy("high_volatility", grid={"volatility_threshold": [1.0, 2.0], "rsi_threshold": [30, 35, 40]},
          bounds={"volatility_threshold": (0.0, None), "rsi_threshold": (0.0, 100.0), "exit_rsi": (0.0, 100.0)})
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


# Batch functions: each strategy's signals as rules on indicator lines, so a sweep computes
# each line once and reads the signals inside its kernel (memlab.backtest.rules). Each gives
# its strategy's signals exactly and refuses the parameters it refuses.


def momentum_batch(ind: Indicators, lookback: int = 20, threshold: float = 0.05) -> SignalRules:
    """:func:`momentum` as rules on the ``lookback``-bar return."""
    lookback = _window("lookback", lookback)
    if threshold <= 0:
        raise InvalidInputError(f"threshold must be positive, got {threshold}")
    ret = ind.line(("pct_change", lookback), lambda: ind.ohlcv["Close"].pct_change(lookback))
    return ind.signals(entry=ret > threshold, exit=ret < 0, short_entry=ret < -threshold, short_exit=ret > 0)


def sma_cross_batch(ind: Indicators, fast: int = 10, slow: int = 30) -> SignalRules:
    """:func:`sma_cross` as rules on the moving averages (each window computed once)."""
    fast, slow = _window("fast", fast), _window("slow", slow)
    if fast >= slow:
        raise InvalidInputError(f"fast ({fast}) must be shorter than slow ({slow})")
    f = ind.line(("sma", fast), lambda: ind.ohlcv["Close"].rolling(fast).mean())
    s = ind.line(("sma", slow), lambda: ind.ohlcv["Close"].rolling(slow).mean())
    up, down = f.crossed_above(s), f.crossed_below(s)
    return ind.signals(entry=up, exit=down, short_entry=down, short_exit=up)


def rsi_reversion_batch(ind: Indicators, period: int = 14, lower: float = 30.0, upper: float = 70.0) -> SignalRules:
    """:func:`rsi_reversion` as rules on RSI (each period computed once)."""
    period = _window("period", period)
    if not 0 < lower < upper < 100:
        raise InvalidInputError(f"need 0 < lower < upper < 100, got lower={lower}, upper={upper}")
    r = ind.line(("rsi", period), lambda: rsi(ind.ohlcv["Close"], period))
    return ind.signals(entry=r < lower, exit=r > upper, short_entry=r > upper, short_exit=r < lower)


def high_volatility_batch(ind: Indicators, volatility_threshold: float = 2.0, rsi_threshold: float = 35.0,
                          exit_rsi: float = 55.0) -> SignalRules:
    """:func:`high_volatility` as rules on the market features' volatility and RSI."""
    if not 0 < rsi_threshold < exit_rsi < 100:
        raise InvalidInputError(f"need 0 < rsi_threshold < exit_rsi < 100, got {rsi_threshold}, {exit_rsi}")
    volatility = ind.line(("feature", "volatility"), lambda: market_features(ind.ohlcv)["volatility"])
    r = ind.line(("feature", "rsi"), lambda: market_features(ind.ohlcv)["rsi"])
    return ind.signals(entry=(volatility > volatility_threshold) & (r < rsi_threshold), exit=r > exit_rsi)


BATCH.update(momentum=momentum_batch, sma_cross=sma_cross_batch, rsi_reversion=rsi_reversion_batch,
             high_volatility=high_volatility_batch)
