"""Walk-forward evaluation: choose parameters on a train window, judge them on the next.

Windows roll forward by ``test_bars``. For each fold the grid is swept on the train
window, the best set by ``metric`` (among sets with at least ``min_trades`` trades) is
kept, and that set alone is backtested on the unseen test window. Indicators on the
test window are computed with the train window as warm-up history, so the first test
bars are not wasted, and no test bar is ever used to choose parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from memlab.backtest.engine import (
    BacktestResult,
    Direction,
    periods_per_year,
    portfolio_stats,
    simulate,
    trades_frame,
)
from memlab.backtest.sweep import sweep
from memlab.costs import DEFAULT_COSTS
from memlab.errors import InvalidInputError
from memlab.strategies import get


@dataclass
class WalkForwardReport:
    """One row per fold: windows, chosen parameters, in-sample and out-of-sample results.

    ``out_of_sample`` holds each fold's backtest of its test window (the parameters chosen
    on its train window, never on these bars): the trades training records as
    out-of-sample experience.
    """

    symbol: str
    strategy: str
    folds: pd.DataFrame
    metric: str
    out_of_sample: list[BacktestResult] = field(default_factory=list, repr=False)
    selection: list[Any] = field(default_factory=list, repr=False)
    """Each fold's :class:`~memlab.backtest.selection.SelectionReport`: what choosing the best
    set on its train window is worth (trials, deflated Sharpe, PBO, SPA)."""

    @property
    def chosen(self) -> dict[str, Any]:
        """The parameters chosen on the most recent train window."""
        return dict(self.folds.iloc[-1]["params"])

    def summary(self) -> dict[str, Any]:
        f = self.folds
        return {
            "symbol": self.symbol, "strategy": self.strategy, "folds": len(f), "metric": self.metric,
            f"in_sample_{self.metric}": float(f[f"is_{self.metric}"].mean()),
            f"out_of_sample_{self.metric}": float(f[f"oos_{self.metric}"].mean()),
            "out_of_sample_return": float(np.prod(1 + f["oos_total_return"]) - 1),
            "chosen": self.chosen,
        }


def backtest_window(ohlcv: pd.DataFrame, strategy: str, params: Mapping[str, Any], start: int, stop: int,
                    *, warmup: int, costs: Mapping[str, Any]) -> BacktestResult:
    """Backtest ``params`` on bars ``[start, stop)`` only (flat at ``start``), indicators warmed
    on ``warmup`` earlier bars."""
    lo = max(0, start - warmup)
    window = ohlcv.iloc[lo:stop]
    signals = get(strategy)(window, **params).iloc[start - lo :]
    pf = simulate(ohlcv.iloc[start:stop], signals, **costs)
    return BacktestResult(strategy=strategy, params=dict(params),
                          stats=portfolio_stats(pf, periods_per_year(ohlcv.index)), trades=trades_frame(pf),
                          equity=pf.value().rename("equity"), signals=signals, portfolio=pf)


def evaluate(ohlcv: pd.DataFrame, strategy: str, params: Mapping[str, Any], start: int, stop: int,
             *, warmup: int, costs: Mapping[str, Any]) -> dict[str, float]:
    """Headline stats of :func:`backtest_window`."""
    return backtest_window(ohlcv, strategy, params, start, stop, warmup=warmup, costs=costs).stats


def walk_forward(
    ohlcv: pd.DataFrame,
    strategy: str,
    grid: Mapping[str, Sequence[Any]],
    *,
    train_bars: int,
    test_bars: int,
    metric: str = "sharpe",
    min_trades: int = 3,
    fees: float = DEFAULT_COSTS.fees,
    slippage: float = DEFAULT_COSTS.slippage,
    direction: Direction = "longonly",
    progress: bool = False,
) -> WalkForwardReport:
    """Roll train/test windows over ``ohlcv``; see the module docstring."""
    if metric not in ("sharpe", "total_return", "win_rate"):
        raise InvalidInputError(f"metric must be sharpe, total_return or win_rate, not {metric!r}")
    if train_bars < 10 or test_bars < 1:
        raise InvalidInputError("train_bars must be >= 10 and test_bars >= 1")
    if len(ohlcv) < train_bars + test_bars:
        raise InvalidInputError(
            f"{len(ohlcv)} bars is too short for a {train_bars}-bar train and {test_bars}-bar test window"
        )
    costs = {"fees": fees, "slippage": slippage, "direction": direction}
    rows = []
    tested: list[BacktestResult] = []
    selected: list[Any] = []
    start = 0
    while start + train_bars + test_bars <= len(ohlcv):
        train = ohlcv.iloc[start : start + train_bars]
        table = sweep(train, strategy, grid, progress=progress, **costs)
        chosen_report = table.attrs.get("selection")
        selected.append(chosen_report)
        ranked = table[table["n_trades"] >= min_trades].sort_values(metric, ascending=False, kind="stable")
        if ranked.empty:
            ranked = table.sort_values(metric, ascending=False, kind="stable")
        best = ranked.iloc[0]
        # Column by column, so integer parameters stay integers.
        params = {k: (v.item() if hasattr(v, "item") else v) for k in grid for v in [ranked[k].iloc[0]]}
        t0, t1 = start + train_bars, start + train_bars + test_bars
        judged = backtest_window(ohlcv, strategy, params, t0, t1, warmup=train_bars, costs=costs)
        tested.append(judged)
        oos = judged.stats
        rows.append({
            "train_start": train.index[0], "train_end": train.index[-1],
            "test_start": ohlcv.index[t0], "test_end": ohlcv.index[t1 - 1], "params": params,
            **{f"is_{k}": float(best[k]) for k in ("sharpe", "total_return", "win_rate", "n_trades")},
            **{f"oos_{k}": float(oos[k]) for k in ("sharpe", "total_return", "win_rate", "n_trades")},
            "n_trials": len(table),
            **{k: getattr(chosen_report, k, None) for k in ("dsr", "pbo", "spa_pvalue")},
        })
        start += test_bars
    return WalkForwardReport(ohlcv.attrs.get("symbol", "?"), strategy, pd.DataFrame(rows), metric, tested, selected)
