"""Download candles with ccxt, paginated and rate-limited, into a Parquet cache that resumes.

The cache lives at ``<cache_dir>/<exchange>/<SYMBOL>/<timeframe>.parquet``. A download
starts where the cache ends, saves as it goes (atomically), and so an interrupted
download loses at most the last few pages. ccxt's own rate limiter paces requests;
network errors, timeouts and 429s are retried with exponential backoff; exchange errors
(bad symbol, bad timeframe) are not.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd

from memlab.data.validate import OHLCV_COLUMNS, validate_ohlcv
from memlab.errors import InvalidInputError, MemlabError

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path("data") / "cache"


class DownloadError(MemlabError):
    """The exchange kept failing; ``retryable`` says whether trying later may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def cache_path(cache_dir: Path, exchange_id: str, symbol: str, timeframe: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", symbol)
    return Path(cache_dir) / exchange_id / safe / f"{timeframe}.parquet"


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def download_ohlcv(
    exchange: Any,
    symbol: str,
    timeframe: str = "1h",
    *,
    since: Any,
    until: Any | None = None,
    cache_dir: str | os.PathLike[str] = DEFAULT_CACHE,
    limit: int = 1000,
    max_retries: int = 5,
    backoff: float = 1.0,
    save_every: int = 20,
    progress: bool = True,
    exchange_options: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Candles of ``symbol`` from ``since`` to ``until`` (default: now), from cache and exchange.

    ``exchange`` is a ccxt exchange id (``"binance"``) or a ready ccxt exchange object.

    >>> # download_ohlcv("binance", "BTC/USDT", "1h", since="2024-01-01")  # needs network
    """
    import ccxt
    from tqdm.auto import tqdm

    if isinstance(exchange, str):
        if exchange not in ccxt.exchanges:
            raise InvalidInputError(f"unknown ccxt exchange {exchange!r}")
        exchange = getattr(ccxt, exchange)({"enableRateLimit": True, **(exchange_options or {})})
    tf_ms = exchange.parse_timeframe(timeframe) * 1000
    start = _utc(since)
    end = _utc(until) if until is not None else pd.Timestamp.now(tz="UTC")
    if end <= start:
        raise InvalidInputError(f"until ({end}) must be after since ({start})")
    path = cache_path(Path(cache_dir), exchange.id, symbol, timeframe)
    cached = pd.read_parquet(path) if path.exists() else None
    rows: list[list[float]] = []
    cursor = int(start.value // 1_000_000)
    if cached is not None and len(cached):
        last = int(cached.index[-1].value // 1_000_000)
        if last >= cursor:
            cursor = last + tf_ms
    end_ms = int(end.value // 1_000_000)
    total = max(0, (end_ms - cursor) // tf_ms)
    bar = tqdm(total=total, desc=f"{exchange.id} {symbol} {timeframe}", unit="bar", disable=not progress or total == 0)
    pages = 0
    try:
        while cursor < end_ms:
            batch = _fetch_page(exchange, symbol, timeframe, cursor, limit, max_retries, backoff)
            fresh = [r for r in batch if cursor <= r[0] < end_ms]
            if not fresh:
                break
            rows.extend(fresh)
            bar.update(len(fresh))
            cursor = int(fresh[-1][0]) + tf_ms
            pages += 1
            if pages % save_every == 0:
                cached = _save(path, cached, rows)
                rows = []
    finally:
        bar.close()
        if rows:
            cached = _save(path, cached, rows)
    if cached is None or not len(cached):
        raise DownloadError(f"{exchange.id} returned no {timeframe} candles for {symbol} from {start}", retryable=False)
    # The newest candle may still be forming; keep only closed bars.
    now_ms = time.time() * 1000
    closed = cached[cached.index.as_unit("ns").asi8 // 1_000_000 + tf_ms <= now_ms]
    frame = closed[(closed.index >= start) & (closed.index < end)]
    out = validate_ohlcv(frame, source=f"{exchange.id}:{symbol}:{timeframe}")
    out.attrs["symbol"] = symbol
    return out


def _fetch_page(exchange: Any, symbol: str, timeframe: str, since: int, limit: int,
                max_retries: int, backoff: float) -> list[list[float]]:
    import ccxt

    for attempt in range(1, max_retries + 1):
        try:
            return exchange.fetch_ohlcv(symbol, timeframe, since=since, limit=limit)
        except ccxt.NetworkError as exc:  # includes RequestTimeout, RateLimitExceeded, DDoSProtection
            if attempt == max_retries:
                raise DownloadError(f"{exchange.id} kept failing ({exc.__class__.__name__}); try again later", retryable=True) from exc
            delay = backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
            log.warning("%s %s: %s; retrying in %.1f s", exchange.id, symbol, exc.__class__.__name__, delay)
            time.sleep(delay)
        except ccxt.ExchangeError as exc:
            raise DownloadError(f"{exchange.id} refused {symbol} {timeframe}: {exc}", retryable=False) from exc
    raise AssertionError("unreachable")


def _save(path: Path, cached: pd.DataFrame | None, rows: list[list[float]]) -> pd.DataFrame:
    from memlab.data.files import save_ohlcv

    new = pd.DataFrame(rows, columns=["time", *OHLCV_COLUMNS])
    new.index = pd.to_datetime(new.pop("time"), unit="ms", utc=True)
    new.index.name = "time"
    merged = new if cached is None else pd.concat([cached, new])
    merged = merged[~merged.index.duplicated(keep="last")].sort_index().astype("float64")
    save_ohlcv(merged, path)
    return merged
