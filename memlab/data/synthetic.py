"""Seeded synthetic markets: a regime-switching random walk, for size and for learning tests.

Each regime has its own drift and volatility per bar; regimes last a geometric number
of bars. The generator is vectorised (no Python loop over bars), so a year of
one-minute bars takes well under a second, and the same seed always gives the same market.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from memlab.errors import InvalidInputError


@dataclass(frozen=True)
class Regime:
    """Drift and volatility of one-bar log returns, and the mean length in bars."""

    name: str
    drift: float
    volatility: float
    mean_length: float


DEFAULT_REGIMES: tuple[Regime, ...] = (
    Regime("calm_up", drift=0.0002, volatility=0.004, mean_length=400),
    Regime("calm_down", drift=-0.0002, volatility=0.004, mean_length=400),
    Regime("storm", drift=0.0, volatility=0.015, mean_length=150),
)


def synthetic_ohlcv(
    n_bars: int,
    *,
    freq: str = "1min",
    start: str | pd.Timestamp = "2024-01-01",
    seed: int = 0,
    price: float = 100.0,
    regimes: tuple[Regime, ...] = DEFAULT_REGIMES,
    with_regimes: bool = False,
) -> pd.DataFrame:
    """``n_bars`` bars of a regime-switching market with a UTC index.

    With ``with_regimes=True`` a ``regime`` column names the regime of each bar (the
    truth a learning test can check the agent against).

    >>> bars = synthetic_ohlcv(1000, seed=7)
    >>> bars.equals(synthetic_ohlcv(1000, seed=7)), list(bars.columns)
    (True, ['Open', 'High', 'Low', 'Close', 'Volume'])
    """
    if n_bars < 2:
        raise InvalidInputError(f"n_bars must be at least 2, got {n_bars}")
    if not regimes:
        raise InvalidInputError("at least one regime is needed")
    rng = np.random.default_rng(seed)
    # Regime spells: lengths drawn until they cover n_bars, regimes chosen at random
    # (never the same twice in a row when there is a choice).
    labels = np.empty(n_bars, dtype=np.int16)
    pos, current = 0, int(rng.integers(len(regimes)))
    while pos < n_bars:
        length = int(rng.geometric(1.0 / max(regimes[current].mean_length, 1.0)))
        labels[pos : pos + length] = current
        pos += length
        if len(regimes) > 1:
            current = int((current + rng.integers(1, len(regimes))) % len(regimes))
    drift = np.array([r.drift for r in regimes])[labels]
    vol = np.array([r.volatility for r in regimes])[labels]
    log_ret = drift + vol * rng.standard_normal(n_bars)
    close = price * np.exp(np.cumsum(log_ret))
    open_ = np.empty(n_bars)
    open_[0] = price
    open_[1:] = close[:-1] * np.exp(vol[1:] * 0.1 * rng.standard_normal(n_bars - 1))
    wick = np.abs(rng.standard_normal((2, n_bars))) * vol * 0.5
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = np.round(rng.lognormal(mean=3.0, sigma=0.5, size=n_bars) * (1 + vol / vol.mean()), 4)
    index = pd.date_range(pd.Timestamp(start, tz="UTC") if pd.Timestamp(start).tzinfo is None else pd.Timestamp(start),
                          periods=n_bars, freq=freq, name="time")
    frame = pd.DataFrame({"Open": open_, "High": high, "Low": low, "Close": close, "Volume": volume}, index=index)
    if with_regimes:
        frame["regime"] = pd.Categorical.from_codes(labels, [r.name for r in regimes])
    frame.attrs["symbol"] = f"SYN{seed}"
    return frame
