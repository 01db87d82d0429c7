"""``UnifiedMemGPTTrader``: feed → strategy signal → agent → sizing → broker → memory, bar by bar.

The seed's integration, with the same code path in paper and live mode:

1. a closed bar arrives from the feed; the paper broker fills what it fills;
2. the strategy's entry/exit signal at that bar (computed vectorised, see
   :class:`~memlab.trader.signal_book.SignalBook`) becomes a signal with market features;
3. the decision pipeline (:class:`~memlab.trader.pipeline.DecisionPipeline`, shared with
   webhook alerts) has the agent score it, sizes an entry, places it on the broker with a
   deterministic client order id (an exit sells what is held), and logs the decision;
4. when an exit fills, the outcome goes back into memory (``close_position``), where the
   agent learns and adapts.

Long and short: on a perpetual swap (``BTC/USDT:USDT``, a broker with ``has['shorts']``)
the session trades both sides as vectorbt's ``from_signals(direction="both")`` does
(:meth:`UnifiedMemGPTTrader._swap_action`): ``short_entry`` opens a short or reverses a
long, ``short_exit`` closes a short, ``entry`` opens a long or reverses a short; an entry
and an exit of one side at the same bar cancel, so do a long and a short entry. The
book's ``held`` is signed (contracts, negative when short). ``TraderConfig.leverage`` is
set on the broker at start. On a spot market the short signals are not traded: said once
per session and symbol (a journal line and a log line) and counted in the report.

The session uses the agent service (:class:`~memlab.agent.MemoryAgent`) and the broker
(:class:`~memlab.connectors.protocol.Broker`) directly; the seed's JSON gateway
(:class:`~memlab.agent.gateway.MemGPTConnector`) is an adapter over the same agent for other
programs.

Durability: the memory and book writes of a bar are one group commit (written at once,
so a killed process loses nothing; fsynced together at the end of the bar, or of
``sync_interval`` seconds of bars, which bounds what a power cut could take).

Restart safety: before anything is written for a bar, the broker's book records the bar.
A restarted session skips bars the book has seen, re-runs the last one's signal (its
order's client id finds the order already placed; a decision already logged is not
logged twice) and closes outcomes whose exits filled while it was down. So ``kill -9``
then restart ends where an uninterrupted run ends.

>>> import asyncio, tempfile
>>> from memlab.data import synthetic_ohlcv
>>> cfg = TraderConfig(symbols=("BTC/USDT",), strategy="sma_cross", params={"fast": 5, "slow": 20},
...                    memory_path=tempfile.mkdtemp(), sizing="full",
...                    feed={"data": synthetic_ohlcv(600, freq="1min", seed=2), "warmup": 200})
>>> report = asyncio.run(UnifiedMemGPTTrader(cfg).run())
>>> report["bars"], report["orders"] > 0
(400, True)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import signal as signals_module
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import ccxt
import numpy as np
import pandas as pd

from memlab.connectors import ConnectionManager, ReplayFeed
from memlab.connectors.protocol import Broker, Order
from memlab.data.bars import Bar
from memlab.errors import InvalidInputError
from memlab.memory import MemoryStores
from memlab.memory.durable import TickCommit, begin_group, end_group, group_has_writes
from memlab.strategies import check_params, load_params
from memlab.strategies.signal_frame import resolve_signals
from memlab.trader.config import TraderConfig, spot_to_swap
from memlab.trader.equity import EquityLog, read_equity
from memlab.trader.pipeline import (
    ENTRY_SIDES,
    DecisionPipeline,
    Holdings,
    Outcome,
    SizingRule,
    alert_client_id,
    bar_client_id,
)
from memlab.trader.protections import ProtectionGuard
from memlab.trader.signal_book import SignalBook
from memlab.trader.status import Heartbeat

log = logging.getLogger(__name__)

FEED = "trader_feed"


@dataclass
class _Book:
    """One symbol's trading state."""

    symbol: str
    base: str
    quote: str
    signals: SignalBook
    resume_at: float | None = None
    held: float = 0.0
    entry_cost: float = 0.0
    entry_bar: float | None = None  # the bar whose open filled the position's entry (for exit_after)
    open_decision: int | None = None
    pending: dict[str, str] = field(default_factory=dict)  # client id -> side, unfilled orders
    last_close: float = float("nan")
    swap: bool = False  # a perpetual swap: held is signed (contracts; < 0 short)
    entry_price: float = 0.0  # a swap position's entry price
    entry_decision: int | None = None  # a swap entry placed, not filled yet: its decision
    shorts_said: bool = False  # a spot book's "no shorts here" was said this session
    last_time: float = float("nan")  # the last bar's time


def strategy_params(config: TraderConfig, symbol: str, stores: MemoryStores) -> dict[str, Any]:
    """Explicit ``params``, else what training left in memory (``<symbol>.<strategy>.<name>``),
    else ``params/`` (trained, then the shipped defaults)."""
    merged = dict(load_params(config.strategy, symbol))
    prefix = f"{symbol}.{config.strategy}."
    for key, value in stores.parameters.current().items():
        if key.startswith(prefix):
            merged[key[len(prefix):]] = value
    merged.update(config.params or {})
    return check_params(config.strategy, merged)


async def _by_time(feed: ReplayFeed) -> AsyncIterator[tuple[str, list[tuple[str, Bar]]]]:
    """A replay's bars grouped by market time: ("", [(symbol, bar), ...]) per time, in the
    feed's symbol order (it yields one time's bars one after the other)."""
    group: list[tuple[str, Bar]] = []
    async for symbol, bar in feed:
        if group and bar.time != group[0][1].time:
            yield "", group
            group = []
        group.append((symbol, bar))
    if group:
        yield "", group


class UnifiedMemGPTTrader:
    """A trading session: ``await UnifiedMemGPTTrader(TraderConfig.from_env()).run()``.

    ``manager`` may be given (with brokers/feeds already added, e.g. to share it with a
    webhook endpoint); otherwise the session builds its own from the config.
    """

    def __init__(self, config: TraderConfig | None = None, *, manager: ConnectionManager | None = None,
                 llm: Any | None = None) -> None:
        self.config = config or TraderConfig.from_env()
        self.config.check_live()
        self.manager = manager or ConnectionManager(self.config.memory_path)
        self._llm = llm
        self._agent: Any = None  # the agent service, opened by start()
        self.pipeline: DecisionPipeline | None = None
        self.books: dict[str, _Book] = {}
        self.latencies: list[float] = []
        self.counts = {"bars": 0, "signals": 0, "orders": 0, "fills": 0, "decisions": 0, "skipped": 0, "outcomes": 0}
        self.skip_reasons: collections.Counter[str] = collections.Counter()  # why entries were not taken
        self.shorts_ignored: collections.Counter[str] = collections.Counter()  # spot symbol -> short signals
        self._stop = asyncio.Event()
        self._started = False
        from memlab.webhooks.outbound import DrawdownState

        self._drawdown = DrawdownState(self.config.memory_path)  # peak and levels alerted, kept across restarts
        self._cash: dict[str, float] = {}
        self.heartbeat: Heartbeat | None = None
        self.started_at = 0.0
        self.state = "crashed"  # until run() ends normally
        self._holding = True  # whether equity can have moved since the last look (fills set it)
        self.guard: ProtectionGuard | None = None  # the protections' state, when any is set
        self._last_bar: Bar | None = None
        self._tick = TickCommit()
        self.equity_log = EquityLog(self.config.memory_path, self.config.symbols)  # marked to market every bar
        self._equity_fills = -1  # fills when cash and holdings were last given to the equity log
        self._recovered = False  # whether this process's first bar has rebuilt what a killed run left
        self._rehold = False  # funding moved a swap's margin: give the equity log cash again

    def __repr__(self) -> str:
        c = self.config
        return f"UnifiedMemGPTTrader(mode={c.mode!r}, symbols={list(c.symbols)}, strategy={c.strategy!r}, broker={c.broker!r})"

    # -- set-up --------------------------------------------------------------------------
    @property
    def broker(self) -> Broker:
        return self.manager.broker(self.config.broker)

    @property
    def agent(self) -> Any:
        """The agent service (:class:`~memlab.agent.MemoryAgent`), once the session started."""
        if self._agent is None:
            raise RuntimeError("the trader's agent opens with start() or run()")
        return self._agent

    async def start(self) -> None:
        """Connect the broker and feed (unless the manager has them), open memory, resume."""
        if self._started:
            return
        c = self.config
        from memlab.memory.lock import WriterLock

        # One writer per memory folder, for the whole session: a second one stops here, naming us.
        self._writer = WriterLock(c.memory_path).acquire()
        from memlab.agent import MemoryAgent

        # One event bus: the agent's adaptations, lessons and errors reach the manager's
        # subscribers (alert targets, webhooks) as the session's fills and drawdowns do.
        self._agent = await asyncio.to_thread(MemoryAgent, c.memory_path, agent_id=c.agent_id, llm=self._llm,
                                              events=self.manager.events)
        if c.broker not in self.manager.brokers:
            if c.broker == "paper":
                await self.manager.add_broker_connection(
                    "paper", balances={c.quote_for(s): c.balance for s in c.symbols[:1]}, fees=c.fees,
                    slippage=c.slippage, markets=list(c.symbols), fill_model=c.fill_model)
            else:
                await self.manager.add_broker_connection(c.broker)
        if FEED not in self.manager.feeds:
            await self.manager.add_data_feed(FEED, c.feed_settings())
        self.pipeline = DecisionPipeline(self.agent, self.broker, SizingRule(
            c.sizing, c.min_confidence, c.stop_loss, c.take_profit, c.trailing_stop, c.size, c.leverage, c.slippage))
        feed = self.manager.feed(FEED)
        for symbol in c.symbols:
            base, _, quote = symbol.partition("/")
            known = feed.frames[symbol] if isinstance(feed, ReplayFeed) else feed.history(symbol)
            params = strategy_params(c, symbol, self.agent.stores)
            self.books[symbol] = _Book(symbol, base, quote.partition(":")[0] or c.quote_for(symbol),
                                       SignalBook(c.strategy, params, known), swap=self.pipeline.is_swap(symbol))
        await self._set_leverage()
        self.agent.repair_journal()
        self.guard = ProtectionGuard.open(c.protections, c.memory_path) if c.protections.active else None
        if self.guard is not None:
            self.guard.before_save = self.broker.flush
        await self._resume()
        if self.guard is not None:
            self._journal_missed_starts()
        self.manager.signal_handler = self.handle_alert  # webhook alerts come in here
        self.heartbeat = Heartbeat(c.memory_path, {"mode": c.mode, "symbols": list(c.symbols), "strategy": c.strategy,
                                                   "broker": c.broker, "agent_id": c.agent_id})
        self.started_at = time.perf_counter()
        self._started = True
        log.info("%r started; resuming after %s", self,
                 {s: b.resume_at for s, b in self.books.items() if b.resume_at is not None} or "nothing")

    async def _set_leverage(self) -> None:
        """Set ``leverage`` on each swap symbol (the broker refuses one above the market's
        maximum, naming the maximum: that message is the error), and on a venue isolated
        margin, the paper book's (Binance accounts start on cross)."""
        c = self.config
        for symbol, book in self.books.items():
            if not book.swap:
                if c.leverage != 1:
                    raise InvalidInputError(f"leverage {c.leverage:g}: {symbol} is a spot market; leverage is for "
                                            f"perpetual swaps (trade {spot_to_swap(symbol)})")
                continue
            market = self.broker.market_symbol(symbol)
            try:
                await self.broker.set_leverage(c.leverage, market)  # type: ignore[attr-defined]
            except ccxt.BadRequest as exc:
                raise InvalidInputError(str(exc)) from None
            if not self.broker.has.get("simulatedFills") and self.broker.has.get("setMarginMode"):
                with contextlib.suppress(ccxt.MarginModeAlreadySet):
                    await self.broker.set_margin_mode("isolated", market)  # type: ignore[attr-defined]

    async def _resume(self) -> None:
        """Rebuild positions, pending orders and open decisions from the book and memory."""
        for server in list(self.manager.webhooks.values()):
            # Alerts a killed run left half-handled: an order placed is given its decision
            # (before open decisions are rebuilt below), an alert that placed nothing is released.
            await server.reconcile(self._recover_alert)
        broker = self.broker
        balance = await broker.fetch_balance()
        totals = balance.get("total") or {}
        store = self.agent.stores.decisions
        for symbol, book in self.books.items():
            self._cash[book.quote] = float(totals.get(book.quote) or 0.0)
            if book.swap:
                await self._resume_swap(book)
                continue
            book.held = float(totals.get(book.base) or 0.0)
            state = broker.book_state(symbol)  # a venue's book does not know our bars: all None
            book.resume_at = state.last_bar_time
            book.last_close = state.last_price or float("nan")
            book.entry_cost = state.entry_cost
            for order in await broker.fetch_open_orders(symbol):
                if order.get("parentId") is None and order.get("clientOrderId"):
                    book.pending[order["clientOrderId"]] = order["side"]
            if self.guard is not None:
                await self._replay_exits(book)
            open_rows = store.frame(symbol=symbol, agent_id=self.config.agent_id, action="BUY", closed=False)
            ids, times = open_rows["id"].to_numpy(), [t.timestamp() for t in open_rows.index]
            for k, decision_id in enumerate(ids):
                last = k == len(ids) - 1
                if last and (book.held > 1e-12 or any(side == "buy" for side in book.pending.values())):
                    book.open_decision = int(decision_id)  # the position held now
                    if book.held > 1e-12:
                        buys = [f for f in broker.fills_between(symbol, times[k], float("inf")) if f["side"] == "buy"]
                        book.entry_bar = buys[0]["bar_time"] if buys else None
                    break
                until = times[k + 1] if not last else float("inf")
                await self._close_missed(book, int(decision_id), times[k], until)

    async def _resume_swap(self, book: _Book) -> None:
        """A swap book after a restart: the position from ``fetch_positions``, the entry
        placed but not filled and the position held tied to their decisions by the orders'
        keys, and outcomes of positions that closed while the trader was down recorded."""
        broker, store = self.broker, self.agent.stores.decisions
        assert self.pipeline is not None
        market = broker.market_symbol(book.symbol)
        state = broker.book_state(book.symbol)
        book.resume_at = state.last_bar_time
        book.last_close = state.last_price or float("nan")
        position = next((p for p in await broker.fetch_positions()
                         if p["symbol"] == market and p.get("collateral") is not None), None)
        if position is not None and float(position["contracts"]) > 0:
            book.held = (1.0 if position["side"] == "long" else -1.0) * float(position["contracts"])
            book.entry_price = float(position["entryPrice"] or 0.0)
            book.entry_cost = abs(book.held) * book.entry_price
        for order in await broker.fetch_open_orders(market):
            if order.get("parentId") is None and order.get("clientOrderId") and order.get("type") == "market":
                book.pending[order["clientOrderId"]] = order["side"]
                if not order.get("reduceOnly"):
                    book.entry_decision = store.find_key(self.pipeline.order_key(order))
        fills = broker.fills_between(book.symbol, float("-inf"), float("inf"))
        if book.held:
            side = "buy" if book.held > 0 else "sell"
            opened = [f for f in fills if f["side"] == side]
            if opened:
                book.entry_bar = opened[-1]["bar_time"]
                book.open_decision = store.find_key(self.pipeline.order_key({"id": str(opened[-1]["order_id"])}))
        if self.guard is not None:
            await self._replay_exits(book)
        open_rows = store.frame(symbol=book.symbol, agent_id=self.config.agent_id, closed=False)
        for decision_id in open_rows["id"].tolist():
            if int(decision_id) not in (book.open_decision, book.entry_decision):
                await self._close_missed_swap(book, int(decision_id), fills)

    async def _close_missed_swap(self, book: _Book, decision_id: int, fills: list[dict[str, Any]]) -> None:
        """A swap decision whose position closed while the trader was down: its outcome is
        the first closing fill (opposite side, with P&L) after its entry order's fill, and
        its cost the notional the entry opened (as :meth:`_on_swap_fill` counts it)."""
        key = self.agent.stores.decisions.get(decision_id).key or ""
        order_id = key.rpartition(":order:")[2]
        held, cost, entered = 0.0, 0.0, False
        for fill in fills:  # the position through the fills: what each one closed and opened
            sign = 1.0 if fill["side"] == "buy" else -1.0
            closing = min(float(fill["amount"]), abs(held)) if held * sign < 0 else 0.0
            if entered and closing > 0 and fill["pnl"] is not None:
                await self._record_outcome(decision_id, float(fill["pnl"]), cost, fill["bar_time"])
                return
            held = round(held + sign * closing, 12)
            held = 0.0 if abs(held) <= 1e-9 else held
            opening = round(float(fill["amount"]) - closing, 12)
            if str(fill["order_id"]) == order_id and opening > 1e-12:
                cost, entered = opening * float(fill["price"]), True
            held = round(held + sign * opening, 12)
        # Not closed yet, or its order never filled (cancelled): no outcome.

    async def _replay_exits(self, book: _Book) -> None:
        """Exits the book filled after the protections' saved state (a killed run's last bars)."""
        assert self.guard is not None
        since = self.guard.as_of.get(book.symbol, float("-inf"))
        for fill in self.broker.fills_between(book.symbol, since, float("inf")):
            if (fill["pnl"] is not None) if book.swap else fill["side"] == "sell":  # a swap's closing fills
                await self._protect_exit(book, fill, fill["bar_time"])

    async def _protect_exit(self, book: _Book, fill: dict[str, Any], bar_time: float) -> None:
        """Tell the protections a position closed (by a stop or not), and say what it starts."""
        assert self.guard is not None
        stop = False
        if self.config.protections.max_stop_losses is not None:
            order = await self.broker.fetch_order(str(fill["order_id"]), book.symbol)
            stop = order.get("type") in ("stop_loss", "trailing_stop")
        now = book.signals.row_at(bar_time)
        started = self.guard.record_exit(book.symbol, bar_time, stop=stop,
                                         bars_since=lambda t: book.signals.bars_since(t, now))
        self._announce(started, book.symbol, bar_time)

    def _journal_missed_starts(self) -> None:
        """Journal the protection starts the saved state holds but the journal does not (a
        run killed between writing its state and its journal line)."""
        assert self.guard is not None
        said = [(e.fields["Protection"], e.time.timestamp()) for e in self.agent.stores.journal.tail(200)
                if e.fields.get("Decision") == "PAUSE" and "Protection" in e.fields]
        for name, bar_time, note in self.guard.unannounced(said):
            self.agent.stores.journal.append({"Protection": name, "Decision": "PAUSE",
                                              "Bars": self.config.protections.pause},
                                             note=note, at=datetime.fromtimestamp(bar_time, UTC))

    def _first_bar(self, bar: Bar) -> None:
        """This process's first bar: store the bars a killed run marked but did not write in
        the equity log, then take the drawdown peak from it (the peak is not saved per bar)."""
        self._recovered = True
        self.equity_log.recover(bar.time, self.manager.feed(FEED))
        if self.guard is not None and self.config.protections.max_drawdown is not None:
            marked = read_equity(self.config.memory_path, since=self.guard.peak_since)
            if marked is not None and len(marked):
                # Up to this bar: the log may hold later bars (a killed run wrote them, its
                # book had not), which this run replays and the guard takes as they come.
                upto = marked.index <= pd.Timestamp(bar.time, unit="s", tz="UTC")
                self.guard.restore_peak(marked["equity"].to_numpy()[upto])

    def _announce(self, started: list[str], symbol: str | None, bar_time: float) -> None:
        for note in started:
            name = note.split(":", 1)[0]
            self.agent.stores.journal.append({"Protection": name, "Decision": "PAUSE",
                                              "Bars": self.config.protections.pause},
                                             note=note, at=datetime.fromtimestamp(bar_time, UTC))
            self.manager.publish("protection", {"protection": name, "reason": note, "symbol": symbol,
                                                "time": bar_time})

    def _blocked(self, book: _Book, bar: Bar) -> str:
        """Why a protection blocks an entry of ``book`` at ``bar`` ("" when none does)."""
        if self.guard is None:
            return ""
        now = book.signals.row_at(bar.time)
        return self.guard.blocks(book.symbol, bar.time, lambda t: book.signals.bars_since(t, now)) or ""

    async def _close_missed(self, book: _Book, decision_id: int, since: float, until: float) -> None:
        """An exit filled but the trader stopped before recording the outcome: record it now."""
        fills = self.broker.fills_between(book.symbol, since, until)
        sells = [f for f in fills if f["side"] == "sell"]
        if not sells:
            return
        pnl = float(sum(f["pnl"] or 0.0 for f in sells))
        cost = float(sum(f["amount"] * f["price"] + f["fee"] for f in fills if f["side"] == "buy")) or float("nan")
        await self._record_outcome(decision_id, pnl, cost, sells[-1]["bar_time"])

    # -- the loop ---------------------------------------------------------------------------
    async def run(self, *, handle_signals: bool = False) -> dict[str, Any]:
        """Trade until the feed ends, ``max_bars`` bars, or :meth:`request_stop` (SIGINT/SIGTERM
        when ``handle_signals``); returns the session report."""
        loop = asyncio.get_running_loop()
        installed = []
        if handle_signals:
            for sig in (signals_module.SIGINT, signals_module.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, self.request_stop)
                    installed.append(sig)
        try:
            await self.start()
            feed = self.manager.feed(FEED)
            limit, window = self.config.max_bars, self.config.sync_interval
            begin_group()
            try:
                synced = time.monotonic()
                grouped = isinstance(feed, ReplayFeed) and len(self.books) > 1
                async for symbol, bar in (_by_time(feed) if grouped else feed):
                    if grouped:
                        await self.on_bars([(s, b) for s, b in bar if s in self.books])
                    elif symbol in self.books:
                        await self.on_bar(symbol, bar)
                    if self._stop.is_set() or (limit is not None and self.counts["bars"] >= limit):
                        break
                    if group_has_writes() and (not window or time.monotonic() - synced >= window):
                        end_group()  # fsync what the group wrote
                        begin_group()
                        synced = time.monotonic()
                await self._settle_pending()
            finally:
                end_group()
            self.state = "stopped" if self._stop.is_set() else "finished"
            return self.report(state=self.state)
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self.close()

    def request_stop(self) -> None:
        """Stop after the bar in hand (what SIGINT/SIGTERM do)."""
        log.info("stop requested; finishing the current bar")
        self._stop.set()

    async def on_bar(self, symbol: str, bar: Bar) -> None:
        """Process one closed bar: fills, then the strategy's signal."""
        staged = await self._bar_fills(symbol, bar)
        if staged is not None:
            await self._bar_signal(symbol, bar, staged)

    async def on_bars(self, bars: list[tuple[str, Bar]]) -> None:
        """One market time's bars of several symbols (a replayed portfolio): every symbol's
        fills at its open and inside it first, then every signal at its close, in the
        session's symbol order. So an entry is sized on the cash after all of that bar's
        fills, less what the entries sent before it at that close hold, as a backtest on
        shared cash sees it (:func:`memlab.backtest.portfolio`)."""
        staged = [(symbol, bar, await self._bar_fills(symbol, bar)) for symbol, bar in bars]
        for symbol, bar, state in staged:
            if state is not None:
                await self._bar_signal(symbol, bar, state)

    async def _bar_fills(self, symbol: str, bar: Bar) -> tuple[float, bool, list[tuple[int, float, float]]] | None:
        """A bar's first half: its fills and what they close; None for a bar an earlier run processed."""
        received = time.perf_counter()
        book = self.books[symbol]
        if book.resume_at is not None and bar.time < book.resume_at:
            return None  # processed by an earlier run
        replaying_last = book.resume_at is not None and bar.time == book.resume_at
        if not self._recovered:
            self._first_bar(bar)
        self.counts["bars"] += 1
        broker = self.broker
        closed: list[tuple[int, float, float]] = []
        for fill in broker.on_bar(symbol, bar):  # the paper book fills on bars; a venue on its own
            closed += await self._on_fill(book, fill, bar)
        if book.swap and book.held and (bar.time // 3600 != book.last_time // 3600):
            # Funding (every 1-8 h, on the hour) moves the margin without a fill: look again.
            await self._refresh_cash(book)
        book.last_close, book.last_time = bar.close, bar.time
        if book.pending and not broker.has.get("simulatedFills"):
            closed += await self._poll_pending(book, bar)
        elif book.pending and book.swap:
            # An order the book cancelled (a reduce-only one whose position was liquidated,
            # one the margin no longer paid for at the fill) is no longer on its way.
            for cid in list(book.pending):
                if (await broker.fetch_order(cid, symbol)).get("status") != "open":
                    del book.pending[cid]
        if self.guard is not None and self._holding:
            # Equity at this close, before this bar's signal: a halt it starts blocks that signal too.
            self._announce(self.guard.record_equity(self.equity(), bar.time), None, bar.time)
        return received, replaying_last, closed

    async def _bar_signal(self, symbol: str, bar: Bar, staged: tuple[float, bool, list[tuple[int, float, float]]]) -> None:
        """A bar's second half: the strategy's signal at its close, the order, the outcomes, the mark."""
        received, replaying_last, closed = staged
        book = self.books[symbol]
        entry, exit_, row = book.signals.at(bar)
        after = self.config.exit_after
        action: str | None
        if book.swap:
            action = self._swap_action(book, entry, exit_, row)
            if action is not None and book.pending:
                # An order is still on its way, unless it is this very bar's (a stopped run's).
                mine = replaying_last and bar_client_id(self.config.agent_id, symbol, bar.time,
                                                        action.lower()) in book.pending
                if not mine:
                    action = None
        else:
            if book.signals.shorts_at(row)[0]:
                self._ignore_short(book, bar)
            if after and book.held > 1e-12 and book.entry_bar is not None and not exit_:
                # The backtest's time exit: a market exit at the open of the bar `after` bars after
                # the entry's fill bar, so the order goes out at the close of the bar before it.
                exit_ = book.signals.bars_since(book.entry_bar, row) + 1 >= after
            action = "SELL" if exit_ and book.held > 1e-12 else "BUY" if entry and book.held <= 1e-12 else None
        if action in ("BUY", "SELL") and not book.swap and any(side == action.lower() for side in book.pending.values()):
            # An entry (an exit: latency) is already on its way, unless it is this very bar's, placed by a run
            # that stopped before logging it: then going through again logs it (same order).
            mine = replaying_last and bar_client_id(self.config.agent_id, symbol, bar.time, action.lower()) in book.pending
            if not mine:
                action = None
        if action is not None:
            features = book.signals.features_at(row)
            if features is not None:  # None: indicators still warming up
                await self.execute_trade(book, bar, action, features, received, replaying_last)
        # Outcomes go into memory (learning, adaptation) once the bar's order is out, so
        # learning never delays an order; the next signal is scored with them.
        for decision_id, pnl, cost in closed:
            await self._record_outcome(decision_id, pnl, cost, bar.time)
        self._mark(bar)

    def _room(self, book: _Book, balance: Mapping[str, Any]) -> tuple[float, str]:
        """The notional an entry of ``book`` may add under the exposure limits, and when it
        is none, which limit says so. Positions at their last close; spot entries on their
        way at the cash they hold (the broker's total less free)."""
        c = self.config
        equity = self.equity()
        if not equity > 0:
            return 0.0, "exposure limit: no equity"
        room, why = float("inf"), ""
        if c.max_position is not None:
            own = 0.0 if book.swap else abs(book.held) * book.last_close  # a reversal closes the one held first
            room = c.max_position * equity - own
            why = f"max_position: {book.symbol} holds {own / equity:.0%} of equity (limit {c.max_position:.0%})"
        if c.max_exposure is not None:
            held = sum(abs(b.held) * b.last_close for b in self.books.values()
                       if b.held and np.isfinite(b.last_close) and not (b is book and b.swap))
            on_way = sum(float((balance.get("total") or {}).get(q) or 0.0) - float((balance.get("free") or {}).get(q) or 0.0)
                         for q in {b.quote for b in self.books.values() if not b.swap})
            exposure = held + max(on_way, 0.0)
            if c.max_exposure * equity - exposure < room:
                room = c.max_exposure * equity - exposure
                why = f"max_exposure: positions hold {exposure / equity:.0%} of equity (limit {c.max_exposure:.0%})"
        return room, why

    def _swap_action(self, book: _Book, entry: bool, exit_: bool, row: int) -> str | None:
        """What a swap book does at ``row``: ``BUY`` / ``SHORT`` (open, or reverse the other
        side), ``SELL`` / ``COVER`` (close), or None, resolved as vectorbt's ``from_signals``
        resolves them (``upon_*_conflict="ignore"``, ``upon_opposite_entry="reverse"``), after
        ``exit_after``'s time exit as the backtest's signal function sets it."""
        se, sx = book.signals.shorts_at(row)
        side = 0 if abs(book.held) <= 1e-12 else (1 if book.held > 0 else -1)
        after = self.config.exit_after
        due = bool(after and side and book.entry_bar is not None
                   and book.signals.bars_since(book.entry_bar, row) + 1 >= after)
        return resolve_signals(side, entry, exit_, se, sx, time_exit=due)

    def _ignore_short(self, book: _Book, bar: Bar) -> None:
        """A short signal on a spot market: counted; said once per session and symbol."""
        self.shorts_ignored[book.symbol] += 1
        if book.shorts_said:
            return
        book.shorts_said = True
        note = f"{book.symbol} is a spot market: short signals are not traded; trade {spot_to_swap(book.symbol)}"
        log.warning("%s", note)
        self.agent.stores.journal.append({"Strategy": self.config.strategy, "Shorts": "IGNORED", "Symbol": book.symbol},
                                         note=note, at=datetime.fromtimestamp(bar.time, UTC))

    async def execute_trade(self, book: _Book, bar: Bar, action: str, features: dict[str, float], received: float,
                            replaying_last: bool = False, *, strategy: str | None = None, client_id: str | None = None,
                            qty: float | None = None, when: pd.Timestamp | None = None) -> Outcome:
        """Run one signal through the decision pipeline (the seed's ``execute_trade``) and
        keep the book. A webhook alert comes with its own ``strategy``, ``client_id``,
        optional ``qty`` and time ``when``."""
        c = self.config
        assert self.pipeline is not None
        self.counts["signals"] += 1
        signal = {"symbol": book.symbol, "strategy": strategy or c.strategy, "action": action, "price": bar.close,
                  "features": features, "time": when if when is not None else pd.Timestamp(bar.time, unit="s", tz="UTC")}
        client_id = client_id or bar_client_id(c.agent_id, book.symbol, bar.time, action.lower())
        if book.swap and action in ENTRY_SIDES:
            await self._refresh_cash(book)  # sized on the margin as it is now (funding moves it)
        free = self._cash.get(book.quote, 0.0)
        shared = action in ENTRY_SIDES and not book.swap and len(self.books) > 1
        limited = action in ENTRY_SIDES and (c.max_position is not None or c.max_exposure is not None)
        balance = await self.broker.fetch_balance() if shared or limited else {}
        if shared:  # shared cash: what the other symbols' buys sent at this close hold is not free
            free = float((balance.get("free") or {}).get(book.quote) or 0.0)
        room, room_why = self._room(book, balance) if limited else (float("inf"), "")
        holdings = Holdings(held=book.held, free=free,
                            equity=self.equity() if c.sizing == "agent" else 0.0, entry=book.entry_price,
                            room=room, room_why=room_why)
        blocked = self._blocked(book, bar) if action in ENTRY_SIDES else ""
        outcome = await self.pipeline.decide(signal, holdings, client_id=client_id, qty=qty, replaying=replaying_last,
                                             blocked=blocked)
        if outcome.order is None:
            self.counts["skipped"] += 1
            # A protection's reason says how long it has waited; the report counts by protection.
            why = outcome.why.split(":")[0] if outcome.why.startswith(("max_position:", "max_exposure:",
                                                                        "the broker refused it:")) \
                else outcome.why  # counted by limit; the journal has the figures
            self.skip_reasons[f"blocked by the {blocked.split(':')[0]}" if blocked else why] += 1
            return outcome
        order = outcome.order
        self.latencies.append(outcome.placed_at - received)
        self.counts["orders"] += 1
        if order.get("status") in ("open", None) or not self.broker.has.get("simulatedFills"):
            # A venue's order, even one it filled at once, is booked at the next bar (as the paper
            # book fills it at that bar's open): its fill bar starts the position's bar count.
            book.pending[client_id] = str(order.get("side") or action.lower())
        if action in ENTRY_SIDES and outcome.decision_id is not None:
            if book.swap:
                book.entry_decision = outcome.decision_id  # the position it opens, once filled
            else:
                book.open_decision = outcome.decision_id
            self.counts["decisions"] += outcome.logged
        return outcome

    async def handle_alert(self, alert: Any) -> dict[str, Any]:
        """A webhook alert (:class:`~memlab.webhooks.WebhookAlert`) as a signal: scored by the
        agent from the latest bar's situation, sized and placed like a strategy signal, and
        remembered at that bar's time; its alert id gives the order's client id, so a replay
        is never a second order. Raises :class:`~memlab.webhooks.AlertRejected` (nothing
        placed) when it cannot be taken (``retryable`` when it may be taken later). Runs on
        the trader's event loop, between bars."""
        from memlab.webhooks.alerts import AlertRejected, check_alert_position, check_quantity

        received = time.perf_counter()
        book = self._alert_book(alert)
        if book is None:
            raise AlertRejected(422, f"unknown symbol {alert.symbol!r}: this trader trades {', '.join(self.books)}")
        try:
            if alert.retry:  # an earlier attempt may have placed the order: finish that one
                done = await self._recover_alert(alert)
                if done is not None:
                    return done
            last = book.signals.last_row()
            features = None if last is None else book.signals.features_at(last)
            if last is None or features is None:
                raise AlertRejected(422, f"not enough market data for {book.symbol} yet to judge the alert",
                                    retryable=True)
            if alert.qty is not None:
                step, minimum = self.broker.amount_rules(book.symbol)
                check_quantity(alert.qty, symbol=book.symbol, step=step, minimum=minimum)
            check_alert_position(alert.action, book.symbol, held=book.held,
                                 buying=any(s == "buy" for s in book.pending.values()))
            bar = Bar(float(book.signals.times[last]), book.last_close, book.last_close, book.last_close,
                      alert.price or book.last_close)
            try:
                outcome = await self.execute_trade(book, bar, alert.action, features, received, strategy=alert.strategy,
                                                   client_id=alert_client_id(self.config.agent_id, alert.alert_id),
                                                   qty=alert.qty)
            except (ccxt.InvalidOrder, ccxt.InsufficientFunds, ccxt.BadSymbol) as exc:
                raise AlertRejected(422, str(exc)) from None
        finally:
            # Durable before it is answered: one fsync for every alert of this loop tick,
            # not at the next bar.
            await self._tick.durable()
        return outcome.answer()

    def _alert_book(self, alert: Any) -> _Book | None:
        return self.books.get(alert.symbol) or next(
            (b for b in self.books.values() if b.symbol.replace("/", "") == alert.symbol.replace("/", "")), None)

    async def _recover_alert(self, alert: Any) -> dict[str, Any] | None:
        """Finish an alert whose handling stopped half-way (a killed process, a handler error):
        its result when its order exists, with the decision logged now if it was not; None
        when no order was placed (the alert is then handled afresh)."""
        book = self._alert_book(alert)
        if book is None:
            return None
        assert self.pipeline is not None

        def signal_at_order(order: Order) -> dict[str, Any]:
            # The bar it was judged at: the last one before the order (paper orders carry its time).
            placed = float(order.get("timestamp") or 0) / 1000
            row = max(int(np.searchsorted(book.signals.times, placed, side="right")) - 1, 0)
            bar_time = float(book.signals.times[row]) if len(book.signals.times) else placed
            close = float(book.signals.frame["Close"].iloc[row]) if len(book.signals.frame) else book.last_close
            features = book.signals.features_at(row) if len(book.signals.times) else None
            return {"symbol": book.symbol, "strategy": alert.strategy, "action": alert.action,
                    "price": alert.price or close, "features": features or {},
                    "time": pd.Timestamp(bar_time, unit="s", tz="UTC")}

        cid = alert_client_id(self.config.agent_id, alert.alert_id)
        outcome = await self.pipeline.recover(cid, book.symbol, signal_at_order)
        if outcome is None:
            return None
        if outcome.logged:
            self.counts["decisions"] += 1
            if cid in book.pending or (book.held > 1e-12 and book.open_decision is None):
                book.open_decision = outcome.decision_id  # the position it opened is the one held
        if outcome.logged or (outcome.order or {}).get("side") == "sell":
            log.warning("alert %r: its order %s was placed by a run that stopped before remembering it; decision "
                        "logged now", alert.alert_id, (outcome.order or {}).get("id"))
        return outcome.answer()

    async def _on_fill(self, book: _Book, fill: dict[str, Any], bar: Bar) -> list[tuple[int, float, float]]:
        """Book a fill; returns the outcome to record when it closed the position."""
        self.counts["fills"] += 1
        self._holding = True
        if book.swap:
            return await self._on_swap_fill(book, fill, bar)
        for cid, side in list(book.pending.items()):
            if side == fill["side"]:
                del book.pending[cid]
                break
        balance = await self.broker.fetch_balance()
        self._cash[book.quote] = float(balance["total"].get(book.quote, 0.0))
        out = []
        if fill["side"] == "buy":
            if book.held <= 1e-12:
                book.entry_bar = bar.time
            book.held += fill["amount"]
            book.entry_cost += fill["amount"] * fill["price"] + fill["fee"]
        else:
            cost = book.entry_cost * (fill["amount"] / book.held) if book.held > 0 else float("nan")
            book.held = max(book.held - fill["amount"], 0.0)
            if book.held <= 1e-12:
                book.held, book.entry_cost, book.entry_bar = 0.0, 0.0, None
            else:
                book.entry_cost -= cost
            if book.open_decision is not None:
                out.append((book.open_decision, float(fill["pnl"] or 0.0), cost))
                book.open_decision = None
            if self.guard is not None and book.held <= 0.0:
                await self._protect_exit(book, fill, bar.time)
        self.manager.publish("fill", {"symbol": book.symbol, "side": fill["side"], "price": fill["price"],
                                      "amount": fill["amount"], "fee": fill["fee"], "pnl": fill.get("pnl"),
                                      "time": bar.time, "order_id": fill["order_id"]})
        return out

    async def _on_swap_fill(self, book: _Book, fill: dict[str, Any], bar: Bar) -> list[tuple[int, float, float]]:
        """A swap fill: what it closes of the position held (its P&L is the open decision's
        outcome; a reversal closes one position and opens the next in one fill), then what
        it opens (the placed entry's decision becomes the position's)."""
        order = await self.broker.fetch_order(str(fill["order_id"]), book.symbol)
        book.pending.pop(str(order.get("clientOrderId")), None)
        balance = await self.broker.fetch_balance()
        self._cash[book.quote] = float(balance["total"].get(book.quote, 0.0))
        sign = 1.0 if fill["side"] == "buy" else -1.0
        amount, price, prev = float(fill["amount"]), float(fill["price"]), book.held
        closing = min(amount, abs(prev)) if prev * sign < 0 else 0.0
        opening = round(amount - closing, 12)
        if opening <= 1e-9:  # float dust of what closed (a liquidation's amount, say), not a new position
            opening = 0.0
        out: list[tuple[int, float, float]] = []
        if closing > 0:
            cost = book.entry_cost * closing / abs(prev)  # the notional it was opened at
            book.held = round(prev + sign * closing, 12)
            if abs(book.held) <= 1e-9:  # closed (what is left is float dust, not a position)
                book.held, book.entry_cost, book.entry_price, book.entry_bar = 0.0, 0.0, 0.0, None
            else:
                book.entry_cost -= cost
            if book.open_decision is not None:
                out.append((book.open_decision, float(fill["pnl"] or 0.0), cost))
                book.open_decision = None
            if self.guard is not None and not book.held:
                await self._protect_exit(book, fill, bar.time)
        if opening > 0:
            if not book.held:
                book.entry_bar = bar.time
            size = round(abs(book.held) + opening, 12)  # as the broker keeps contracts: no float dust
            book.entry_price = (abs(book.held) * book.entry_price + opening * price) / size if book.held else price
            book.held = sign * size
            book.entry_cost += opening * price
            if book.entry_decision is not None:
                book.open_decision, book.entry_decision = book.entry_decision, None
        self.manager.publish("fill", {"symbol": book.symbol, "side": fill["side"], "price": fill["price"],
                                      "amount": fill["amount"], "fee": fill["fee"], "pnl": fill.get("pnl"),
                                      "time": bar.time, "order_id": fill["order_id"]})
        return out

    async def _refresh_cash(self, book: _Book) -> None:
        """Read the settle currency's total (cash and margin) again; equity is re-held."""
        balance = await self.broker.fetch_balance()
        cash = float(balance["total"].get(book.quote, 0.0))
        if cash != self._cash.get(book.quote):
            self._cash[book.quote] = cash
            self._holding = True
            self._rehold = True

    async def _record_outcome(self, decision_id: int, pnl: float, cost: float, when: float) -> None:
        ret = pnl / cost * 100 if cost and np.isfinite(cost) else None
        self.agent.close_position(decision_id, pnl=pnl, return_pct=ret,
                                  closed_at=pd.Timestamp(when, unit="s", tz="UTC").isoformat())
        self.counts["outcomes"] += 1

    async def _poll_pending(self, book: _Book, bar: Bar) -> list[tuple[int, float, float]]:
        out: list[tuple[int, float, float]] = []
        for cid in list(book.pending):
            order = await self.manager.execute_on_broker(self.config.broker, "fetch_order",
                                                         {"client_order_id": cid, "symbol": book.symbol})
            if order.get("status") == "closed":
                out += await self._exchange_fill(book, order, bar)
            elif order.get("status") in ("canceled", "expired", "rejected"):
                del book.pending[cid]
        return out

    async def _settle_pending(self) -> None:
        """At the end of a session on a venue: book what the venue filled of the orders sent at
        the last bar (there is no next bar to book them at)."""
        if self.broker.has.get("simulatedFills") or self._last_bar is None:
            return
        for book in self.books.values():
            if book.pending:
                for decision_id, pnl, cost in await self._poll_pending(book, self._last_bar):
                    await self._record_outcome(decision_id, pnl, cost, self._last_bar.time)

    async def _exchange_fill(self, book: _Book, order: dict[str, Any], bar: Bar) -> list[tuple[int, float, float]]:
        """A venue's filled order: same bookkeeping as a paper fill, from the order's averages.
        Its fee is the order's, else what the venue's trades of it charged (Binance futures
        answers carry none). Its P&L is what it closes of the position held, net of that
        part's fee: a sell of a long; on a swap also a cover of a short, and of a reversal
        only the part that closes."""
        book.pending.pop(str(order.get("clientOrderId")), None)
        amount = float(order.get("filled") or 0.0)
        price = float(order.get("average") or order.get("price") or bar.close)
        fee = (order.get("fee") or {}).get("cost")
        if fee is None and hasattr(self.broker, "order_fee"):
            fee = await self.broker.order_fee(order)
        fee = float(fee or 0.0)
        pnl = None
        if book.swap:
            sign = 1.0 if order["side"] == "buy" else -1.0
            closing = min(amount, abs(book.held)) if book.held * sign < 0 else 0.0
            if closing > 0 and amount > 0:
                direction = 1.0 if book.held > 0 else -1.0
                pnl = closing * (price - book.entry_price) * direction - fee * closing / amount
        elif order["side"] == "sell" and book.held > 0:
            unit_cost = book.entry_cost / book.held
            pnl = amount * price - fee - unit_cost * amount
        fill = {"side": order["side"], "amount": amount, "price": price, "fee": fee, "pnl": pnl,
                "order_id": order["id"]}
        return await self._on_fill(book, fill, bar)

    # -- equity, drawdown, status -------------------------------------------------------------
    def equity(self) -> float:
        """Cash plus holdings at their last close (in the first symbol's quote currency)."""
        value = sum(self._cash.values())
        for book in self.books.values():
            if book.held and np.isfinite(book.last_close):
                # A swap's cash total holds its margin: the position adds its unrealised P&L.
                value += book.held * (book.last_close - book.entry_price if book.swap else book.last_close)
        return value

    def _mark(self, bar: Bar) -> None:
        self._last_bar = bar
        if self._equity_fills != self.counts["fills"] or self._rehold:  # cash and holdings move with fills (and funding)
            self._rehold = False
            self._equity_fills = self.counts["fills"]
            # cash + held x close is the equity: a swap's margin total less held x entry makes it so.
            swap_entry = sum(b.held * b.entry_price for b in self.books.values() if b.swap)
            self.equity_log.hold(sum(self._cash.values()) - swap_entry, [b.held for b in self.books.values()])
        self.equity_log.mark(bar.time, [bar.close] if len(self.books) == 1 else
                             [b.last_close for b in self.books.values()])
        heartbeat = self.heartbeat is not None and self.heartbeat.due()
        if not heartbeat and not self._holding:
            return  # flat, and no fill since the last look: equity is the cash it was
        equity = self.equity()
        self._holding = any(b.held != 0 for b in self.books.values())
        if not equity > 0:
            return
        # Each level once per peak, restarts included: the state is on disk before it is said.
        drawdown, crossed = self._drawdown.update(equity, self.config.drawdown_alerts)
        peak = self._drawdown.peak
        for level in crossed:
            self.agent.stores.journal.append({"Drawdown": f"{drawdown:.1%}", "Equity": round(equity, 2)},
                                             note=f"equity {drawdown:.1%} below its peak {peak:,.2f}",
                                             at=datetime.fromtimestamp(bar.time, UTC))
            self.manager.publish("drawdown", {"drawdown": drawdown, "equity": equity, "peak": peak,
                                              "level": level, "time": bar.time})
        if heartbeat:
            self.heartbeat.beat(**self._progress(bar))

    def _progress(self, bar: Bar | None = None) -> dict[str, Any]:
        return {"bars": self.counts["bars"], "orders": self.counts["orders"], "fills": self.counts["fills"],
                "equity": round(self.equity(), 2),
                "last_bar": None if bar is None else pd.Timestamp(bar.time, unit="s", tz="UTC").isoformat()}

    def report(self, state: str = "finished") -> dict[str, Any]:
        """What the session did: counts, equity, latency of bar → order."""
        elapsed = time.perf_counter() - self.started_at if self.started_at else 0.0
        lat = np.array(self.latencies) * 1000
        out: dict[str, Any] = {"state": state, **self.counts, "skip_reasons": dict(self.skip_reasons),
                               "short_signals_ignored": dict(self.shorts_ignored),
                               "equity": self.equity(),
                               "return": self.equity() / self.config.balance - 1 if self.config.mode == "paper" else None,
                               "seconds": elapsed, "bars_per_second": self.counts["bars"] / elapsed if elapsed else None,
                               "bar_to_order_ms_p50": float(np.percentile(lat, 50)) if len(lat) else None,
                               "bar_to_order_ms_p99": float(np.percentile(lat, 99)) if len(lat) else None}
        return out

    async def close(self) -> None:
        """Flush the book and memory, write the last heartbeat, close connections."""
        self.equity_log.close()
        if self.heartbeat is not None:
            self.heartbeat.beat(self.state, force=True, **self._progress(self._last_bar))
        await self.manager.close()
        if self._agent is not None:
            self._agent.close()
            self._agent = None
        if getattr(self, "_writer", None) is not None:
            self._writer.release()
