"""The signal the agent scores: what the trader, a notebook or a webhook hands to ``analyze_signal``.

A signal is a plain dict (JSON-friendly, so it crosses the connector and webhooks as is)::

    {
        "symbol": "BTCUSDT",            # required, non-empty text
        "strategy": "momentum",         # required, the strategy that fired
        "action": "BUY",                # required, "BUY" or "SELL" (case-insensitive)
        "price": 65000.0,               # optional, the price the signal fired at
        "features": {"ret_5": 1.2, ...},# the situation: every name in memlab.features.FEATURE_NAMES
        "bars": ohlcv_frame,            # ...or OHLCV bars (>= WARMUP_BARS rows) to compute them from
        "time": "2025-10-16T14:30:15Z", # optional, when the signal fired (UTC; default now)
    }

One of ``features`` or ``bars`` is required; ``features`` wins when both are given.
:func:`situation` turns either into the feature dict the memory uses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, NotRequired, TypedDict

import pandas as pd

from memlab.errors import InvalidInputError
from memlab.features import FEATURE_NAMES, WARMUP_BARS, market_features

Action = Literal["BUY", "SELL"]


class Signal(TypedDict):
    """A strategy signal to score (see the module docstring for every field)."""

    symbol: str
    strategy: str
    action: str
    price: NotRequired[float]
    features: NotRequired[Mapping[str, float]]
    bars: NotRequired[pd.DataFrame]
    time: NotRequired[str | datetime | pd.Timestamp]


class InvalidSignalError(InvalidInputError):
    """A signal lacks a field or has a wrong value; the message names the field."""


def check_signal(signal: Mapping[str, Any]) -> tuple[str, str, str]:
    """Validate the identity fields; returns ``(symbol, strategy, ACTION)``."""
    if not isinstance(signal, Mapping):
        raise InvalidSignalError(f"a signal is a dict, got {type(signal).__name__}")
    out = []
    for name in ("symbol", "strategy", "action"):
        value = signal.get(name)
        if name == "action" and value is None and signal.get("side") is not None:
            value = signal.get("side")  # a broker-style order ('buy' / 'sell'), as the seed's trader passes
        if not isinstance(value, str) or not value.strip():
            raise InvalidSignalError(f"signal field {name!r} must be non-empty text, got {value!r}")
        out.append(value.strip())
    action = out[2].upper()
    if action not in ("BUY", "SELL"):
        raise InvalidSignalError(f"signal field 'action' must be 'BUY' or 'SELL', got {out[2]!r}")
    price = signal.get("price")
    if price is not None:
        try:
            ok = math.isfinite(float(price)) and float(price) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InvalidSignalError(f"signal field 'price' must be a positive number, got {price!r}")
    return out[0], out[1], action


def situation(signal: Mapping[str, Any]) -> dict[str, float]:
    """The signal's market features in :data:`FEATURE_NAMES` order (from ``features`` or ``bars``)."""
    feats = signal.get("features")
    if feats is not None:
        if not isinstance(feats, Mapping):
            raise InvalidSignalError(
                f"signal field 'features' must be a dict of {list(FEATURE_NAMES)}, got {type(feats).__name__}"
            )
        missing = [n for n in FEATURE_NAMES if n not in feats]
        if missing:
            raise InvalidSignalError(f"signal 'features' lacks {missing} (needs {list(FEATURE_NAMES)})")
        out = {}
        for name in FEATURE_NAMES:
            try:
                value = float(feats[name])
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):
                raise InvalidSignalError(f"signal feature {name!r} must be a finite number, got {feats[name]!r}")
            out[name] = value
        return out
    bars = signal.get("bars")
    if bars is None:
        raise InvalidSignalError("a signal needs 'features' (a dict of market features) or 'bars' (OHLCV)")
    if not isinstance(bars, pd.DataFrame):
        raise InvalidSignalError(f"signal field 'bars' must be an OHLCV DataFrame, got {type(bars).__name__}")
    if len(bars) < WARMUP_BARS + 1:
        raise InvalidSignalError(
            f"signal 'bars' has {len(bars)} rows; the features need at least {WARMUP_BARS + 1}"
        )
    # RSI is an exponential average with unbounded memory: 5x the warm-up makes the
    # truncation error negligible (< 1e-12) while keeping long frames cheap.
    last = market_features(bars.iloc[-5 * WARMUP_BARS :]).iloc[-1]
    if last.isna().any():
        raise InvalidSignalError(
            f"features of the last bar are undefined ({list(last[last.isna()].index)}); check the bars for gaps"
        )
    return {name: float(last[name]) for name in FEATURE_NAMES}


def signal_time(signal: Mapping[str, Any]) -> datetime:
    """When the signal fired, as an aware UTC datetime (now when not given)."""
    value = signal.get("time")
    if value is None:
        return datetime.now(UTC)
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise InvalidSignalError(f"signal field 'time' is not a time: {value!r}") from None
    if ts is pd.NaT:
        raise InvalidSignalError("signal field 'time' must not be NaT")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()
