"""The signal frame every strategy returns, and helpers to build it.

A strategy is a function ``f(ohlcv, **params) -> DataFrame`` aligned with ``ohlcv``:

==============  =====  ================================================================
column          type   meaning (decided at the bar's close, using nothing later)
==============  =====  ================================================================
``entry``       bool   open (or keep) a long position
``exit``        bool   close a long position
``short_entry`` bool   open a short position (used when shorting is allowed)
``short_exit``  bool   close a short position
``confidence``  float  the strategy's own confidence in the bar's signal, 0-1 (NaN if none)
==============  =====  ================================================================

The backtest fills these at the next bar's open by default, and the paper trader acts
on the last row of a rolling window, so both see the same decisions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from memlab.errors import InvalidInputError

SIGNAL_COLUMNS: tuple[str, ...] = ("entry", "exit", "short_entry", "short_exit", "confidence")


def signal_frame(
    index: pd.Index,
    entry: pd.Series | np.ndarray,
    exit: pd.Series | np.ndarray,
    short_entry: pd.Series | np.ndarray | None = None,
    short_exit: pd.Series | np.ndarray | None = None,
    confidence: pd.Series | np.ndarray | float | None = None,
) -> pd.DataFrame:
    """Assemble a signal frame; NaN-driven comparisons become False."""

    def flag(values: pd.Series | np.ndarray | None) -> np.ndarray:
        if values is None:
            return np.zeros(len(index), dtype=bool)
        return np.nan_to_num(np.asarray(values, dtype=float), nan=0.0).astype(bool)

    conf = np.full(len(index), np.nan) if confidence is None else np.broadcast_to(np.asarray(confidence, dtype=float), (len(index),)).copy()
    return pd.DataFrame(
        {"entry": flag(entry), "exit": flag(exit), "short_entry": flag(short_entry),
         "short_exit": flag(short_exit), "confidence": conf},
        index=index,
    )


def resolve_signals(side: int, entry: bool, exit: bool, short_entry: bool, short_exit: bool, *,
                    time_exit: bool = False) -> str | None:
    """What one bar's flags do to a position on ``side`` (1 long, -1 short, 0 flat), as
    vectorbt's ``from_signals`` resolves them (``upon_*_conflict="ignore"``,
    ``upon_opposite_entry="reverse"``): ``BUY`` / ``SHORT`` open (or reverse the other
    side), ``SELL`` / ``COVER`` close, None does nothing. ``time_exit`` is an ``exit_after``
    exit due at this bar: it closes the position and cancels an entry on its own side.

    >>> resolve_signals(1, False, False, True, False), resolve_signals(1, True, True, False, False)
    ('SHORT', None)
    >>> resolve_signals(-1, False, False, True, False, time_exit=True)   # due: no new short
    'COVER'
    >>> resolve_signals(-1, True, False, False, False, time_exit=True)   # due, and a long entry
    'BUY'
    """
    if time_exit and side > 0:
        entry, exit = False, True
    elif time_exit and side < 0:
        short_entry, short_exit = False, True
    if entry and exit:
        entry = exit = False
    if short_entry and short_exit:
        short_entry = short_exit = False
    if entry and short_entry:
        entry = short_entry = False
    if side > 0:
        return "SHORT" if short_entry else "SELL" if exit else None
    if side < 0:
        return "BUY" if entry else "COVER" if short_exit else None
    return "BUY" if entry else "SHORT" if short_entry else None


def check_signal_frame(name: str, ohlcv: pd.DataFrame, frame: object) -> pd.DataFrame:
    """``frame`` if it is a signal frame for ``ohlcv`` (every column above, boolean flags, one
    row per bar on the bars' own index); otherwise an error naming strategy ``name`` and what
    is wrong, the column first.

    >>> bars = pd.DataFrame({"Close": [1.0, 2.0]}, index=pd.date_range("2024", periods=2, tz="UTC"))
    >>> check_signal_frame("mine", bars, signal_frame(bars.index, [True, False], [False, True])).shape
    (2, 5)
    >>> check_signal_frame("mine", bars, pd.DataFrame({"entry": [True, False]}, index=bars.index))
    Traceback (most recent call last):
    ...
    memlab.errors.InvalidInputError: strategy 'mine' returned no 'exit' column; a signal frame has entry, exit, short_entry, short_exit, confidence (build it with memlab.strategies.signal_frame)
    """
    build = "(build it with memlab.strategies.signal_frame)"
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInputError(f"strategy {name!r} returned {type(frame).__name__}, not a signal frame: a DataFrame "
                                f"with columns {', '.join(SIGNAL_COLUMNS)} {build}")
    missing = [c for c in SIGNAL_COLUMNS if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"strategy {name!r} returned no {missing[0]!r} column; a signal frame has "
                                f"{', '.join(SIGNAL_COLUMNS)} {build}")
    if len(frame) != len(ohlcv):
        raise InvalidInputError(f"strategy {name!r} returned {len(frame)} rows for {len(ohlcv)} bars: column "
                                f"{SIGNAL_COLUMNS[0]!r} and every other needs one value per bar, on the bars' index")
    if not frame.index.equals(ohlcv.index):
        at = next((i for i, (a, b) in enumerate(zip(frame.index, ohlcv.index, strict=True)) if a != b), 0)
        raise InvalidInputError(f"strategy {name!r} returned rows for other times than its bars (row {at}: "
                                f"{frame.index[at]} for bar {ohlcv.index[at]}); index it by ohlcv.index")
    for col in SIGNAL_COLUMNS[:4]:
        if frame[col].dtype != bool:
            raise InvalidInputError(f"strategy {name!r}: column {col!r} is {frame[col].dtype}, not bool {build}")
    if not pd.api.types.is_numeric_dtype(frame["confidence"]) or pd.api.types.is_bool_dtype(frame["confidence"]):
        raise InvalidInputError(f"strategy {name!r}: column 'confidence' is {frame['confidence'].dtype}, "
                                "not a number in 0-1 (NaN where there is no signal)")
    return frame


def crossed_above(a: pd.Series, b: pd.Series | float) -> pd.Series:
    """True on the bar where ``a`` moves from at or below ``b`` to above it."""
    prev_a = a.shift(1)
    prev_b = b.shift(1) if isinstance(b, pd.Series) else b
    return (a > b) & (prev_a <= prev_b)


def crossed_below(a: pd.Series, b: pd.Series | float) -> pd.Series:
    """True on the bar where ``a`` moves from at or above ``b`` to below it."""
    prev_a = a.shift(1)
    prev_b = b.shift(1) if isinstance(b, pd.Series) else b
    return (a < b) & (prev_a >= prev_b)
