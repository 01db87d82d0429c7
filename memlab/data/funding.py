"""Funding-rate history of perpetual futures: record it from a venue, load it, report its gaps.

One job: the funding rates the paper broker charges (``PaperBroker.set_funding_rates``),
as CSV files under ``data/funding/`` in ccxt's ``fetch_funding_rate_history`` shape
(``timestamp`` in ms, ``fundingRate``).

- :func:`record_funding` pages through a venue's ``fetch_funding_rate_history`` (ccxt,
  needs the network) and saves ``data/funding/<exchange>/<BTC_USDT_USDT>.csv``.
- :func:`load_funding` reads such a file, or the offline sample (``"sample"``).
- Gaps — funding times missing on the ``interval`` grid — are **reported, never filled**:
  :func:`load_funding` raises :class:`FundingGapError` naming the first missing time and
  how many are missing (``on_gap="warn"``: a :class:`FundingGapWarning` instead, and the
  rates as they are). :func:`funding_gaps` computes them.

The offline sample ``data/funding/SYNTHETIC_BTC_USDT_USDT_8h.csv`` is **synthetic**:
there was no network where it was made, so it is :func:`synthetic_funding` with its
defaults (seed 7, 2024-01-01 00:00 UTC, 270 funding times 8 h apart: 90 days), not any
venue's history. Record a real one with :func:`record_funding` where there is a network.

>>> rates = load_funding("sample")
>>> len(rates), rates[0]["timestamp"], rates[0]["fundingRate"] == synthetic_funding()[0]["fundingRate"]
(270, 1704067200000, True)
>>> holes = [r for i, r in enumerate(rates) if i not in (3, 4, 10)]
>>> funding_gaps([r["timestamp"] for r in holes])
(3, 1704153600000)
>>> load_funding(holes)
Traceback (most recent call last):
...
memlab.data.funding.FundingGapError: funding history has 3 missing funding times (every 8 h); first missing: 2024-01-02T00:00:00+00:00 (left missing, not filled)
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from memlab.errors import InvalidInputError
from memlab.memory.durable import atomic_write_bytes

log = logging.getLogger(__name__)

#: Where recorded funding histories go (relative to the working directory).
FUNDING_DIR = Path("data") / "funding"
#: The shipped (synthetic) sample, in the repository's ``data/funding``.
SAMPLE_PATH = Path(__file__).resolve().parents[2] / "data" / "funding" / "SYNTHETIC_BTC_USDT_USDT_8h.csv"
EIGHT_HOURS = 8 * 3600.0
_HEADER = "# SYNTHETIC funding rates, not a venue's: memlab.data.funding.synthetic_funding() with its defaults " \
          "(seed 7). Regenerate: python -m memlab.data.funding\n"


class FundingGapError(InvalidInputError):
    """A funding history misses funding times (the message names the first and the count)."""


class FundingGapWarning(UserWarning):
    """:class:`FundingGapError`'s text, when the caller asked for a warning instead."""


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _ms(value: Any) -> int:
    """Epoch milliseconds of a datetime, an ISO string, or a number of ms."""
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp() * 1000)
    raise InvalidInputError(f"not a time: {value!r}")


def funding_gaps(timestamps: Iterable[float], interval: float = EIGHT_HOURS, *, start: Any = None,
                 end: Any = None) -> tuple[int, int | None]:
    """``(missing, first_missing_ms)``: funding times absent from the ``interval``-second
    grid between the first and last timestamp (or ``start``/``end``, in ms or ISO).
    Timestamps are rounded to the second (venues stamp a few ms late)."""
    step = int(interval * 1000)
    have = sorted({round(float(t) / 1000) * 1000 for t in timestamps})
    lo = _ms(start) if start is not None else (have[0] if have else None)
    hi = _ms(end) if end is not None else (have[-1] if have else None)
    if lo is None or hi is None:
        return 0, None
    first_slot = -(-lo // step) * step  # the first grid time at or after lo
    present = set(have)
    missing, first = 0, None
    for t in range(first_slot, hi + 1, step):
        if t not in present:
            missing += 1
            first = t if first is None else first
    return missing, first


def check_funding(rates: Sequence[Mapping[str, Any]], interval: float = EIGHT_HOURS, *,
                  on_gap: Literal["raise", "warn"] = "raise", what: str = "funding history",
                  start: Any = None, end: Any = None) -> None:
    """Raise (or warn) when ``rates`` miss funding times; never fills them."""
    missing, first = funding_gaps([r["timestamp"] for r in rates], interval, start=start, end=end)
    if not missing:
        return
    hours = f"{interval / 3600:g} h"
    message = (f"{what} has {missing} missing funding time{'s' if missing > 1 else ''} (every {hours}); first missing: "
               f"{_iso(first)} (left missing, not filled)")  # type: ignore[arg-type]
    if on_gap == "raise":
        raise FundingGapError(message)
    log.warning("%s", message)
    warnings.warn(message, FundingGapWarning, stacklevel=3)


def synthetic_funding(start: Any = "2024-01-01T00:00:00+00:00", periods: int = 270, *,
                      interval: float = EIGHT_HOURS, seed: int = 7, mean: float = 0.0001, persistence: float = 0.8,
                      volatility: float = 0.00008, symbol: str = "BTC/USDT:USDT") -> list[dict[str, Any]]:
    """Synthetic funding rates: an AR(1) around ``mean`` (0.01 % per 8 h, the common
    baseline), ``r[t] = mean + persistence·(r[t-1] − mean) + volatility·N(0, 1)``, from a
    seeded generator, rounded to 1e-8 like a venue's. Not market data.

    >>> [r["fundingRate"] for r in synthetic_funding(periods=3)]
    [0.0001, 0.0001001, 0.00012398]
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    t0 = _ms(start)
    rate, out = mean, []
    for i in range(periods):
        if i:
            rate = mean + persistence * (rate - mean) + volatility * float(rng.standard_normal())
        out.append({"symbol": symbol, "timestamp": t0 + i * int(interval * 1000), "fundingRate": round(rate, 8)})
    return out


def _to_csv(rates: Sequence[Mapping[str, Any]], header: str = "") -> bytes:
    buf = io.StringIO()
    buf.write(header)
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["timestamp", "datetime", "fundingRate"])
    for r in rates:
        writer.writerow([int(r["timestamp"]), _iso(r["timestamp"]), repr(float(r["fundingRate"]))])
    return buf.getvalue().encode()


def save_funding(path: str | os.PathLike[str], rates: Sequence[Mapping[str, Any]], *, header: str = "") -> Path:
    """Write ``rates`` as CSV (``timestamp`` ms, ``datetime`` ISO UTC, ``fundingRate``), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, _to_csv(sorted(rates, key=lambda r: int(r["timestamp"])), header))
    return path


def load_funding(source: str | os.PathLike[str] | Sequence[Mapping[str, Any]], *, interval: float = EIGHT_HOURS,
                 on_gap: Literal["raise", "warn"] = "raise", symbol: str | None = None) -> list[dict[str, Any]]:
    """Funding rates from a CSV written by :func:`save_funding`, ``"sample"`` (the synthetic
    sample), or a list of ccxt entries; oldest first, checked for gaps (see the module
    docstring)."""
    if isinstance(source, (str, os.PathLike)):
        path = SAMPLE_PATH if str(source) == "sample" else Path(source)
        if not path.exists():
            raise InvalidInputError(f"no funding history at {path}")
        lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
        rates = [{"symbol": symbol, "timestamp": int(row["timestamp"]), "fundingRate": float(row["fundingRate"])}
                 for row in csv.DictReader(lines)]
        what = f"funding history {path.name}"
    else:
        rates = [dict(r) for r in source]
        what = "funding history"
    rates.sort(key=lambda r: int(r["timestamp"]))
    check_funding(rates, interval, on_gap=on_gap, what=what)
    return rates


def funding_path(exchange_id: str, symbol: str, root: str | os.PathLike[str] = FUNDING_DIR) -> Path:
    """``<root>/<exchange>/<BTC_USDT_USDT>.csv``."""
    return Path(root) / exchange_id / (re.sub(r"[^A-Za-z0-9]+", "_", symbol).strip("_") + ".csv")


def record_funding(exchange_id: str, symbol: str, since: Any, until: Any, *, root: str | os.PathLike[str] = FUNDING_DIR,
                   interval: float | None = None, limit: int = 200, exchange: Any = None,
                   on_gap: Literal["raise", "warn"] = "warn") -> Path:
    """Download ``symbol``'s funding rates from ``since`` to ``until`` with ccxt's
    ``fetch_funding_rate_history`` (paginated by ``since``, ccxt's rate limiter on), save
    them under ``root`` and return the file. Gaps inside ``[since, until]`` are reported
    (``on_gap``: warn by default, since the file is still worth keeping). Needs the
    network; ``exchange`` may be a ready ccxt exchange object.

    >>> # record_funding("binanceusdm", "BTC/USDT:USDT", "2024-01-01", "2024-04-01")  # needs network
    """
    import ccxt

    if exchange is None:
        if exchange_id not in ccxt.exchanges:
            raise InvalidInputError(f"unknown ccxt exchange {exchange_id!r}")
        exchange = getattr(ccxt, exchange_id)({"enableRateLimit": True})
    if not exchange.has.get("fetchFundingRateHistory"):
        raise InvalidInputError(f"{exchange_id} has no fetchFundingRateHistory in ccxt")
    start, end = _ms(since), _ms(until)
    if end <= start:
        raise InvalidInputError(f"until ({_iso(end)}) must be after since ({_iso(start)})")
    got: dict[int, float] = {}
    cursor = start
    while cursor <= end:
        for attempt in range(5):
            try:
                page = exchange.fetch_funding_rate_history(symbol, since=cursor, limit=limit)
                break
            except (ccxt.NetworkError, ccxt.RateLimitExceeded) as exc:  # try again; other errors are final
                if attempt == 4:
                    raise
                log.warning("fetch_funding_rate_history failed (%s); retrying", exc)
                time.sleep(2 ** attempt)
        page = [p for p in page if p.get("timestamp") is not None and start <= int(p["timestamp"]) <= end]
        if not page:
            break
        for p in page:
            got[int(p["timestamp"])] = float(p["fundingRate"])
        newest = max(int(p["timestamp"]) for p in page)
        if newest < cursor:
            break  # the venue did not move forward: stop rather than loop
        cursor = newest + 1
    rates = [{"symbol": symbol, "timestamp": t, "fundingRate": r} for t, r in sorted(got.items())]
    path = save_funding(funding_path(exchange_id, symbol, root), rates)
    step = interval or float((exchange.market(symbol).get("info") or {}).get("fundingInterval") or 0) * 60 or EIGHT_HOURS
    check_funding(rates, step, on_gap=on_gap, what=f"{exchange_id} {symbol} funding history", start=start, end=end)
    return path


if __name__ == "__main__":  # regenerate the shipped synthetic sample
    print(save_funding(SAMPLE_PATH, synthetic_funding(), header=_HEADER))
