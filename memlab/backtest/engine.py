"""Backtest one strategy on one market with vectorbt's Portfolio.

Signals are decided at a bar's close. By default they fill at the **next bar's open**
(no look-ahead); ``fill="close"`` fills at the signal bar's close instead. Fees and
slippage are fractions of traded value (0.001 = 0.1 %); by default
:data:`memlab.costs.DEFAULT_COSTS`, the costs every layer charges.

The bars get the same checks as :func:`memlab.data.load_ohlcv` whichever way they come
in (see :func:`memlab.data.require_ohlcv`): NaN or infinite prices, unsorted or duplicate
times, a naive index, High below Low are refused naming the column and the first bad
timestamp; lowercase ``open``…``volume`` columns are taken as ``Open``…``Volume``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from memlab.costs import DEFAULT_COSTS, CostModel
from memlab.data.validate import check_values, require_ohlcv
from memlab.errors import InvalidInputError
from memlab.strategies import check_params, get, load_params

Fill = Literal["next_open", "close"]
Direction = Literal["longonly", "both"]


@dataclass
class BacktestResult:
    """What a backtest produced: headline ``stats``, the ``trades``, the ``equity`` curve."""

    strategy: str
    params: dict[str, Any]
    stats: dict[str, float]
    trades: pd.DataFrame
    equity: pd.Series
    signals: pd.DataFrame
    portfolio: Any = field(repr=False)

    @property
    def drawdown(self) -> pd.Series:
        """Drawdown from the running peak, as a negative fraction."""
        return self.equity / self.equity.cummax() - 1.0

    def figure(self):  # type: ignore[no-untyped-def]
        """Plotly figure: equity curve above, drawdown below."""
        from memlab.backtest.figures import equity_figure

        return equity_figure(self.equity, title=f"{self.strategy} {self.params}")


def periods_per_year(index: pd.DatetimeIndex) -> float:
    """Bars per year implied by the median spacing (for annualising Sharpe)."""
    if len(index) < 2:
        return 252.0
    spacing = float(np.median(np.diff(index.as_unit("ns").asi8))) / 1e9
    if abs(spacing - 86400) < 1:
        weekdays_only = not (index.day_of_week >= 5).any()
        return 252.0 if weekdays_only else 365.0
    return 365.25 * 86400 / spacing


def _freq(index: pd.Index) -> pd.Timedelta:
    if isinstance(index, pd.DatetimeIndex):
        return pd.Timedelta(seconds=365.25 * 86400 / periods_per_year(index))
    return pd.Timedelta(days=1)  # a RangeIndex (sweeps): annualisation is done by the caller


def _orders(signals: pd.DataFrame, fill: Fill) -> dict[str, pd.DataFrame | pd.Series]:
    cols = {"entries": "entry", "exits": "exit", "short_entries": "short_entry", "short_exits": "short_exit"}
    out = {}
    for arg, col in cols.items():
        s = signals[col].astype(bool)
        out[arg] = s.shift(1, fill_value=False) if fill == "next_open" else s
    return out


def check_costs(*, fees: float, slippage: float, fill: str, direction: str) -> None:
    """Refuse settings no backtest can use, naming the one that is wrong."""
    if fill not in ("next_open", "close"):
        raise InvalidInputError(f"fill must be 'next_open' or 'close', not {fill!r}")
    if direction not in ("longonly", "both"):
        raise InvalidInputError(f"direction must be 'longonly' or 'both', not {direction!r}")
    CostModel(fees=fees, slippage=slippage)  # refuses either outside [0, 1), naming it


def simulate(
    ohlcv: pd.DataFrame,
    signals: pd.DataFrame | dict[str, Any],
    *,
    fees: float = DEFAULT_COSTS.fees,
    slippage: float = DEFAULT_COSTS.slippage,
    fill: Fill = "next_open",
    direction: Direction = "longonly",
    init_cash: float = 100_000.0,
) -> Any:
    """The vectorbt Portfolio for prepared signals (1-D frame or 2-D arrays per column).

    ``ohlcv``'s prices are checked here too (NaN, inf, non-positive, High below Low), so
    every window a caller cuts is refused the same way; its index is the caller's."""
    import vectorbt as vbt

    check_costs(fees=fees, slippage=slippage, fill=fill, direction=direction)
    if not isinstance(init_cash, (int, float, np.number)) or not 0 < init_cash < np.inf:
        raise InvalidInputError(f"init_cash must be a positive, finite amount, got {init_cash!r}")
    check_values(ohlcv, source=str(ohlcv.attrs.get("source") or "ohlcv"))
    orders = _orders(signals, fill) if isinstance(signals, pd.DataFrame) else signals
    price = ohlcv["Open"] if fill == "next_open" else ohlcv["Close"]
    kwargs: dict[str, Any] = {"entries": orders["entries"], "exits": orders["exits"]}
    if direction == "both":
        kwargs.update(short_entries=orders["short_entries"], short_exits=orders["short_exits"])
    return vbt.Portfolio.from_signals(
        ohlcv["Close"], price=price, fees=fees, slippage=slippage, init_cash=init_cash,
        size=np.inf, **({} if direction == "both" else {"direction": "longonly"}),
        upon_opposite_entry="reverse", freq=_freq(ohlcv.index),
        **kwargs,
    )


def portfolio_stats(pf: Any, ppy: float) -> dict[str, float]:
    """Headline numbers: total_return and max_drawdown as fractions (drawdown positive),
    n_trades (closed), win_rate (0-1, NaN without trades), annualised sharpe."""
    value = pf.value()
    returns = value.pct_change().dropna()
    std = returns.std()
    sharpe = float(returns.mean() / std * np.sqrt(ppy)) if std > 0 else float("nan")
    trades = pf.trades
    closed = trades.closed
    n = int(closed.count())
    wins = int((closed.pnl.values > 0).sum()) if n else 0
    return {
        "total_return": float(value.iloc[-1] / value.iloc[0] - 1.0),
        "n_trades": n,
        "win_rate": wins / n if n else float("nan"),
        "sharpe": sharpe,
        "max_drawdown": float(-(value / value.cummax() - 1.0).min()),
        "final_value": float(value.iloc[-1]),
        "open_trade": bool(trades.open.count() > 0),
    }


def trades_frame(pf: Any) -> pd.DataFrame:
    """One row per trade: entry/exit time and price, size, direction, pnl, return, status."""
    records = pf.trades.records_readable
    if not len(records):
        return pd.DataFrame(columns=["entry_time", "exit_time", "entry_price", "exit_price", "size",
                                     "direction", "pnl", "return_pct", "status"])
    out = pd.DataFrame({
        "entry_time": pd.to_datetime(records["Entry Timestamp"], utc=True),
        "exit_time": pd.to_datetime(records["Exit Timestamp"], utc=True),
        "entry_price": records["Avg Entry Price"].astype(float),
        "exit_price": records["Avg Exit Price"].astype(float),
        "size": records["Size"].astype(float),
        "direction": records["Direction"].astype(str),
        "pnl": records["PnL"].astype(float),
        "return_pct": records["Return"].astype(float) * 100.0,
        "status": records["Status"].astype(str),
    })
    return out.reset_index(drop=True)


def run(
    ohlcv: pd.DataFrame,
    strategy: str,
    params: Mapping[str, Any] | None = None,
    *,
    fees: float = DEFAULT_COSTS.fees,
    slippage: float = DEFAULT_COSTS.slippage,
    fill: Fill = "next_open",
    direction: Direction = "longonly",
    init_cash: float = 100_000.0,
) -> BacktestResult:
    """Backtest ``strategy`` on ``ohlcv``; parameters default to ``params/``.

    >>> from memlab.data import sample
    >>> result = run(sample("GOOG"), "sma_cross", {"fast": 10, "slow": 30}, fees=0.001)
    >>> sorted(result.stats)[:4]
    ['final_value', 'max_drawdown', 'n_trades', 'open_trade']

    Raises:
        DataValidationError: ``ohlcv`` fails a check of :func:`memlab.data.require_ohlcv`.
        InvalidInputError: an unknown parameter, or fees/slippage outside [0, 1).
    """
    check_costs(fees=fees, slippage=slippage, fill=fill, direction=direction)
    ohlcv = require_ohlcv(ohlcv)
    chosen = check_params(strategy, {**load_params(strategy, ohlcv.attrs.get("symbol")), **(params or {})})
    signals = get(strategy)(ohlcv, **chosen)
    pf = simulate(ohlcv, signals, fees=fees, slippage=slippage, fill=fill, direction=direction, init_cash=init_cash)
    return BacktestResult(
        strategy=strategy, params=chosen, stats=portfolio_stats(pf, periods_per_year(ohlcv.index)),
        trades=trades_frame(pf), equity=pf.value().rename("equity"), signals=signals, portfolio=pf,
    )
