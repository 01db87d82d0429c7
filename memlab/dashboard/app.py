"""The monitor as an ipywidgets app: views dashboard / metrics / trades / memory, refreshed live.

Each refresh reads a :class:`~memlab.dashboard.snapshot.Snapshot` in a worker thread
(read-only SQLite, so the trader is never blocked) and updates only the widgets whose
content changed. Fills are read incrementally by id, and the equity log by market time,
so a refresh with 100,000 trades in history reads only the new ones.

Performance comes from the trader's equity log (marked to market every bar, beside a
buy-and-hold benchmark; Sharpe on a regular calendar, labelled with what it covers); a
memory folder written before the log existed falls back to realised P&L and says so.
Times shown are market times (the bar's), so a replay of 2012 reads as 2012; the few
wall-clock times (journal stamps, webhook arrivals, heartbeats) are labelled as such.
"""

from __future__ import annotations

import asyncio
import html
import math
import os
import time
from pathlib import Path
from typing import Any

import ipywidgets as W
import pandas as pd

from memlab.config import memory_path as _memory_path
from memlab.dashboard import tables
from memlab.dashboard.figures import equity_figure
from memlab.dashboard.metrics import equity_curve, equity_summary, performance, pnl_curve
from memlab.dashboard.snapshot import Snapshot, read_fills, read_snapshot, search_archival
from memlab.trader.equity import read_equity
from memlab.trader.status import rss_mb

VIEWS = ("dashboard", "metrics", "trades", "memory")
DRAWDOWN_ALERT = 0.10
FIGURE_EVERY = 5.0  # seconds between redraws of the equity figure for new bars alone
NO_EQUITY_LOG = ("No equity log in this folder (its trader predates it): equity is cash plus positions at their "
                 "last close, the curve is realised P&L at fills, and there is no Sharpe.")


def _html(css: str) -> W.HTML:
    w = W.HTML()
    w.add_class("memlab-table")
    w.add_class(css)
    return w


def _set(widget: W.HTML, value: str) -> None:
    if widget.value != value:  # unchanged content sends nothing to the browser
        widget.value = value


class MonitorApp:
    """The live monitor for one memory folder::

        app = MonitorApp("data/mem_knowledge", view="trades")
        app.widget          # display it; app.start() refreshes it every `interval` seconds
    """

    def __init__(self, memory_path: str | os.PathLike[str] | None = None, *, view: str = "dashboard",
                 interval: float = 1.0) -> None:
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
        self._figure_stale, self._figure_at = False, -math.inf
        self._task: asyncio.Task[None] | None = None
        self.banner = W.HTML()
        self.banner.add_class("memlab-banner")
        self.cards, self.positions, self.decisions = _html("memlab-cards"), _html("memlab-positions"), _html("memlab-decisions")
        self.alerts, self.health = _html("memlab-alerts"), _html("memlab-health")
        self.perf, self.adaptations = _html("memlab-performance"), _html("memlab-adaptations")
        self.open_orders, self.orders, self.fills = _html("memlab-open-orders"), _html("memlab-orders"), _html("memlab-fills")
        self.core, self.journal, self.parameters = _html("memlab-core-memory"), _html("memlab-journal"), _html("memlab-parameters")
        self.archival = _html("memlab-archival")
        self.webhooks = _html("memlab-webhooks")
        self.query = W.Text(placeholder="search lessons (archival memory)…", continuous_update=False)
        self.query.add_class("memlab-archival-query")
        self.query.observe(lambda _: self._search(), names="value")
        self.equity = equity_figure()
        self.metrics = W.VBox([self.perf, self.equity, self.adaptations])
        views = {
            "dashboard": W.VBox([self.cards, self.alerts, self.positions, self.decisions, self.health]),
            "metrics": self.metrics,
            "trades": W.VBox([self.open_orders, self.orders, self.fills, self.webhooks]),
            "memory": W.VBox([self.core, self.journal, self.parameters, self.query, self.archival]),
        }
        self.tabs = W.Tab(children=list(views.values()), titles=list(views), selected_index=VIEWS.index(view))
        self.widget = W.VBox([W.HTML(tables.STYLE), self.banner, self.tabs])
        self.widget.add_class("memlab-monitor")
        self.snapshot: Snapshot | None = None
        self.refresh()
        self._search()

    # -- reading -------------------------------------------------------------------
    def read(self) -> tuple[Snapshot, pd.DataFrame, pd.DataFrame | None]:
        """Read a snapshot, the fills that are new since the last read and the equity log from
        the last bar shown on (None without a log); thread-safe to call off the loop."""
        snap = read_snapshot(self.root, fills=False, equity=False)
        new = read_fills(self.root, after_id=self._last_fill)
        known = self._equity_log
        equity = read_equity(self.root, since=known.index[-1] if known is not None and len(known) else None)
        return snap, new if new is not None else pd.DataFrame(), equity

    def refresh(self) -> None:
        """Read the stores once and update the widgets (synchronously)."""
        self.show(*self.read())

    # -- showing -------------------------------------------------------------------
    def show(self, snap: Snapshot, new_fills: pd.DataFrame, new_equity: pd.DataFrame | None = None) -> None:
        """Update every view from ``snap``, the fills read since the last refresh and the equity
        log from the last bar shown on (``new_equity``; None when the folder has no log)."""
        self.snapshot = snap
        filled = bool(len(new_fills))
        if filled:
            self._fills = new_fills if self._fills.empty else pd.concat([self._fills, new_fills], ignore_index=True)
            self._last_fill = int(self._fills["id"].iloc[-1])
            self._curve, self._perf = pnl_curve(self._fills), performance(self._fills)
        if new_equity is not None and self._take_equity(new_equity):
            self._figure_stale = True
        # A new fill redraws at once; new bars alone at most every FIGURE_EVERY seconds
        # (a figure of 5,000 points a trace takes a few hundred ms to build).
        if filled or (self._figure_stale and time.monotonic() - self._figure_at >= FIGURE_EVERY):
            self._figure_stale, self._figure_at = False, time.monotonic()
            log = self._equity_log
            if log is not None and len(log):
                self.equity = equity_figure(equity_curve(log), self._curve, benchmark_name=_benchmark_name(log))
            else:
                self.equity = equity_figure(None, self._curve)
            self.metrics.children = (self.perf, self.equity, self.adaptations)
        self._banner(snap)
        missing_broker = "no paper broker yet (paper_broker.sqlite not found)"
        cards = tables.cards(self._figures(snap))
        if self._equity_log is None and (self._perf or snap.balances is not None):
            cards += f'<p class="memlab-missing memlab-no-equity-log">{html.escape(NO_EQUITY_LOG)}</p>'
        _set(self.cards, cards)
        _set(self.perf, cards)
        _set(self.positions, tables.table(snap.positions, "Positions", missing=missing_broker,
                                          columns=["symbol", "entry_price", "quantity", "mark_price", "unrealized_pnl"]))
        _set(self.decisions, tables.table(_market_time(snap.decisions), "Agent decisions", missing="no decisions store yet",
                                          columns=[MARKET_TIME, "symbol", "strategy", "action", "confidence", "reason",
                                                   "evidence"]))
        orders = _market_time(snap.orders)
        _set(self.open_orders, tables.table(None if orders is None else orders[orders["status"] == "open"],
                                            "Open / pending orders", missing=missing_broker))
        _set(self.orders, tables.table(None if orders is None else orders[orders["status"] != "open"],
                                       "Closed orders (newest 200)", missing=missing_broker))
        recent_fills = None if snap.orders is None else _market_time(self._fills.tail(200).iloc[::-1])
        _set(self.fills, tables.table(recent_fills, "Fills (newest 200)", missing=missing_broker,
                                      columns=[MARKET_TIME, "symbol", "side", "price", "amount", "fee", "pnl"]))
        params = _parameter_changes(snap.parameters)
        _set(self.adaptations, tables.table(params, "Adaptations (parameter changes: reason, from, to)",
                                            missing="no parameter_updates.json yet"))
        _set(self.parameters, self.adaptations.value.replace("Adaptations (parameter changes: reason, from, to)",
                                                              "Parameter history"))
        core = None if snap.core_memory is None else pd.DataFrame(list(snap.core_memory.items()), columns=["block", "text"])
        _set(self.core, tables.table(core, "Core memory blocks", missing="no core_memory.json yet (agent not started)"))
        _set(self.journal, tables.table(pd.DataFrame({"line": snap.journal[::-1]}),
                                        "Recent journal lines (stamped with the wall clock when written)", missing=""))
        _set(self.webhooks, tables.table(_wall_time(snap.webhooks), "Webhook signals in (newest 50)",
                                         missing="no webhook endpoint yet (ConnectionManager.add_webhook)"))
        _set(self.alerts, self._alerts(snap))
        _set(self.health, self._health(snap))

    def _take_equity(self, new: pd.DataFrame) -> bool:
        """Merge the equity rows read from the last bar shown on; True when anything changed."""
        known = self._equity_log
        if known is None or not len(known):
            self._equity_log = new
        else:
            if not len(new) or known[known.index >= new.index[0]].equals(new):
                return False
            self._equity_log = pd.concat([known[known.index < new.index[0]], new])
        self._summary = equity_summary(self._equity_log) if len(self._equity_log) else None
        return self._summary is not None or known is None

    def _figures(self, snap: Snapshot) -> dict[str, str]:
        """The headline cards: marked-to-market figures from the equity log (else the fallback),
        then realised ones from the fills."""
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
        t = snap.trader or {}
        who = (f" (pid {t.get('pid')}, {html.escape(str(t.get('mode', '')))} {html.escape(', '.join(t.get('symbols', [])))} "
               f"{html.escape(str(t.get('strategy', '')))})") if t else ""
        bar = self._summary["as_of"] if self._summary is not None else t.get("last_bar")
        if bar:
            where = f"market time {tables.fmt(pd.Timestamp(bar))} UTC · {where}"
        if snap.last_write is None:
            text, css = f"No trader has written to {where} yet: nothing to show.", "memlab-banner-stale"
        elif snap.trader_live:
            text, css = f"Trader running{who} — last write {tables.fmt(snap.last_write)} UTC · {where}", "memlab-banner-live"
        else:
            gone = t.get("state") == "running"  # it never wrote its last heartbeat
            state = f" ({'stopped unexpectedly' if gone else html.escape(str(t.get('state')))})" if t else ""
            text, css = (f"Trader not running{state} — showing last state from {tables.fmt(snap.last_write)} UTC · {where}",
                         "memlab-banner-stale")
        _set(self.banner, f'<div class="{css}">{text} · refreshed {tables.fmt(snap.read_at)} UTC</div>')

    def _equity(self, snap: Snapshot) -> float:
        if snap.balances is None or snap.orders is None:
            return math.nan
        quotes = {s.split("/")[-1] for s in snap.orders["symbol"]} or set(snap.balances)
        value = sum(snap.balances.get(q, 0.0) for q in quotes)
        if snap.positions is not None:
            value += float((snap.positions["quantity"] * snap.positions["mark_price"]).sum())
        return value

    def _alerts(self, snap: Snapshot) -> str:
        items: list[str] = []
        log = self._equity_log
        if log is not None and len(log):
            value = log["equity"]
            dd = float(value.iloc[-1] / value.max() - 1.0)
            if -dd > DRAWDOWN_ALERT:
                items.append(f"Drawdown {-dd:.1%} below peak equity {_money(float(value.max()))} "
                             f"(market time {tables.fmt(log.index[-1])} UTC)")
        elif self._curve is not None and len(self._curve):
            equity = self._equity(snap)
            dd = float(self._curve["drawdown"].iloc[-1])
            if equity and not math.isnan(equity) and -dd > DRAWDOWN_ALERT * equity:
                items.append(f"Drawdown {_money(dd)} of realised P&L is more than {DRAWDOWN_ALERT:.0%} of equity")
        if snap.parameters is not None and len(snap.parameters):
            last = snap.parameters.iloc[-1]
            market = last.get("market_time")
            when = (f"market time {tables.fmt(market)}" if market is not None and not pd.isna(market)
                    else f"{tables.fmt(snap.parameters.index[-1])} (wall clock)")
            items.append(f"Adaptation at {when}: {last['parameter']} "
                         f"{tables.fmt(last['from'])} → {tables.fmt(last['to'])} ({last['reason']})")
        for name, c in ((snap.connections or {}).get("connections") or {}).items():
            if c.get("state") == "down":
                items.append(f"Lost connection: {name} ({c.get('venue')}) is down since {tables.fmt(_utc(c.get('since')))} UTC"
                             f" — {c.get('last_error') or 'no answer'}")
            elif c.get("state") == "retrying":
                items.append(f"Connection {name} ({c.get('venue')}) is retrying after {c.get('consecutive_errors')} error(s):"
                             f" {c.get('last_error')}")
        t = snap.trader
        if t and t.get("state") == "running" and not t.get("alive"):
            items.append(f"Trader (pid {t.get('pid')}) stopped without saying so (killed or crashed?); "
                         f"last heartbeat {tables.fmt(_utc(t.get('heartbeat_at')))} UTC")
        elif t and t.get("state") == "crashed":
            items.append(f"Trader (pid {t.get('pid')}) stopped on an error; see its log")
        last_failure = (snap.deliveries or {}).get("last_failure")
        if last_failure:
            items.append(f"Alert delivery failed ({last_failure.get('event')} to {last_failure.get('target')}, "
                         f"{last_failure.get('time')}): {last_failure.get('error') or last_failure.get('status')}")
        items += [f"Source unreadable — {e}" for e in snap.errors]
        if not items:
            return '<p class="memlab-missing">No alerts.</p>'
        return "<b>Alerts</b><ul>" + "".join(f'<li class="memlab-alert">{html.escape(i)}</li>' for i in items) + "</ul>"

    def _health(self, snap: Snapshot) -> str:
        rows = [f"<li>monitor process memory: {rss_mb():.0f} MiB</li>"]
        t = snap.trader
        if t:
            alive = "running" if t.get("alive") else f"not running ({t.get('state')})"
            rows.append(f'<li class="memlab-trader">trader pid {t.get("pid")}: {html.escape(alive)}, '
                        f"process memory {t.get('rss_mb', float('nan')):.0f} MiB, {t.get('bars', 0):,} bars, "
                        f"{t.get('orders', 0):,} orders, last bar {html.escape(str(t.get('last_bar')))}, heartbeat "
                        f"{tables.fmt(_utc(t.get('heartbeat_at')))} UTC</li>")
        else:
            rows.append('<li class="memlab-missing">no trader heartbeat yet (trader_status.json not found)</li>')
        if snap.deliveries is not None:
            rows.append(f"<li>alerts out: {snap.deliveries['delivered']} delivered, {snap.deliveries['failed']} failed</li>")
        conns = _connections(snap)
        table = tables.table(conns, "Connections", missing="no connection health yet (connections.json not found)",
                             columns=["name", "kind", "venue", "state", "latency_ms", "latency_avg_ms", "errors",
                                      "last_success", "last_error"])
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


def _connections(snap: Snapshot) -> pd.DataFrame | None:
    """Each connection's state and latency from the trader's ``connections.json``."""
    board = (snap.connections or {}).get("connections")
    if not board:
        return None
    frame = pd.DataFrame(list(board.values()))
    frame["last_success"] = [tables.fmt(_utc(v)) for v in frame["last_success"]]
    return frame


MARKET_TIME = "market time"


def _market_time(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """A store's ``time`` (the bar's time: fills, orders, decisions) labelled as market time."""
    return None if frame is None else frame.rename(columns={"time": MARKET_TIME})


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


def _benchmark_name(equity: pd.DataFrame) -> str:
    symbols = [c.split(":", 1)[1] for c in equity.columns if c.startswith("close:")]
    return f"buy & hold {', '.join(symbols)}" if symbols else "buy & hold"


def _utc(seconds: Any) -> pd.Timestamp | None:
    return None if seconds is None else pd.Timestamp(float(seconds), unit="s", tz="UTC")


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
