"""Performance for the monitor: equity marked to market with its drawdown, benchmark and
Sharpe on a regular calendar (from the trader's equity log); realised P&L and win rate
(from the broker's fills).

Sharpe is computed from equity returns on a calendar with no gaps: the equity series is
resampled to its bar frequency (business days for weekday-only daily bars), a period
with no bar carrying the last equity (a zero return), and annualised by the periods a
year of that calendar holds (:func:`memlab.backtest.engine.periods_per_year`). Counting
only the days that had fills, as the monitor once did, inflates it: a flat day is a
zero return, not a missing one.

>>> import pandas as pd
>>> equity = pd.Series([100.0, 101, 100.5, 102], index=pd.date_range("2024-01-01", periods=4, freq="1min", tz="UTC"))
>>> s = sharpe_ratio(equity)
>>> s.frequency, s.periods, round(s.per_year)
('1-minute', 3, 525960)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from memlab.backtest.engine import periods_per_year


def pnl_curve(fills: pd.DataFrame) -> pd.DataFrame:
    """Cumulative realised P&L at each fill (market time), and its drawdown from the running peak.

    A closing fill's ``pnl`` from the paper broker is already net of both fees (the entry
    cost includes the buy fee, the proceeds exclude the sell fee), so fees are not
    subtracted again."""
    net = fills["pnl"].fillna(0.0).to_numpy(float)
    cum = np.cumsum(net)
    peak = np.maximum.accumulate(np.concatenate([[0.0], cum]))[1:]
    return pd.DataFrame({"pnl": cum, "drawdown": cum - peak}, index=pd.DatetimeIndex(fills["time"], name="time"))


def performance(fills: pd.DataFrame) -> dict[str, float]:
    """Realised P&L, closed trades, win rate and the last market day's realised P&L.

    (No Sharpe here: realised P&L per day with fills is not a return series; see
    :func:`sharpe_ratio` over the equity log.)"""
    closed = fills["pnl"].dropna()
    net = fills["pnl"].fillna(0.0)  # already net of fees (see pnl_curve)
    daily = net.groupby(pd.DatetimeIndex(fills["time"]).floor("D")).sum()
    return {
        "realized_pnl": float(net.sum()),
        "closed_trades": float(len(closed)),
        "win_rate": float((closed > 0).mean()) if len(closed) else math.nan,
        "last_day_pnl": float(daily.iloc[-1]) if len(daily) else math.nan,
    }


def equity_curve(equity: pd.DataFrame) -> pd.DataFrame:
    """From :func:`memlab.trader.equity.read_equity`: ``equity``, ``benchmark`` and
    ``drawdown`` (equity below its running peak, as a fraction: -0.05 is 5 % down)."""
    value = equity["equity"].astype(float)
    return pd.DataFrame({"equity": value, "benchmark": equity["benchmark"].astype(float),
                         "drawdown": value / value.cummax() - 1.0}, index=equity.index)


def _calendar(index: pd.DatetimeIndex) -> tuple[str | pd.Timedelta, str]:
    """The regular calendar of bars at ``index``: pandas frequency and its name."""
    spacing = float(np.median(np.diff(index.as_unit("ns").asi8))) / 1e9
    if abs(spacing - 86400) < 1:
        return ("B", "business-day") if not (index.day_of_week >= 5).any() else ("D", "daily")
    step = pd.Timedelta(seconds=round(spacing, 6))
    for unit, seconds in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if spacing >= seconds and spacing % seconds == 0:
            n = int(spacing // seconds)
            return step, (f"{n}-{unit}" if n > 1 or unit != "day" else "daily")
    return step, f"{spacing:g}-second"


def regular_returns(equity: pd.Series) -> tuple[pd.Series, str]:
    """Returns of ``equity`` on its bar calendar with no gaps (a period without a bar
    carries the last equity, a zero return), and the calendar's name."""
    equity = equity.dropna()
    if len(equity) < 2:
        return pd.Series(dtype=float), "too few bars"
    freq, name = _calendar(pd.DatetimeIndex(equity.index))
    regular = equity.resample(freq).last().ffill()
    return regular.pct_change().iloc[1:], name


@dataclass(frozen=True)
class SharpeRatio:
    """An annualised Sharpe ratio and what it was computed over."""

    value: float  #: mean / standard deviation of period returns x sqrt(per_year); NaN with < 2 returns
    frequency: str  #: the calendar of the returns ("1-minute", "business-day", ...)
    periods: int  #: how many returns
    per_year: float  #: periods in a year of that calendar (the annualisation)
    start: pd.Timestamp | None  #: market time of the first equity point
    end: pd.Timestamp | None  #: market time of the last

    @property
    def label(self) -> str:
        """What the figure covers, e.g. ``Sharpe (1-minute returns, 2024-01-01 00:00 → 2024-01-03 01:59, 2.1 days)``."""
        if self.start is None or self.end is None or self.periods < 2:
            return "Sharpe (needs 2+ periods of equity)"
        days = (self.end - self.start) / pd.Timedelta(days=1)
        span = f"{days:,.1f} days" if days < 365 else f"{days / 365.25:,.1f} years"
        fmt = "%Y-%m-%d" if self.frequency in ("business-day", "daily") else "%Y-%m-%d %H:%M"
        return (f"Sharpe ({self.frequency} returns, {self.start.strftime(fmt)} → {self.end.strftime(fmt)}, {span}, "
                f"×√{self.per_year:,.0f})")


def sharpe_ratio(equity: pd.Series) -> SharpeRatio:
    """Annualised Sharpe (risk-free 0) of ``equity`` (indexed by market time) on its regular
    calendar, see the module docstring."""
    returns, name = regular_returns(equity)
    clean = equity.dropna()
    start, end = (clean.index[0], clean.index[-1]) if len(clean) else (None, None)
    if len(returns) < 2:
        return SharpeRatio(math.nan, name, len(returns), math.nan, start, end)
    per_year = periods_per_year(pd.DatetimeIndex(returns.index))
    std = float(returns.std())
    value = float(returns.mean() / std * math.sqrt(per_year)) if std > 0 else math.nan
    return SharpeRatio(value, name, len(returns), per_year, start, end)


def equity_summary(equity: pd.DataFrame) -> dict[str, object]:
    """Headline figures of the equity log: last equity and its market time, total return,
    the benchmark's, maximum drawdown (a positive fraction) and :class:`SharpeRatio`."""
    if not len(equity):
        return {"equity": math.nan, "as_of": None, "return": math.nan, "benchmark_return": math.nan,
                "max_drawdown": math.nan, "sharpe": sharpe_ratio(pd.Series(dtype=float))}
    curve = equity_curve(equity)
    first, last = curve.iloc[0], curve.iloc[-1]
    return {"equity": float(last["equity"]), "as_of": curve.index[-1],
            "return": float(last["equity"] / first["equity"] - 1.0),
            "benchmark_return": float(last["benchmark"] / first["benchmark"] - 1.0),
            "max_drawdown": float(-curve["drawdown"].min()), "sharpe": sharpe_ratio(curve["equity"])}


def last_day_change(equity: pd.Series) -> tuple[float, float, pd.Timestamp | None]:
    """Today's P&L in a replay's terms: equity at the last bar minus equity at the last bar
    of the market day before it (or the first bar, on the first day); the change, as a
    fraction, and that last market day (UTC). Found by bisection, not a scan."""
    if not len(equity):
        return math.nan, math.nan, None
    index = pd.DatetimeIndex(equity.index)
    day = index[-1].normalize()
    before = int(index.searchsorted(day)) - 1
    base = float(equity.iloc[before]) if before >= 0 else float(equity.iloc[0])
    last = float(equity.iloc[-1])
    return last - base, (last / base - 1.0 if base else math.nan), day
