"""Strategy signals and market features bar by bar, for the trader.

For a replay the whole history is known: signals and features are computed once, in one
vectorised call each (strategies are causal, so row ``i`` uses bars up to ``i`` only),
and each bar is a lookup. For a live feed each new bar is appended and the last row is
computed on a rolling window long enough for every indicator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from memlab.data.bars import Bar
from memlab.features import FEATURE_NAMES, WARMUP_BARS, market_features
from memlab.strategies import compute_signals


class SignalBook:
    """Entry/exit flags (long and short) and features of one symbol at each bar."""

    def __init__(self, strategy: str, params: Mapping[str, Any], frame: pd.DataFrame, *,
                 window: int = WARMUP_BARS * 5) -> None:
        """``frame``: every bar known now (a replay's whole history, or a live feed's warm-up)."""
        self.strategy, self.params, self.window = strategy, dict(params), window
        self.frame = pd.DataFrame({c: frame[c].to_numpy(dtype=float) for c in ("Open", "High", "Low", "Close", "Volume")
                                   if c in frame}, index=frame.index)
        self._i = 0
        self._precompute()

    def _precompute(self) -> None:
        signals = compute_signals(self.strategy, self.frame, self.params)
        features = market_features(self.frame)
        self.times = self.frame.index.as_unit("ns").asi8 / 1e9
        self.entry = signals["entry"].to_numpy(dtype=bool)
        self.exit = signals["exit"].to_numpy(dtype=bool)
        self.short_entry = signals["short_entry"].to_numpy(dtype=bool)
        self.short_exit = signals["short_exit"].to_numpy(dtype=bool)
        self.features = features[list(FEATURE_NAMES)].to_numpy(dtype=float)
        self.ok = ~np.isnan(self.features).any(axis=1)

    def _row(self, bar: Bar) -> int:
        i = self._i
        if i < len(self.times) and self.times[i] == bar.time:
            return i
        j = int(np.searchsorted(self.times, bar.time))
        if j < len(self.times) and self.times[j] == bar.time:
            return j
        # A bar the book has not seen (a live feed): append it and recompute the tail.
        ts = pd.Timestamp(bar.time, unit="s", tz="UTC")
        row = pd.DataFrame({"Open": [bar.open], "High": [bar.high], "Low": [bar.low], "Close": [bar.close],
                            "Volume": [0.0]}, index=[ts])
        self.frame = pd.concat([self.frame.iloc[-self.window:], row])
        self._precompute()
        return len(self.times) - 1

    def at(self, bar: Bar) -> tuple[bool, bool, int]:
        """``(entry, exit, row)`` at ``bar``; the row gives :meth:`features_at`."""
        i = self._row(bar)
        self._i = i + 1
        return bool(self.entry[i]), bool(self.exit[i]), i

    def shorts_at(self, row: int) -> tuple[bool, bool]:
        """``(short_entry, short_exit)`` at ``row`` (a row :meth:`at` gave)."""
        return bool(self.short_entry[row]), bool(self.short_exit[row])

    def row_at(self, time: float) -> int:
        """The row of the bar at ``time``; a bar newer than every row known gets the next row."""
        return int(np.searchsorted(self.times, time))

    def bars_since(self, time: float, row: int) -> int:
        """How many bars lie after the bar at ``time`` up to ``row`` (0 when ``row`` is that bar).
        A bar older than the rolling window of a live feed counts from the window's start,
        which is at least as far back as the window is long."""
        return row - int(np.searchsorted(self.times, time))

    def last_row(self) -> int | None:
        """The row of the last bar :meth:`at` saw (None before the first)."""
        return self._i - 1 if self._i > 0 else None

    def features_at(self, row: int) -> dict[str, float] | None:
        """Market features at ``row``; None while the indicators warm up."""
        if not self.ok[row]:
            return None
        return {name: float(v) for name, v in zip(FEATURE_NAMES, self.features[row], strict=True)}
