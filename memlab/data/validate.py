"""One validated shape for market history: UTC index, Open/High/Low/Close/Volume.

Every way data comes in ends here — files (:func:`~memlab.data.load_ohlcv`), downloads,
frames passed straight to :func:`memlab.backtest.run`, sweeps, training and the trader's
feeds — so a strategy never sees NaN or infinite prices, unsorted or duplicate
timestamps, non-positive prices or High below Low: those raise
:class:`DataValidationError` naming the column and the first bad timestamp. Gaps (missing
bars) are not errors by themselves; they are reported, and filled only on request.

Column names are matched without regard to case (``open``/``high``/``low``/``close``/
``volume``, as ccxt and freqtrade name them, become ``Open``…``Volume``); two columns
that name the same field (``close`` and ``Close``) are refused rather than guessed
between. A frame with a plain integer index and a ``time``/``timestamp``/``date``
column (freqtrade's and ccxt's layout) is indexed by that column.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from memlab.errors import InvalidInputError

OHLCV_COLUMNS: tuple[str, ...] = ("Open", "High", "Low", "Close", "Volume")
TIME_COLUMNS: tuple[str, ...] = ("time", "timestamp", "date", "datetime", "open_time")
GapPolicy = Literal["report", "ffill", "error"]
NaivePolicy = Literal["utc", "error"]

_ALIASES = {"o": "Open", "h": "High", "l": "Low", "c": "Close", "v": "Volume", "vol": "Volume"}
#: Epoch magnitudes: below 1e11 is seconds (up to the year 5138), then ms, us, ns.
_EPOCH_UNITS = (("s", 1e11, "seconds"), ("ms", 1e14, "milliseconds"), ("us", 1e17, "microseconds"),
                ("ns", np.inf, "nanoseconds"))


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
    """Map open/OPEN/o … to the canonical column names; error naming what is missing
    or what is there twice (``close`` and ``Close``)."""
    found: dict[str, list[object]] = {}
    for col in frame.columns:
        key = str(col).strip().lower()
        target = next((name for name in OHLCV_COLUMNS if key == name.lower()), None) or _ALIASES.get(key)
        if target is not None:
            found.setdefault(target, []).append(col)
    for target, cols in found.items():
        if len(cols) > 1:
            names = sorted({str(c) for c in cols})
            what = (f"column {names[0]!r} appears {len(cols)} times" if len(names) == 1
                    else f"columns {' and '.join(repr(n) for n in names)} both give {target}")
            raise DataValidationError(f"{source}: {what}; keep one of them (frame.drop(columns=...))")
    missing = [c for c in OHLCV_COLUMNS if c not in found]
    if missing:
        raise DataValidationError(
            f"{source}: missing column(s) {missing}; found {list(map(str, frame.columns))}"
        )
    out = frame[[found[name][0] for name in OHLCV_COLUMNS]]
    out.columns = pd.Index(OHLCV_COLUMNS)
    return out


def _epoch_unit(values: np.ndarray, *, source: str, column: str) -> str:
    """The one epoch unit of ``values``; refuses a mix, naming the first row of each unit."""
    magnitude = np.abs(values)
    codes = np.searchsorted([limit for _, limit, _ in _EPOCH_UNITS[:-1]], magnitude, side="right")
    codes = np.where(np.isnan(values), -1, codes)
    present = [int(c) for c in np.unique(codes) if c >= 0]
    if len(present) > 1:
        firsts = []
        for code in present:
            row = int(np.flatnonzero(codes == code)[0])
            firsts.append(f"row {row} ({values[row]:.0f}) is in {_EPOCH_UNITS[code][2]}")
        raise DataValidationError(
            f"{source}: column {column!r} mixes epoch units: {'; '.join(firsts)}; "
            "store every time in one unit (ccxt uses milliseconds)")
    return _EPOCH_UNITS[present[0]][0] if present else "s"


def to_utc_index(index: pd.Index, *, source: str, naive: NaivePolicy = "utc") -> pd.DatetimeIndex:
    """A UTC DatetimeIndex from datetimes, ISO strings or epoch seconds/milliseconds.

    ``naive="utc"`` takes times without a zone as UTC (files); ``naive="error"`` refuses a
    naive DatetimeIndex (frames handed over in code: their zone is the caller's to say)."""
    column = str(index.name or "time")
    if isinstance(index, pd.DatetimeIndex):
        out = index
        if out.tz is None and naive == "error" and len(out):
            raise DataValidationError(
                f"{source}: the index {column!r} has no time zone (first time {out[0]}); memlab works in UTC: "
                "use frame.tz_localize('UTC') if the times are UTC, or frame.tz_localize('<their zone>')")
    elif _row_numbers(index):
        raise DataValidationError(
            f"{source}: the index is row numbers, not times, and no {'/'.join(TIME_COLUMNS)} column was found; "
            "index the frame by its times: frame.set_index(pd.to_datetime(frame['time'], utc=True))")
    elif pd.api.types.is_numeric_dtype(index) and not pd.api.types.is_bool_dtype(index):
        values = np.asarray(index, dtype="float64")
        unit = _epoch_unit(values, source=source, column=column)
        try:
            out = pd.to_datetime(values, unit=unit, utc=True)
        except (ValueError, OverflowError) as exc:
            raise DataValidationError(f"{source}: column {column!r}: epoch times out of range ({exc})") from None
    else:
        try:
            out = pd.to_datetime(index, utc=True, format="mixed")
        except (ValueError, TypeError, OverflowError) as exc:
            raise DataValidationError(f"{source}: column {column!r}: timestamps cannot be parsed ({exc})") from None
    out = out.tz_localize("UTC") if out.tz is None else out.tz_convert("UTC")
    return pd.DatetimeIndex(out, name="time")


def _row_numbers(index: pd.Index) -> bool:
    """Whether ``index`` is pandas' default 0, 1, 2… (evenly spaced epochs are a RangeIndex too)."""
    return isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1 and index.name is None


def _time_indexed(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` indexed by its time column when its index is only row numbers."""
    if not _row_numbers(frame.index):
        return frame
    lowered = {str(c).strip().lower(): c for c in frame.columns}
    time_col = next((lowered[c] for c in TIME_COLUMNS if c in lowered), None)
    return frame if time_col is None else frame.set_index(time_col)


def value_problems(frame: pd.DataFrame) -> Iterator[tuple[str, np.ndarray]]:
    """Each price/volume check as ``(what, rows that fail it)``, in the order they are reported.

    The checks, on whichever canonical columns ``frame`` has: NaN, ±inf, non-positive
    prices, negative volume, High below Low, Open/Close outside the High-Low range."""
    arrays = {col: frame[col].to_numpy(dtype="float64") for col in OHLCV_COLUMNS if col in frame.columns}
    for col, values in arrays.items():
        yield f"NaN or non-numeric {col}", np.isnan(values)
    for col, values in arrays.items():
        yield f"infinite {col}", np.isinf(values)
    for col in ("Open", "High", "Low", "Close"):
        if col in arrays:
            yield f"non-positive {col}", arrays[col] <= 0
    if "Volume" in arrays:
        yield "negative Volume", arrays["Volume"] < 0
    if all(col in arrays for col in ("Open", "High", "Low", "Close")):
        high, low = arrays["High"], arrays["Low"]
        yield "High below Low", high < low
        hi = np.maximum(arrays["Open"], arrays["Close"])
        lo = np.minimum(arrays["Open"], arrays["Close"])
        yield "Open/Close outside the High-Low range", (high < hi) | (low > lo)


def check_values(frame: pd.DataFrame, *, source: str) -> None:
    """Raise :class:`DataValidationError` on the first price/volume check that fails
    (see :func:`value_problems`), naming the column and the first bad timestamp."""
    for what, bad in value_problems(frame):
        if bad.any():
            raise DataValidationError(f"{source}: {what} {_where(frame, bad)}")


def invalid_rows(frame: pd.DataFrame) -> tuple[np.ndarray, str | None]:
    """Rows of ``frame`` that fail any price/volume check, and what failed where (None when
    every row passes): for feeds, which drop a venue's bad candle rather than stop trading."""
    mask = np.zeros(len(frame), dtype=bool)
    found = []
    for what, bad in value_problems(frame):
        if bad.any():
            found.append(f"{what} {_where(frame, bad)}")
            mask |= bad
    return mask, "; ".join(found) or None


def _check_times(out: pd.DataFrame, *, source: str) -> None:
    if out.index.hasnans:
        raise DataValidationError(f"{source}: missing timestamps {_where(out, out.index.isna())}")
    order = out.index.as_unit("ns").asi8
    back = np.flatnonzero(order[1:] < order[:-1])
    if len(back):
        raise DataValidationError(
            f"{source}: timestamps not sorted: {out.index[back[0] + 1]} comes after {out.index[back[0]]}"
        )
    dup = np.zeros(len(order), dtype=bool)
    dup[1:] = order[1:] == order[:-1]  # sorted by now: a duplicate follows its twin
    if dup.any():
        raise DataValidationError(f"{source}: duplicate timestamps {_where(out, dup)}")


def validate_ohlcv(
    frame: pd.DataFrame, *, source: str = "data", gaps: GapPolicy = "report", naive: NaivePolicy = "utc"
) -> pd.DataFrame:
    """Check and normalise an OHLCV frame; returns a new frame with ``attrs['gaps']``.

    ``gaps``: ``"report"`` keeps the bars as they are and reports missing ones,
    ``"ffill"`` inserts each missing bar at the previous close with zero volume,
    ``"error"`` refuses data with gaps. ``naive``: ``"utc"`` takes times without a zone
    as UTC, ``"error"`` refuses them (see :func:`require_ohlcv`).

    >>> idx = pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC")
    >>> bars = pd.DataFrame({"Open": [1, 2, 3], "High": [2, 3, 4], "Low": [1, 1, 2],
    ...                      "Close": [2, 3, 3], "Volume": [10, 10, 10]}, index=idx)
    >>> str(validate_ohlcv(bars).attrs["gaps"])
    'no gaps'
    >>> validate_ohlcv(bars.rename(columns=str.lower).assign(close=[2, float("inf"), 3]))
    Traceback (most recent call last):
    ...
    memlab.data.validate.DataValidationError: data: infinite Close at 2024-01-01 01:00:00+00:00
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataValidationError(f"{source}: expected a DataFrame, got {type(frame).__name__}")
    if len(frame) == 0:
        raise DataValidationError(f"{source}: no rows")
    if gaps not in ("report", "ffill", "error"):
        raise InvalidInputError(f"gaps must be 'report', 'ffill' or 'error', not {gaps!r}")
    attrs = dict(frame.attrs)
    frame = _time_indexed(frame)
    out = normalise_columns(frame, source=source).copy()
    out.index = to_utc_index(out.index, source=source, naive=naive)
    for col in OHLCV_COLUMNS:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
    _check_times(out, source=source)
    check_values(out, source=source)
    report = find_gaps(out.index)
    if report.n_gaps and gaps == "error":
        raise DataValidationError(f"{source}: {report}")
    if report.n_gaps and gaps == "ffill":
        out = _fill(out, report)
    out.attrs = {**attrs, "gaps": report, "source": attrs.get("source", source)}
    return out


def require_ohlcv(frame: pd.DataFrame, *, source: str | None = None) -> pd.DataFrame:
    """The frame to compute on, after the same checks as :func:`validate_ohlcv`.

    For frames handed over in code (backtests, sweeps, training, feeds): ``frame`` itself
    when it already has the validated shape (canonical float columns, UTC index) and
    passes every check — no copy — else its validated copy. A naive index is refused
    rather than guessed (``frame.tz_localize('UTC')`` says what it is). Errors start with
    ``source``, else the frame's ``attrs['source']`` (its file), else ``ohlcv``.

    >>> idx = pd.date_range("2024-01-01", periods=2, freq="h")
    >>> bars = pd.DataFrame({"open": [1.0, 2], "high": [2.0, 3], "low": [1.0, 1], "close": [2.0, 3],
    ...                      "volume": [1.0, 1]}, index=idx.tz_localize("UTC"))
    >>> list(require_ohlcv(bars).columns)
    ['Open', 'High', 'Low', 'Close', 'Volume']
    >>> require_ohlcv(bars.tz_localize(None))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    memlab.data.validate.DataValidationError: ohlcv: the index 'time'... use frame.tz_localize('UTC') ...
    """
    if source is None:
        source = str(frame.attrs.get("source") or "ohlcv") if isinstance(frame, pd.DataFrame) else "ohlcv"
    if (
        isinstance(frame, pd.DataFrame) and len(frame)
        and tuple(frame.columns) == OHLCV_COLUMNS
        and all(dtype == np.float64 for dtype in frame.dtypes)
        and isinstance(frame.index, pd.DatetimeIndex) and str(frame.index.tz) == "UTC"
    ):
        _check_times(frame, source=source)
        check_values(frame, source=source)
        return frame
    return validate_ohlcv(frame, source=source, naive="error")


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
