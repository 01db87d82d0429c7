"""Performance from the broker's fills: equity curve, drawdown, daily P&L, win rate, Sharpe."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def pnl_curve(fills: pd.DataFrame) -> pd.DataFrame:
    """Cumulative realised P&L at each fill, and its drawdown from the running peak.

    A closing fill's ``pnl`` from the paper broker is already net of both fees (the entry
    cost includes the buy fee, the proceeds exclude the sell fee), so fees are not
    subtracted again."""
    net = fills["pnl"].fillna(0.0).to_numpy(float)
    cum = np.cumsum(net)
    peak = np.maximum.accumulate(np.concatenate([[0.0], cum]))[1:]
    return pd.DataFrame({"pnl": cum, "drawdown": cum - peak}, index=pd.DatetimeIndex(fills["time"], name="time"))


def performance(fills: pd.DataFrame) -> dict[str, float]:
    """Realised P&L, closed trades, win rate, today's P&L and an annualised daily Sharpe
    (sqrt(252), realised P&L per day over its standard deviation; NaN with < 2 days)."""
    closed = fills["pnl"].dropna()
    net = fills["pnl"].fillna(0.0)  # already net of fees (see pnl_curve)
    daily = net.groupby(pd.DatetimeIndex(fills["time"]).floor("D")).sum()
    std = float(daily.std()) if len(daily) > 1 else math.nan
    return {
        "realized_pnl": float(net.sum()),
        "closed_trades": float(len(closed)),
        "win_rate": float((closed > 0).mean()) if len(closed) else math.nan,
        "last_day_pnl": float(daily.iloc[-1]) if len(daily) else math.nan,
        "sharpe": float(daily.mean() / std * math.sqrt(252)) if std and std > 0 else math.nan,
    }
