"""Round trips from the paper broker's fills: each entry paired FIFO with the exits that close it, per symbol.

A buy opens a lot; a sell closes the oldest open lots of its symbol first (FIFO), so a
partial exit makes a round trip of the quantity it closed and leaves the rest open, and
a sell that closes two lots makes two round trips. Fees are shared out by quantity: a
round trip carries its part of the entry fill's fee and of the exit fill's, and its
P&L is net of both (``size x (exit - entry) - fees``); its P&L % is that over what the
entry cost (price x size plus its part of the entry fee). A lot still open is shown as
an open round trip, marked at the last price known.

The book is incremental: :meth:`RoundTripBook.add` takes only the fills read since the
last call (by fill id) and touches only the lots they close, so a refresh with 100,000
round trips in history costs what its new fills cost::

    >>> import pandas as pd
    >>> t = pd.to_datetime([0, 3600, 7200], unit="s", utc=True)
    >>> fills = pd.DataFrame({"id": [1, 2, 3], "time": t, "symbol": "X/USD", "side": ["buy", "sell", "sell"],
    ...                       "price": [100.0, 110.0, 90.0], "amount": [2.0, 1.0, 1.0], "fee": [0.2, 0.11, 0.09]})
    >>> book = RoundTripBook()
    >>> book.add(fills)
    3
    >>> [(trip.size, round(trip.pnl, 2)) for trip in book.closed]
    [(1.0, 9.79), (1.0, -10.19)]
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: A lot whose remaining size is below this fraction of its original size is closed
#: (float dust from selling "everything held").
DUST = 1e-9


@dataclass(slots=True)
class RoundTrip:
    """One entry and the exit that closed it (``exit_*`` None while open)."""

    symbol: str
    entry_time: pd.Timestamp
    entry_price: float
    size: float
    entry_fee: float
    entry_fill: int
    exit_time: pd.Timestamp | None = None
    exit_price: float | None = None
    exit_fee: float = 0.0
    exit_fill: int | None = None

    @property
    def is_open(self) -> bool:
        return self.exit_time is None

    @property
    def cost(self) -> float:
        """What the entry cost: price x size plus its share of the entry fee."""
        return self.entry_price * self.size + self.entry_fee

    @property
    def fees(self) -> float:
        return self.entry_fee + self.exit_fee

    @property
    def pnl(self) -> float:
        """Realised P&L net of both fees (NaN while open: see :meth:`unrealised`)."""
        if self.exit_price is None:
            return math.nan
        return self.size * (self.exit_price - self.entry_price) - self.fees

    @property
    def pnl_pct(self) -> float:
        return self.pnl / self.cost if self.cost else math.nan

    def unrealised(self, mark: float) -> tuple[float, float]:
        """P&L and P&L % of an open trip at ``mark`` (entry fee counted, exit fee not yet)."""
        pnl = self.size * (mark - self.entry_price) - self.entry_fee
        return pnl, (pnl / self.cost if self.cost else math.nan)

    def duration(self, now: pd.Timestamp | None = None) -> pd.Timedelta | None:
        """Exit minus entry; for an open trip, ``now`` (market time) minus entry."""
        end = self.exit_time if self.exit_time is not None else now
        return None if end is None else end - self.entry_time


class RoundTripBook:
    """Round trips built from fills as they come (see the module docstring).

    ``fills_seen`` counts the fills taken, ``last_fill`` is the id of the last one: a
    caller reads only fills after it, and a fill at or below it is ignored (a re-read).
    """

    def __init__(self) -> None:
        self.closed: list[RoundTrip] = []
        self.lots: dict[str, deque[RoundTrip]] = {}
        self.fills_seen = 0
        self.last_fill = 0
        self.unmatched: dict[str, float] = {}  # sold with no open lot (a book started mid-position)
        self.wins = 0
        self.realised = 0.0
        self.by_entry: dict[int, list[RoundTrip]] = {}  # entry fill id -> the closed trips it made

    def add(self, fills: pd.DataFrame) -> int:
        """Take new fills (columns ``id, time, symbol, side, price, amount, fee``, oldest
        first); returns how many were taken."""
        if fills is None or not len(fills):
            return 0
        ids = fills["id"].to_numpy(np.int64)
        fresh = ids > self.last_fill
        if not fresh.any():
            return 0
        new = fills[fresh]
        times = pd.DatetimeIndex(new["time"])
        n = 0
        for fid, when, symbol, side, price, amount, fee in zip(
                new["id"].to_numpy(np.int64).tolist(), times, new["symbol"].tolist(), new["side"].tolist(),
                new["price"].to_numpy(float).tolist(), new["amount"].to_numpy(float).tolist(),
                new["fee"].fillna(0.0).to_numpy(float).tolist(), strict=True):
            if side == "buy":
                self.lots.setdefault(symbol, deque()).append(RoundTrip(symbol, when, price, amount, fee, fid))
            else:
                self._close(symbol, when, price, amount, fee, fid)
            n += 1
        self.fills_seen += n
        self.last_fill = int(ids[fresh][-1])
        return n

    def _close(self, symbol: str, when: pd.Timestamp, price: float, amount: float, fee: float, fid: int) -> None:
        lots = self.lots.get(symbol)
        left = amount
        while left > 0 and lots:
            lot = lots[0]
            take = min(left, lot.size)
            whole = lot.size - take <= DUST * max(lot.size, take)
            if whole:
                take = lot.size
                lots.popleft()
                trip = lot
            else:  # a partial exit: split the lot, the rest stays open with the rest of its fee
                share = take / lot.size
                trip = RoundTrip(symbol, lot.entry_time, lot.entry_price, take, lot.entry_fee * share, lot.entry_fill)
                lot.size -= take
                lot.entry_fee -= trip.entry_fee
            trip.exit_time, trip.exit_price, trip.exit_fill = when, price, fid
            trip.exit_fee = fee * take / amount if amount else 0.0
            self.closed.append(trip)
            self.by_entry.setdefault(trip.entry_fill, []).append(trip)
            self.realised += trip.pnl
            self.wins += trip.pnl > 0
            left -= take
            if left <= DUST * amount:
                left = 0.0
        if left > 0:
            self.unmatched[symbol] = self.unmatched.get(symbol, 0.0) + left

    def open_trips(self) -> list[RoundTrip]:
        """Lots still open, oldest first."""
        return [lot for lots in self.lots.values() for lot in lots]

    @property
    def win_rate(self) -> float:
        return self.wins / len(self.closed) if self.closed else math.nan

    def newest(self, n: int) -> list[RoundTrip]:
        """The open trips (newest entry first), then the newest closed ones, ``n`` in all."""
        live = sorted(self.open_trips(), key=lambda t: t.entry_fill, reverse=True)[:n]
        k = n - len(live)
        return live + (self.closed[-k:][::-1] if k > 0 else [])


_SIMILAR = re.compile(r"(\d+) similar [^:]*: (\d+) won(?:, mean ([+\-]?[\d.]+)%)?")


def _sign_pct(v: float) -> str:
    return f"{v:+.1f} %".replace("-", "\u2212")


def describe_evidence(meta: object, reason: str = "",
                      past: Callable[[int], tuple[float, pd.Timestamp] | None] | None = None, *, most: int = 5) -> str:
    """The similar past trades behind a decision, as a person reads them.

    ``meta`` is the decision's stored JSON (or its dict): the brain's evidence (``similar``,
    ``wins``, ``mean_return_pct``, ``decision_ids``), at its top level or under
    ``evidence``. With ``decision_ids`` and ``past`` (a decision id -> its trade's P&L
    fraction and entry time, or None) it lists them: ``3 similar: +1.2 % (2024-03-01),
    −0.4 % (2024-02-11) …``; with counts only, ``14 similar: 10 won, mean +1.1 %``. When
    the store kept no evidence (the trader stores only its order), the counts are read
    from ``reason``, where the brain cites them; else "".
    """
    ev: dict[str, object] = {}
    if isinstance(meta, str) and meta.strip():
        try:
            meta = json.loads(meta)
        except ValueError:
            meta = {}
    if isinstance(meta, dict):
        inner = meta.get("evidence")
        ev = inner if isinstance(inner, dict) else meta
    ids = ev.get("decision_ids") or ev.get("evidence_ids") or []
    n = ev.get("similar")
    wins = ev.get("wins", ev.get("won"))
    mean = ev.get("mean_return_pct")
    if isinstance(ids, list) and ids and past is not None:
        listed = []
        for i in ids[:most]:
            found = past(int(i))
            listed.append(f"#{i} (open or unknown)" if found is None
                          else f"{_sign_pct(found[0] * 100)} ({found[1].strftime('%Y-%m-%d')})")
        more = " …" if len(ids) > most or (isinstance(n, int) and n > most) else ""
        total = n if isinstance(n, int) else len(ids)
        return f"{total} similar: " + ", ".join(listed) + more
    if isinstance(n, int | float) and not isinstance(n, bool):
        if not n:
            return "none similar yet (prior only)"
        text = f"{int(n)} similar"
        if isinstance(wins, int | float):
            text += f": {int(wins)} won ({wins / n * 100:.0f} %)"
        if isinstance(mean, int | float):
            text += f", mean {_sign_pct(float(mean))}"
        return text
    match = _SIMILAR.search(reason or "")
    if match:
        total, won = int(match.group(1)), int(match.group(2))
        text = f"{total} similar: {won} won ({won / total * 100:.0f} %)" if total else "none similar yet"
        if match.group(3):
            text += f", mean {_sign_pct(float(match.group(3)))}"
        return text
    if "no similar past decisions" in (reason or ""):
        return "none similar yet (prior only)"
    return ""
