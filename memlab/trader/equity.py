"""The session's equity marked to market at every bar, beside a buy-and-hold benchmark.

The trader calls :meth:`EquityLog.mark` once per bar with each symbol's close, and
:meth:`EquityLog.hold` when a fill changes its cash or positions; :func:`read_equity`
gives the monitor (or a notebook) the series as a DataFrame indexed by market time::

    >>> from memlab.trader.equity import read_equity
    >>> curve = read_equity("data/mem_knowledge")          # doctest: +SKIP
    >>> curve[["equity", "benchmark"]].plot()               # doctest: +SKIP

Each row is one bar of the market (its time, not the wall clock's, so a replay of 2012
reads as 2012): every symbol's close and holding, cash, position value, equity (cash +
positions at the close) and the benchmark, the session's starting equity spread evenly
over the same markets at their first close and held (no fees).

Storage: ``equity.sqlite`` in the memory folder (WAL, mode 600). Rows are buffered and
written as blocks of float64 columns, one SQLite row per block, so marking a bar costs
two list appends, not an INSERT: a replay runs at tens of thousands of bars a second.
Blocks are written every ``interval`` seconds, their fsync riding the trader's group
commit (:func:`~memlab.memory.durable.relax_sqlite`), never one per bar; and on every bar
that filled, at once but without an fsync of their own (the next block's covers them),
so a busy strategy pays no fsync for them.

Restarts: rows are keyed by bar time. The bars a killed process had marked but not yet
written are rebuilt when the next process marks its first bar: between the last stored
row and that bar nothing filled (a fill's block is written at once), so those bars had
the stored row's cash and positions, and their closes come from the replayed feed. Bars
the restarted trader re-runs that are already stored are not stored again. So
``kill -9`` then restart leaves the series an uninterrupted run leaves: no bar twice,
none missing. (After a power cut, which can take the last second of blocks, bars from
a fill the paper broker kept but the log lost are left out, with a warning, rather
than rebuilt with the wrong holdings.)
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memlab.memory.durable import (
    create_private,
    ensure_private_dir,
    fsync_path,
    in_group_commit,
    read_store_db,
    relax_sqlite,
)

log = logging.getLogger(__name__)
_monotonic = time.monotonic

EQUITY_DB = "equity.sqlite"
#: Columns of every stored block, float64 little-endian; ``close`` and ``held`` have one
#: value per symbol per row (row-major), the others one per row.
COLUMNS = ("time", "close", "held", "cash", "position_value", "equity", "benchmark")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS session (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    id INTEGER PRIMARY KEY, symbols TEXT NOT NULL, first_time REAL NOT NULL, last_time REAL NOT NULL,
    rows INTEGER NOT NULL, time BLOB NOT NULL, close BLOB NOT NULL, held BLOB NOT NULL, cash BLOB NOT NULL,
    position_value BLOB NOT NULL, equity BLOB NOT NULL, benchmark BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS blocks_last_time ON blocks (last_time);
"""
_F8 = np.dtype("<f8")


class EquityLog:
    """Writer of ``equity.sqlite`` for one trading session (see the module docstring).

    >>> import tempfile
    >>> log = EquityLog(tempfile.mkdtemp(), ["BTC/USDT"])
    >>> log.hold(1_000.0, [0.0])              # cash and holdings from this bar on
    >>> log.mark(60.0, [100.0])
    >>> log.hold(0.0, [10.0]); log.mark(120.0, [110.0])
    >>> log.close()
    >>> read_equity(log.root)[["equity", "benchmark"]].to_numpy().tolist()
    [[1000.0, 1000.0], [1100.0, 1100.0]]
    """

    def __init__(self, memory_path: str | os.PathLike[str], symbols: Sequence[str], *,
                 interval: float = 1.0, max_rows: int = 65_536) -> None:
        self.root = Path(memory_path)
        self.path = self.root / EQUITY_DB
        self.symbols = list(symbols)
        self._symbols_json = json.dumps(self.symbols)
        self.interval, self.max_rows = float(interval), int(max_rows)
        self._db: sqlite3.Connection | None = None
        self._times: list[float] = []
        self._closes: list[Sequence[float]] = []
        self._holding: tuple[float, tuple[float, ...]] = (0.0, (0.0,) * len(self.symbols))
        self._segments: list[tuple[int, float, tuple[float, ...]]] = [(0, *self._holding)]  # (first row, cash, held)
        self._due = False
        self._synced = time.monotonic()
        self._unsynced = False  # blocks written since the last fsync
        self._floor = np.inf  # bars before it are stored already (restarts); set when the file opens
        self._last: dict[str, Any] | None = None  # the last stored row
        self._start: float | None = None
        self._first_close: dict[str, float] = {}

    # -- writing ---------------------------------------------------------------------
    def hold(self, cash: float, held: Sequence[float]) -> None:
        """Cash and each symbol's holding from the next :meth:`mark` on (call after fills)."""
        self._holding = (float(cash), tuple(float(h) for h in held))
        self._segments.append((len(self._times), *self._holding))
        self._due = True  # a fill's bar is written at once: restarts rely on it (module doc)

    def mark(self, time_: float, closes: Sequence[float]) -> None:
        """One bar: its market time (epoch seconds) and each symbol's last close."""
        if time_ < self._floor:  # the file is not open yet (floor +inf), or the bar is stored already
            if self._db is not None:
                return
            self._open()
            if time_ < self._floor:
                return
        self._times.append(time_)
        self._closes.append(closes)
        if _monotonic() - self._synced >= self.interval or len(self._times) >= self.max_rows:
            self.flush()
        elif self._due:
            self.flush(sync=False)

    def recover(self, first_time: float, feed: Any) -> int:
        """Before this process's first :meth:`mark`: store the bars between the last stored
        row and ``first_time`` that an earlier, killed process marked but never wrote,
        from ``feed``'s replayed bars. Returns how many it stored (0 for a live feed)."""
        self._open()
        last = self._last
        if last is None or not hasattr(feed, "replayed"):
            return 0
        frames = {s: feed.replayed(s) for s in self.symbols if s in getattr(feed, "frames", {})}
        series = {s: pd.Series(f["Close"].to_numpy(float), index=f.index.as_unit("ns").asi8 / 1e9)
                  for s, f in frames.items()}
        times = np.unique(np.concatenate([s.index.to_numpy() for s in series.values()] or [np.empty(0)]))
        times = times[(times > last["time"]) & (times < first_time)]
        filled = self._first_fill(last["time"], first_time)
        if filled is not None:
            log.warning("equity log: bars from %s to %s were lost (power cut?) after a fill; left out, not rebuilt",
                        pd.Timestamp(filled, unit="s", tz="UTC"), pd.Timestamp(first_time, unit="s", tz="UTC"))
            times = times[times < filled]
        if not len(times):
            return 0
        closes = np.empty((len(times), len(self.symbols)))
        for k, symbol in enumerate(self.symbols):
            known = pd.concat([pd.Series([last["close"].get(symbol, np.nan)], index=[last["time"]]),
                               series.get(symbol, pd.Series(dtype=float))]).sort_index()
            closes[:, k] = known[~known.index.duplicated(keep="last")].reindex(times, method="ffill").to_numpy()
        held = tuple(last["held"].get(s, 0.0) for s in self.symbols)
        pending = self._times, self._closes, self._segments
        self._times, self._closes = times.tolist(), closes.tolist()
        self._segments = [(0, last["cash"], held)]
        try:
            self.flush()
        finally:
            self._times, self._closes, self._segments = pending
        return len(times)

    def _first_fill(self, after: float, before: float) -> float | None:
        """Time of the paper broker's first fill in (after, before), if any (read-only)."""
        from memlab.connectors.paper_broker import PaperBookReader

        try:
            return PaperBookReader(self.root, timeout=5.0).first_fill_time(after, before)
        except FileNotFoundError:  # no book (yet): no fills
            return None

    def flush(self, *, sync: bool = True) -> None:
        """Write the buffered rows as one block, at once. ``sync``: fsync it (and any block
        written before it) with the trader's group commit, or at once outside one."""
        if sync:
            self._synced = time.monotonic()
        self._due = False
        n = len(self._times)
        if not n:
            if sync and self._unsynced:
                fsync_path(Path(f"{self.path}-wal"))
                self._unsynced = False
            return
        db = self._open()
        k = len(self.symbols)
        times = np.asarray(self._times, dtype=float)
        closes = np.asarray(self._closes, dtype=float).reshape(n, k)
        starts = [s[0] for s in self._segments] + [n]
        lengths = np.diff(starts)
        cash = np.repeat([s[1] for s in self._segments], lengths)
        held = np.repeat(np.array([s[2] for s in self._segments], dtype=float).reshape(-1, k), lengths, axis=0)
        value = np.where((held != 0) & np.isfinite(closes), held * closes, 0.0).sum(axis=1)
        equity = cash + value
        new_keys: dict[str, str] = {}
        if self._start is None:
            self._start = float(equity[0])
            new_keys["start_equity"] = repr(self._start)
        for j, symbol in enumerate(self.symbols):
            if symbol not in self._first_close:
                seen = np.flatnonzero(np.isfinite(closes[:, j]))
                if len(seen):
                    self._first_close[symbol] = float(closes[seen[0], j])
                    new_keys[f"first_close:{symbol}"] = repr(self._first_close[symbol])
        benchmark = self._benchmark(closes)
        if not sync:
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: written at once, fsynced with a later block
        elif in_group_commit():
            relax_sqlite(db, self.path)  # fsynced when the trader's group commit ends
        else:
            db.execute("PRAGMA synchronous=FULL")
        with db:
            if new_keys:
                db.executemany("INSERT OR REPLACE INTO session VALUES (?, ?)", list(new_keys.items()))
            db.execute(
                "INSERT INTO blocks (symbols, first_time, last_time, rows, time, close, held, cash, position_value, "
                "equity, benchmark) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (self._symbols_json, float(times[0]), float(times[-1]), n,
                 *(np.ascontiguousarray(a, dtype=_F8).tobytes() for a in (times, closes, held, cash, value,
                                                                         equity, benchmark))))
        self._last = {"time": float(times[-1]), "cash": float(cash[-1]),
                      "close": dict(zip(self.symbols, closes[-1].tolist(), strict=True)),
                      "held": dict(zip(self.symbols, held[-1].tolist(), strict=True))}
        self._times, self._closes = [], []
        self._segments = [(0, *self._holding)]
        self._unsynced = not sync

    def _benchmark(self, closes: np.ndarray) -> np.ndarray:
        """Buy and hold: the starting equity spread evenly over the symbols at their first
        close; a symbol not yet seen holds its share in cash."""
        assert self._start is not None
        share = self._start / len(self.symbols)
        out = np.zeros(len(closes))
        for j, symbol in enumerate(self.symbols):
            first = self._first_close.get(symbol)
            c = closes[:, j]
            out += share if first is None else np.where(np.isfinite(c), share / first * c, share)
        return out

    def close(self) -> None:
        """Write what is buffered (fsynced) and close the file."""
        if self._times or self._unsynced:
            self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- the file ----------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        ensure_private_dir(self.root)
        if not self.path.exists():
            create_private(self.path)
        db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        session = dict(db.execute("SELECT key, value FROM session"))
        if "start_equity" in session:
            self._start = float(session["start_equity"])
        self._first_close = {k.split(":", 1)[1]: float(v) for k, v in session.items() if k.startswith("first_close:")}
        self._floor = -np.inf
        row = db.execute("SELECT symbols, rows, time, close, held, cash FROM blocks "
                         "ORDER BY last_time DESC, id DESC LIMIT 1").fetchone()
        if row is not None:
            symbols, n, t, c, h, cash = json.loads(row[0]), row[1], *(np.frombuffer(b, _F8) for b in row[2:])
            k = len(symbols)
            self._last = {"time": float(t[-1]), "cash": float(cash[-1]),
                          "close": dict(zip(symbols, c.reshape(n, k)[-1].tolist(), strict=True)),
                          "held": dict(zip(symbols, h.reshape(n, k)[-1].tolist(), strict=True))}
            self._floor = self._last["time"]
        self._db = db
        return db


def read_equity(memory_path: str | os.PathLike[str], *, since: float | pd.Timestamp | None = None) -> pd.DataFrame | None:
    """The equity log as a DataFrame, or None when the folder has none (a trader older than it).

    Indexed by market time (UTC, one row per bar, oldest first); columns ``equity``,
    ``cash``, ``position_value``, ``benchmark``, then ``close:SYMBOL`` and ``held:SYMBOL``
    per symbol. ``since`` (a time) reads only rows at or after it, for a monitor that
    reads what is new. The file is opened read-only, so reading never blocks the trader; a
    damaged log raises :class:`~memlab.memory.errors.CorruptMemoryError`.
    """
    path = Path(memory_path) / EQUITY_DB
    if since is None:
        cutoff = -np.inf
    else:
        cutoff = pd.Timestamp(since).timestamp() if isinstance(since, pd.Timestamp) else float(since)
    try:
        with read_store_db(path, timeout=1.0, name="equity log") as conn:
            rows = conn.execute("SELECT symbols, rows, time, close, held, cash, position_value, equity, benchmark "
                                "FROM blocks WHERE last_time >= ? ORDER BY id", (cutoff,)).fetchall()
    except FileNotFoundError:
        if not path.exists():
            return None
        rows = []  # created this instant, its tables not yet committed
    frames = []
    for symbols, n, t, c, h, *rest in rows:
        symbols = json.loads(symbols)
        k = len(symbols)
        data: dict[str, np.ndarray] = dict(zip(("cash", "position_value", "equity", "benchmark"),
                                               (np.frombuffer(b, _F8) for b in rest), strict=True))
        close, held = np.frombuffer(c, _F8).reshape(n, k), np.frombuffer(h, _F8).reshape(n, k)
        data |= {f"close:{s}": close[:, j] for j, s in enumerate(symbols)}
        data |= {f"held:{s}": held[:, j] for j, s in enumerate(symbols)}
        frames.append(pd.DataFrame(data, index=np.frombuffer(t, _F8)))
    columns = ["equity", "cash", "position_value", "benchmark"]
    if not frames:
        return pd.DataFrame(columns=columns, index=pd.DatetimeIndex([], tz="UTC", name="time"), dtype=float)
    frame = pd.concat(frames)
    frame = frame[~frame.index.duplicated(keep="last")]  # a bar written twice: the later write
    frame = frame[frame.index >= cutoff].sort_index(kind="stable")
    frame.index = pd.to_datetime(np.round(frame.index.to_numpy() * 1e9).astype("int64"), utc=True)
    frame.index.name = "time"
    extra = [c for c in frame.columns if c not in columns]
    return frame[columns + extra]
