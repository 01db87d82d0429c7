"""Data feeds: bars in time order from stored history (replay), ccxt polling, or ccxt websockets.

A feed is an async iterator of ``(symbol, Bar)`` for closed bars only, oldest first.
``history(symbol)`` is what came before the first bar it yields (for indicator warm-up);
a :class:`ReplayFeed` also exposes its whole ``frames`` so a strategy can compute its
signals for the replay in one vectorised call.

- :class:`ReplayFeed`: stored OHLCV frames, merged across symbols, as fast as possible
  or paced (``speed=60`` plays a minute of market time per second).
- :class:`PollingFeed`: ccxt ``fetch_ohlcv`` every ``interval`` seconds through an
  :class:`~memlab.connectors.brokers.ExchangeConnection` (its retries and health);
  a venue that stays down is retried forever with backoff while health says ``down``.
  On a venue whose markets are not loaded yet (the manager's public market-data venue),
  :meth:`PollingFeed.start_connecting` connects in the background — load the markets,
  resolve ``"BTCUSDT"`` to ``"BTC/USDT"``, fetch the warm-up — retrying with the same
  backoff until the venue answers, so an offline start still returns a feed.
- :class:`WatchFeed`: ccxt.pro ``watch_ohlcv`` where the venue has it; a bar is closed
  when the next one opens. Falls back to polling when the socket fails.

Bars get the checks of :func:`memlab.data.load_ohlcv` however they come in: a replayed
frame is refused as a whole (naming the column and the first bad timestamp); a venue's
candle that fails them (NaN, inf, a non-positive price, High below Low) is dropped with a
warning that says why, so one bad candle does not stop a live session.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from memlab.connectors.brokers import ExchangeConnection
from memlab.connectors.health import HealthBoard
from memlab.connectors.retry import is_retryable
from memlab.data import require_ohlcv
from memlab.data.bars import Bar
from memlab.data.validate import OHLCV_COLUMNS, invalid_rows
from memlab.errors import InvalidInputError

log = logging.getLogger(__name__)

FeedItem = tuple[str, Bar]


def _frame_from_candles(rows: list[list[float]]) -> pd.DataFrame:
    frame = pd.DataFrame([r[:6] for r in rows], columns=["time", *OHLCV_COLUMNS])
    frame.index = pd.to_datetime(frame.pop("time"), unit="ms", utc=True)
    frame.index.name = None
    return frame.apply(pd.to_numeric, errors="coerce").astype(float)


def checked_candles(name: str, symbol: str, rows: list[list[float]]) -> list[list[float]]:
    """``rows`` (ccxt candles) without those that fail :func:`memlab.data.validate.value_problems`;
    each drop is logged with the column and the candle's time."""
    if not rows:
        return rows
    bad, why = invalid_rows(_frame_from_candles(rows))
    if why is None:
        return rows
    log.warning("feed %r: %s: dropped %d candle(s) the venue sent: %s", name, symbol, int(bad.sum()), why)
    return [r for r, drop in zip(rows, bad, strict=True) if not drop]


class ReplayFeed:
    """Replay stored bars of one or more symbols in time order.

    >>> from memlab.data import synthetic_ohlcv
    >>> feed = ReplayFeed("demo", {"BTC/USDT": synthetic_ohlcv(3, freq="1min", seed=1)})
    >>> async def first():
    ...     async for symbol, bar in feed:
    ...         return symbol, bar.time
    >>> asyncio.run(first())
    ('BTC/USDT', 1704067200.0)
    """

    source = "replay"

    def __init__(self, name: str, frames: Mapping[str, pd.DataFrame], *, speed: float | None = None,
                 warmup: int = 0, health: HealthBoard | None = None, yield_every: int = 2048) -> None:
        if not frames:
            raise InvalidInputError(f"feed {name!r}: no symbols to replay")
        if speed is not None and not speed > 0:
            raise InvalidInputError(f"feed {name!r}: speed must be positive (market seconds per second), got {speed}")
        if warmup < 0:
            raise InvalidInputError(f"feed {name!r}: warmup is a number of bars >= 0, got {warmup}")
        self.name, self.speed, self.yield_every, self.warmup = name, speed, yield_every, int(warmup)
        self.frames = {symbol: require_ohlcv(frame, source=f"feed {name!r}: {symbol}") for symbol, frame in frames.items()}
        self.symbols = list(self.frames)
        self.health = health
        if health is not None:
            health.register(name, "feed", "replay")
        self.bars_out = 0

    def history(self, symbol: str) -> pd.DataFrame:
        """The first ``warmup`` bars: indicator history, never replayed as bars."""
        return self.frames[symbol].iloc[: self.warmup]

    def replayed(self, symbol: str) -> pd.DataFrame:
        """The bars the feed yields for ``symbol``."""
        return self.frames[symbol].iloc[self.warmup :]

    def _arrays(self, symbol: str) -> tuple[np.ndarray, ...]:
        f = self.replayed(symbol)
        times = f.index.as_unit("ns").asi8 / 1e9
        return (times, *(f[c].to_numpy(dtype=float) for c in ("Open", "High", "Low", "Close")))

    def __aiter__(self) -> AsyncIterator[FeedItem]:
        return self._run()

    async def _run(self) -> AsyncIterator[FeedItem]:
        arrays = {s: self._arrays(s) for s in self.symbols}
        # (time, symbol order, row): ties keep the order symbols were given in.
        heap = [(float(a[0][0]), k, 0, s) for k, (s, a) in enumerate(arrays.items()) if len(a[0])]
        heapq.heapify(heap)
        wall0, market0 = time.monotonic(), heap[0][0] if heap else 0.0
        health = self.health
        if health is not None:
            health.success(self.name, 0.0)
        while heap:
            t, k, i, symbol = heap[0]
            times, o, h, low, c = arrays[symbol]
            if i + 1 < len(times):
                heapq.heapreplace(heap, (float(times[i + 1]), k, i + 1, symbol))
            else:
                heapq.heappop(heap)
            if self.speed is not None:
                wait = (t - market0) / self.speed - (time.monotonic() - wall0)
                if wait > 0:
                    await asyncio.sleep(wait)
            self.bars_out += 1
            if self.bars_out % self.yield_every == 0:
                if health is not None:
                    health.success(self.name, 0.0)
                await asyncio.sleep(0)  # let webhooks, monitors and signals run during a fast replay
            yield symbol, Bar(t, float(o[i]), float(h[i]), float(low[i]), float(c[i]))
        if health is not None:
            health.closed(self.name)


class PollingFeed:
    """Closed candles from ccxt ``fetch_ohlcv``, polled every ``interval`` seconds.

    ``symbols`` are resolved against the venue's markets (``"BTCUSDT"`` → ``"BTC/USDT"``)
    now if they are loaded, else by :meth:`connect`.
    """

    source = "poll"

    def __init__(self, name: str, connection: ExchangeConnection, symbols: list[str], timeframe: str = "1m", *,
                 interval: float | None = None, warmup: int = 500, health: HealthBoard) -> None:
        ex = connection.exchange
        self.name, self.connection, self.timeframe = name, connection, timeframe
        self.requested = list(symbols)
        self.symbols = [connection.market_symbol(s) for s in symbols] if ex.markets else list(symbols)
        try:
            self.tf_ms = int(ex.parse_timeframe(timeframe) * 1000)
        except Exception:
            raise InvalidInputError(f"feed {name!r}: unknown timeframe {timeframe!r}") from None
        self.interval = interval if interval is not None else min(30.0, max(1.0, self.tf_ms / 4000))
        self.warmup = warmup
        self.health = health
        health.register(name, "feed", ex.id)
        self._history: dict[str, pd.DataFrame] = {}
        self._last: dict[str, int] = {}
        self.bars_out = 0
        #: Failed tries to connect (:meth:`connect`) so far.
        self.attempts = 0
        self._connecting: asyncio.Task[None] | None = None

    def history(self, symbol: str) -> pd.DataFrame:
        return self._history.get(symbol, pd.DataFrame(columns=["Open", "High", "Low", "Close", "Volume"]))

    @property
    def connected(self) -> bool:
        """True once the markets are loaded and the warm-up history is in."""
        return all(symbol in self._history for symbol in self.symbols)

    async def connect(self) -> None:
        """Load the venue's markets (unless loaded), resolve the symbols, fetch the warm-up.

        A "try again" error (the venue unreachable, down, rate limiting) is retried after
        the connection's :class:`~memlab.connectors.retry.RetryPolicy` backoff, for as long
        as it takes: health says ``retrying`` and :attr:`attempts` counts the tries.
        A "you are wrong" error (a symbol the venue does not list) is raised, health ``down``.
        """
        while not self.connected:
            loading = not self.connection.exchange.markets
            try:
                if loading:
                    await self.connection.connect()
                self.symbols = [self.connection.market_symbol(s) for s in self.requested]
                await self.start()
            except Exception as exc:
                if not is_retryable(exc):
                    self.health.failure(self.name, exc, retrying=False)
                    raise
                self.attempts += 1
                if loading:  # a failed poll is on the feed's health already
                    self.health.failure(self.name, exc, retrying=True)
                wait = self.connection.policy.delay(min(self.attempts, 6))
                log.warning("feed %r: %s did not answer (%s); try %d in %.2f s", self.name,
                            self.connection.exchange.id, type(exc).__name__, self.attempts + 1, wait)
                await asyncio.sleep(wait)

    def start_connecting(self) -> asyncio.Task[None]:
        """:meth:`connect` in the background (once); the feed's bars wait for it.
        :meth:`close` stops it."""
        if self._connecting is None:
            self._connecting = asyncio.create_task(self.connect(), name=f"feed {self.name}: connect")
            self._connecting.add_done_callback(self._connect_ended)
        return self._connecting

    def _connect_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:  # retrieved here, raised again to the reader
            log.error("feed %r cannot start: %s", self.name, task.exception())

    async def _ready(self) -> None:
        if self._connecting is not None:
            await asyncio.shield(self._connecting)  # a reader that stops does not stop the connecting
        elif not self._history:
            await self.start()

    async def close(self) -> None:
        """Stop connecting in the background, if it still is."""
        task, self._connecting = self._connecting, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _closed(self, symbol: str, rows: list[list[float]]) -> list[list[float]]:
        now = self.connection.exchange.milliseconds()
        return checked_candles(self.name, symbol, [r for r in rows if r[0] + self.tf_ms <= now])

    async def start(self) -> None:
        """Fetch the warm-up history of every symbol (closed candles only)."""
        for symbol in self.symbols:
            rows = self._closed(symbol, await self._poll(symbol, None, self.warmup))
            self._history[symbol] = _frame_from_candles(rows)
            if rows:
                self._last[symbol] = int(rows[-1][0])

    async def _poll(self, symbol: str, since: int | None, limit: int) -> list[list[float]]:
        started = time.perf_counter()
        try:
            rows = await self.connection.call("fetch_ohlcv", symbol, self.timeframe, since, limit)
        except Exception as exc:
            self.health.failure(self.name, exc, retrying=True)
            raise
        self.health.success(self.name, time.perf_counter() - started)
        return rows

    def __aiter__(self) -> AsyncIterator[FeedItem]:
        return self._run()

    async def _run(self) -> AsyncIterator[FeedItem]:
        await self._ready()
        failures = 0
        while True:
            fresh: list[tuple[int, str, list[float]]] = []
            try:
                for symbol in self.symbols:
                    last = self._last.get(symbol)
                    rows = self._closed(symbol, await self._poll(symbol, None if last is None else last + 1, 1000))
                    fresh += [(int(r[0]), symbol, r) for r in rows if last is None or r[0] > last]
                failures = 0
            except Exception as exc:  # the connection's retries are exhausted: back off, keep going
                failures += 1
                wait = self.connection.policy.delay(min(failures, 6))
                log.warning("feed %r: polling failed (%s); next try in %.1f s", self.name, type(exc).__name__, wait)
                await asyncio.sleep(wait)
                continue
            for t, symbol, r in sorted(fresh, key=lambda x: (x[0], self.symbols.index(x[1]))):
                self._last[symbol] = t
                self.bars_out += 1
                yield symbol, Bar(t / 1000.0, float(r[1]), float(r[2]), float(r[3]), float(r[4]))
            await asyncio.sleep(self.interval)


class WatchFeed(PollingFeed):
    """Candles pushed over the venue's websocket (ccxt.pro ``watch_ohlcv``)."""

    source = "watch"

    def __init__(self, name: str, connection: ExchangeConnection, symbols: list[str], timeframe: str = "1m", *,
                 pro_exchange: Any, warmup: int = 500, health: HealthBoard) -> None:
        super().__init__(name, connection, symbols, timeframe, warmup=warmup, health=health)
        self.pro = pro_exchange

    async def _run(self) -> AsyncIterator[FeedItem]:
        await self._ready()
        queue: asyncio.Queue[FeedItem] = asyncio.Queue()
        tasks = [asyncio.create_task(self._watch(symbol, queue)) for symbol in self.symbols]
        try:
            while True:
                item = await queue.get()
                self.bars_out += 1
                yield item
        finally:
            for task in tasks:
                task.cancel()
            await self.pro.close()

    async def _watch(self, symbol: str, queue: asyncio.Queue[FeedItem]) -> None:
        failures = 0
        forming: list[float] | None = None  # the newest candle seen: closed once a later one starts
        while True:
            try:
                started = time.perf_counter()
                candles = await self.pro.watch_ohlcv(symbol, self.timeframe)  # ccxt: the updates since the last call
                self.health.success(self.name, time.perf_counter() - started)
                failures = 0
            except Exception as exc:
                failures += 1
                self.health.failure(self.name, exc, retrying=True)
                await asyncio.sleep(self.connection.policy.delay(min(failures, 6)))
                continue
            for r in candles:
                if forming is not None and r[0] > forming[0]:
                    last = self._last.get(symbol)
                    if (last is None or forming[0] > last) and checked_candles(self.name, symbol, [forming]):
                        self._last[symbol] = int(forming[0])
                        await queue.put((symbol, Bar(forming[0] / 1000.0, float(forming[1]), float(forming[2]),
                                                     float(forming[3]), float(forming[4]))))
                if forming is None or r[0] >= forming[0]:
                    forming = list(r)
