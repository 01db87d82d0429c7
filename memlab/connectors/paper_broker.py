"""The paper broker: ccxt's order verbs over a persistent SQLite book, filled against bars.

Spot accounting: balances per asset, long positions with average entry price and
realised P&L. Orders: market (filled at the next bar's open), limit (filled when the bar
trades through the limit), and stop-loss / take-profit children attached to a buy
(one cancels the other). Fees and slippage are fractions of traded value. Errors are
ccxt's own (``BadSymbol``, ``BadRequest``, ``InvalidOrder``, ``InsufficientFunds``,
``OrderNotFound``), so code written for an exchange handles the paper broker the same way.

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
noticed (``PRAGMA data_version``) and the caches are dropped. A bar that pays funding,
ratchets a trailing stop or liquidates is not quiet: it commits.

Fill model
----------
``PaperBroker(..., fill_model=FillModel(...))`` (:mod:`memlab.fills`; off by default,
which is the behaviour above) fills the way a venue does:

- **Spread** (``range_spread=k``): market and stop-market fills pay the fixed slippage plus
  half of ``k x (High - Low) / Close`` of the last bar processed **before** the fill bar
  (kept in ``prices.bar_range``); limit and take-profit fills pay none.
- **Latency** (``latency=N``): an order sent after bar ``t`` fills from bar ``t + 1 + N``
  (``orders.wait`` counts the bars down, in the book, so a restart keeps it). Children
  (stop-loss, take-profit, trailing stop) are born at the entry's fill, without latency.
- **Volume cap** (``volume_cap=s``): a market or limit order takes at most ``s x`` the
  bar's volume (pass ``on_bar(symbol, bar, volume=...)``; contracts x contract size on a
  swap); the rest stays ``"open"`` with ``filled`` / ``remaining`` (ccxt's order shape)
  and fills at the next bars, each part a fill of its own; ``average`` and ``fee`` are the
  order's so far, and partial fills add up to the order (``amount``, or ``cost`` for a
  buy by cost). A partially filled entry's children grow with each part, so they cover
  what has filled; when one fills, what is left of the entry is cancelled. Protective
  orders and liquidations fill whole. A bar without volume fills nothing of a capped order.
- **Maker and taker** (``maker_fees``): limit and take-profit fills pay the maker fee,
  market, stop-loss and trailing-stop fills the taker fee ``fees``; ``market()`` says both.

Perpetual futures (linear, isolated margin)
-------------------------------------------
ccxt's symbols: ``BTC/USDT`` is spot, ``BTC/USDT:USDT`` the linear perpetual settled in
USDT (``type: 'swap'``). On a swap, ``amount`` is in contracts (``contractSize`` base
each), a buy opens or adds to a long, a sell a short (one-way mode: an opposite order
reduces, closes, then flips), and :meth:`PaperBroker.set_leverage` sets the leverage
(refused above the tiers' maximum, and while a position is open).

- **Margin.** Opening ``q`` base at price ``P`` moves ``q·P/leverage`` from the settle
  currency's cash into the position's isolated collateral; fees (``q·P·fees``) are paid
  from cash. ``fetch_balance`` counts collateral in ``total`` and ``used``.
- **Mark price.** The last bar's close (there is no index price here); liquidation and
  stops are triggered by the bar's low/high, as stops are.
- **Liquidation price** (isolated, see :mod:`memlab.connectors.margin`)::

      P_liq = (side·qty·entry − collateral − deduction) / (qty·(side − MMR))

  side +1 long / −1 short, qty in base, MMR and deduction from the leverage tier holding
  ``qty·P_liq`` (ccxt's ``fetch_market_leverage_tiers`` shape). ``BTC/USDT:USDT`` ships
  Bybit's published BTCUSDT tiers; any other perpetual gets illustrative tiers unless
  ``add_market(..., market={"tiers": [...]})`` gives a venue's.
- **Liquidation fill.** A bar that opens through ``P_liq`` liquidates at its open (the
  gap rule of stops); one that trades through it liquidates at ``P_liq``. The trader gets
  nothing of the isolated margin back (the venue closes at the bankruptcy price): what
  equity is left at the fill is the **liquidation fee** (fill ``fee``), to the insurance
  fund, and the realised loss is exactly the collateral, never more (a gap beyond the
  bankruptcy price is absorbed by the insurance fund). No taker fee on top. The
  position's reduce-only and protective orders are cancelled.
- **Order of events in a bar:** (1) funding due since the previous bar, at the previous
  close; (2) liquidation at the open if the open is through ``P_liq``; (3) orders, stops
  first (a stop-loss beyond ``P_liq``, and any take-profit, waits if the bar reaches
  ``P_liq``: the liquidation comes first), then market (at the open) and limit orders;
  (4) liquidation inside the bar; (5) trailing stops ratchet with the bar's high/low.
- **Funding** every ``fundingInterval`` (8 h: 00:00, 08:00, 16:00 UTC), from the rates
  given to :meth:`PaperBroker.set_funding_rates` (ccxt's ``fetch_funding_rate_history``
  shape; see :mod:`memlab.data.funding`): amount = −side·qty·mark·rate (longs pay shorts
  when the rate is positive), settled into the position's collateral (so it moves the
  liquidation price, as isolated margin does on Binance). A funding time without a rate
  is a **gap**: nothing is charged, it is recorded in
  :meth:`PaperBroker.fetch_funding_history` with ``info['missing']`` and counted by
  :meth:`PaperBroker.funding_gaps` (the count and the first missing time), and the first
  gap of a symbol is logged at WARNING — never filled.
- **reduceOnly** orders are refused when they would open, add to or flip the position;
  a position closes with a reduce-only market order for its contracts. When a position
  closes (or is liquidated), its remaining reduce-only orders are cancelled.
- **Minimums.** ``limits.amount.min`` (contracts) and ``limits.cost.min`` (notional) are
  enforced (``BTC/USDT:USDT``: 0.001 and 5 USDT, Bybit's). A spot market gets them only
  if given with ``add_market(..., market=...)``.
- **Shorts on spot** are refused: a spot sell needs the asset.

Trailing stops
--------------
An entry (a spot buy, or a swap order that opens) may carry ``params={"trailingPercent":
p}`` (ccxt's unified param, percent), with or without ``takeProfit`` but never with
``stopLoss`` (both are a stop-loss). A reduce-only swap order or a spot sell carrying
``trailingPercent`` is a standalone trailing stop, as on a venue. The rule is the
backtest engine's (vectorbt's): the reference is the order's ``price`` if given, else the
last close when the order is sent (the signal bar's close); the level is ``(1 − p/100)``
× the highest of the reference and the highs of the bars *after* the entry's fill bar
(the fill bar's own high is not used). At each bar the stop is checked first against
the level from the previous bars, then ratchets with this bar's high. It fills at the
level, or at the open when the bar opens through it, with slippage (a stop-market).
Shorts mirror it (the lowest low, × (1 + p/100)). The level is in the book (``orders.
price`` and ``orders.trail_extreme``) and survives ``kill -9``.

A short perpetual session (bars are 1970-01-01 UTC; 28,800 s is 08:00)::

    >>> import tempfile
    >>> b = PaperBroker(Path(tempfile.mkdtemp()), balances={"USDT": 10_000}, fees=0.0005)
    >>> b.add_market("BTC/USDT:USDT")
    >>> b.set_funding_rates("BTC/USDT:USDT", [{"timestamp": 28_800_000, "fundingRate": 0.0001}])
    1
    >>> b.set_leverage(10, "BTC/USDT:USDT")
    {'symbol': 'BTC/USDT:USDT', 'leverage': 10.0, 'marginMode': 'isolated'}
    >>> b.on_bar("BTC/USDT:USDT", Bar(25_200, 50_000, 50_100, 49_900, 50_000))
    []
    >>> short = b.create_order("BTC/USDT:USDT", "market", "sell", 0.1, params={"trailingPercent": 2})
    >>> [f["price"] for f in b.on_bar("BTC/USDT:USDT", Bar(27_000, 50_000, 50_050, 49_500, 49_600))]
    [50000.0]
    >>> b.on_bar("BTC/USDT:USDT", Bar(28_800, 49_600, 49_700, 49_000, 49_100))  # funding at 08:00
    []
    >>> [p] = b.fetch_positions()
    >>> p["side"], p["contracts"], p["entryPrice"], p["collateral"], round(p["liquidationPrice"], 2)
    ('short', 0.1, 50000.0, 500.496, 54731.3)
    >>> [(f["amount"], f["info"]["rate"]) for f in b.fetch_funding_history("BTC/USDT:USDT")]
    [(0.496, 0.0001)]
    >>> [o["type"] for o in b.fetch_open_orders("BTC/USDT:USDT")], round(b.fetch_open_orders()[0]["price"], 2)
    (['trailing_stop'], 49980.0)
    >>> close = b.create_order("BTC/USDT:USDT", "market", "buy", p["contracts"], params={"reduceOnly": True})
    >>> [round(f["pnl"], 4) for f in b.on_bar("BTC/USDT:USDT", Bar(30_600, 49_200, 49_300, 49_100, 49_250))]
    [77.54]
    >>> b.fetch_positions(), b.fetch_open_orders()
    ([], [])
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ccxt

from memlab.connectors import margin
from memlab.costs import DEFAULT_COSTS
from memlab.data.bars import Bar
from memlab.fills import NO_FILL_MODEL, FillModel, half_spread
from memlab.memory.durable import create_private, ensure_private_dir, relax_sqlite

log = logging.getLogger(__name__)

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
CREATE TABLE IF NOT EXISTS swap_positions (
    symbol TEXT PRIMARY KEY, contracts REAL NOT NULL, entry_price REAL NOT NULL, collateral REAL NOT NULL,
    realized_pnl REAL NOT NULL, funding REAL NOT NULL);
CREATE TABLE IF NOT EXISTS leverage (symbol TEXT PRIMARY KEY, leverage REAL NOT NULL, margin_mode TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS funding_rates (symbol TEXT NOT NULL, time REAL NOT NULL, rate REAL NOT NULL,
    PRIMARY KEY (symbol, time));
CREATE TABLE IF NOT EXISTS funding (
    id INTEGER PRIMARY KEY, symbol TEXT NOT NULL, time REAL NOT NULL, rate REAL, mark REAL NOT NULL,
    contracts REAL NOT NULL, amount REAL NOT NULL, UNIQUE (symbol, time));
"""
#: Columns added to books written before perpetuals and trailing stops (ALTER TABLE on open).
_ADDED_COLUMNS = {
    "markets": [("type", "TEXT NOT NULL DEFAULT 'spot'"), ("spec", "TEXT")],
    "orders": [("reduce_only", "INTEGER NOT NULL DEFAULT 0"), ("trail_pct", "REAL"), ("trail_extreme", "REAL"),
               ("wait", "INTEGER NOT NULL DEFAULT 0")],
    "prices": [("bar_range", "REAL")],
}


#: What open orders hold of an asset. It reads the open orders through ``orders_live`` (a
#: partial index), so its cost does not grow with the book's history of closed orders.
#: Spot markets only: a swap order holds margin, not the notional (see ``_swap_reserved``).
RESERVED_SQL = (
    "SELECT "
    " coalesce(sum(CASE WHEN o.side='buy' AND m.quote=:a THEN coalesce(o.cost - o.filled * coalesce(o.average, 0) - o.fee,"
    "   (o.amount - o.filled) * "
    "   (CASE WHEN o.type='limit' THEN o.price ELSE coalesce(p.close, 0) * (1 + :slip) END) * (1 + :fee)) END), 0),"
    " coalesce(sum(CASE WHEN o.side='sell' AND m.base=:a THEN o.amount - o.filled END), 0) "
    "FROM orders o JOIN markets m ON m.symbol = o.symbol LEFT JOIN prices p ON p.symbol = o.symbol "
    "WHERE o.status = 'open' AND o.parent_id IS NULL AND m.type = 'spot'"
)

#: What open spot market buys by amount hold for the spread (x half ``range_spread``, x (1 + fee)).
SPREAD_RESERVED_SQL = (
    "SELECT coalesce(sum((o.amount - o.filled) * coalesce(p.close, 0) * coalesce(p.bar_range, 0)), 0) "
    "FROM orders o JOIN markets m ON m.symbol = o.symbol LEFT JOIN prices p ON p.symbol = o.symbol "
    "WHERE o.status = 'open' AND o.parent_id IS NULL AND m.type = 'spot' AND o.side = 'buy' AND m.quote = :a "
    "AND o.type <> 'limit' AND o.cost IS NULL"
)

#: Offline market definitions (ccxt's market structure, the keys memlab reads). Bybit's
#: BTCUSDT linear perpetual: contract size 1 BTC, minimum order 0.001 BTC, minimum order
#: value 5 USDT (Bybit's instrument info), funding every 8 h, Bybit's risk-limit tiers.
PAPER_MARKETS: dict[str, dict[str, Any]] = {
    "BTC/USDT:USDT": {"type": "swap", "linear": True, "contractSize": 1.0, "settle": "USDT",
                      "limits": {"amount": {"min": 0.001}, "cost": {"min": 5.0}},
                      "fundingInterval": 8 * 3600, "tiers": list(margin.BYBIT_BTCUSDT_TIERS)},
}
#: The leverage a swap starts at until ``set_leverage`` is called (ccxt venues default to
#: their own; 1x is the one that cannot surprise).
DEFAULT_LEVERAGE = 1.0
_STOPS = ("stop_loss", "take_profit", "trailing_stop")


@dataclass(frozen=True)
class MarketSpec:
    """A listed market as the broker uses it (``PaperBroker.market`` gives ccxt's shape)."""

    symbol: str
    base: str
    quote: str
    type: str = "spot"
    settle: str | None = None
    contract_size: float = 1.0
    min_amount: float | None = None
    min_cost: float | None = None
    funding_interval: float = 8 * 3600.0
    tiers: tuple[dict[str, Any], ...] = field(default=(), repr=False)

    @property
    def swap(self) -> bool:
        return self.type == "swap"


@dataclass(frozen=True)
class _Pos:
    """A swap position: signed contracts, entry price, isolated collateral."""

    contracts: float = 0.0
    entry: float = 0.0
    collateral: float = 0.0
    realized: float = 0.0
    funding: float = 0.0

    @property
    def side(self) -> int:
        return 1 if self.contracts > 0 else -1 if self.contracts < 0 else 0


def _spec_from(symbol: str, base: str, quote: str, type_: str, raw: str | None) -> MarketSpec:
    data = json.loads(raw) if raw else {}
    limits = data.get("limits") or {}
    interval = data.get("fundingInterval") or 8 * 3600
    if isinstance(interval, str):  # ccxt's funding-rate structure says "8h"
        interval = ccxt.Exchange.parse_timeframe(interval)
    return MarketSpec(
        symbol, base, quote, type_, settle=data.get("settle"), contract_size=float(data.get("contractSize") or 1.0),
        min_amount=(limits.get("amount") or {}).get("min"), min_cost=(limits.get("cost") or {}).get("min"),
        funding_interval=float(interval), tiers=tuple(data.get("tiers") or ()),
    )


class PaperBroker:
    """A simulated exchange with ccxt's verbs (spot, and linear perpetuals with isolated
    margin); state survives restarts.

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
                 flush_interval: float = 1.0, fill_model: FillModel = NO_FILL_MODEL) -> None:
        if not 0 <= fees < 1 or not 0 <= slippage < 1:
            raise ccxt.InvalidOrder("paper broker: fees and slippage are fractions in [0, 1)")
        self.fees, self.slippage = float(fees), float(slippage)
        if not isinstance(fill_model, FillModel):
            raise ccxt.BadRequest(f"paper broker: a fill model is a memlab.fills.FillModel, got {fill_model!r}")
        self.fill_model = fill_model
        self.flush_interval = float(flush_interval)
        # Caches (see the module docstring); valid while no other connection commits.
        self._markets: dict[str, MarketSpec] = {}
        self._last: dict[str, float] = {}
        self._open: dict[str, list[tuple[str, str, float | None, float, float | None, int]]] = {}
        self._pos: dict[str, tuple[_Pos, float | None]] = {}
        self._pending: dict[str, tuple[float, float, float]] = {}  # symbol -> (time, close, range)
        self._gaps_said: set[str] = set()
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
        self._migrate()
        if balances and not self._db.execute("SELECT 1 FROM balances LIMIT 1").fetchone():
            with self._tx():
                for asset, amount in balances.items():
                    self._db.execute("INSERT INTO balances VALUES (?, ?)", (asset, float(amount)))

    def set_fill_model(self, model: FillModel) -> None:
        """Fill by ``model`` from now on (:class:`memlab.fills.FillModel`: the bar-range
        spread, latency, volume cap and maker fee; the module docstring says how)."""
        if not isinstance(model, FillModel):
            raise ccxt.BadRequest(f"paper broker: a fill model is a memlab.fills.FillModel, got {model!r}")
        with self._lock:
            self.fill_model = model

    def _slip(self, symbol: str) -> float:
        """What a market or stop-market fill of ``symbol`` pays now: the fixed slippage plus
        half the spread estimated from the last completed bar's range."""
        k = self.fill_model.range_spread
        if not k:
            return self.slippage
        if symbol in self._pending:
            last = self._pending[symbol][2]
        else:
            last = self._one("SELECT bar_range FROM prices WHERE symbol=?", (symbol,))
        return self.slippage + half_spread(k, last)

    def _migrate(self) -> None:
        """Add the columns a book from before perpetuals lacks (its rows keep their meaning)."""
        for table, columns in _ADDED_COLUMNS.items():
            have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            missing = [(n, d) for n, d in columns if n not in have]
            if missing:
                with self._tx():
                    have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
                    for name, decl in missing:
                        if name not in have:  # another process may have just added it
                            self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")

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
                self._pos.clear()
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
                b._db.executemany("INSERT OR REPLACE INTO prices (symbol, time, close, bar_range) VALUES (?, ?, ?, ?)",
                                  [(sym, t, c, r) for sym, (t, c, r) in b._pending.items()])

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

    def _forget(self, symbol: str) -> None:
        """Drop the symbol's cached open orders and position (after a write to them)."""
        self._open.pop(symbol, None)
        self._pos.pop(symbol, None)

    # -- markets and prices ------------------------------------------------------
    def add_market(self, symbol: str, base: str | None = None, quote: str | None = None, *,
                   market: Mapping[str, Any] | None = None) -> None:
        """List ``symbol``: ``"BTC/USDT"`` (spot; base/quote default to its two halves, or
        USD) or ``"BTC/USDT:USDT"`` (a linear perpetual settled in USDT). ``market``: ccxt
        market keys that override the defaults (``contractSize``, ``limits``,
        ``fundingInterval`` in seconds or as ``"4h"``, ``tiers`` in ccxt's leverage-tier
        shape). A symbol already listed keeps its definition."""
        head, _, settle = symbol.partition(":")
        if base is None or quote is None:
            b, _, q = head.partition("/")
            base, quote = base or b, quote or (q or "USD")
        data: dict[str, Any] = dict(PAPER_MARKETS.get(symbol, {}))
        if settle:
            data.setdefault("type", "swap")
            data.setdefault("settle", settle)
            data.setdefault("linear", True)
            data.setdefault("contractSize", 1.0)
            data.setdefault("tiers", list(margin.ILLUSTRATIVE_TIERS))
        data.update(dict(market or {}))
        type_ = str(data.get("type") or "spot")
        if type_ not in ("spot", "swap"):
            raise ccxt.NotSupported(f"paper broker: {symbol} is a {type_} market; spot and swap only")
        if type_ == "swap":
            if not settle or data.get("settle") != quote or data.get("linear") is False:
                raise ccxt.NotSupported(f"paper broker: {symbol}: only linear perpetuals settled in the quote "
                                        f"currency are simulated (like {base}/{quote}:{quote})")
            if not data.get("tiers"):
                raise ccxt.BadRequest(f"paper broker: {symbol} needs leverage tiers")
        spec = json.dumps(data) if (data or market) else None
        with self._tx():
            self._db.execute("INSERT OR IGNORE INTO markets (symbol, base, quote, type, spec) VALUES (?, ?, ?, ?, ?)",
                             (symbol, base, quote, type_, spec))

    def _spec(self, symbol: str) -> MarketSpec:
        cached = self._markets.get(symbol)
        if cached is not None:
            return cached
        row = self._db.execute("SELECT base, quote, type, spec FROM markets WHERE symbol=?", (symbol,)).fetchone()
        if row is None:
            known = self.markets()
            near = difflib.get_close_matches(str(symbol), known, n=3, cutoff=0.0)
            raise ccxt.BadSymbol(f"paper broker: unknown symbol {symbol!r}; nearest known: "
                                 f"{', '.join(near) or 'none (no market is listed)'}")
        spec = _spec_from(symbol, row[0], row[1], row[2] or "spot", row[3])
        self._markets[symbol] = spec
        return spec

    def _market(self, symbol: str) -> tuple[str, str]:
        spec = self._spec(symbol)
        return spec.base, spec.quote

    def market(self, symbol: str) -> dict[str, Any]:
        """ccxt's market structure for ``symbol`` (the keys memlab uses)."""
        with self._lock:
            s = self._spec(symbol)
            return {"id": symbol.replace("/", "").split(":")[0], "symbol": symbol, "base": s.base, "quote": s.quote,
                    "settle": s.settle, "type": s.type, "spot": not s.swap, "swap": s.swap, "future": False,
                    "contract": s.swap, "linear": True if s.swap else None, "inverse": False if s.swap else None,
                    "contractSize": s.contract_size if s.swap else None, "taker": self.fees,
                    "maker": self.fill_model.maker(self.fees),
                    "limits": {"amount": {"min": s.min_amount}, "cost": {"min": s.min_cost},
                               "leverage": {"min": 1.0 if s.swap else None,
                                            "max": margin.max_leverage(s.tiers) if s.swap else None}},
                    "fundingInterval": s.funding_interval if s.swap else None, "info": {}}

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

    def _open_orders(self, symbol: str) -> list[tuple[str, str, float | None, float, float | None, int]]:
        """(type, side, price, created_at, trail_extreme, wait) of the symbol's open orders, cached."""
        cached = self._open.get(symbol)
        if cached is None:
            cached = [(t, s, p, c, x, w) for t, s, p, c, x, w in self._db.execute(
                "SELECT type, side, price, created_at, trail_extreme, wait FROM orders WHERE symbol=? AND status='open'",
                (symbol,))]
            self._open[symbol] = cached
        return cached

    # -- leverage, tiers, funding rates ------------------------------------------
    def _swap(self, symbol: str, what: str) -> MarketSpec:
        spec = self._spec(symbol)
        if not spec.swap:
            raise ccxt.BadRequest(f"paper broker: {what}: {symbol} is a spot market; trade {spec.base}/{spec.quote}:"
                                  f"{spec.quote}")
        return spec

    def _leverage(self, symbol: str) -> float:
        return float(self._one("SELECT leverage FROM leverage WHERE symbol=?", (symbol,)) or DEFAULT_LEVERAGE)

    def set_leverage(self, leverage: float, symbol: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Set ``symbol``'s leverage (ccxt's signature). Refused above the tiers' maximum
        (the message names it), below 1, or as a change while a position is open."""
        with self._lock:
            self._sync(force=True)
            spec = self._swap(symbol, "set_leverage")
            top = margin.max_leverage(spec.tiers)
            if isinstance(leverage, bool) or not isinstance(leverage, (int, float)) or not 1 <= float(leverage) <= top:
                raise ccxt.BadRequest(f"paper broker: leverage {leverage!r} for {symbol} is outside 1..{top:g}; "
                                      f"the maximum leverage is {top:g}x")
            pos = self._position(symbol)
            if pos.contracts and float(leverage) != self._leverage(symbol):
                raise ccxt.BadRequest(f"paper broker: {symbol} has an open position; close it before changing "
                                      f"its leverage from {self._leverage(symbol):g}x")
            with self._tx():
                self._db.execute("INSERT OR REPLACE INTO leverage VALUES (?, ?, 'isolated')", (symbol, float(leverage)))
            self._forget(symbol)
            return {"symbol": symbol, "leverage": float(leverage), "marginMode": "isolated"}

    def fetch_leverage(self, symbol: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """ccxt's leverage structure for ``symbol``."""
        with self._lock:
            self._swap(symbol, "fetch_leverage")
            lev = self._leverage(symbol)
            return {"symbol": symbol, "marginMode": "isolated", "longLeverage": lev, "shortLeverage": lev, "info": {}}

    def set_margin_mode(self, margin_mode: str, symbol: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Isolated margin only: ``"isolated"`` is accepted, ``"cross"`` is not simulated."""
        with self._lock:
            self._swap(symbol, "set_margin_mode")
            if str(margin_mode).lower() != "isolated":
                raise ccxt.NotSupported(f"paper broker: {margin_mode!r} margin is not simulated; isolated only")
            return {"symbol": symbol, "marginMode": "isolated", "info": {}}

    def fetch_market_leverage_tiers(self, symbol: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The swap's leverage tiers, in ccxt's structure."""
        with self._lock:
            return [dict(t, symbol=symbol) for t in self._swap(symbol, "fetch_market_leverage_tiers").tiers]

    def set_funding_rates(self, symbol: str, rates: Iterable[Mapping[str, Any] | tuple[float, float]]) -> int:
        """Give the swap its funding-rate history: ccxt's ``fetch_funding_rate_history``
        entries (``timestamp`` in ms, ``fundingRate``) or ``(epoch seconds, rate)`` pairs.
        Times are rounded to the second (venues stamp a few ms late). Returns how many
        were stored; a rate given again replaces the old one. Gaps stay gaps (see the
        module docstring)."""
        rows = []
        for r in rates:
            if isinstance(r, Mapping):
                t, rate = float(r["timestamp"]) / 1000.0, float(r["fundingRate"])
            else:
                t, rate = float(r[0]), float(r[1])
            if not math.isfinite(rate):
                raise ccxt.BadRequest(f"paper broker: funding rate at {t} is not a number: {rate}")
            rows.append((symbol, float(round(t)), rate))
        with self._lock:
            self._swap(symbol, "set_funding_rates")
            with self._tx():
                self._db.executemany("INSERT OR REPLACE INTO funding_rates VALUES (?, ?, ?)", rows)
        return len(rows)

    def fetch_funding_rate_history(self, symbol: str, since: int | None = None, limit: int | None = None,
                                   params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The stored funding rates (ccxt's structure), oldest first."""
        with self._lock:
            self._swap(symbol, "fetch_funding_rate_history")
            rows = self._db.execute("SELECT time, rate FROM funding_rates WHERE symbol=? AND time*1000 >= ? ORDER BY time"
                                    + (" LIMIT ?" if limit else ""),
                                    (symbol, since or 0, *( (int(limit),) if limit else ()))).fetchall()
        return [{"symbol": symbol, "timestamp": int(t * 1000), "fundingRate": r, "info": {}} for t, r in rows]

    def fetch_funding_history(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """What funding each position paid (negative) or received (positive), ccxt's
        funding-history structure; ``info``: ``rate``, ``mark``, ``contracts``, and
        ``missing`` (no rate for that time: nothing was charged)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, symbol, time, rate, mark, contracts, amount FROM funding"
                + (" WHERE symbol=?" if symbol else "") + " ORDER BY time, id", (symbol,) if symbol else ()).fetchall()
        out = []
        for fid, sym, t, rate, mark, contracts, amount in rows:
            settle = self._spec(sym).settle
            out.append({"id": str(fid), "symbol": sym, "code": settle, "timestamp": int(t * 1000), "amount": amount,
                        "info": {"rate": rate, "mark": mark, "contracts": contracts, "missing": rate is None}})
        return out

    def funding_gaps(self, symbol: str) -> tuple[int, int | None]:
        """``(count, first_missing_ms)`` of the funding times a position of ``symbol`` went
        through without a rate (nothing was charged for them; see the module docstring)."""
        with self._lock:
            count, first = self._db.execute("SELECT count(*), min(time) FROM funding WHERE symbol=? AND rate IS NULL",
                                            (symbol,)).fetchone()
        return int(count), None if first is None else int(first * 1000)

    # -- balances and positions --------------------------------------------------
    def _total(self, asset: str) -> float:
        return self._one("SELECT total FROM balances WHERE asset=?", (asset,)) or 0.0

    def _reserved(self, asset: str) -> float:
        """What open orders hold: quote for buys (their cost, or amount at the limit or
        last price with fees), base for sells, margin for swap orders. One SQL aggregate
        for spot, however many orders."""
        fee = max(self.fees, self.fill_model.maker(self.fees))
        row = self._db.execute(RESERVED_SQL, {"a": asset, "slip": self.slippage, "fee": fee}).fetchone()
        spread = 0.0
        if self.fill_model.range_spread:  # market buys by amount also hold the spread of the last bar's range
            spread = float(self._one(SPREAD_RESERVED_SQL, {"a": asset}) or 0.0) * self.fill_model.range_spread / 2 * (1 + fee)
        return float(row[0]) + float(row[1]) + spread + self._swap_reserved(asset)

    def _swap_reserved(self, asset: str) -> float:
        """Margin and fees held by open swap orders that would open or add to a position
        (their reducing part holds nothing), settled in ``asset``."""
        out = 0.0
        rows = self._db.execute(
            "SELECT o.symbol, o.side, o.amount - o.filled, o.type, o.price FROM orders o JOIN markets m ON m.symbol = o.symbol "
            "WHERE o.status = 'open' AND o.parent_id IS NULL AND m.type = 'swap' AND m.quote = ? AND o.reduce_only = 0",
            (asset,)).fetchall()
        for symbol, side, amount, type_, price in rows:
            spec, pos = self._spec(symbol), self._position(symbol)
            opening = float(amount or 0.0)
            if pos.side and pos.side != (1 if side == "buy" else -1):
                opening = max(opening - abs(pos.contracts), 0.0)
            ref = float(price) if type_ == "limit" and price else (self.last_price(symbol) or 0.0) * (1 + self._slip(symbol))
            out += opening * spec.contract_size * ref * (1 / self._leverage(symbol) + self.fees)
        return out

    def _collateral(self, asset: str) -> float:
        return float(self._one("SELECT coalesce(sum(p.collateral), 0) FROM swap_positions p JOIN markets m ON "
                               "m.symbol = p.symbol WHERE m.quote = ? AND p.contracts <> 0", (asset,)) or 0.0)

    def fetch_balance(self) -> dict[str, dict[str, float]]:
        """ccxt's balance structure: ``free``, ``used`` and ``total`` per asset. Isolated
        collateral of swap positions is in ``total`` and ``used`` (a venue's wallet balance:
        unrealised P&L is not)."""
        with self._lock:
            self.flush()
            out: dict[str, dict[str, float]] = {"free": {}, "used": {}, "total": {}}
            for asset, total in self._db.execute("SELECT asset, total FROM balances ORDER BY asset").fetchall():
                locked = self._collateral(asset)
                used = self._reserved(asset) + locked
                out["total"][asset], out["used"][asset], out["free"][asset] = total + locked, used, total + locked - used
            return out

    def _position(self, symbol: str) -> _Pos:
        return self._position_liq(symbol)[0]

    def _position_liq(self, symbol: str) -> tuple[_Pos, float | None]:
        """The swap position and its liquidation price, cached until the next write."""
        cached = self._pos.get(symbol)
        if cached is None:
            row = self._db.execute("SELECT contracts, entry_price, collateral, realized_pnl, funding FROM swap_positions "
                                   "WHERE symbol=?", (symbol,)).fetchone()
            pos = _Pos(*row) if row else _Pos()
            liq = None
            if pos.contracts:
                spec = self._spec(symbol)
                liq = margin.liquidation_price(pos.side, abs(pos.contracts) * spec.contract_size, pos.entry,
                                               pos.collateral, spec.tiers)
            cached = (pos, liq)
            self._pos[symbol] = cached
        return cached

    def _swap_position(self, symbol: str, pos: _Pos, liq: float | None) -> dict[str, Any]:
        spec = self._spec(symbol)
        qty = abs(pos.contracts) * spec.contract_size
        mark = self.last_price(symbol) or pos.entry
        notional = qty * mark
        lev = self._leverage(symbol)
        maint = margin.maintenance_margin(spec.tiers, notional)
        upnl = margin.unrealized_pnl(pos.side, qty, pos.entry, mark)
        i = margin.tier_index(spec.tiers, notional)
        return {"symbol": symbol, "side": "long" if pos.side > 0 else "short", "contracts": abs(pos.contracts),
                "contractSize": spec.contract_size, "entryPrice": pos.entry, "markPrice": mark, "notional": notional,
                "leverage": lev, "marginMode": "isolated", "collateral": pos.collateral,
                "initialMargin": qty * pos.entry / lev, "initialMarginPercentage": 1 / lev,
                "maintenanceMargin": maint,
                "maintenanceMarginPercentage": float(spec.tiers[i]["maintenanceMarginRate"]),
                "marginRatio": maint / (pos.collateral + upnl) if pos.collateral + upnl > 0 else None,
                "liquidationPrice": liq, "unrealizedPnl": upnl, "realizedPnl": pos.realized,
                "timestamp": int(self._now(symbol) * 1000), "hedged": False,
                "info": {"fundingPaid": -pos.funding}}

    def fetch_positions(self, symbols: list[str] | None = None) -> list[dict[str, Any]]:
        """Open positions, ccxt's structure: spot holdings as longs (amount, entry price
        with fees, mark, unrealised and realised P&L), then swap positions (long or short,
        with leverage, collateral, margins, liquidation price; ``info['fundingPaid']``)."""
        with self._lock:
            self._sync()
            rows = self._db.execute("SELECT symbol, amount, avg_price, realized_pnl FROM positions WHERE amount > 1e-12").fetchall()
            out = []
            for symbol, amount, avg, realized in rows:
                mark = self.last_price(symbol) or avg
                out.append({"symbol": symbol, "side": "long", "contracts": amount, "entryPrice": avg,
                            "markPrice": mark, "unrealizedPnl": (mark - avg) * amount, "realizedPnl": realized})
            for (symbol,) in self._db.execute("SELECT symbol FROM swap_positions WHERE contracts <> 0 ORDER BY symbol").fetchall():
                pos, liq = self._position_liq(symbol)
                if pos.contracts:
                    out.append(self._swap_position(symbol, pos, liq))
            return [p for p in out if symbols is None or p["symbol"] in symbols]

    def equity(self, quote: str) -> float:
        """Cash in ``quote`` plus open positions marked at their last close (a swap
        position counts its collateral plus unrealised P&L)."""
        with self._lock:
            value = self._total(quote)
            for p in self.fetch_positions():
                if "collateral" in p:
                    if self._spec(p["symbol"]).quote == quote:
                        value += p["collateral"] + p["unrealizedPnl"]
                else:
                    value += p["contracts"] * p["markPrice"]
            return value

    # -- orders ------------------------------------------------------------------
    def create_order(self, symbol: str, type: str, side: str, amount: float | None, price: float | None = None,
                     params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Place an order (ccxt's signature). ``params``: ``clientOrderId`` (a repeat returns
        the existing order), ``cost`` (spot market buy spending this much quote),
        ``stopLoss`` / ``takeProfit`` (prices of children attached to an entry),
        ``trailingPercent`` (a trailing stop, see the module docstring), ``reduceOnly``
        (swap). For a market order, ``price`` is the reference of its trailing stop."""
        params = dict(params or {})
        client_id = str(params.get("clientOrderId") or uuid.uuid4().hex)
        with self._lock:
            self._sync(force=True)
            existing = self._one("SELECT id FROM orders WHERE client_id=?", (client_id,))
            if existing is not None:
                return self.fetch_order(existing)
            spec = self._spec(symbol)
            base, quote = spec.base, spec.quote
            type_, side_ = str(type).lower(), str(side).lower()
            if type_ not in ("market", "limit") or side_ not in ("buy", "sell"):
                raise ccxt.InvalidOrder(f"paper broker: order type must be market/limit and side buy/sell, got {type}/{side}")
            cost = params.get("cost")
            if cost is not None:
                if spec.swap:
                    raise ccxt.InvalidOrder(f"paper broker: 'cost' is for spot market buys; {symbol} takes an amount "
                                            "in contracts")
                if type_ != "market" or side_ != "buy" or not float(cost) > 0:
                    raise ccxt.InvalidOrder("paper broker: 'cost' is for market buys, and must be positive")
                amount = None
            elif amount is None or not float(amount) > 0:
                raise ccxt.InvalidOrder(f"paper broker: quantity must be positive, got {amount}")
            if type_ == "limit" and (price is None or not float(price) > 0):
                raise ccxt.InvalidOrder("paper broker: a limit order needs a positive price")
            sl, tp, trail = params.get("stopLoss"), params.get("takeProfit"), params.get("trailingPercent")
            reduce_only = bool(params.get("reduceOnly"))
            if trail is not None:
                if isinstance(trail, bool) or not isinstance(trail, (int, float)) or not 0 < float(trail) < 100:
                    raise ccxt.InvalidOrder(f"paper broker: trailingPercent is a percentage in (0, 100), got {trail!r}")
                if sl is not None:
                    raise ccxt.InvalidOrder("paper broker: trailingPercent and stopLoss are both a stop-loss: give one")
            ref = float(price) if price is not None else (self.last_price(symbol) or 0.0)
            if trail is not None and not ref > 0:
                raise ccxt.InvalidOrder("paper broker: a trailing stop needs a reference price: pass price, or send "
                                        "the order after a bar")
            if spec.swap:
                standalone = trail is not None and reduce_only
                self._check_swap_order(spec, side_, float(amount), type_, price, reduce_only,  # type: ignore[arg-type]
                                       has_children=sl is not None or tp is not None or (trail is not None and not standalone))
            else:
                if reduce_only:
                    raise ccxt.InvalidOrder(f"paper broker: reduceOnly is for swap markets; {symbol} is spot")
                standalone = trail is not None and side_ == "sell"
                if (sl is not None or tp is not None or (trail is not None and not standalone)) and side_ != "buy":
                    raise ccxt.InvalidOrder("paper broker: stopLoss/takeProfit attach to buys")
                self._check_minimums(spec, amount, cost, price if type_ == "limit" else None)
            now = self._now(symbol)
            with self._tx():  # marks pending from quiet bars are written first, so reservations see them
                if spec.swap:
                    pass  # margin was checked by _check_swap_order
                elif side_ == "buy":
                    ref_buy = float(price) if type_ == "limit" else (self.last_price(symbol) or 0.0) * (1 + self._slip(symbol))
                    need = float(cost) if cost is not None else float(amount) * ref_buy * (1 + self.fees)  # type: ignore[arg-type]
                    free = self._total(quote) - self._reserved(quote)
                    if need > free + 1e-9:
                        raise ccxt.InsufficientFunds(f"paper broker: buying needs {need:.2f} {quote}, {free:.2f} free")
                else:
                    free = self._total(base) - self._reserved(base)
                    if float(amount) > free + 1e-12:  # type: ignore[arg-type]
                        raise ccxt.InsufficientFunds(
                            f"paper broker: selling {amount} {base}, {free} free: {symbol} is a spot market: no shorts; "
                            f"trade {base}/{quote}:{quote}")
                if standalone:
                    # A trailing stop on its own: it is the stop, active from the next bar.
                    sign = -1 if side_ == "sell" else 1  # a sell protects a long (+1 position)
                    level = margin.trailing_level(-sign, ref, float(trail))  # type: ignore[arg-type]
                    cur = self._db.execute(
                        "INSERT INTO orders (client_id, symbol, type, side, amount, price, status, created_at, updated_at, "
                        "reduce_only, trail_pct, trail_extreme, wait) VALUES (?, ?, 'trailing_stop', ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?)",
                        (client_id, symbol, side_, float(amount), level, now, now, int(spec.swap),  # type: ignore[arg-type]
                         float(trail), ref, self.fill_model.latency))  # type: ignore[arg-type]
                else:
                    cur = self._db.execute(
                        "INSERT INTO orders (client_id, symbol, type, side, amount, cost, price, status, created_at, updated_at, "
                        "stop_loss, take_profit, reduce_only, trail_pct, trail_extreme, wait) "
                        "VALUES (?,?,?,?,?,?,?, 'open', ?, ?, ?, ?, ?, ?, ?, ?)",
                        (client_id, symbol, type_, side_, None if amount is None else float(amount),
                         None if cost is None else float(cost), None if price is None else float(price), now, now,
                         None if sl is None else float(sl), None if tp is None else float(tp), int(reduce_only),
                         None if trail is None else float(trail), None if trail is None else ref,
                         self.fill_model.latency),
                    )
            self._forget(symbol)
            return self.fetch_order(int(cur.lastrowid))  # type: ignore[arg-type]

    def _check_minimums(self, spec: MarketSpec, amount: float | None, cost: float | None, price: float | None,
                        *, reduce_only: bool = False) -> None:
        """Refuse an order below the market's minimum amount or notional, naming it. A
        reduce-only order is held to the minimum amount only (as Binance and Bybit
        futures do: a position worth less than the minimum notional can still be closed)."""
        unit = "contracts" if spec.swap else spec.base
        if spec.min_amount is not None and amount is not None and float(amount) < float(spec.min_amount) - 1e-12:
            raise ccxt.InvalidOrder(f"paper broker: {spec.symbol} order of {amount:g} {unit} is below the minimum "
                                    f"amount {spec.min_amount:g} {unit}")
        if spec.min_cost is not None and not reduce_only:
            ref = price or self.last_price(spec.symbol)
            notional = float(cost) if cost is not None else (float(amount) * spec.contract_size * ref  # type: ignore[arg-type]
                                                             if ref else None)
            if notional is not None and notional < float(spec.min_cost) - 1e-9:
                raise ccxt.InvalidOrder(f"paper broker: {spec.symbol} order of {notional:.2f} {spec.quote} notional is "
                                        f"below the minimum cost {spec.min_cost:g} {spec.quote}")

    def _check_swap_order(self, spec: MarketSpec, side: str, amount: float, type_: str, price: float | None,
                          reduce_only: bool, *, has_children: bool) -> None:
        """A swap order's refusals: minimums, reduce-only that would open/add/flip, the
        risk limit of the leverage, and the margin it needs."""
        self._check_minimums(spec, amount, None, price if type_ == "limit" else None, reduce_only=reduce_only)
        pos = self._position(spec.symbol)
        sign = 1 if side == "buy" else -1
        if reduce_only:
            if has_children:
                raise ccxt.InvalidOrder("paper broker: stopLoss/takeProfit/trailingPercent attach to entries, not to "
                                        "reduce-only orders")
            if not pos.contracts:
                raise ccxt.InvalidOrder(f"paper broker: reduce-only {side} on {spec.symbol} would open a position "
                                        "(there is none)")
            if pos.side == sign:
                raise ccxt.InvalidOrder(f"paper broker: reduce-only {side} on {spec.symbol} would increase the "
                                        f"{'long' if pos.side > 0 else 'short'} position")
            if amount > abs(pos.contracts) + 1e-12:
                raise ccxt.InvalidOrder(f"paper broker: reduce-only {side} of {amount:g} contracts on {spec.symbol} "
                                        f"would flip the position of {abs(pos.contracts):g} contracts")
            return
        opening = amount if pos.side != -sign else max(amount - abs(pos.contracts), 0.0)
        if opening <= 0:
            return
        lev = self._leverage(spec.symbol)
        # A market order is checked at the price it would fill at if the next bar opened at
        # the last close: slippage raises a buy's price and lowers a sell's.
        ref = float(price) if type_ == "limit" else (self.last_price(spec.symbol) or 0.0) * (1 + sign * self._slip(spec.symbol))
        size = (abs(pos.contracts) if pos.side == sign else 0.0) + opening
        limit = margin.max_notional(spec.tiers, lev)
        if size * spec.contract_size * ref > limit + 1e-9:
            raise ccxt.InvalidOrder(f"paper broker: a {spec.symbol} position of {size * spec.contract_size * ref:.2f} "
                                    f"{spec.quote} exceeds the risk limit {limit:g} {spec.quote} of {lev:g}x leverage")
        need = opening * spec.contract_size * ref * (1 / lev + self.fees)
        free = self._total(spec.quote) - self._reserved(spec.quote)
        if pos.side == -sign:
            # A flip (one-way mode: one order) first closes the position, which releases its
            # margin and its P&L less the closing fee, as the fill does (_fill_swap).
            q = abs(pos.contracts) * spec.contract_size
            free += pos.collateral + margin.unrealized_pnl(pos.side, q, pos.entry, ref) - q * ref * self.fees
        if need > free + 1e-9:
            raise ccxt.InsufficientFunds(f"paper broker: {side} {amount:g} {spec.symbol} needs {need:.2f} {spec.quote} "
                                         f"of margin and fees at {lev:g}x, {free:.2f} free")

    def cancel_order(self, id: int | str, symbol: str | None = None) -> dict[str, Any]:
        with self._lock:
            order = self.fetch_order(id)
            if order["status"] != "open":
                raise ccxt.InvalidOrder(f"paper broker: order {id} is {order['status']}, not open")
            with self._tx():
                self._db.execute("UPDATE orders SET status='canceled' WHERE id=?", (int(order["id"]),))
            self._forget(order["symbol"])
            return self.fetch_order(id)

    def fetch_order(self, id: int | str, symbol: str | None = None) -> dict[str, Any]:
        row = self._db.execute(
            "SELECT id, client_id, symbol, type, side, amount, cost, price, status, filled, average, fee, created_at, "
            "parent_id, stop_loss, take_profit, reason, reduce_only, trail_pct FROM orders WHERE id=? OR client_id=?",
            (str(id), str(id)),
        ).fetchone()
        if row is None:
            raise ccxt.OrderNotFound(f"paper broker: no order {id}")
        (oid, cid, sym, type_, side, amount, cost, price, status, filled, average, fee, created, parent, sl, tp, reason,
         reduce_only, trail) = row
        out = {"id": str(oid), "clientOrderId": cid, "symbol": sym, "type": type_, "side": side, "amount": amount,
               "cost": cost, "price": price, "status": status, "filled": filled, "average": average,
               "remaining": None if amount is None else amount - filled, "fee": {"cost": fee},
               "timestamp": int(created * 1000), "parentId": parent and str(parent), "stopLoss": sl,
               "takeProfit": tp, "info": {"reason": reason}}
        if reduce_only:
            out["reduceOnly"] = True
        if trail is not None:
            out["trailingPercent"] = trail
            if type_ == "trailing_stop":
                out["triggerPrice"] = out["stopPrice"] = price
        return out

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
    def _quiet(self, symbol: str, spec: MarketSpec, bar: Bar, last: float | None) -> bool:
        """Whether ``bar`` changes nothing but the mark: no fill, no trailing ratchet, and
        on a swap no funding due and no liquidation."""
        for type_, side, price, created, extreme, wait in self._open_orders(symbol):
            if created >= bar.time:
                continue
            if wait or self._trigger(type_, side, price, bar, self.slippage) is not None:
                return False
            if type_ == "trailing_stop" and extreme is not None and (
                    (side == "sell" and bar.high > extreme) or (side == "buy" and bar.low < extreme)):
                return False
        if spec.swap:
            pos, liq = self._position_liq(symbol)
            if pos.contracts:
                if last is not None and (last // spec.funding_interval + 1) * spec.funding_interval <= bar.time:
                    return False
                if liq is not None and ((pos.side > 0 and bar.low <= liq) or (pos.side < 0 and bar.high >= liq)):
                    return False
        return True

    def on_bar(self, symbol: str, bar: Bar, *, volume: float | None = None) -> list[dict[str, Any]]:
        """Fill what this bar fills, settle funding, liquidate, ratchet trailing stops,
        mark prices; returns the new fills. A bar at or before the last one processed for
        ``symbol`` changes nothing (safe replays). ``volume``: the bar's traded volume
        (base units; else ``bar.volume`` if the bar has one), which the fill model's
        ``volume_cap`` needs."""
        with self._lock:
            self._sync()
            spec = self._spec(symbol)
            last = self._last[symbol] if symbol in self._last else self.last_bar_time(symbol)
            if last is not None and bar.time <= last:
                return []
            self._last[symbol] = bar.time
            if self._quiet(symbol, spec, bar, last):
                # Fills nothing: only the mark moves; written with the next transaction.
                self._pending[symbol] = (bar.time, bar.close, (bar.high - bar.low) / bar.close)
                if time.monotonic() - self._flushed >= self.flush_interval:
                    self.flush()
                return []
            new: list[dict[str, Any]] = []
            mark_before = self.last_price(symbol)
            slip = self._slip(symbol)  # from the bars before this one (no look-ahead)
            self._pending.pop(symbol, None)
            try:
                with self._tx():
                    if spec.swap and last is not None and mark_before is not None:
                        self._settle_funding(spec, last, bar.time, mark_before)
                    if spec.swap:
                        new += self._liquidate(spec, bar, at_open=True)
                    rows = self._db.execute(
                        "SELECT id, type, side, amount, cost, price, stop_loss, take_profit, parent_id, reduce_only, "
                        "trail_pct, trail_extreme, wait FROM orders WHERE symbol=? AND status='open' AND created_at < ? "
                        # Children first, and a stop before a take-profit: a bar that touches
                        # both fills the stop (the backtest's rule too).
                        "ORDER BY CASE type WHEN 'stop_loss' THEN 0 WHEN 'trailing_stop' THEN 0 "
                        "WHEN 'take_profit' THEN 1 ELSE 2 END, id",
                        (symbol, bar.time),
                    ).fetchall()
                    doomed = self._doomed(spec, bar) if spec.swap else None
                    for oid, type_, side, amount, cost, price, sl, tp, parent, reduce_only, pct, extreme, wait in rows:
                        if wait:  # latency: on its way to the venue for this many more bars
                            self._db.execute("UPDATE orders SET wait = wait - 1 WHERE id=?", (oid,))
                            continue
                        if self._one("SELECT status FROM orders WHERE id=?", (oid,)) != "open":
                            continue  # cancelled by its OCO sibling (or a close) earlier in this bar
                        fill_price = self._trigger(type_, side, price, bar, slip)
                        if fill_price is None:
                            continue
                        if doomed is not None and type_ in _STOPS and (
                                type_ == "take_profit" or (side == "sell" and price < doomed)
                                or (side == "buy" and price > doomed)):
                            continue  # the liquidation price comes first on the way to this level
                        trail = (pct, extreme) if pct is not None and type_ in ("market", "limit") else None
                        rate = self.fill_model.fee_for(type_, self.fees)  # maker or taker
                        cap = self._cap(spec, type_, bar, volume)
                        if cap is not None and not cap > 0:
                            continue  # a bar without volume fills nothing of it
                        if spec.swap:
                            fill = self._fill_swap(oid, spec, side, amount, fill_price, bar, sl, tp, trail, parent,
                                                   bool(reduce_only) or type_ in _STOPS, rate, cap)
                        else:
                            fill = self._fill(oid, symbol, spec.base, spec.quote, side, amount, cost, fill_price, bar,
                                              sl, tp, parent, trail, rate, cap)
                        if fill is not None:
                            new.append(fill)
                    if spec.swap:
                        new += self._liquidate(spec, bar, at_open=False)
                    # Trailing stops that saw this bar and are still open ratchet with it
                    # (after the check: vectorbt's order); stops born in this bar wait.
                    for oid, type_, side, *_rest, pct, extreme, _wait in rows:
                        if type_ == "trailing_stop" and self._one("SELECT status FROM orders WHERE id=?", (oid,)) == "open":
                            self._ratchet(oid, side, pct, extreme, bar)
                    self._db.execute("INSERT OR REPLACE INTO prices (symbol, time, close, bar_range) VALUES (?, ?, ?, ?)",
                                     (symbol, bar.time, bar.close, (bar.high - bar.low) / bar.close))
            except BaseException:
                self._last.pop(symbol, None)
                raise
            finally:
                self._forget(symbol)
            return new

    def _cap(self, spec: MarketSpec, type_: str, bar: Bar, volume: float | None) -> float | None:
        """The most an order of ``type_`` may fill in ``bar`` under the volume cap (contracts
        on a swap), None when uncapped: protective orders and liquidations fill whole."""
        share = self.fill_model.volume_cap
        if share is None or type_ not in ("market", "limit"):
            return None
        if volume is None:
            volume = getattr(bar, "volume", None)
        if volume is None or not math.isfinite(float(volume)) or float(volume) < 0:
            raise ccxt.BadRequest(f"paper broker: volume_cap={share:g} needs each bar's volume; pass "
                                  f"on_bar({spec.symbol!r}, bar, volume=...), got {volume!r}")
        return share * float(volume) / (spec.contract_size if spec.swap else 1.0)

    def _so_far(self, oid: int) -> tuple[float, float, float]:
        """(filled, average price, fees paid) of an order, partially filled or not."""
        row = self._db.execute("SELECT filled, coalesce(average, 0), fee FROM orders WHERE id=?", (oid,)).fetchone()
        return float(row[0]), float(row[1]), float(row[2])

    def _ratchet(self, oid: int, side: str, pct: float, extreme: float, bar: Bar) -> None:
        if side == "sell" and bar.high > extreme:  # protects a long: the highest high
            self._db.execute("UPDATE orders SET trail_extreme=?, price=?, updated_at=? WHERE id=?",
                             (bar.high, margin.trailing_level(1, bar.high, pct), bar.time, oid))
        elif side == "buy" and bar.low < extreme:  # protects a short: the lowest low
            self._db.execute("UPDATE orders SET trail_extreme=?, price=?, updated_at=? WHERE id=?",
                             (bar.low, margin.trailing_level(-1, bar.low, pct), bar.time, oid))

    def _trigger(self, type_: str, side: str, price: float | None, bar: Bar, slip: float) -> float | None:
        """The price ``bar`` fills an order at (None: it does not), ``slip`` the slippage of
        market and stop-market fills in this bar."""
        if type_ == "market":
            return bar.open * (1 + slip if side == "buy" else 1 - slip)
        if type_ == "limit":
            assert price is not None
            if side == "buy" and bar.low <= price:
                return min(bar.open, price)
            if side == "sell" and bar.high >= price:
                return max(bar.open, price)
            return None
        if price is None:
            return None
        if type_ in ("stop_loss", "trailing_stop"):  # stop-market: a gap through the stop fills at the open
            if side == "sell" and bar.low <= price:
                return min(bar.open, price) * (1 - slip)
            if side == "buy" and bar.high >= price:
                return max(bar.open, price) * (1 + slip)
        if type_ == "take_profit":
            if side == "sell" and bar.high >= price:
                return max(bar.open, price)
            if side == "buy" and bar.low <= price:
                return min(bar.open, price)
        return None

    def _children(self, oid: int, symbol: str, side: str, qty: float, bar: Bar, sl: float | None, tp: float | None,
                  trail: tuple[float, float] | None, reduce_only: bool, more: bool = False) -> None:
        """The stop-loss / take-profit / trailing-stop children of a filled entry (the
        trailing stop's level from the entry's reference, not from this bar). ``more``: a
        later part of a partially filled entry, which its children grow by."""
        if more and self._one("SELECT 1 FROM orders WHERE parent_id=? LIMIT 1", (oid,)) is not None:
            self._db.execute("UPDATE orders SET amount = amount + ? WHERE parent_id=? AND status='open'", (qty, oid))
            return
        sign = 1 if side == "sell" else -1  # a sell child protects a long
        children: list[tuple[str, float, float | None, float | None]] = [
            (t, p, None, None) for t, p in (("stop_loss", sl), ("take_profit", tp)) if p is not None]  # type: ignore[misc]
        if trail is not None:
            pct, ref = trail
            children.append(("trailing_stop", margin.trailing_level(sign, ref, pct), pct, ref))
        for child_type, child_price, pct, extreme in children:
            self._db.execute(
                "INSERT INTO orders (client_id, symbol, type, side, amount, price, status, created_at, updated_at, parent_id, "
                "reduce_only, trail_pct, trail_extreme) VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?)",
                (f"{oid}-{child_type}", symbol, child_type, side, qty, child_price, bar.time - 1e-6, bar.time, oid,
                 int(reduce_only), pct, extreme),
            )

    def _record_fill(self, oid: int, symbol: str, side: str, price: float, qty: float, fee: float, pnl: float | None,
                     bar: Bar, parent: int | None, *, done: bool = True,
                     before: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> dict[str, Any]:
        """Book a fill; ``done=False`` leaves the order open (a partial fill under the
        volume cap), ``before`` is what earlier parts filled (amount, average, fees)."""
        db = self._db
        fill_id = db.execute("INSERT INTO fills (order_id, bar_time, price, amount, fee, pnl) VALUES (?,?,?,?,?,?)",
                             (oid, bar.time, price, qty, fee, pnl)).lastrowid
        if done and not before[0]:
            db.execute("UPDATE orders SET status='closed', filled=?, average=?, fee=?, updated_at=? WHERE id=?",
                       (qty, price, fee, bar.time, oid))
        else:
            filled = before[0] + qty
            db.execute("UPDATE orders SET status=?, filled=?, average=?, fee=?, updated_at=? WHERE id=?",
                       ("closed" if done else "open", filled, (before[0] * before[1] + qty * price) / filled,
                        before[2] + fee, bar.time, oid))
        if parent is not None:  # one cancels the other
            db.execute("UPDATE orders SET status='canceled', reason='oco' WHERE parent_id=? AND id<>? AND status='open'", (parent, oid))
            if self.fill_model.volume_cap is not None:  # the trade is over: what is left of its entry goes too
                db.execute("UPDATE orders SET status='canceled', reason='its stop or take-profit filled' "
                           "WHERE id=? AND status='open'", (parent,))
        return {"id": fill_id, "order_id": str(oid), "symbol": symbol, "side": side, "price": price, "amount": qty, "fee": fee,
                "pnl": pnl, "time": bar.time}

    def _fill(self, oid: int, symbol: str, base: str, quote: str, side: str, amount: float | None, cost: float | None,
              price: float, bar: Bar, sl: float | None, tp: float | None, parent: int | None,
              trail: tuple[float, float] | None = None, rate: float | None = None,
              cap: float | None = None) -> dict[str, Any]:
        """A spot fill (long-only accounting) paying the fee ``rate`` (the taker fee by
        default), of at most ``cap`` base (the volume cap; None: the whole order)."""
        db = self._db
        rate = self.fees if rate is None else rate
        before = self._so_far(oid) if cap is not None else (0.0, 0.0, 0.0)
        done = True
        pos = db.execute("SELECT amount, avg_price, realized_pnl FROM positions WHERE symbol=?", (symbol,)).fetchone() or (0.0, 0.0, 0.0)
        pnl = None
        if side == "buy":
            if before[0]:  # what is left of a partially filled order
                spend = cost - (before[0] * before[1] + before[2]) if cost is not None else \
                    (amount - before[0]) * price * (1 + rate)  # type: ignore[operator]
            else:
                spend = cost if cost is not None else amount * price * (1 + rate)  # type: ignore[operator]
            if cap is not None and cap * price * (1 + rate) < spend * (1 - 1e-12):
                spend, done = cap * price * (1 + rate), False
            if spend > self._total(quote):
                spend, done = self._total(quote), True  # what the cash pays for: the order is done
            qty = spend / (price * (1 + rate))
            fee = qty * price * rate
            db.execute("INSERT OR REPLACE INTO balances VALUES (?, ?)", (quote, self._total(quote) - spend))
            db.execute("INSERT OR REPLACE INTO balances VALUES (?, ?)", (base, self._total(base) + qty))
            new_amount = pos[0] + qty
            avg = (pos[0] * pos[1] + qty * price * (1 + rate)) / new_amount
            db.execute("INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?)", (symbol, new_amount, avg, pos[2]))
        else:
            want = float(amount) - before[0]  # type: ignore[arg-type]
            qty = min(want, self._total(base))
            if cap is not None and cap < qty * (1 - 1e-12):
                qty, done = cap, False
            proceeds = qty * price * (1 - rate)
            fee = qty * price * rate
            pnl = proceeds - qty * pos[1]
            db.execute("INSERT OR REPLACE INTO balances VALUES (?, ?)", (base, self._total(base) - qty))
            db.execute("INSERT OR REPLACE INTO balances VALUES (?, ?)", (quote, self._total(quote) + proceeds))
            db.execute("INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?)",
                       (symbol, max(pos[0] - qty, 0.0), pos[1] if pos[0] - qty > 1e-12 else 0.0, pos[2] + pnl))
        fill = self._record_fill(oid, symbol, side, price, qty, fee, pnl, bar, parent, done=done, before=before)
        if side == "buy":
            self._children(oid, symbol, "sell", qty, bar, sl, tp, trail, reduce_only=False, more=bool(before[0]))
        return fill

    # -- swaps: fills, funding, liquidation --------------------------------------
    def _save_position(self, symbol: str, pos: _Pos) -> None:
        self._db.execute("INSERT OR REPLACE INTO swap_positions VALUES (?, ?, ?, ?, ?, ?)",
                         (symbol, pos.contracts, pos.entry, pos.collateral, pos.realized, pos.funding))
        self._pos.pop(symbol, None)

    def _cancel_reduce_only(self, symbol: str, reason: str) -> None:
        """A closed (or liquidated) position's reduce-only and protective orders go with it."""
        self._db.execute("UPDATE orders SET status='canceled', reason=? WHERE symbol=? AND status='open' AND "
                         "(reduce_only=1 OR parent_id IS NOT NULL)", (reason, symbol))

    def _fill_swap(self, oid: int, spec: MarketSpec, side: str, amount: float, price: float, bar: Bar,
                   sl: float | None, tp: float | None, trail: tuple[float, float] | None, parent: int | None,
                   reduce_only: bool, rate: float | None = None, cap: float | None = None) -> dict[str, Any] | None:
        """A swap fill: close what it closes (P&L, margin released), open the rest (margin
        taken, entry averaged), fees from cash. A reduce-only order with nothing left to
        reduce is cancelled."""
        db, symbol, cash_asset = self._db, spec.symbol, spec.quote
        rate = self.fees if rate is None else rate  # the fee this order pays (maker or taker)
        before = self._so_far(oid) if cap is not None else (0.0, 0.0, 0.0)
        pos = self._position(symbol)
        sign = 1 if side == "buy" else -1
        contracts = float(amount) - before[0]
        capped = cap is not None and cap < contracts * (1 - 1e-12)
        if capped:
            contracts = cap  # type: ignore[assignment]
        want = contracts
        if reduce_only:
            if pos.side != -sign:
                db.execute("UPDATE orders SET status='canceled', reason='reduce-only: no position to reduce' WHERE id=?",
                           (oid,))
                return None
            contracts = min(contracts, abs(pos.contracts))
        cash = self._total(cash_asset)
        closing = min(contracts, abs(pos.contracts)) if pos.side == -sign else 0.0
        fee = 0.0
        pnl: float | None = None
        if closing > 0:
            q = closing * spec.contract_size
            full = closing >= abs(pos.contracts) - 1e-12
            released = pos.collateral if full else pos.collateral * closing / abs(pos.contracts)
            gain = margin.unrealized_pnl(pos.side, q, pos.entry, price)
            close_fee = q * price * rate
            cash += released + gain - close_fee
            fee += close_fee
            pnl = gain - close_fee
            remaining = 0.0 if full else round(pos.contracts + sign * closing, 12)  # no float dust in contracts
            pos = _Pos(remaining, pos.entry if remaining else 0.0, 0.0 if full else pos.collateral - released,
                       pos.realized + gain - close_fee, pos.funding)
        opening = 0.0 if reduce_only else round(contracts - closing, 12)
        if opening > 1e-15:
            lev = self._leverage(symbol)
            per_contract = spec.contract_size * price * (1 / lev + rate)
            affordable = max(cash, 0.0) / per_contract  # what the cash still pays for
            if affordable < opening and spec.min_amount is not None and affordable < float(spec.min_amount):
                affordable = 0.0  # cut below the market's minimum: nothing opens (no dust position)
            opening = min(opening, affordable)
        if opening > 1e-15:
            q = opening * spec.contract_size
            open_fee = q * price * rate
            cash -= q * price / lev + open_fee
            fee += open_fee
            size = round(abs(pos.contracts) + opening, 12)
            entry = (abs(pos.contracts) * pos.entry + opening * price) / size if pos.contracts else price
            pos = _Pos(sign * size, entry, pos.collateral + q * price / lev, pos.realized - open_fee, pos.funding)
        else:
            opening = 0.0
        if closing + opening <= 0:
            db.execute("UPDATE orders SET status='canceled', reason='insufficient margin at the fill' WHERE id=?", (oid,))
            return None
        db.execute("INSERT OR REPLACE INTO balances VALUES (?, ?)", (cash_asset, cash))
        self._save_position(symbol, pos)
        # Done unless capped with all of this bar's part filled (no margin or position ran out).
        done = not capped or closing + opening < want - 1e-12
        fill = self._record_fill(oid, symbol, side, price, closing + opening, fee, pnl, bar, parent, done=done,
                                 before=before)
        if closing > 0 and (not pos.contracts or opening > 0):
            self._cancel_reduce_only(symbol, "position closed")
        if opening > 0:
            self._children(oid, symbol, "sell" if sign > 0 else "buy", opening, bar, sl, tp, trail, reduce_only=True,
                           more=bool(before[0]))
        return fill

    def _doomed(self, spec: MarketSpec, bar: Bar) -> float | None:
        """The liquidation price, if this bar reaches it for the position as it stands."""
        pos, liq = self._position_liq(spec.symbol)
        if pos.contracts and liq is not None and (
                (pos.side > 0 and bar.low <= liq) or (pos.side < 0 and bar.high >= liq)):
            return liq
        return None

    def _liquidate(self, spec: MarketSpec, bar: Bar, *, at_open: bool) -> list[dict[str, Any]]:
        """Liquidate the position if the bar's open (``at_open``) or range reaches its
        liquidation price: filled there, or at the open through a gap (module docstring)."""
        pos, liq = self._position_liq(spec.symbol)
        if not pos.contracts or liq is None:
            return []
        if pos.side > 0:
            hit = bar.open <= liq if at_open else bar.low <= liq
            price = min(bar.open, liq)
        else:
            hit = bar.open >= liq if at_open else bar.high >= liq
            price = max(bar.open, liq)
        if not hit:
            return []
        qty = abs(pos.contracts) * spec.contract_size
        left = pos.collateral + margin.unrealized_pnl(pos.side, qty, pos.entry, price)
        liquidation_fee = max(left, 0.0)  # what is left of the margin goes to the insurance fund
        side = "sell" if pos.side > 0 else "buy"
        cur = self._db.execute(
            "INSERT INTO orders (client_id, symbol, type, side, amount, price, status, created_at, updated_at, reduce_only, "
            "reason) VALUES (?, ?, 'liquidation', ?, ?, ?, 'open', ?, ?, 1, 'liquidation')",
            (f"liquidation-{spec.symbol}-{bar.time!r}-{'open' if at_open else 'bar'}", spec.symbol, side, abs(pos.contracts), liq, bar.time, bar.time))
        oid = int(cur.lastrowid)  # type: ignore[arg-type]
        self._save_position(spec.symbol, _Pos(0.0, 0.0, 0.0, pos.realized - pos.collateral, pos.funding))
        fill = self._record_fill(oid, spec.symbol, side, price, abs(pos.contracts), liquidation_fee, -pos.collateral,
                                 bar, None)
        self._cancel_reduce_only(spec.symbol, "liquidated")
        log.warning("paper broker: %s %s position of %g contracts liquidated at %.8g (liquidation price %.8g)",
                    spec.symbol, "long" if pos.side > 0 else "short", abs(pos.contracts), price, liq)
        return [fill]

    def _settle_funding(self, spec: MarketSpec, last: float, now: float, mark: float) -> None:
        """Funding due at the funding times in ``(last, now]`` on the position held going
        into this bar, at the previous close; a time without a rate is a recorded gap."""
        for t in margin.funding_times(last, now, spec.funding_interval):
            pos = self._position(spec.symbol)
            if not pos.contracts:
                return
            rate = self._one("SELECT rate FROM funding_rates WHERE symbol=? AND time=?", (spec.symbol, t))
            qty = abs(pos.contracts) * spec.contract_size
            amount = 0.0 if rate is None else margin.funding_payment(pos.side, qty, mark, float(rate))
            self._db.execute("INSERT OR IGNORE INTO funding (symbol, time, rate, mark, contracts, amount) "
                             "VALUES (?, ?, ?, ?, ?, ?)", (spec.symbol, t, rate, mark, pos.contracts, amount))
            if rate is None:
                # Said once per symbol and process at WARNING (a history-less replay would
                # say it every 8 h); every gap is in the book: funding_gaps() counts them.
                first = spec.symbol not in self._gaps_said
                self._gaps_said.add(spec.symbol)
                log.log(logging.WARNING if first else logging.DEBUG,
                        "paper broker: no funding rate for %s at %s: nothing charged (a gap in the funding history; "
                        "give it with set_funding_rates%s)", spec.symbol, _iso(t),
                        "; further gaps: PaperBroker.funding_gaps()" if first else "")
                continue
            self._save_position(spec.symbol, _Pos(pos.contracts, pos.entry, pos.collateral + amount, pos.realized + amount,
                                                  pos.funding + amount))


def _iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).isoformat()


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

    def swap_positions(self) -> Any:
        """Open perpetual positions as a DataFrame: ``symbol``, ``side`` (long/short),
        ``contracts``, ``entry_price``, ``mark_price`` (last close, else the entry),
        ``collateral`` (isolated margin), ``funding`` (received > 0), ``realized_pnl``,
        ``unrealized_pnl``. Empty (with these columns) for a book without any."""
        import pandas as pd

        rows = self._rows(
            "SELECT p.symbol, p.contracts, p.entry_price, COALESCE(pr.close, p.entry_price), p.collateral, p.funding, "
            "p.realized_pnl, m.spec FROM swap_positions p JOIN markets m ON m.symbol = p.symbol "
            "LEFT JOIN prices pr ON pr.symbol = p.symbol WHERE p.contracts <> 0 ORDER BY p.symbol")
        out = []
        for symbol, contracts, entry, mark, collateral, funding, realized, spec in rows:
            size = float((json.loads(spec) if spec else {}).get("contractSize") or 1.0)
            out.append({"symbol": symbol, "side": "long" if contracts > 0 else "short", "contracts": abs(contracts),
                        "entry_price": entry, "mark_price": mark, "collateral": collateral, "funding": funding,
                        "realized_pnl": realized, "unrealized_pnl": contracts * size * (mark - entry)})
        return pd.DataFrame(out, columns=["symbol", "side", "contracts", "entry_price", "mark_price", "collateral",
                                          "funding", "realized_pnl", "unrealized_pnl"])

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
