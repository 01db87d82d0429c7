"""Independent engines memlab cross-checks itself against (tests and benchmarks)."""

from __future__ import annotations

import warnings
from typing import Any

import pandas as pd


def backtesting_py_sma_cross(ohlcv: pd.DataFrame, fast: int, slow: int, *, cash: float = 1e9) -> Any:
    """Run the long-only SMA crossover rules in backtesting.py (fills at the next open,
    no commission); returns its stats Series (``# Trades``, ``Return [%]`` …)."""
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover
    from backtesting.test import SMA

    class SmaCrossLong(Strategy):
        def init(self) -> None:
            self.f = self.I(SMA, self.data.Close, fast)
            self.s = self.I(SMA, self.data.Close, slow)

        def next(self) -> None:
            if crossover(self.f, self.s):
                if not self.position:
                    self.buy()
            elif crossover(self.s, self.f):
                self.position.close()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Backtest(ohlcv.tz_localize(None), SmaCrossLong, cash=cash, commission=0).run()
