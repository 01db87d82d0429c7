"""The monitor as an ipywidgets app: views dashboard / metrics / trades / memory, refreshed live.

Each refresh reads a :class:`~memlab.dashboard.snapshot.Snapshot` in a worker thread
(read-only SQLite, so the trader is never blocked) and updates only the widgets whose
content changed. Fills are read incrementally by id, decisions by id, and the equity log
by market time; round trips are paired from the new fills only
(:class:`~memlab.dashboard.round_trips.RoundTripBook`), so a refresh with 100,000 round
trips in history reads and computes only what is new.

The dashboard view is a trader's first screen, sized to fit 1440x900 without scrolling:
headline cards (equity, the last market day's P&L, return against buy & hold, drawdown,
open P&L, win rate, Sharpe), equity marked to market with buy & hold and drawdown, the
price with entries, exits and stops (and the agent's confidence at each entry), open
positions, the newest round trips, alerts ranked by severity and health.

Performance comes from the trader's equity log (marked to market every bar, beside a
buy-and-hold benchmark; Sharpe on a regular calendar, labelled with what it covers); a
memory folder written before the log existed falls back to realised P&L and says so.
Times shown are market times (the bar's), so a replay of 2012 reads as 2012; the few
wall-clock times (journal stamps, webhook arrivals, heartbeats, the last write) are
labelled as such.
"""

from __future__ import annotations

import asyncio
import html
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as W
import numpy as np
import pandas as pd

from memlab.config import memory_path as _memory_path
from memlab.dashboard import tables
from memlab.dashboard.figures import HEIGHT as FIGURE_HEIGHT
from memlab.dashboard.figures import equity_figure, price_figure
from memlab.dashboard.metrics import (
    equity_curve,
    equity_summary,
    last_day_change,
    performance,
    pnl_curve,
)
from memlab.dashboard.protections import Pause, running_pause
from memlab.dashboard.round_trips import RoundTrip, RoundTripBook, describe_evidence
from memlab.dashboard.snapshot import (
    Snapshot,
    read_decisions_after,
    read_fills,
    read_orders,
    read_snapshot,
    search_archival,
)
from memlab.trader.equity import read_equity
from memlab.trader.status import rss_mb

VIEWS = ("dashboard", "metrics", "trades", "memory")
#: The views that show figures (equity on both, price on the dashboard).
FIGURE_VIEWS = ("dashboard", "metrics")
DRAWDOWN_ALERT = 0.10
FIGURE_EVERY = 5.0  # seconds between redraws of the figures for new bars alone
PRICE_BARS = 2500  # bars of price drawn (the newest): what a trader watches, and quick to send
MAX_MARKS = 2_000  # the newest fills marked on the price chart
ROUND_TRIPS_SHOWN = 100  # rows of the trades view's round-trip table
ROUND_TRIPS_FIRST_SCREEN = 6  # rows of the dashboard's
ALERTS_SHOWN = 4  # alerts on the first screen; the rest are counted
PROTECTION_STARTS_SHOWN = 2  # the newest protection starts listed as alerts; older ones are counted in one
START_HINT = "memlab paper --symbol BTC/USDT --strategy sma_cross --synthetic 2000 --memory-path {path}"
NO_EQUITY_LOG = ("No equity log in this folder (its trader predates it): equity is cash plus positions at their "
                 "last close, the curve is realised P&L at fills, and there is no Sharpe.")
#: Alert severities, most urgent first (each alert's ``data-severity``).
SEVERITIES = ("critical", "warning", "info")
STOP_TYPES = ("stop_loss", "trailing_stop")
#: What :func:`read_stores` returns: a snapshot, the new fills and the equity log's new rows.
Reading = tuple[Snapshot, pd.DataFrame, "pd.DataFrame | None"]


# The page's probe: an invisible widget that (1) tells the server once the browser has laid
# out and painted the monitor, and (2) keeps the figures as wide as their containers.
# (1): a server page builds its figures only then (see ``MonitorApp(defer_figures=True)``):
# the first message to a plotly widget makes the browser wait for plotly's 5 MB bundle before
# it handles any later message, so figures sent with the first screen held its tables back
# by seconds. A tab the browser keeps hidden paints nothing, so it asks for no figures.
# (2): plotly sizes a figure to its container when it is first drawn, and again only when the
# window resizes: a figure drawn before its container had a width (a tab not shown yet, a
# page still laying out) stays at plotly's 700 px default. This watches every plot and, when
# one's drawn width differs from its container's, fires the window's resize event, which
# makes plotly (``responsive``) and its widget view fit it to the container.
_PAGE_PROBE_JS = """
export default {
  render({ model, el }) {
    el.style.display = "none";
    requestAnimationFrame(() => setTimeout(() => model.send({ event: "shown" }), 0));
    const check = () => {
      for (const plot of document.querySelectorAll(".memlab-monitor .js-plotly-plot")) {
        const width = plot.getBoundingClientRect().width;
        const drawn = plot._fullLayout && plot._fullLayout.width;
        if (width > 0 && drawn && Math.abs(width - drawn) > 2) {
          window.dispatchEvent(new Event("resize"));
          return;
        }
      }
    };
    const timer = setInterval(check, 500);
    return () => clearInterval(timer);
  },
};
"""


def _page_probe() -> W.DOMWidget:
    """The (invisible) widget that says when the page has shown the monitor and keeps figures
    as wide as their containers (see above)."""
    import anywidget

    class PageProbe(anywidget.AnyWidget):  # type: ignore[misc]
        _esm = _PAGE_PROBE_JS

    return PageProbe()


# Classes are given at construction, not added after: each widget a page builds is sent to
# the browser as it is made, and every later change is one more message before the first screen.
def _html(css: str) -> W.HTML:
    return W.HTML(_dom_classes=("memlab-table", css))


def _set(widget: W.HTML, value: str) -> None:
    if widget.value != value:  # unchanged content sends nothing to the browser
        widget.value = value


def _box(children: list[Any], css: str, **layout: str) -> W.VBox:
    return W.VBox(children, layout=W.Layout(min_width="0", **layout), _dom_classes=(css,))


@dataclass(frozen=True, slots=True)
class _Entry:
    """The agent's decision behind an entry order."""

    decision_id: int
    confidence: float
    reason: str
    evidence: str


class MonitorApp:
    """The live monitor for one memory folder::

        app = MonitorApp("data/mem_knowledge", view="trades")
        app.widget          # display it; app.start() refreshes it every `interval` seconds

    Args:
        memory_path: the memory folder (default ``$MEM_MEMORY_PATH`` or ``data/mem_knowledge/``).
        view: the tab shown first, one of :data:`VIEWS`.
        interval: seconds between refreshes (:meth:`start`).
        defer_figures: build no plotly figure until the page says it has shown the monitor
            and a view with figures (:data:`FIGURE_VIEWS`) is selected; the next refresh
            then draws them and :attr:`on_figures_due` is called so the caller can refresh at
            once. The server uses it: the tables and numbers reach the browser first, the
            figures after. False (the default) draws them in the constructor.
        first_read: what :func:`read_stores` read from the start, to show first instead of
            reading the stores again (a server shares one such read among the pages that
            open while the stores do not change); treated as read-only.
    """

    def __init__(self, memory_path: str | os.PathLike[str] | None = None, *, view: str = "dashboard",
                 interval: float = 1.0, defer_figures: bool = False, first_read: Reading | None = None) -> None:
        if view not in VIEWS:
            raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
        self.root = Path(_memory_path(memory_path))
        self.interval = float(interval)
        self._fills = pd.DataFrame()
        self._last_fill = 0
        self._curve: pd.DataFrame | None = None  # realised P&L at fills
        self._perf: dict[str, float] | None = None
        self._equity_log: pd.DataFrame | None = None  # None: no equity log (yet)
        self._summary: dict[str, Any] | None = None
        self._summary_at, self._peak = -math.inf, math.nan
        self._figure_stale, self._figure_at = False, -math.inf
        self._figures_held, self._page_shown = bool(defer_figures), False
        #: called (from the thread that handles the page's messages) when deferred figures
        #: became due: the server wakes the page's refresher with it
        self.on_figures_due: Callable[[], None] = lambda: None
        self._task: asyncio.Task[None] | None = None
        # Round trips and what links them to orders and decisions, all built incrementally.
        self.trips = RoundTripBook()
        self._fill_order: dict[int, tuple[int, str]] = {}  # fill id -> (order id, order type)
        self._order_fill: dict[int, int] = {}  # entry order id -> its fill id
        self._entries: dict[int, _Entry] = {}  # order id -> the decision that placed it
        self._decision_order: dict[int, int] = {}  # decision id -> its order id
        self._last_decision = 0
        self._orders_shown: pd.DataFrame | None = None  # what the orders tables show (re-rendered on change)
        self._orders_missing: str | None = None
        self._fills_key: tuple[bool, str] | None = None
        self.banner = W.HTML(_dom_classes=("memlab-banner",))
        self.cards, self.positions, self.decisions = _html("memlab-cards"), _html("memlab-positions"), _html("memlab-decisions")
        self.alerts, self.health = _html("memlab-alerts"), _html("memlab-health")
        self.perf, self.adaptations = _html("memlab-performance"), _html("memlab-adaptations")
        self.open_orders, self.orders, self.fills = _html("memlab-open-orders"), _html("memlab-orders"), _html("memlab-fills")
        self.round_trips, self.recent_trips = _html("memlab-round-trips"), _html("memlab-round-trips-recent")
        self.core, self.journal, self.parameters = _html("memlab-core-memory"), _html("memlab-journal"), _html("memlab-parameters")
        self.archival = _html("memlab-archival")
        self.webhooks = _html("memlab-webhooks")
        self.query = W.Text(placeholder="search lessons (archival memory)…", continuous_update=False)
        self.query.add_class("memlab-archival-query")
        self.query.observe(lambda _: self._search(), names="value")
        # The figures are built by the first refresh that has data (empty ones only when the
        # folder has none yet): building them twice costs a page's first load ~0.4 s. Their
        # boxes keep the figures' height while empty, so drawing them moves nothing.
        self.equity: Any = None
        self.price: Any = None
        # The equity figure is shown twice (dashboard and metrics), one widget in two boxes;
        # it comes first in the page, so the first plotly plot is the equity figure on every view.
        tall = f"{FIGURE_HEIGHT}px"
        self._equity_boxes = [_box([], "memlab-equity-figure", flex="45 1 0%", min_height=tall),
                              _box([], "memlab-equity-figure", width="100%", min_height=tall)]
        self._price_box = _box([], "memlab-price-chart", flex="55 1 0%", min_height=tall)
        self.metrics = W.VBox([self.perf, self._equity_boxes[1], self.adaptations])
        charts = W.HBox([self._equity_boxes[0], self._price_box], layout=W.Layout(width="100%"))
        lower = W.HBox([_box([self.positions, self.recent_trips], "memlab-side", flex="57 1 0%"),
                        _box([self.alerts, self.health], "memlab-side", flex="43 1 0%")],
                       layout=W.Layout(width="100%", grid_gap="16px"))
        self.pause = W.HTML(_dom_classes=("memlab-pause",))  # empty unless a protection pauses entries now
        first = _box([self.pause, self.cards, charts, lower], "memlab-first-screen", width="100%")
        views = {
            "dashboard": first,
            "metrics": self.metrics,
            "trades": W.VBox([self.round_trips, self.decisions, self.open_orders, self.orders, self.fills,
                              self.webhooks]),
            "memory": W.VBox([self.core, self.journal, self.parameters, self.query, self.archival]),
        }
        self.tabs = W.Tab(children=list(views.values()), titles=list(views), selected_index=VIEWS.index(view))
        self.tabs.observe(lambda _: self._release_figures(), names="selected_index")
        probe = _page_probe()
        probe.on_msg(self._page_message)
        self.widget = W.VBox([W.HTML(tables.STYLE), probe, self.banner, self.tabs],
                             layout=W.Layout(width="100%"), _dom_classes=("memlab-monitor",))
        self.snapshot: Snapshot | None = None
        self.show(*(first_read if first_read is not None else self.read()))
        if self.equity is None and not self._figures_held:  # nothing to draw yet: empty figures, redrawn when data come
            self._place(equity_figure(), price_figure())
        self._search()

    # -- deferred figures ------------------------------------------------------------
    def _page_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("event") == "shown":
            self.page_shown()

    def page_shown(self) -> None:
        """The page has painted the monitor (its probe widget says so): deferred figures
        become due now if a view with figures is selected, else when one is."""
        self._page_shown = True
        self._release_figures()

    def _release_figures(self) -> None:
        """Let the next refresh draw the figures, once the page has shown the monitor on a
        view that has figures (``defer_figures``)."""
        if not (self._figures_held and self._page_shown and VIEWS[self.tabs.selected_index or 0] in FIGURE_VIEWS):
            return
        self._figures_held = False
        self._figure_stale, self._figure_at = True, -math.inf
        self.on_figures_due()

    @property
    def figures_held(self) -> bool:
        """True while ``defer_figures`` holds the figures back (none is built yet)."""
        return self._figures_held

    # -- reading -------------------------------------------------------------------
    def read(self) -> Reading:
        """Read a snapshot, the fills and decisions that are new since the last read and the
        equity log from the last bar shown on (:func:`read_stores`); thread-safe to call off
        the loop."""
        known = self._equity_log
        return read_stores(self.root, after_fill=self._last_fill, after_decision=self._last_decision,
                           equity_since=known.index[-1] if known is not None and len(known) else None)

    def refresh(self) -> None:
        """Read the stores once and update the widgets (synchronously)."""
        self.show(*self.read())

    # -- showing -------------------------------------------------------------------
    def show(self, snap: Snapshot, new_fills: pd.DataFrame, new_equity: pd.DataFrame | None = None) -> None:
        """Update every view from ``snap``, the fills read since the last refresh and the equity
        log from the last bar shown on (``new_equity``; None when the folder has no log)."""
        self.snapshot = snap
        self._take_decisions(snap.new_decisions)
        filled = bool(len(new_fills))
        if filled:
            self._link_fills(new_fills, snap.link_orders if snap.link_orders is not None else snap.orders)
            self.trips.add(new_fills)
            self._fills = new_fills if self._fills.empty else pd.concat([self._fills, new_fills], ignore_index=True)
            self._last_fill = int(self._fills["id"].iloc[-1])
            self._curve, self._perf = pnl_curve(self._fills), self._performance(new_fills)
        if new_equity is not None and self._take_equity(new_equity):
            self._figure_stale = True
        # A new fill redraws at once; new bars alone at most every FIGURE_EVERY seconds
        # (a figure of 5,000 points a trace takes a few hundred ms to build).
        if self._figures_held:
            self._figure_stale = True  # drawn when released, from everything read by then
        elif filled or (self._figure_stale and time.monotonic() - self._figure_at >= FIGURE_EVERY):
            self._figure_stale, self._figure_at = False, time.monotonic()
            self._draw(snap)
        self._banner(snap)
        missing_broker = self._missing(snap, "positions", "no paper broker yet (paper_broker.sqlite not found)")
        _set(self.cards, self._cards(snap))
        perf = tables.cards(self._figures(snap))
        if self._equity_log is None and (self._perf or snap.balances is not None):
            perf += f'<p class="memlab-missing memlab-no-equity-log">{html.escape(NO_EQUITY_LOG)}</p>'
        _set(self.perf, perf)
        _set(self.positions, tables.table(self._positions(snap), "Open positions", missing=missing_broker,
                                          columns=["symbol", "quantity", "entry_price", "mark_price", "unrealised P&L",
                                                   "P&L %", "since (market time)", "stop"],
                                          formats={"P&L %": tables.signed_pct, "since (market time)": _minute},
                                          labels={"entry_price": "entry price (avg, fees in)", "mark_price": "mark"}))
        _set(self.decisions, tables.table(self._decisions(snap), "Agent decisions (newest first)",
                                          missing=self._missing(snap, "decisions", "no decisions store yet"),
                                          columns=[MARKET_TIME, "symbol", "strategy", "action", "confidence", "reason",
                                                   "evidence"]))
        self._order_tables(snap)
        if filled or self._fills_key != (snap.orders is None, missing_broker):  # 200 rows: rendered when they change
            self._fills_key = (snap.orders is None, missing_broker)
            recent_fills = None if snap.orders is None and self._fills.empty else self._recent_fills()
            _set(self.fills, tables.table(recent_fills, "Fills (newest 200)", missing=missing_broker,
                                          columns=[MARKET_TIME, "symbol", "side", "kind", "price", "amount", "fee",
                                                   "pnl"]))
        _set(self.round_trips, self._trip_table(ROUND_TRIPS_SHOWN, "Round trips (FIFO per symbol; newest first)",
                                                snap, full=True))
        _set(self.recent_trips, self._trip_table(ROUND_TRIPS_FIRST_SCREEN, "Newest round trips", snap, full=False))
        params = _parameter_changes(snap.parameters)
        _set(self.adaptations, tables.table(params, "Adaptations (parameter changes: reason, from, to)",
                                            missing=self._missing(snap, "parameters", "no parameter_updates.json yet")))
        _set(self.parameters, self.adaptations.value.replace("Adaptations (parameter changes: reason, from, to)",
                                                              "Parameter history"))
        core = None if snap.core_memory is None else pd.DataFrame(list(snap.core_memory.items()), columns=["block", "text"])
        _set(self.core, tables.table(core, "Core memory blocks", missing="no core_memory.json yet (agent not started)"))
        _set(self.journal, tables.table(pd.DataFrame({"line": snap.journal[::-1]}),
                                        "Recent journal lines (stamped with the wall clock when written)", missing=""))
        _set(self.webhooks, tables.table(_wall_time(snap.webhooks), "Webhook signals in (newest 50)",
                                         missing="no webhook endpoint yet (ConnectionManager.add_webhook)"))
        _set(self.alerts, self._alerts(snap))
        _set(self.pause, self._pause_notice(snap))
        _set(self.health, self._health(snap))

    def _performance(self, new: pd.DataFrame) -> dict[str, float]:
        """:func:`~memlab.dashboard.metrics.performance` of every fill so far, from the new ones
        (the last market day's P&L from the fills since that day began, found by bisection)."""
        perf = performance(new)
        old = self._perf
        if old is not None:
            closed = old["closed_trades"] + perf["closed_trades"]
            wins = (old["win_rate"] * old["closed_trades"] if old["closed_trades"] else 0.0) + (
                perf["win_rate"] * perf["closed_trades"] if perf["closed_trades"] else 0.0)
            perf |= {"realized_pnl": old["realized_pnl"] + perf["realized_pnl"], "closed_trades": closed,
                     "win_rate": wins / closed if closed else math.nan}
        times = pd.DatetimeIndex(self._fills["time"])
        day = times[-1].floor("D")
        perf["last_day_pnl"] = float(self._fills["pnl"].iloc[int(times.searchsorted(day)):].fillna(0.0).sum())
        return perf

    def _order_tables(self, snap: Snapshot) -> None:
        """The open and closed orders tables, rendered only when the orders read changed."""
        missing_orders = self._missing(snap, "orders", "no paper broker yet (paper_broker.sqlite not found)")
        known, now = self._orders_shown, snap.orders
        if (known is None) == (now is None) and (now is None or known.equals(now)) and \
                self._orders_missing == missing_orders:
            return
        self._orders_shown, self._orders_missing = now, missing_orders
        orders = _orders(now)
        order_cols = [MARKET_TIME, "id", "symbol", "type", "side", "price", "amount", "filled", "avg fill price", "fee",
                      "status"]
        _set(self.open_orders, tables.table(None if orders is None else orders[orders["status"] == "open"],
                                            "Open / pending orders", missing=missing_orders, columns=order_cols))
        _set(self.orders, tables.table(None if orders is None else orders[orders["status"] != "open"],
                                       "Closed orders (newest 200)", missing=missing_orders, columns=order_cols))

    @staticmethod
    def _missing(snap: Snapshot, source: str, default: str) -> str:
        """What a table says when its source gave nothing: unreadable (and why), or not there yet."""
        failed = snap.failed.get(source)
        if not failed:
            return default
        what = failed.split(". ")[0].split(": ", 2)[-1]  # "the paper broker book is not a readable ..." (no path)
        return f"unreadable — {what}; see Alerts (the other stores are still shown)"

    # -- linking fills, orders and decisions -------------------------------------------
    def _take_decisions(self, new: pd.DataFrame | None) -> None:
        """Remember which order each new decision placed (its stored ``order.order_id``)."""
        if new is None or not len(new):
            return
        for did, conf, reason, meta in zip(new["id"].tolist(), new["confidence"].tolist(), new["reason"].tolist(),
                                           new["evidence"].tolist(), strict=True):
            try:
                order = (json.loads(meta) if isinstance(meta, str) and meta else {}).get("order") or {}
                oid = int(order.get("order_id"))
            except (ValueError, TypeError, AttributeError):
                continue  # a decision not placed through an order (or stored by an older trader)
            self._entries[oid] = _Entry(int(did), float(conf), str(reason or ""), meta if isinstance(meta, str) else "")
            self._decision_order[int(did)] = oid
        self._last_decision = int(new["id"].iloc[-1])

    def _link_fills(self, fills: pd.DataFrame, orders: pd.DataFrame | None) -> None:
        """Each new fill's order (id and type), found among the closed orders by what only it
        filled: symbol, side, average price and filled amount (the book writes both from the
        same numbers). A fill whose order is not among them keeps kind entry/exit by side."""
        index: dict[tuple[str, str, float, float], tuple[int, str]] = {}
        if orders is not None and len(orders):
            done = orders[orders["filled"].fillna(0) > 0]
            for oid, sym, side, avg, filled, type_ in zip(done["id"].tolist(), done["symbol"].tolist(),
                                                           done["side"].tolist(), done["average"].tolist(),
                                                           done["filled"].tolist(), done["type"].tolist(), strict=True):
                index[(sym, side, float(avg), float(filled))] = (int(oid), str(type_))
        for fid, sym, side, price, amount in zip(fills["id"].tolist(), fills["symbol"].tolist(), fills["side"].tolist(),
                                                  fills["price"].tolist(), fills["amount"].tolist(), strict=True):
            found = index.get((sym, side, float(price), float(amount)))
            if found is not None:
                self._fill_order[int(fid)] = found
                if side == "buy":
                    self._order_fill[found[0]] = int(fid)

    def _kind(self, fill_id: int, side: str) -> str:
        if side == "buy":
            return "entry"
        type_ = self._fill_order.get(fill_id, (0, ""))[1]
        return "stop" if type_ in STOP_TYPES else "take profit" if type_ == "take_profit" else "exit"

    def _entry(self, trip: RoundTrip) -> _Entry | None:
        order = self._fill_order.get(trip.entry_fill)
        return None if order is None else self._entries.get(order[0])

    def _past(self, decision_id: int) -> tuple[float, pd.Timestamp] | None:
        """A past decision's trade: its P&L as a fraction of cost and its entry time."""
        order = self._decision_order.get(decision_id)
        fill = None if order is None else self._order_fill.get(order)
        trips = [] if fill is None else self.trips.by_entry.get(fill, [])
        cost = sum(t.cost for t in trips)
        return (sum(t.pnl for t in trips) / cost, trips[0].entry_time) if trips and cost else None

    # -- figures -----------------------------------------------------------------------
    def _draw(self, snap: Snapshot) -> None:
        log = self._equity_log
        if log is not None and len(log):
            equity = equity_figure(equity_curve(log), self._curve, benchmark_name=_benchmark_name(log))
        else:
            equity = equity_figure(None, self._curve)
        self._place(equity, self._price_figure(snap))

    def _place(self, equity: Any, price: Any) -> None:
        """Show new figures in their boxes and close the ones they replace."""
        old = (self.equity, self.price)
        self.equity, self.price = equity, price
        for box in self._equity_boxes:
            box.children = (self.equity,)
        self._price_box.children = (self.price,)
        self.metrics.children = (self.perf, self._equity_boxes[1], self.adaptations)
        for fig in old:
            if fig is not None:
                fig.close()  # its comm and its data, which nothing shows any more

    def _price_figure(self, snap: Snapshot) -> Any:
        """The price of the symbol traded last (else the log's first) over the newest
        PRICE_BARS bars of the equity log, with that window's fills and the open stops."""
        log = self._equity_log
        closes = [c.split(":", 1)[1] for c in (log.columns if log is not None else []) if c.startswith("close:")]
        symbol = str(self._fills["symbol"].iloc[-1]) if len(self._fills) else (closes[0] if closes else "")
        if closes and symbol not in closes:
            symbol = closes[0]
        prices, note = None, ""
        if log is not None and len(log) and symbol in closes:
            prices = log[f"close:{symbol}"].iloc[-PRICE_BARS:].dropna()
            if len(log) > PRICE_BARS:
                note = f"newest {PRICE_BARS:,} bars"
            if len(closes) > 1:
                note = (note + "; " if note else "") + f"1 of {len(closes)} symbols"
        elif symbol:
            note = "no bar prices in this folder (no equity log): trades only"
        marks = None
        if len(self._fills) and symbol:
            fills = self._fills
            if prices is not None and len(prices):  # fills come in time order: bisect, not scan 200,000
                fills = fills.iloc[int(pd.DatetimeIndex(fills["time"]).searchsorted(prices.index[0])):]
            # A chart shows a few hundred marks readably; a folder without bar prices (no
            # window) could otherwise mark 200,000 fills and take seconds each redraw.
            fills = fills[fills["symbol"] == symbol].iloc[-MAX_MARKS:]
            marks = fills.assign(kind=[self._kind(int(i), s) for i, s in zip(fills["id"], fills["side"], strict=True)])
            hover, label = [], []
            for fid, side, when, price, amount, pnl, kind in zip(marks["id"], marks["side"], marks["time"], marks["price"],
                                                                 marks["amount"], marks["pnl"], marks["kind"], strict=True):
                head = (f"{kind} {side} {tables.quantity(amount)} @ {tables.price(price)}<br>"
                        f"{pd.Timestamp(when).strftime('%Y-%m-%d %H:%M')} (market time)")
                if side == "buy":
                    entry = self._entries.get(self._fill_order.get(int(fid), (0, ""))[0])
                    conf = tables.confidence(entry.confidence) if entry else "?"
                    why = html.escape(entry.reason[:110]) if entry else "no decision found for this order"
                    hover.append(f"{head}<br>confidence {conf}<br>{why}")
                    label.append(conf if entry else "")
                else:
                    hover.append(f"{head}<br>realised P&L {tables.signed_money(pnl)}")
                    label.append("")
            marks = marks.assign(hover=hover, label=label)
        stops: list[float] = []
        if snap.orders is not None and len(snap.orders):
            o = snap.orders
            live = o[(o["status"] == "open") & o["type"].isin(STOP_TYPES) & (o["symbol"] == symbol)]
            stops = sorted(set(live["price"].dropna().astype(float).tolist()))
        return price_figure(prices, marks, symbol=symbol, stops=stops, note=note)

    def _take_equity(self, new: pd.DataFrame) -> bool:
        """Merge the equity rows read from the last bar shown on; True when anything changed."""
        known = self._equity_log
        if known is None or not len(known):
            self._equity_log = new
        else:
            if not len(new) or known[known.index >= new.index[0]].equals(new):
                return False
            self._equity_log = pd.concat([known[known.index < new.index[0]], new])
        log = self._equity_log
        if not len(log):
            self._summary = None
        elif self._summary is None or time.monotonic() - self._summary_at >= FIGURE_EVERY:
            # The full summary (Sharpe resamples the whole log) at most every FIGURE_EVERY s ...
            self._summary, self._summary_at = equity_summary(log), time.monotonic()
            self._peak = float(log["equity"].max())
        else:
            # ... in between, the figures that move every bar, from the new rows alone.
            value = new["equity"].to_numpy(float)
            peaks = np.maximum.accumulate(np.concatenate([[self._peak], value]))[1:]
            self._peak = float(peaks[-1])
            first = log.iloc[0]
            self._summary = self._summary | {
                "equity": float(value[-1]), "as_of": log.index[-1],
                "return": float(value[-1] / first["equity"] - 1.0),
                "benchmark_return": float(log["benchmark"].iloc[-1] / first["benchmark"] - 1.0),
                "max_drawdown": max(self._summary["max_drawdown"], float(-(value / peaks - 1.0).min()))}
        return self._summary is not None or known is None

    # -- tables --------------------------------------------------------------------------
    def _positions(self, snap: Snapshot) -> pd.DataFrame | None:
        pos = snap.positions
        if pos is None:
            return None
        pos = pos.copy()
        pos["unrealised P&L"] = pos["unrealized_pnl"]
        cost = pos["entry_price"] * pos["quantity"]
        pos["P&L %"] = (pos["unrealized_pnl"] / cost).where(cost > 0)
        since = {}
        for lots in self.trips.lots.values():
            for lot in lots:
                since.setdefault(lot.symbol, lot.entry_time)
        pos["since (market time)"] = [since.get(s) for s in pos["symbol"]]
        stops: dict[str, float] = {}
        if snap.orders is not None and len(snap.orders):
            o = snap.orders
            live = o[(o["status"] == "open") & o["type"].isin(STOP_TYPES)]
            stops = live.groupby("symbol")["price"].max().to_dict()
        pos["stop"] = [stops.get(s) for s in pos["symbol"]]
        return pos

    def _decisions(self, snap: Snapshot) -> pd.DataFrame | None:
        frame = _market_time(snap.decisions)
        if frame is None:
            return None
        frame = frame.copy()
        frame["evidence"] = [describe_evidence(m, r, self._past) for m, r in
                             zip(frame["evidence"].tolist(), frame["reason"].tolist(), strict=True)]
        return frame

    def _recent_fills(self) -> pd.DataFrame:
        recent = self._fills.tail(200).iloc[::-1]
        if not len(recent):
            return recent.reindex(columns=[MARKET_TIME, "symbol", "side", "kind", "price", "amount", "fee", "pnl"])
        recent = recent.assign(kind=[self._kind(int(i), s) for i, s in zip(recent["id"], recent["side"], strict=True)])
        return _market_time(recent)  # type: ignore[return-value]

    def _trip_table(self, n: int, caption: str, snap: Snapshot, *, full: bool) -> str:
        if snap.orders is None and not self.trips.fills_seen:
            return tables.table(None, caption, missing=self._missing(snap, "fills", "no fills yet (no paper broker)"))
        marks = _marks(snap, self._equity_log)
        # Market "now": the newest bar seen, in the equity log or in the fills (written first).
        seen = [t for t in (self._summary["as_of"] if self._summary is not None else None,
                            self._fills["time"].iloc[-1] if len(self._fills) else None) if t is not None]
        now = max(seen) if seen else None
        rows = []
        for trip in self.trips.newest(n):
            entry = self._entry(trip)
            if trip.is_open:
                mark = marks.get(trip.symbol)
                pnl, frac = trip.unrealised(mark) if mark is not None else (math.nan, math.nan)
                exit_kind, exit_time, exit_price = "open", None, mark
            else:
                pnl, frac = trip.pnl, trip.pnl_pct
                exit_kind, exit_time, exit_price = self._kind(trip.exit_fill or 0, "sell"), trip.exit_time, trip.exit_price
            row = {"symbol": trip.symbol, "entry (market time)": trip.entry_time, "entry price": trip.entry_price,
                   "exit (market time)": exit_time, "exit price": exit_price, "size": trip.size, "P&L": pnl,
                   "P&L %": frac, "duration": trip.duration(now), "exit": exit_kind,
                   "confidence": entry.confidence if entry else None}
            if full:
                row |= {"fees": trip.fees, "reason": entry.reason if entry else "",
                        "similar past trades": describe_evidence(entry.evidence, entry.reason, self._past) if entry else ""}
            rows.append(row)
        cols = ["symbol", "entry (market time)", "entry price", "exit (market time)", "exit price", "size", "P&L",
                "P&L %", "duration", "exit", "confidence"]
        if full:
            cols[8:8] = ["fees"]
            cols += ["reason", "similar past trades"]
        else:  # the first screen's: narrower (P&L and % in one cell; the symbol only when several)
            for row in rows:
                row["P&L"] = tables.pnl_with_pct(row["P&L"], row["P&L %"])
            cols = [c for c in cols if c not in ("size", "P&L %") and (c != "symbol" or len(self.trips.lots) > 1)]
        total = len(self.trips.closed) + sum(len(v) for v in self.trips.lots.values())
        fmts = {"P&L": tables.signed_money, "P&L %": tables.signed_pct, "entry (market time)": _minute,
                "exit (market time)": _minute}
        return tables.table(pd.DataFrame(rows, columns=cols), caption, missing="", columns=cols, formats=fmts,
                            total=total)

    # -- headline figures ----------------------------------------------------------------
    def _cards(self, snap: Snapshot) -> str:
        """The first screen's headline: marked-to-market equity, the last market day's P&L,
        return against buy & hold, drawdown, open P&L, win rate of round trips, Sharpe."""
        s, log = self._summary, self._equity_log
        out: dict[str, str | tuple[str, str]] = {}
        if s is not None and log is not None:
            out["equity"] = (tables.money(s["equity"]), f"market time {_minute(s['as_of'])}")
            change, frac, day = last_day_change(log["equity"])
            out["today's P&L"] = (tables.pnl_with_pct(change, frac), f"market day {day:%Y-%m-%d}" if day else "")
            out["return"] = (tables.signed_pct(s["return"]), f"buy & hold {tables.signed_pct(s['benchmark_return'])}")
            out["max drawdown"] = (tables.pct(s["max_drawdown"]), f"now {tables.pct(abs(_drawdown(log)))}")
        else:
            out["equity"] = (tables.money(self._equity(snap)), "cash + positions at last close")
            if self._perf:
                out["last day P&L"] = (tables.signed_money(self._perf["last_day_pnl"]), "realised, market day")
        if snap.positions is not None:
            out["open P&L"] = (tables.signed_money(float(snap.positions["unrealized_pnl"].sum())),
                               f"{len(snap.positions)} position(s)")
        closed = len(self.trips.closed)
        out["win rate"] = (tables.pct(self.trips.win_rate), f"{closed:,} round trips")
        out["realised P&L"] = (tables.signed_money(self.trips.realised) if closed else "—", "net of fees")
        if s is not None:
            sharpe = s["sharpe"]
            out["Sharpe"] = (_num(sharpe.value), f"{sharpe.frequency} returns, ×√{sharpe.per_year:,.0f}"
                             if sharpe.periods >= 2 else "needs 2+ periods")
        return tables.cards(out)

    def _figures(self, snap: Snapshot) -> dict[str, str]:
        """The metrics view's cards: marked-to-market figures from the equity log (else the
        fallback), then realised ones from the fills."""
        s, perf = self._summary, self._perf
        if s is not None:
            sharpe = s["sharpe"]
            figures = {"equity": _money(s["equity"]), "market time": tables.fmt(s["as_of"]),
                       "return": _pct(s["return"]), "buy & hold": _pct(s["benchmark_return"]),
                       "max drawdown": _pct(s["max_drawdown"]), sharpe.label: _num(sharpe.value)}
        else:
            figures = {"equity": _money(self._equity(snap))}
        if perf:
            figures |= {"realised P&L": _money(perf["realized_pnl"]), "last market day P&L": _money(perf["last_day_pnl"]),
                        "win rate": _pct(perf["win_rate"]), "closed trades": f"{perf['closed_trades']:.0f}"}
        return figures

    def _banner(self, snap: Snapshot) -> None:
        where = html.escape(str(snap.memory_path))
        if not snap.exists:
            hint = html.escape(START_HINT.format(path=snap.memory_path))
            _set(self.banner, f'<div class="memlab-banner-missing">No trader has written to {where} yet: the memory '
                              f"folder does not exist. Start a paper trader on it with <code>{hint}</code> (or set "
                              f"MEM_MEMORY_PATH) and this page fills in by itself. · refreshed "
                              f"{tables.fmt(snap.read_at)} UTC (wall clock)</div>")
            return
        t = snap.trader or {}
        who = (f" (pid {t.get('pid')}, {html.escape(str(t.get('mode', '')))} {html.escape(', '.join(t.get('symbols', [])))} "
               f"{html.escape(str(t.get('strategy', '')))})") if t else ""
        bar = self._summary["as_of"] if self._summary is not None else t.get("last_bar")
        if bar:
            where = f"market time {tables.fmt(pd.Timestamp(bar))} UTC · {where}"
        if snap.last_write is None:
            text, css = f"No trader has written to {where} yet: nothing to show.", "memlab-banner-stale"
        elif snap.trader_live:
            text, css = (f"Trader running{who} — last write {tables.fmt(snap.last_write)} UTC (wall clock) · {where}",
                         "memlab-banner-live")
        else:
            gone = t.get("state") == "running"  # it never wrote its last heartbeat
            state = f" ({'stopped unexpectedly' if gone else html.escape(str(t.get('state')))})" if t else ""
            text, css = (f"Trader not running{state} — showing last state from {tables.fmt(snap.last_write)} UTC "
                         f"(wall clock) · {where}", "memlab-banner-stale")
        _set(self.banner, f'<div class="{css}">{text} · refreshed {tables.fmt(snap.read_at)} UTC (wall clock)</div>')

    def _equity(self, snap: Snapshot) -> float:
        if snap.balances is None or snap.orders is None:
            return math.nan
        quotes = {s.split("/")[-1] for s in snap.orders["symbol"]} or set(snap.balances)
        value = sum(snap.balances.get(q, 0.0) for q in quotes)
        if snap.positions is not None:
            value += float((snap.positions["quantity"] * snap.positions["mark_price"]).sum())
        return value

    # -- alerts and health -----------------------------------------------------------------
    def alert_items(self, snap: Snapshot) -> list[tuple[str, str]]:
        """Every alert as ``(severity, text)``, most urgent first: real problems (drawdown
        beyond the threshold, a connection down, a trader that stopped without saying so, a
        damaged store) are ``critical``; things to watch ``warning`` (protection starts
        among them, first: the one running now, then the newest, with their market time
        and reason); routine events (adaptations, the cooldown's blocks) ``info``."""
        items: list[tuple[str, str]] = []
        log = self._equity_log
        if log is not None and len(log):
            value = log["equity"]
            dd = _drawdown(log)
            if -dd > DRAWDOWN_ALERT:
                items.append(("critical", f"Drawdown {-dd:.1%} below peak equity {_money(float(value.max()))} "
                                          f"(market time {tables.fmt(log.index[-1])} UTC)"))
            elif -dd > DRAWDOWN_ALERT / 2:
                items.append(("warning", f"Drawdown {-dd:.1%} below peak equity (alert at {DRAWDOWN_ALERT:.0%})"))
        elif self._curve is not None and len(self._curve):
            equity = self._equity(snap)
            dd = float(self._curve["drawdown"].iloc[-1])
            if equity and not math.isnan(equity) and -dd > DRAWDOWN_ALERT * equity:
                items.append(("critical", f"Drawdown {_money(dd)} of realised P&L is more than {DRAWDOWN_ALERT:.0%} "
                                          "of equity"))
        items += [("warning", text) for text in self._protection_alerts(snap)]
        for name, c in ((snap.connections or {}).get("connections") or {}).items():
            if c.get("state") == "down":
                items.append(("critical", f"Lost connection: {name} ({c.get('venue')}) is down since "
                                          f"{tables.fmt(_utc(c.get('since')))} UTC (wall clock) — "
                                          f"{c.get('last_error') or 'no answer'}"))
            elif c.get("state") == "retrying":
                items.append(("warning", f"Connection {name} ({c.get('venue')}) is retrying after "
                                         f"{c.get('consecutive_errors')} error(s): {c.get('last_error')}"))
        t = snap.trader
        if t and t.get("state") == "running" and not t.get("alive"):
            items.append(("critical", f"Trader (pid {t.get('pid')}) stopped without saying so (killed or crashed?); "
                                      f"last heartbeat {tables.fmt(_utc(t.get('heartbeat_at')))} UTC (wall clock)"))
        elif t and t.get("state") == "crashed":
            items.append(("critical", f"Trader (pid {t.get('pid')}) stopped on an error; see its log"))
        by_error: dict[str, list[str]] = {}  # one alert per damaged store, naming what it broke
        for source, why in snap.failed.items():
            by_error.setdefault(why, []).append(source)
        items += [("critical", f"Source unreadable (damaged store?) — {', '.join(sources)}: {why}")
                  for why, sources in by_error.items()]
        items += [("critical", f"Source unreadable — {e}") for e in snap.errors
                  if e.split(":", 1)[0] not in snap.failed]
        last_failure = (snap.deliveries or {}).get("last_failure")
        if last_failure:
            items.append(("warning", f"Alert delivery failed ({last_failure.get('event')} to {last_failure.get('target')}, "
                                     f"{last_failure.get('time')}): {last_failure.get('error') or last_failure.get('status')}"))
        unmatched = {s: q for s, q in self.trips.unmatched.items() if q > 0}
        if unmatched:
            items.append(("warning", "Sells with no open entry in the book (a position older than the book?): "
                                     + ", ".join(f"{s} {tables.quantity(q)}" for s, q in unmatched.items())))
        items += [("info", text) for text in _adaptations(snap.parameters, 3)]
        cooldown = snap.cooldown or {}
        if cooldown.get("blocked"):
            n = cooldown["blocked"]
            items.append(("info", f"Cooldown held back {n:,} entr{'y' if n == 1 else 'ies'}; the newest at market time "
                                  f"{_minute(cooldown['time'])} UTC: {cooldown['note']}"))
        rank = {s: i for i, s in enumerate(SEVERITIES)}
        return sorted(items, key=lambda item: rank[item[0]])  # stable: each severity keeps its order

    def running_pause(self, snap: Snapshot) -> Pause | None:
        """The protection pausing entries at the session's last bar, or None (the rule:
        :func:`memlab.dashboard.protections.running_pause`, over the equity log's bars)."""
        log = self._equity_log
        if log is None or not len(log):
            return None
        return running_pause(snap.protections, pd.DatetimeIndex(log.index))

    def _protection_alerts(self, snap: Snapshot) -> list[str]:
        """Warnings for the newest protection starts, newest first (the one running now says
        so and how long it has left), and one that counts the older ones."""
        starts = snap.protections
        if starts is None or not len(starts):
            return []
        running = self.running_pause(snap)
        counted = self._equity_log is not None and len(self._equity_log) > 0
        out = []
        for i, (when, row) in enumerate(starts.iloc[::-1].head(PROTECTION_STARTS_SHOWN).iterrows()):
            blocked = f"; {row['blocked']:,} entr{'y' if row['blocked'] == 1 else 'ies'} blocked" if row["blocked"] else ""
            head = f"Protection {row['protection']} started at market time {_minute(when)} UTC for {row['bars']} bars"
            if i == 0 and running is not None:
                until = f", until ~{_minute(running.ends)} UTC" if running.ends is not None else ""
                state = f"running now: {running.left} of {running.bars} bars left{until}"
            elif counted:
                state = "over"
            else:
                state = "no equity log to count bars: whether it still runs is unknown"
            out.append(f"{head} ({state}) — {row['reason']}{blocked}")
        if len(starts) > PROTECTION_STARTS_SHOWN:
            older = len(starts) - PROTECTION_STARTS_SHOWN
            out.append(f"{older} earlier protection start{'s' if older > 1 else ''} this session "
                       f"(first at market time {_minute(starts.index[0])} UTC); see the journal")
        return out

    def _pause_notice(self, snap: Snapshot) -> str:
        """The first screen's line when a protection pauses entries now (else nothing)."""
        pause = self.running_pause(snap)
        if pause is None:
            return ""
        until = f" (until ~{_minute(pause.ends)} UTC)" if pause.ends is not None else ""
        return (f'<div class="memlab-pause-running" data-protection="{html.escape(pause.protection)}">'
                f"<b>Entries paused now</b> — {html.escape(pause.protection)} since market time "
                f"{_minute(pause.started)} UTC: {pause.left} of {pause.bars} bars left at the last bar "
                f"{_minute(pause.last_bar)}{until} · {html.escape(pause.reason)}</div>")

    def _alerts(self, snap: Snapshot) -> str:
        items = self.alert_items(snap)
        if not items:
            return '<b>Alerts</b><p class="memlab-missing">No alerts.</p>'
        counts = {s: sum(1 for sev, _ in items if sev == s) for s in SEVERITIES}
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        shown = "".join(f'<li class="memlab-alert" data-severity="{sev}">{html.escape(text)}</li>'
                        for sev, text in items[:ALERTS_SHOWN])
        more = (f'<li class="memlab-missing">and {len(items) - ALERTS_SHOWN} more</li>'
                if len(items) > ALERTS_SHOWN else "")
        return f"<b>Alerts</b> ({summary})<ul>{shown}{more}</ul>"

    def _health(self, snap: Snapshot) -> str:
        rows = []
        t = snap.trader
        last = "never" if snap.last_write is None else f"{tables.fmt(snap.last_write)} UTC (wall clock)"
        if t:
            alive = "running" if t.get("alive") else f"not running ({t.get('state')})"
            beat = _utc(t.get("heartbeat_at"))
            ago = "" if beat is None else f", {tables.duration((snap.read_at - beat).total_seconds())} ago"
            rows.append(f'<li class="memlab-trader">trader pid {t.get("pid")}: {html.escape(alive)}, '
                        f"process memory {t.get('rss_mb', float('nan')):.0f} MiB, {t.get('bars', 0):,} bars, "
                        f"{t.get('orders', 0):,} orders, last bar {html.escape(_minute(_ts(t.get('last_bar'))))} "
                        f"(market time); heartbeat {tables.fmt(beat)} UTC (wall clock{ago}); last write {last}; "
                        f"monitor process memory {rss_mb():.0f} MiB</li>")
        else:
            rows.append('<li class="memlab-missing">no trader heartbeat yet (trader_status.json not found)</li>')
            rows.append(f"<li>last write to the stores {last}; monitor process memory {rss_mb():.0f} MiB</li>")
        if snap.deliveries is not None:
            rows.append(f"<li>alerts out: {snap.deliveries['delivered']} delivered, {snap.deliveries['failed']} failed</li>")
        conns = _connections(snap)
        table = tables.table(conns, "Connections", missing="no connection health yet (connections.json not found)",
                             columns=["name", "kind", "venue", "state", "latency_ms", "errors", "last success (wall clock)"])
        return f"<b>System health</b><ul>{''.join(rows)}</ul>" + table.replace("<table", '<table class="memlab-connections"', 1)

    def _search(self) -> None:
        try:
            found = search_archival(self.root, self.query.value)
        except Exception as exc:  # noqa: BLE001 - a bad query is shown, not raised into the page
            _set(self.archival, f'<p class="memlab-alert">search failed: {html.escape(str(exc))}</p>')
            return
        caption = f"Lessons matching {self.query.value!r}" if self.query.value else "Newest lessons"
        _set(self.archival, tables.table(found, caption, missing="no archival memory yet (archival.sqlite not found)"))

    # -- live loop -----------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        """Refresh every ``interval`` seconds on the kernel's event loop (reads run in a thread)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_event_loop().create_task(self._loop())
        return self._task

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.show(*await loop.run_in_executor(None, self.read))
            except Exception as exc:  # noqa: BLE001 - keep refreshing; say what failed
                _set(self.banner, f'<div class="memlab-banner-stale">refresh failed: {html.escape(repr(exc))}</div>')


def read_stores(root: Path, *, after_fill: int = 0, after_decision: int = 0,
                equity_since: pd.Timestamp | None = None) -> Reading:
    """What the monitor reads on each refresh: a snapshot, the fills with id > ``after_fill``,
    the decisions with id > ``after_decision`` (``snapshot.new_decisions``) and the equity log
    from ``equity_since`` on (None without a log). The defaults read everything: what a new
    :class:`MonitorApp` starts from (``first_read``). A source that cannot be read is named
    in the snapshot's errors."""
    # Fills first: the book is then read after them (positions, orders), so every new
    # fill's order is found there already filled, and positions are never older than fills.
    new, fills_error = None, None
    try:
        new = read_fills(root, after_id=after_fill)
    except Exception as exc:  # noqa: BLE001 - a damaged book is named; the other stores still show
        fills_error = exc
    snap = read_snapshot(root, fills=False, equity=False)
    if fills_error is not None:
        snap.fail("fills", fills_error)
    # The orders behind the new fills (to tell stops from exits and find the decision):
    # the newest 200 cover a refresh's fills; a first read of a long history reads more.
    snap.link_orders = snap.orders
    if new is not None and len(new) > 60:
        try:
            snap.link_orders = read_orders(root, limit=3 * len(new) + 200)
        except Exception as exc:  # noqa: BLE001
            snap.fail("orders", exc)
    try:
        snap.new_decisions = read_decisions_after(root, after_decision)
    except Exception as exc:  # noqa: BLE001
        if "decisions" not in snap.failed:
            snap.fail("decisions", exc)
    equity = None
    try:
        equity = read_equity(root, since=equity_since)
    except Exception as exc:  # noqa: BLE001
        snap.fail("equity log", exc)
    return snap, new if new is not None else pd.DataFrame(), equity


def _connections(snap: Snapshot) -> pd.DataFrame | None:
    """Each connection's state and latency from the trader's ``connections.json``."""
    board = (snap.connections or {}).get("connections")
    if not board:
        return None
    frame = pd.DataFrame(list(board.values()))
    frame["last success (wall clock)"] = [tables.fmt(_utc(v)) for v in frame["last_success"]]
    frame["latency_ms"] = [f"{v:.2f}" if isinstance(v, int | float) else "" for v in frame["latency_ms"]]
    return frame


MARKET_TIME = "market time"


def _market_time(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """A store's ``time`` (the bar's time: fills, orders, decisions) labelled as market time."""
    return None if frame is None else frame.rename(columns={"time": MARKET_TIME})


def _orders(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """Orders as a trader reads them: a market order has no price and, when placed by cost,
    no amount, so its price is its average fill price and its amount what it filled
    ("market" while it waits for the next bar)."""
    if frame is None:
        return None
    out = _market_time(frame).copy()  # type: ignore[union-attr]
    market = out["price"].isna()
    out["avg fill price"] = out["average"]
    out["price"] = out["price"].astype(object).where(~market, out["average"].astype(object))
    out.loc[market & out["average"].isna(), "price"] = "market"
    out["amount"] = out["amount"].astype(object).where(out["amount"].notna(), out["filled"].where(out["filled"] > 0))
    return out


def _wall_time(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """A wall-clock ``time`` (when a request arrived) labelled as such."""
    return None if frame is None else frame.rename(columns={"time": "received (wall clock)"})


def _parameter_changes(params: pd.DataFrame | None) -> pd.DataFrame | None:
    """Newest first: the market time of the bar behind each change (when replaying), the
    change, and when it was written (wall clock)."""
    if params is None:
        return None
    frame = params.iloc[::-1].reset_index().rename(columns={"time": "written (wall clock)", "market_time": MARKET_TIME})
    first = [MARKET_TIME] if MARKET_TIME in frame else []
    return frame[first + [c for c in frame.columns if c != MARKET_TIME]]


def _adaptations(params: pd.DataFrame | None, most: int) -> list[str]:
    """The newest ``most`` adaptations, newest first, one line each: the parameter changes
    written together for one reason are one adaptation."""
    if params is None or not len(params):
        return []
    out: list[str] = []
    groups: list[tuple[Any, str, list[str], Any]] = []
    for when, row in params.iloc[::-1].head(most * 8).iterrows():
        change = f"{row['parameter']} {tables.fmt(row['from'])} → {tables.fmt(row['to'])}"
        if groups and groups[-1][0] == when and groups[-1][1] == row["reason"]:
            groups[-1][2].append(change)
        else:
            groups.append((when, str(row["reason"]), [change], row.get("market_time")))
    for when, reason, changes, market in groups[:most]:
        at = (f"market time {tables.fmt(market)}" if market is not None and not pd.isna(market)
              else f"{tables.fmt(when)} (wall clock)")
        out.append(f"Adaptation at {at}: {', '.join(changes)} ({reason})")
    return out


def _marks(snap: Snapshot, log: pd.DataFrame | None) -> dict[str, float]:
    """The last price of each symbol: the equity log's last close, else the book's mark."""
    marks: dict[str, float] = {}
    if snap.positions is not None:
        marks |= dict(zip(snap.positions["symbol"], snap.positions["mark_price"].astype(float), strict=True))
    if log is not None and len(log):
        last = log.iloc[-1]
        marks |= {c.split(":", 1)[1]: float(last[c]) for c in log.columns
                  if c.startswith("close:") and not math.isnan(float(last[c]))}
    return marks


def _drawdown(log: pd.DataFrame) -> float:
    value = log["equity"]
    return float(value.iloc[-1] / value.max() - 1.0)


def _benchmark_name(equity: pd.DataFrame) -> str:
    symbols = [c.split(":", 1)[1] for c in equity.columns if c.startswith("close:")]
    return f"buy & hold {', '.join(symbols)}" if symbols else "buy & hold"


def _utc(seconds: Any) -> pd.Timestamp | None:
    return None if seconds is None else pd.Timestamp(float(seconds), unit="s", tz="UTC")


def _ts(value: Any) -> pd.Timestamp | None:
    try:
        return None if value is None else pd.Timestamp(value)
    except ValueError:
        return None


def _minute(value: Any) -> str:
    """A market time to the minute (seconds only when the bar has them)."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return ""
    t = pd.Timestamp(value)
    return t.strftime("%Y-%m-%d %H:%M:%S" if t.second else "%Y-%m-%d %H:%M")


def _money(v: float) -> str:
    return "—" if v is None or math.isnan(v) else f"{v:,.2f}"


def _pct(v: float) -> str:
    return "—" if math.isnan(v) else f"{v:.1%}"


def _num(v: float) -> str:
    return "—" if math.isnan(v) else f"{v:.2f}"


def view_from_query(query: str | None = None) -> str:
    """The ``view`` named in a Voilà query string (``?view=trades``), else ``dashboard``."""
    from urllib.parse import parse_qs

    q = os.environ.get("QUERY_STRING", "") if query is None else query
    view = parse_qs(q).get("view", ["dashboard"])[0]
    return view if view in VIEWS else "dashboard"


def display_monitor(memory_path: str | os.PathLike[str] | None = None, *, interval: float = 1.0) -> MonitorApp:
    """What the notebook calls: build the app for the view in the URL, display it, start refreshing."""
    from IPython.display import display

    app = MonitorApp(memory_path, view=view_from_query(), interval=interval)
    display(app.widget)
    app.start()
    return app
