"""One validated shape for market history: UTC index, Open/High/Low/Close/Volume.

Every loader ends here, so a strategy never sees NaN prices, unsorted or duplicate
timestamps, non-positive prices or High below Low: those raise
:class:`DataValidationError` naming the column and the first bad timestamp. Gaps (missing
bars) are not errors by themselves; they are reported, and filled only on request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from memlab.errors import InvalidInputError

OHLCV_COLUMNS: tuple[str, ...] = ("Open", "High", "Low", "Close", "Volume")
GapPolicy = Literal["report", "ffill", "error"]


class DataValidationError(InvalidInputError):
    """Market data that cannot be used as it is; the message says where and why."""


@dataclass(frozen=True)
class GapReport:
    """Missing bars: the expected spacing, and each gap's start, end and missing count."""

    spacing: pd.Timedelta | None
    gaps: pd.DataFrame  # columns: start, end, missing
    business_days: bool = False

    @property
    def n_gaps(self) -> int:
        return len(self.gaps)

    @property
    def missing_bars(self) -> int:
        return int(self.gaps["missing"].sum()) if len(self.gaps) else 0

    def __str__(self) -> str:
        if not self.n_gaps:
            return "no gaps"
        longest = self.gaps.loc[(self.gaps["end"] - self.gaps["start"]).idxmax()]
        unit = "business days" if self.business_days else str(self.spacing)
        return (
            f"{self.n_gaps} gaps ({self.missing_bars} missing bars at {unit}); longest "
            f"{longest['end'] - longest['start']} from {longest['start']} to {longest['end']}"
        )


def _where(frame: pd.DataFrame, mask: np.ndarray | pd.Series) -> str:
    first = frame.index[np.asarray(mask)][0]
    count = int(np.asarray(mask).sum())
    return f"at {first}" + (f" and {count - 1} more rows" if count > 1 else "")


def normalise_columns(frame: pd.DataFrame, *, source: str) -> pd.DataFrame:
    """Map open/OPEN/o … to the canonical column names; error naming what is missing."""
    aliases = {"o": "Open", "h": "High", "l": "Low", "c": "Close", "v": "Volume", "vol": "Volume"}
    rename = {}
    for col in frame.columns:
        key = str(col).strip().lower()
        for name in OHLCV_COLUMNS:
            if key == name.lower():
                rename[col] = name
        if key in aliases:
            rename[col] = aliases[key]
    frame = frame.rename(columns=rename)
    missing = [c for c in OHLCV_COLUMNS if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{source}: missing column(s) {missing}; found {list(map(str, frame.columns))}"
        )
    return frame[list(OHLCV_COLUMNS)]


def to_utc_index(index: pd.Index, *, source: str) -> pd.DatetimeIndex:
    """A UTC DatetimeIndex from datetimes, ISO strings or epoch seconds/milliseconds."""
    if isinstance(index, pd.DatetimeIndex):
        out = index
    elif pd.api.types.is_numeric_dtype(index):
        values = np.asarray(index, dtype="float64")
        unit = "ms" if np.nanmax(np.abs(values)) > 1e11 else "s"
        out = pd.to_datetime(values, unit=unit, utc=True)
    else:
        try:
            out = pd.to_datetime(index, utc=True, format="mixed")
        except (ValueError, TypeError) as exc:
            raise DataValidationError(f"{source}: timestamps cannot be parsed ({exc})") from None
    out = out.tz_localize("UTC") if out.tz is None else out.tz_convert("UTC")
    return pd.DatetimeIndex(out, name="time")


def validate_ohlcv(
    frame: pd.DataFrame, *, source: str = "data", gaps: GapPolicy = "report"
) -> pd.DataFrame:
    """Check and normalise an OHLCV frame; returns a new frame with ``attrs['gaps']``.

    ``gaps``: ``"report"`` keeps the bars as they are and reports missing ones,
    ``"ffill"`` inserts each missing bar at the previous close with zero volume,
    ``"error"`` refuses data with gaps.

    >>> idx = pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC")
    >>> bars = pd.DataFrame({"Open": [1, 2, 3], "High": [2, 3, 4], "Low": [1, 1, 2],
    ...                      "Close": [2, 3, 3], "Volume": [10, 10, 10]}, index=idx)
    >>> str(validate_ohlcv(bars).attrs["gaps"])
    'no gaps'
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataValidationError(f"{source}: expected a DataFrame, got {type(frame).__name__}")
    if len(frame) == 0:
        raise DataValidationError(f"{source}: no rows")
    out = normalise_columns(frame, source=source).copy()
    out.index = to_utc_index(out.index, source=source)
    if out.index.hasnans:
        raise DataValidationError(f"{source}: missing timestamps {_where(out, out.index.isna())}")
    for col in OHLCV_COLUMNS:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
        nan = out[col].isna().to_numpy()
        if nan.any():
            raise DataValidationError(f"{source}: NaN or non-numeric {col} {_where(out, nan)}")
    order = out.index.to_numpy()
    back = np.flatnonzero(order[1:] < order[:-1])
    if len(back):
        raise DataValidationError(
            f"{source}: timestamps not sorted: {out.index[back[0] + 1]} comes after {out.index[back[0]]}"
        )
    dup = out.index.duplicated()
    if dup.any():
        raise DataValidationError(f"{source}: duplicate timestamps {_where(out, dup)}")
    for col in ("Open", "High", "Low", "Close"):
        bad = (out[col] <= 0).to_numpy()
        if bad.any():
            raise DataValidationError(f"{source}: non-positive {col} {_where(out, bad)}")
    bad = (out["Volume"] < 0).to_numpy()
    if bad.any():
        raise DataValidationError(f"{source}: negative Volume {_where(out, bad)}")
    bad = (out["High"] < out["Low"]).to_numpy()
    if bad.any():
        raise DataValidationError(f"{source}: High below Low {_where(out, bad)}")
    hi = out[["Open", "Close"]].max(axis=1)
    lo = out[["Open", "Close"]].min(axis=1)
    bad = ((out["High"] < hi) | (out["Low"] > lo)).to_numpy()
    if bad.any():
        raise DataValidationError(f"{source}: Open/Close outside the High-Low range {_where(out, bad)}")
    report = find_gaps(out.index)
    if report.n_gaps and gaps == "error":
        raise DataValidationError(f"{source}: {report}")
    if report.n_gaps and gaps == "ffill":
        out = _fill(out, report)
    elif gaps not in ("report", "ffill", "error"):
        raise InvalidInputError(f"gaps must be 'report', 'ffill' or 'error', not {gaps!r}")
    out.attrs["gaps"] = report
    out.attrs["source"] = source
    return out


def find_gaps(index: pd.DatetimeIndex) -> GapReport:
    """Missing bars against the typical spacing (business days for daily weekday data)."""
    empty = pd.DataFrame({"start": pd.DatetimeIndex([], tz="UTC"), "end": pd.DatetimeIndex([], tz="UTC"), "missing": []})
    if len(index) < 3:
        return GapReport(None, empty)
    diffs = np.diff(index.as_unit("ns").asi8)
    spacing = pd.Timedelta(int(np.median(diffs)), unit="ns")
    day = pd.Timedelta(days=1)
    if spacing == day and not (index.day_of_week >= 5).any():
        dates = index.tz_localize(None).normalize().to_numpy().astype("datetime64[D]")
        missing = np.busday_count(dates[:-1], dates[1:]) - 1
        rows = np.flatnonzero(missing > 0)
        gaps = pd.DataFrame({"start": index[rows], "end": index[rows + 1], "missing": missing[rows]})
        return GapReport(spacing, gaps.reset_index(drop=True), business_days=True)
    if spacing >= pd.Timedelta(days=28):
        return GapReport(spacing, empty)  # calendar months: spacing varies by design
    steps = np.rint(diffs / spacing.value).astype(np.int64)
    rows = np.flatnonzero(steps > 1)
    gaps = pd.DataFrame({"start": index[rows], "end": index[rows + 1], "missing": steps[rows] - 1})
    return GapReport(spacing, gaps.reset_index(drop=True))


def _fill(frame: pd.DataFrame, report: GapReport) -> pd.DataFrame:
    if report.business_days:
        full = pd.bdate_range(frame.index[0], frame.index[-1], freq="C", tz="UTC")
        full = full + (frame.index[0] - frame.index[0].normalize())
    else:
        full = pd.date_range(frame.index[0], frame.index[-1], freq=report.spacing, tz="UTC")
    out = frame.reindex(frame.index.union(full))
    close = out["Close"].ffill()
    for col in ("Open", "High", "Low", "Close"):
        out[col] = out[col].fillna(close)
    out["Volume"] = out["Volume"].fillna(0.0)
    out.index.name = "time"
    return out
