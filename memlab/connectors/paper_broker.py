"""The paper broker: ccxt's order verbs over a persistent SQLite book, filled against bars.

Spot accounting: balances per asset, long positions with average entry price and
realised P&L. Orders: market (filled at the next bar's open), limit (filled when the bar
trades through the limit), and stop-loss / take-profit children attached to a buy
(one cancels the other). Fees and slippage are fractions of traded value. Errors are
ccxt's own (``BadSymbol``, ``InvalidOrder``, ``InsufficientFunds``, ``OrderNotFound``),
so code written for an exchange handles the paper broker the same way.

Everything is in ``paper_broker.sqlite`` (WAL, ``synchronous=FULL``, mode 600). Every
order and every bar's fills commit in one transaction; a bar already processed is
skipped and a client order id already used returns the existing order, so a restart
after ``kill -9`` replays without losing or duplicating a fill.

A bar that fills nothing only moves the mark price. Such bars are kept in memory and
written with the next transaction (or by :meth:`PaperBroker.flush`, at most
``flush_interval`` seconds later): a replay runs at tens of thousands of bars a second
instead of one fsync per bar, and a crash can only lose mark prices, which the restarted
replay recomputes from the same bars. Open orders are cached per symbol, so deciding
that a bar fills nothing needs no query; another process committing to the same book is
noticed (``PRAGMA data_version``) and the caches are dropped.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ccxt

from memlab.costs import DEFAULT_COSTS
from memlab.data.bars import Bar
from memlab.memory.durable import create_private, ensure_private_dir, relax_sqlite

PAPER_DB = "paper_broker.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS markets (symbol TEXT PRIMARY KEY, base TEXT NOT NULL, quote TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS balances (asset TEXT PRIMARY KEY, total REAL NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY, client_id TEXT NOT NULL UNIQUE, symbol TEXT NOT NULL, type TEXT NOT NULL,
    side TEXT NOT NULL, amount REAL, cost REAL, price REAL, status TEXT NOT NULL, filled REAL NOT NULL DEFAULT 0,
    average REAL, fee REAL NOT NULL DEFAULT 0, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    parent_id INTEGER, stop_loss REAL, take_profit REAL, reason TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS orders_open ON orders (symbol, status);
CREATE INDEX IF NOT EXISTS orders_live ON orders (status) WHERE status = 'open';
CREATE TABLE IF NOT EXISTS fills (
    id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL, bar_time REAL NOT NULL, price REAL NOT NULL,
    amount REAL NOT NULL, fee REAL NOT NULL, pnl REAL, UNIQUE (order_id, bar_time));
CREATE TABLE IF NOT EXISTS positions (
    symbol TEXT PRIMARY KEY, amount REAL NOT NULL, avg_price REAL NOT NULL, realized_pnl REAL NOT NULL);
CREATE TABLE IF NOT EXISTS prices (symbol TEXT PRIMARY KEY, time REAL NOT NULL, close REAL NOT NULL);
"""


#: What open orders hold of an asset. It reads the open orders through ``orders_live`` (a
#: partial index), so its cost does not grow with the book's history of closed orders.
RESERVED_SQL = (
    "SELECT "
    " coalesce(sum(CASE WHEN o.side='buy' AND m.quote=:a THEN coalesce(o.cost, o.amount * "
    "   (CASE WHEN o.type='limit' THEN o.price ELSE coalesce(p.close, 0) * (1 + :slip) END) * (1 + :fee)) END), 0),"
    " coalesce(sum(CASE WHEN o.side='sell' AND m.base=:a THEN o.amount END), 0) "
    "FROM orders o JOIN markets m ON m.symbol = o.symbol LEFT JOIN prices p ON p.symbol = o.symbol "
    "WHERE o.status = 'open' AND o.parent_id IS NULL"
)


class PaperBroker:
    """A simulated spot exchange with ccxt's verbs; state survives restarts.

    >>> import tempfile
    >>> broker = PaperBroker(Path(tempfile.mkdtemp()), balances={"USDT": 10_000}, fees=0.001)
    >>> broker.add_market("BTC/USDT")
    >>> broker.on_bar("BTC/USDT", Bar(0, 100, 101, 99, 100))
    []
    >>> order = broker.create_order("BTC/USDT", "market", "buy", 10)
    >>> [f["price"] for f in broker.on_bar("BTC/USDT", Bar(60, 102, 103, 101, 102))]
    [102.0]
    >>> round(broker.fetch_balance()["total"]["USDT"], 2)
    8978.98
    """

    def __init__(self, root: Path, *, balances: Mapping[str, float] | None = None,
                 fees: float = DEFAULT_COSTS.fees, slippage: float = DEFAULT_COSTS.slippage,
                 flush_interval: float = 1.0) -> None:
        if not 0 <= fees < 1 or not 0 <= slippage < 1:
            raise ccxt.InvalidOrder("paper broker: fees and slippage are fractions in [0, 1)")
        self.fees, self.slippage = float(fees), float(slippage)
        self.flush_interval = float(flush_interval)
        # Caches (see the module docstring); valid while no other connection commits.
        self._markets: dict[str, tuple[str, str]] = {}
        self._last: dict[str, float] = {}
        self._open: dict[str, list[tuple[str, str, float | None, float]]] = {}
        self._pending: dict[str, tuple[float, float]] = {}
        self._flushed = time.monotonic()
        self._version: int | None = None
        self._synced_at = 0.0
        self.path = ensure_private_dir(Path(root)) / PAPER_DB
        if not self.path.exists():
            create_private(self.path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        if balances and not self._db.execute("SELECT 1 FROM balances LIMIT 1").fetchone():
            with self._tx():
                for asset, amount in balances.items():
                    self._db.execute("INSERT INTO balances VALUES (?, ?)", (asset, float(amount)))

    def close(self) -> None:
        with self._lock:
            self.flush()
            self._db.close()

    def flush(self) -> None:
        """Write the mark prices of bars that filled nothing (see the module docstring)."""
        with self._lock:
            if self._pending:
                with self._tx():
                    pass  # the transaction writes what is pending
            self._flushed = time.monotonic()

    def _sync(self, *, force: bool = False) -> None:
        """Drop the caches when another connection has committed to the book (checked at
        most every 50 ms for bars, which a replay sends by the thousand; always for orders)."""
        now = time.monotonic()
        if not force and now - self._synced_at < 0.05:
            return
        self._synced_at = now
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._version:
            if self._version is not None:
                self._markets.clear()
                self._last.clear()
                self._open.clear()
            self._version = version

    # -- plumbing ----------------------------------------------------------------
    class _Tx:
        def __init__(self, broker: PaperBroker) -> None:
            self.b = broker

        def __enter__(self) -> None:
            b = self.b
            b._lock.acquire()
            relax_sqlite(b._db, b.path, b._lock)
            b._db.execute("BEGIN IMMEDIATE")
            if b._pending:
                b._db.executemany("INSERT OR REPLACE INTO prices VALUES (?, ?, ?)",
                                  [(sym, t, c) for sym, (t, c) in b._pending.items()])

        def __exit__(self, exc_type: object, *rest: object) -> None:
            b = self.b
            try:
                b._db.execute("ROLLBACK" if exc_type else "COMMIT")
                if not exc_type:
                    b._pending.clear()
                    b._version = b._db.execute("PRAGMA data_version").fetchone()[0]
            finally:
                b._lock.release()

    def _tx(self) -> PaperBroker._Tx:
        return PaperBroker._Tx(self)

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        row = self._db.execute(sql, args).fetchone()
        return None if row is None else row[0]

    # -- markets and prices ------------------------------------------------------
    def add_market(self, symbol: str, base: str | None = None, quote: str | None = None) -> None:
        """List ``symbol`` ("BTC/USDT"; base/quote default to its two halves, or USD)."""
        if base is None or quote is None:
            b, _, q = symbol.partition("/")
            base, quote = base or b, quote or (q or "USD")
        with self._tx():
            self._db.execute("INSERT OR IGNORE INTO markets VALUES (?, ?, ?)", (symbol, base, quote))

    def _market(self, symbol: str) -> tuple[str, str]:
        cached = self._markets.get(symbol)
        if cached is not None:
            return cached
        row = self._db.execute("SELECT base, quote FROM markets WHERE symbol=?", (symbol,)).fetchone()
        if row is None:
            known = [r[0] for r in self._db.execute("SELECT symbol FROM markets ORDER BY symbol")]
            raise ccxt.BadSymbol(f"paper broker: unknown symbol {symbol!r}; known: {', '.join(known) or 'none'}")
        self._markets[symbol] = (row[0], row[1])
        return row[0], row[1]

    def markets(self) -> list[str]:
        """The listed symbols."""
        return [r[0] for r in self._db.execute("SELECT symbol FROM markets ORDER BY symbol")]

    def last_price(self, symbol: str) -> float | None:
        if symbol in self._pending:
            return self._pending[symbol][1]
        return self._one("SELECT close FROM prices WHERE symbol=?", (symbol,))

    def last_bar_time(self, symbol: str) -> float | None:
        """Time of the last bar processed for ``symbol`` (None before the first)."""
        with self._lock:
            self._sync()
            if symbol not in self._last:
                t = self._one("SELECT time FROM prices WHERE symbol=?", (symbol,))
                if t is None:
                    return None
                self._last[symbol] = float(t)
            return self._last[symbol]

    def _now(self, symbol: str) -> float:
        if symbol in self._pending:
            return self._pending[symbol][0]
        return self._one("SELECT time FROM prices WHERE symbol=?", (symbol,)) or 0.0

    def _open_orders(self, symbol: str) -> list[tuple[str, str, float | None, float]]:
        """(type, side, price, created_at) of the symbol's open orders, cached."""
        cached = self._open.get(symbol)
        if cached is None:
            cached = [(t, s, p, c) for t, s, p, c in self._db.execute(
                "SELECT type, side, price, created_at FROM orders WHERE symbol=? AND status='open'", (symbol,))]
            self._open[symbol] = cached
        return cached

    # -- balances ----------------------------------------------------------------
    def _total(self, asset: str) -> float:
        return self._one("SELECT total FROM balances WHERE asset=?", (asset,)) or 0.0

    def _reserved(self, asset: str) -> float:
        """What open orders hold: quote for buys (their cost, or amount at the limit or
        last price with fees), base for sells. One SQL aggregate, however many orders."""
        row = self._db.execute(RESERVED_SQL, {"a": asset, "slip": self.slippage, "fee": self.fees}).fetchone()
        return float(row[0]) + float(row[1])

    def fetch_balance(self) -> dict[str, dict[str, float]]:
        """ccxt's balance structure: ``free``, ``used`` and ``total`` per asset."""
        with self._lock:
            self.flush()
            out: dict[str, dict[str, float]] = {"free": {}, "used": {}, "total": {}}
            for asset, total in self._db.execute("SELECT asset, total FROM balances ORDER BY asset").fetchall():
                used = self._reserved(asset)
                out["total"][asset], out["used"][asset], out["free"][asset] = total, used, total - used
            return out

    def fetch_positions(self) -> list[dict[str, Any]]:
        """Open long positions: amount, entry price, mark price, unrealised and realised P&L."""
        with self._lock:
            rows = self._db.execute("SELECT symbol, amount, avg_price, realized_pnl FROM positions WHERE amount > 1e-12").fetchall()
            out = []
            for symbol, amount, avg, realized in rows:
                mark = self.last_price(symbol) or avg
                out.append({"symbol": symbol, "side": "long", "contracts": amount, "entryPrice": avg,
                            "markPrice": mark, "unrealizedPnl": (mark - avg) * amount, "realizedPnl": realized})
            return out

    def equity(self, quote: str) -> float:
        """Cash in ``quote`` plus open positions marked at their last close."""
        with self._lock:
            value = self._total(quote)
            for p in self.fetch_positions():
                value += p["contracts"] * p["markPrice"]
            return value

    # -- orders ------------------------------------------------------------------
    def create_order(self, symbol: str, type: str, side: str, amount: float | None, price: float | None = None,
                     params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Place an order (ccxt's signature). ``params``: ``clientOrderId`` (a repeat returns
        the existing order), ``cost`` (market buy spending this much quote),
        ``stopLoss`` / ``takeProfit`` (prices of children attached to a buy)."""
        params = dict(params or {})
        client_id = str(params.get("clientOrderId") or uuid.uuid4().hex)
        with self._lock:
            self._sync(force=True)
            existing = self._one("SELECT id FROM orders WHERE client_id=?", (client_id,))
            if existing is not None:
                return self.fetch_order(existing)
            base, quote = self._market(symbol)
            type_, side_ = str(type).lower(), str(side).lower()
            if type_ not in ("market", "limit") or side_ not in ("buy", "sell"):
                raise ccxt.InvalidOrder(f"paper broker: order type must be market/limit and side buy/sell, got {type}/{side}")
            cost = params.get("cost")
            if cost is not None:
                if type_ != "market" or side_ != "buy" or not float(cost) > 0:
                    raise ccxt.InvalidOrder("paper broker: 'cost' is for market buys, and must be positive")
                amount = None
            elif amount is None or not float(amount) > 0:
                raise ccxt.InvalidOrder(f"paper broker: quantity must be positive, got {amount}")
            if type_ == "limit" and (price is None or not float(price) > 0):
                raise ccxt.InvalidOrder("paper broker: a limit order needs a positive price")
            sl, tp = params.get("stopLoss"), params.get("takeProfit")
            if (sl is not None or tp is not None) and side_ != "buy":
                raise ccxt.InvalidOrder("paper broker: stopLoss/takeProfit attach to buys")
            now = self._now(symbol)
            with self._tx():  # marks pending from quiet bars are written first, so reservations see them
                if side_ == "buy":
                    ref = float(price) if type_ == "limit" else (self.last_price(symbol) or 0.0) * (1 + self.slippage)
                    need = float(cost) if cost is not None else float(amount) * ref * (1 + self.fees)  # type: ignore[arg-type]
                    free = self._total(quote) - self._reserved(quote)
                    if need > free + 1e-9:
                        raise ccxt.InsufficientFunds(f"paper broker: buying needs {need:.2f} {quote}, {free:.2f} free")
                else:
                    free = self._total(base) - self._reserved(base)
                    if float(amount) > free + 1e-12:  # type: ignore[arg-type]
                        raise ccxt.InsufficientFunds(f"paper broker: selling {amount} {base}, {free} free")
                cur = self._db.execute(
                    "INSERT INTO orders (client_id, symbol, type, side, amount, cost, price, status, created_at, updated_at, stop_loss, take_profit) "
                    "VALUES (?,?,?,?,?,?,?, 'open', ?, ?, ?, ?)",
                    (client_id, symbol, type_, side_, None if amount is None else float(amount),
                     None if cost is None else float(cost), None if price is None else float(price), now, now,
                     None if sl is None else float(sl), None if tp is None else float(tp)),
                )
            self._open.pop(symbol, None)
            return self.fetch_order(int(cur.lastrowid))  # type: ignore[arg-type]

    def cancel_order(self, id: int | str, symbol: str | None = None) -> dict[str, Any]:
        with self._lock:
            order = self.fetch_order(id)
            if order["status"] != "open":
                raise ccxt.InvalidOrder(f"paper broker: order {id} is {order['status']}, not open")
            with self._tx():
                self._db.execute("UPDATE orders SET status='canceled' WHERE id=?", (int(order["id"]),))
            self._open.pop(order["symbol"], None)
            return self.fetch_order(id)

    def fetch_order(self, id: int | str, symbol: str | None = None) -> dict[str, Any]:
        row = self._db.execute(
            "SELECT id, client_id, symbol, type, side, amount, cost, price, status, filled, average, fee, created_at, "
            "parent_id, stop_loss, take_profit, reason FROM orders WHERE id=? OR client_id=?", (str(id), str(id)),
        ).fetchone()
        if row is None:
            raise ccxt.OrderNotFound(f"paper broker: no order {id}")
        (oid, cid, sym, type_, side, amount, cost, price, status, filled, average, fee, created, parent, sl, tp, reason) = row
        return {"id": str(oid), "clientOrderId": cid, "symbol": sym, "type": type_, "side": side, "amount": amount,
                "cost": cost, "price": price, "status": status, "filled": filled, "average": average,
                "remaining": None if amount is None else amount - filled, "fee": {"cost": fee},
                "timestamp": int(created * 1000), "parentId": parent and str(parent), "stopLoss": sl,
                "takeProfit": tp, "info": {"reason": reason}}

    def fetch_open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            ids = [r[0] for r in self._db.execute(
                "SELECT id FROM orders WHERE status='open'" + (" AND symbol=?" if symbol else "") + " ORDER BY id",
                (symbol,) if symbol else ())]
            return [self.fetch_order(i) for i in ids]

    def fills(self, symbol: str | None = None, *, after_id: int = 0) -> list[dict[str, Any]]:
        """Fills, oldest first (optionally of one symbol, after fill id ``after_id``), with
        the order's symbol, side and client order id."""
        cols = ("id", "order_id", "bar_time", "price", "amount", "fee", "pnl", "symbol", "side", "client_id")
        sql = ("SELECT f.id, f.order_id, f.bar_time, f.price, f.amount, f.fee, f.pnl, o.symbol, o.side, o.client_id "
               "FROM fills f JOIN orders o ON o.id = f.order_id WHERE f.id > ?" + (" AND o.symbol = ?" if symbol else "")
               + " ORDER BY f.id")
        with self._lock:
            rows = self._db.execute(sql, (after_id, symbol) if symbol else (after_id,)).fetchall()
        return [dict(zip(cols, r, strict=True)) for r in rows]

    # -- the clock: bars ---------------------------------------------------------
    def on_bar(self, symbol: str, bar: Bar) -> list[dict[str, Any]]:
        """Fill what this bar fills, mark prices; returns the new fills. A bar at or
        before the last one processed for ``symbol`` changes nothing (safe replays)."""
        with self._lock:
            self._sync()
            base, quote = self._market(symbol)
            last = self._last[symbol] if symbol in self._last else self.last_bar_time(symbol)
            if last is not None and bar.time <= last:
                return []
            self._last[symbol] = bar.time
            if not any(created < bar.time and self._trigger(type_, side, price, bar) is not None
                       for type_, side, price, created in self._open_orders(symbol)):
                # Fills nothing: only the mark moves; written with the next transaction.
                self._pending[symbol] = (bar.time, bar.close)
                if time.monotonic() - self._flushed >= self.flush_interval:
                    self.flush()
                return []
            new: list[dict[str, Any]] = []
            self._pending.pop(symbol, None)
            try:
                with self._tx():
                    rows = self._db.execute(
                        "SELECT id, type, side, amount, cost, price, stop_loss, take_profit, parent_id FROM orders "
                        "WHERE symbol=? AND status='open' AND created_at < ? ORDER BY (type IN ('stop_loss','take_profit')) DESC, id",
                        (symbol, bar.time),
                    ).fetchall()
                    for oid, type_, side, amount, cost, price, sl, tp, parent in rows:
                        if self._one("SELECT status FROM orders WHERE id=?", (oid,)) != "open":
                            continue  # cancelled by its OCO sibling earlier in this bar
                        fill_price = self._trigger(type_, side, price, bar)
                        if fill_price is None:
                            continue
                        new.append(self._fill(oid, symbol, base, quote, side, amount, cost, fill_price, bar, sl, tp, parent))
                    self._db.execute("INSERT OR REPLACE INTO prices VALUES (?, ?, ?)", (symbol, bar.time, bar.close))
            except BaseException:
                self._last.pop(symbol, None)
                raise
            finally:
                self._open.pop(symbol, None)
            return new

    def _trigger(self, type_: str, side: str, price: float | None, bar: Bar) -> float | None:
        if type_ == "market":
            return bar.open * (1 + self.slippage if side == "buy" else 1 - self.slippage)
        if type_ == "limit":
            assert price is not None
            if side == "buy" and bar.low <= price:
                return min(bar.open, price)
            if side == "sell" and bar.high >= price:
                return max(bar.open, price)
            return None
        assert price is not None
        if type_ == "stop_loss" and bar.low <= price:
            return min(bar.open, price) * (1 - self.slippage)  # a gap through the stop fills at the open
        if type_ == "take_profit" and bar.high >= price:
            return max(bar.open, price)
        return None

    def _fill(self, oid: int, symbol: str, base: str, quote: str, side: str, amount: float | None, cost: float | None,
              price: float, bar: Bar, sl: float | None, tp: float | None, parent: int | None) -> dict[str, Any]:
        db = self._db
        pos = db.execute("SELECT amount, avg_price, realized_pnl FROM positions WHERE symbol=?", (symbol,)).fetchone() or (0.0, 0.0, 0.0)
        pnl = None
        if side == "buy":
            spend = cost if cost is not None else amount * price * (1 + self.fees)  # type: ignore[operator]
            spend = min(spend, self._total(quote))
            qty = spend / (price * (1 + self.fees))
            fee = qty * price * self.fees
            db.execute("INSERT OR REPLACE INTO balances VALUES (?, ?)", (quote, self._total(quote) - spend))
            db.execute("INSERT OR REPLACE INTO balances VALUES (?, ?)", (base, self._total(base) + qty))
            new_amount = pos[0] + qty
            avg = (pos[0] * pos[1] + qty * price * (1 + self.fees)) / new_amount
            db.execute("INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?)", (symbol, new_amount, avg, pos[2]))
        else:
            qty = min(float(amount), self._total(base))  # type: ignore[arg-type]
            proceeds = qty * price * (1 - self.fees)
            fee = qty * price * self.fees
            pnl = proceeds - qty * pos[1]
            db.execute("INSERT OR REPLACE INTO balances VALUES (?, ?)", (base, self._total(base) - qty))
            db.execute("INSERT OR REPLACE INTO balances VALUES (?, ?)", (quote, self._total(quote) + proceeds))
            db.execute("INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?)",
                       (symbol, max(pos[0] - qty, 0.0), pos[1] if pos[0] - qty > 1e-12 else 0.0, pos[2] + pnl))
        fill_id = db.execute("INSERT INTO fills (order_id, bar_time, price, amount, fee, pnl) VALUES (?,?,?,?,?,?)",
                             (oid, bar.time, price, qty, fee, pnl)).lastrowid
        db.execute("UPDATE orders SET status='closed', filled=?, average=?, fee=?, updated_at=? WHERE id=?",
                   (qty, price, fee, bar.time, oid))
        if parent is not None:  # one cancels the other
            db.execute("UPDATE orders SET status='canceled', reason='oco' WHERE parent_id=? AND id<>? AND status='open'", (parent, oid))
        for child_type, child_price in (("stop_loss", sl), ("take_profit", tp)):
            if child_price is not None:
                db.execute(
                    "INSERT INTO orders (client_id, symbol, type, side, amount, price, status, created_at, updated_at, parent_id) "
                    "VALUES (?, ?, ?, 'sell', ?, ?, 'open', ?, ?, ?)",
                    (f"{oid}-{child_type}", symbol, child_type, qty, child_price, bar.time - 1e-6, bar.time, oid),
                )
        return {"id": fill_id, "order_id": str(oid), "symbol": symbol, "side": side, "price": price, "amount": qty, "fee": fee,
                "pnl": pnl, "time": bar.time}


class PaperBookReader:
    """The paper broker's book read from another process (the live monitor, the equity
    log's restart): each call opens ``paper_broker.sqlite`` read-only, reads, closes, so it
    never blocks the trader. Times are the bars' (market time, UTC).

    A missing book raises :class:`FileNotFoundError`; a damaged one
    :class:`~memlab.memory.errors.CorruptMemoryError`. Neither ever creates or changes it.

    >>> import tempfile
    >>> broker = PaperBroker(Path(tempfile.mkdtemp()), balances={"USDT": 1_000})
    >>> PaperBookReader(broker.path.parent).balances()
    {'USDT': 1000.0}
    """

    name = "paper broker book"
    # Frames are typed Any: pandas is imported on the first read, so the broker needs none.

    def __init__(self, root: str | Path, *, timeout: float = 10.0) -> None:
        self.path = Path(root) / PAPER_DB
        self.timeout = timeout

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        from memlab.memory.durable import read_store_db

        with read_store_db(self.path, timeout=self.timeout, name=self.name) as conn:
            return conn.execute(sql, args).fetchall()

    def positions(self) -> Any:
        """Open long positions as a DataFrame: ``symbol``, ``entry_price`` (average, fees in),
        ``quantity``, ``mark_price`` (last close, else the entry), ``realized_pnl``, ``unrealized_pnl``."""
        import pandas as pd

        rows = self._rows(
            "SELECT p.symbol, p.avg_price, p.amount, COALESCE(pr.close, p.avg_price), p.realized_pnl "
            "FROM positions p LEFT JOIN prices pr ON pr.symbol = p.symbol WHERE p.amount > 1e-12 ORDER BY p.symbol")
        frame = pd.DataFrame(rows, columns=["symbol", "entry_price", "quantity", "mark_price", "realized_pnl"])
        frame["unrealized_pnl"] = (frame["mark_price"] - frame["entry_price"]) * frame["quantity"]
        return frame

    def orders(self, limit: int = 200) -> Any:
        """The newest ``limit`` orders (open, closed, canceled), newest first: ``id``, ``time``,
        ``symbol``, ``type``, ``side``, ``amount``, ``price``, ``status``, ``filled``, ``average``, ``fee``."""
        rows = self._rows("SELECT id, created_at, symbol, type, side, amount, price, status, filled, average, fee "
                          "FROM orders ORDER BY id DESC LIMIT ?", (int(limit),))
        return _book_frame(rows, ["id", "time", "symbol", "type", "side", "amount", "price", "status", "filled",
                                  "average", "fee"])

    def fills(self, *, after_id: int = 0) -> Any:
        """Fills with id > ``after_id``, oldest first: ``id``, ``time``, ``symbol``, ``side``,
        ``price``, ``amount``, ``fee``, ``pnl`` (realised, on sells). Pass the last id read to
        read only what is new."""
        rows = self._rows("SELECT f.id, f.bar_time, o.symbol, o.side, f.price, f.amount, f.fee, f.pnl "
                          "FROM fills f JOIN orders o ON o.id = f.order_id WHERE f.id > ? ORDER BY f.id",
                          (int(after_id),))
        return _book_frame(rows, ["id", "time", "symbol", "side", "price", "amount", "fee", "pnl"])

    def balances(self) -> dict[str, float]:
        """Each asset's total balance (free and held by open orders)."""
        return {a: float(t) for a, t in self._rows("SELECT asset, total FROM balances ORDER BY asset")}

    def first_fill_time(self, after: float, before: float) -> float | None:
        """The bar time (epoch seconds) of the first fill strictly between ``after`` and
        ``before``; None when there is none."""
        [(first,)] = self._rows("SELECT min(bar_time) FROM fills WHERE bar_time > ? AND bar_time < ?",
                                (float(after), float(before)))
        return None if first is None else float(first)


def _book_frame(rows: list[tuple[Any, ...]], columns: list[str]) -> Any:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=columns)
    frame["time"] = pd.to_datetime(pd.Series(frame["time"], dtype="float64"), unit="s", utc=True)
    return frame
