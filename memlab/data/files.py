"""Load OHLCV history from CSV or Parquet files into the validated frame."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from memlab.data.validate import TIME_COLUMNS, DataValidationError, GapPolicy, validate_ohlcv


def load_ohlcv(path: str | os.PathLike[str], *, symbol: str | None = None, gaps: GapPolicy = "report") -> pd.DataFrame:
    """Read ``path`` (``.csv``, ``.parquet``/``.pq``) and validate it.

    The time column is the first of ``time``, ``timestamp``, ``date``, ``datetime`` or
    ``open_time`` (any case), else the first column; naive times are taken as UTC and
    epoch numbers as seconds or milliseconds (a file mixing the two is refused, naming the
    first row of each). ``attrs['symbol']`` is ``symbol`` or the
    file's stem.

    >>> from memlab.data import sample_path
    >>> load_ohlcv(sample_path("GOOG")).index[0]
    Timestamp('2004-08-19 00:00:00+0000', tz='UTC')
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            raw = pd.read_csv(path)
        elif suffix in (".parquet", ".pq"):
            raw = pd.read_parquet(path)
        else:
            raise DataValidationError(f"{path}: unknown file type {suffix!r}; use .csv or .parquet")
    except (ValueError, OSError) as exc:
        if isinstance(exc, DataValidationError):
            raise
        raise DataValidationError(f"{path}: cannot be read ({exc})") from None
    if not isinstance(raw.index, pd.DatetimeIndex):
        lowered = {str(c).strip().lower(): c for c in raw.columns}
        time_col = next((lowered[c] for c in TIME_COLUMNS if c in lowered), raw.columns[0])
        raw = raw.set_index(time_col)
    frame = validate_ohlcv(raw, source=str(path), gaps=gaps)
    frame.attrs["symbol"] = symbol or path.stem
    return frame


def save_ohlcv(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a validated frame to Parquet atomically (temp file, fsync, rename)."""
    from memlab.memory.durable import atomic_write_bytes

    path = Path(path)
    plain = frame[["Open", "High", "Low", "Close", "Volume"]].copy()
    plain.attrs = {}  # gap reports are recomputed on load
    data = plain.to_parquet()
    atomic_write_bytes(path, data)
    return path
