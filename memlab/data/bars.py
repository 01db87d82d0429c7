"""``Bar``: one closed bar of one symbol, the unit feeds deliver and brokers fill against."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bar:
    """One bar of a symbol (time in epoch seconds, UTC: the bar's open time)."""

    time: float
    open: float
    high: float
    low: float
    close: float
