"""Market features that describe "the situation" at each bar, for memory and the agent.

One definition serves training (features at each backtest entry), the agent (similar
past situations) and the trader (features of the live bar), so that a situation seen
in training is measured the same way when it recurs in paper trading.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from memlab.errors import InvalidInputError

#: The order of the feature vector stored with every decision.
FEATURE_NAMES: tuple[str, ...] = ("ret_5", "ret_20", "volatility", "vol_ratio", "rsi", "trend")

#: Bars of history needed before every feature is defined.
WARMUP_BARS = 100


def rsi(close: pd.Series, period: int = 14) -> pd.Series:
    """Wilder's relative strength index, 0-100."""
    delta = close.diff()
    gain = delta.clip(lower=0.0)
    loss = -delta.clip(upper=0.0)
    avg_gain = gain.ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean()
    avg_loss = loss.ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean()
    rs = avg_gain / avg_loss
    out = 100.0 - 100.0 / (1.0 + rs)
    # No losses at all in the window: RSI is 100 by definition (rs is inf or nan).
    out = out.where(avg_loss > 0, 100.0).where(avg_gain.notna())
    return out.rename("rsi")


def market_features(ohlcv: pd.DataFrame) -> pd.DataFrame:
    """Feature frame aligned with ``ohlcv``; rows before ``WARMUP_BARS`` hold NaN.

    Columns (all known at the bar's close, never looking ahead):

    - ``ret_5``, ``ret_20``: return over the last 5 / 20 bars, in percent.
    - ``volatility``: standard deviation of 1-bar returns over 20 bars, in percent
      (the seed's "volatility > 2.0" means 2 % per bar).
    - ``vol_ratio``: 10-bar over 100-bar realised volatility; above 1 the market is
      more agitated than usual (a new volatility regime).
    - ``rsi``: 14-bar Wilder RSI.
    - ``trend``: distance of the close from its 50-bar mean, in percent.

    >>> import pandas as pd, numpy as np
    >>> idx = pd.date_range("2024-01-01", periods=150, freq="h", tz="UTC")
    >>> bars = pd.DataFrame({"Close": np.linspace(100, 110, 150)}, index=idx)
    >>> market_features(bars).iloc[-1]["trend"] > 0
    np.True_
    """
    if "Close" not in ohlcv.columns:
        raise InvalidInputError(
            f"market_features needs a 'Close' column; got columns {list(ohlcv.columns)}"
        )
    close = ohlcv["Close"].astype(float)
    ret1 = close.pct_change()
    vol10 = ret1.rolling(10).std()
    vol100 = ret1.rolling(100).std()
    frame = pd.DataFrame(
        {
            "ret_5": close.pct_change(5) * 100.0,
            "ret_20": close.pct_change(20) * 100.0,
            "volatility": ret1.rolling(20).std() * 100.0,
            "vol_ratio": vol10 / vol100.replace(0.0, np.nan),
            "rsi": rsi(close),
            "trend": (close / close.rolling(50).mean() - 1.0) * 100.0,
        },
        index=ohlcv.index,
    )
    return frame[list(FEATURE_NAMES)]
