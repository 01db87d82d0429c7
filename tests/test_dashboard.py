"""The monitor's data layer and widgets show exactly what the trader's stores hold."""

from __future__ import annotations

import argparse
import math
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memlab.connectors import Bar, PaperBroker
from memlab.dashboard.app import MonitorApp, view_from_query
from memlab.dashboard.cli import register
from memlab.dashboard.snapshot import read_fills, read_snapshot
from memlab.data import sample
from memlab.memory import Decision, MemoryStores


def seed_session(root: Path) -> PaperBroker:
    """A short paper session on real GOOG bars: a round trip, an open position, a pending limit,
    decisions with outcomes, an adaptation and journal lines, all through the real stores."""
    bars = sample("GOOG").iloc[:40]
    broker = PaperBroker(root, balances={"USD": 100_000}, fees=0.001)
    broker.add_market("GOOG/USD")
    mem = MemoryStores(root)
    plan = {5: ("buy", 20), 15: ("sell", 20), 25: ("buy", 30)}
    for i, (t, row) in enumerate(bars.iterrows()):
        broker.on_bar("GOOG/USD", Bar(t.timestamp(), row["Open"], row["High"], row["Low"], row["Close"]))
        if i in plan:
            side, qty = plan[i]
            order = broker.create_order("GOOG/USD", "market", side, qty, params={"clientOrderId": f"sig-{i}"})
            # As the trader stores it: the order it placed; and the brain's evidence counts.
            mem.decisions.record(Decision("GOOG/USD", "sma_cross", side.upper(), 0.55 + i / 100,
                                          f"sma_cross {side} at bar {i}", decided_at=t, price=float(row["Close"]),
                                          features={"ret_5": i / 10, "volatility": 1.0},
                                          meta={"order": {"order_id": order["id"]}, "similar": i, "won": i // 2}))
            mem.journal.append({"Strategy": "sma_cross", "Decision": side.upper(), "Confidence": 0.55 + i / 100})
    broker.create_order("GOOG/USD", "limit", "buy", 5, price=float(bars["Low"].min()) * 0.5,
                        params={"clientOrderId": "pending-1"})
    mem.parameters.set("position_size", 0.07, reason="win rate 0.41 < 0.45")
    mem.close()
    return broker


@pytest.fixture()
def session(tmp_path: Path) -> tuple[Path, PaperBroker]:
    root = tmp_path / "mem"
    broker = seed_session(root)
    yield root, broker
    broker.close()


def test_snapshot_matches_the_broker_and_memory(session: tuple[Path, PaperBroker]) -> None:
    root, broker = session
    snap = read_snapshot(root)
    [pos] = broker.fetch_positions()
    assert snap.positions[["symbol", "quantity", "entry_price"]].values.tolist() == [
        [pos["symbol"], pos["contracts"], pos["entryPrice"]]]
    assert snap.positions["unrealized_pnl"].iloc[0] == pytest.approx(pos["unrealizedPnl"])
    assert set(snap.orders.loc[snap.orders.status == "open", "id"].astype(str)) == {
        o["id"] for o in broker.fetch_open_orders()}
    with MemoryStores(root) as mem:
        recent = mem.decisions.recent(10)
        assert snap.decisions["reason"].tolist() == recent["reason"].tolist()[::-1]
        assert snap.journal == [str(e) for e in mem.journal.tail(30)]
        assert snap.parameters["reason"].tolist() == ["win rate 0.41 < 0.45"]
    assert snap.fills["pnl"].notna().sum() == 1  # the round trip's sell
    assert not snap.trader_live or snap.last_write is not None


def test_fills_are_read_incrementally_by_id(session: tuple[Path, PaperBroker]) -> None:
    root, broker = session
    every = read_fills(root)
    assert len(every) == 3
    assert read_fills(root, after_id=int(every["id"].iloc[1]))["id"].tolist() == [every["id"].iloc[2]]


def test_monitor_never_writes_to_the_stores(session: tuple[Path, PaperBroker]) -> None:
    root, broker = session
    before = {p.name: p.read_bytes() for p in root.glob("*.sqlite")}
    app = MonitorApp(root)
    app.refresh()
    assert {p.name: p.read_bytes() for p in root.glob("*.sqlite")} == before
    with sqlite3.connect(f"file:{root / 'paper_broker.sqlite'}?mode=ro", uri=True) as ro:
        ro.execute("BEGIN")  # a reader holding a snapshot does not stop the broker from writing
        broker.on_bar("GOOG/USD", Bar(4e9, 1, 1, 1, 1))
        ro.rollback()


def test_widgets_show_positions_trades_and_decisions(session: tuple[Path, PaperBroker]) -> None:
    root, broker = session
    app = MonitorApp(root, view="trades")
    assert app.tabs.selected_index == 2
    assert "GOOG/USD" in app.positions.value and "sma_cross buy at bar 25" in app.decisions.value
    assert "pending" not in app.orders.value and app.open_orders.value.count("<tr>") == 2  # header + 1
    assert "Trader not running" in app.banner.value or "Trader running" in app.banner.value
    assert "position_size" in app.adaptations.value and "win rate 0.41" in app.alerts.value


def test_a_missing_source_is_said_not_invented(tmp_path: Path) -> None:
    app = MonitorApp(tmp_path / "empty")
    assert "no paper broker yet" in app.positions.value
    assert "No trader has written" in app.banner.value


def test_view_comes_from_the_query_string() -> None:
    assert view_from_query("view=memory") == "memory"
    assert view_from_query("view=bogus") == "dashboard"
    assert view_from_query("") == "dashboard"


def test_dashboard_command_is_registered() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dashboard", "--no-browser", "--memory-path", "x"])
    assert (args.port, args.no_browser, args.memory_path) == (5001, True, "x")


def test_demo_writes_a_page_with_the_stores_content(session: tuple[Path, PaperBroker], tmp_path: Path) -> None:
    from memlab.dashboard.demo import run_monitor_demo

    root, broker = session
    page = run_monitor_demo(tmp_path / "out", root)["monitor_html"].read_text()
    assert "GOOG/USD" in page and "sma_cross sell at bar 15" in page and "win rate 0.41 &lt; 0.45" in page


def test_realised_pnl_matches_the_brokers_own_accounting(tmp_path: Path) -> None:
    """Fees are counted once: the headline equals the broker's realised P&L."""
    from memlab.connectors import Bar, PaperBroker
    from memlab.dashboard import read_snapshot
    from memlab.dashboard.metrics import performance

    broker = PaperBroker(tmp_path, balances={"USD": 10_000.0}, fees=0.01)
    broker.add_market("X/USD")
    prices = [100, 100, 110, 110, 105, 105]
    for i, p in enumerate(prices):
        broker.on_bar("X/USD", Bar(float(i * 86400), p, p + 1, p - 1, p))
        if i in (0, 3):
            broker.create_order("X/USD", "market", "buy", None, params={"cost": broker.fetch_balance()["free"]["USD"]})
        if i in (1, 4):
            broker.create_order("X/USD", "market", "sell", broker.fetch_balance()["free"]["X"])
    realised = broker._one("SELECT realized_pnl FROM positions WHERE symbol='X/USD'")
    assert realised == pytest.approx(broker.equity("USD") - 10_000.0)
    snap = read_snapshot(tmp_path)
    assert performance(snap.fills)["realized_pnl"] == pytest.approx(realised)


def test_a_lost_connection_is_an_alert_with_the_venues_error(tmp_path: Path) -> None:
    import asyncio
    import socket

    import ccxt

    from memlab.connectors import ConnectionManager, RetryPolicy
    from memlab.dashboard.app import MonitorApp

    with socket.socket() as s:  # a port nobody listens on: every request is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    events: list[tuple[str, dict]] = []

    async def main() -> None:
        manager = ConnectionManager(tmp_path, retry=RetryPolicy(attempts=3, base=0.01, cap=0.02))
        manager.add_listener(lambda event, payload: events.append((event, payload)))
        api = f"http://127.0.0.1:{port}/api/v3"
        with pytest.raises(ccxt.NetworkError):
            await manager.add_broker_connection("binance", urls={"public": api, "private": api},
                                                options={"fetchMarkets": {"types": ["spot"]}})
        assert manager.status()["binance"]["state"] == "down"

    asyncio.run(main())
    assert [e for e, _ in events] == ["connection_lost"] and events[0][1]["name"] == "binance"
    app = MonitorApp(tmp_path)
    assert "Lost connection: binance (binance) is down" in app.alerts.value
    assert 'data-col="state">down<' in app.health.value and "memlab-connections" in app.health.value


def test_a_killed_trader_is_an_alert_and_a_finished_one_is_not(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from memlab.dashboard.app import MonitorApp
    from memlab.trader import read_status

    env = {**os.environ, "MEM_MEMORY_PATH": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "memlab.cli", "paper", "--symbol", "BTC/USDT", "--strategy", "sma_cross",
                             "--synthetic", "20000", "--speed", "6000", "--sizing", "full"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (read_status(tmp_path) or {}).get("alive"):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    app = MonitorApp(tmp_path)
    assert "Trader running (pid" in app.banner.value and "memlab-trader" in app.health.value
    assert 'data-col="name">paper<' in app.health.value and 'data-col="state">up<' in app.health.value
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    app.refresh()
    assert "stopped without saying so" in app.alerts.value and "Trader not running (stopped unexpectedly)" in app.banner.value


# -- equity marked to market, Sharpe on a regular calendar, market time ---------------------------

@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A paper session of the real trader replaying GOOG's daily history (2005-2013)."""
    import asyncio

    from memlab.trader import TraderConfig, UnifiedMemGPTTrader

    root = tmp_path_factory.mktemp("replayed")
    config = TraderConfig(symbols=("GOOG",), strategy="sma_cross", params={"fast": 10, "slow": 30}, memory_path=root,
                          sizing="full", fees=0.0005, balance=100_000.0, feed={"data": sample("GOOG"), "warmup": 200})
    asyncio.run(UnifiedMemGPTTrader(config).run())
    return root


def _fill_days_sharpe(fills: pd.DataFrame) -> float:
    """What the monitor used to show: realised P&L summed per day that had fills, x sqrt(252)."""
    daily = fills["pnl"].fillna(0.0).groupby(pd.DatetimeIndex(fills["time"]).floor("D")).sum()
    return float(daily.mean() / daily.std() * math.sqrt(252))


def test_sharpe_comes_from_equity_on_a_regular_calendar_not_from_fill_days(replayed: Path) -> None:
    from memlab.dashboard.metrics import sharpe_ratio
    from memlab.trader.equity import read_equity

    equity = read_equity(replayed)["equity"]
    # Independently: GOOG's bars are weekday-only daily bars, so business days with no gap
    # (a holiday carries the last equity: a zero return), annualised by 252 of them a year.
    calendar = pd.bdate_range(equity.index[0], equity.index[-1], tz="UTC")
    returns = equity.reindex(calendar, method="ffill").pct_change().dropna()
    expected = float(returns.mean() / returns.std(ddof=1) * math.sqrt(252))
    sharpe = sharpe_ratio(equity)
    assert sharpe.value == pytest.approx(expected, rel=1e-12)
    assert (sharpe.frequency, sharpe.periods, sharpe.per_year) == ("business-day", len(returns), 252.0)
    old = _fill_days_sharpe(read_fills(replayed))
    assert abs(old - sharpe.value) > 1.0  # 2.9 against 0.84: days without fills were simply dropped
    app = MonitorApp(replayed, view="metrics")
    assert "Sharpe (business-day returns, 2005-06-06 → 2013-03-01, 7.7 years, ×√252)" in app.perf.value
    assert f"<b>{expected:.2f}</b>" in app.perf.value and f"<b>{old:.2f}</b>" not in app.perf.value


def test_sharpe_of_minute_bars_fills_gaps_in_the_calendar(tmp_path: Path) -> None:
    from memlab.dashboard.metrics import sharpe_ratio

    rng = np.random.default_rng(3)
    index = pd.date_range("2024-03-01", periods=3000, freq="1min", tz="UTC").delete(slice(1000, 1400))  # a feed outage
    equity = pd.Series(10_000 * np.exp(np.cumsum(rng.normal(0, 1e-3, len(index)))), index=index)
    full = pd.date_range(index[0], index[-1], freq="1min", tz="UTC")
    returns = equity.reindex(full).ffill().pct_change().dropna()
    sharpe = sharpe_ratio(equity)
    assert sharpe.periods == len(full) - 1 and sharpe.per_year == pytest.approx(365.25 * 24 * 60)
    assert sharpe.value == pytest.approx(returns.mean() / returns.std() * math.sqrt(365.25 * 24 * 60), rel=1e-12)
    assert sharpe.label.startswith("Sharpe (1-minute returns, 2024-03-01 00:00 → 2024-03-03 01:59, 2.1 days")
    assert math.isnan(sharpe_ratio(equity.iloc[:2]).value)  # one return: no Sharpe, and the label says why
    assert "needs 2+ periods" in sharpe_ratio(equity.iloc[:1]).label


def test_the_monitor_draws_equity_marked_to_market_with_buy_and_hold_at_market_times(replayed: Path) -> None:
    from memlab.dashboard.figures import market_times
    from memlab.trader.equity import read_equity

    log = read_equity(replayed)
    app = MonitorApp(replayed, view="metrics")
    realised, equity, benchmark, drawdown = app.equity.data
    assert (equity.name, benchmark.name) == ("equity (marked to market)", "buy & hold GOOG")
    market = log.index.strftime("%Y-%m-%d %H:%M:%S").tolist()
    # x values are sent as epoch milliseconds on plotly date axes (UTC); read back they are the bars' times.
    for trace in (equity, benchmark, drawdown):
        assert market_times(trace.x).strftime("%Y-%m-%d %H:%M:%S").tolist() == market
    assert market[0] == "2005-06-06 00:00:00" and market[-1] == "2013-03-01 00:00:00"  # the bars' times, not today's
    assert list(equity.y) == log["equity"].tolist() and list(benchmark.y) == log["benchmark"].tolist()
    assert list(drawdown.y) == pytest.approx((log["equity"] / log["equity"].cummax() - 1).tolist())
    fills = read_fills(replayed)
    assert market_times(realised.x).equals(pd.DatetimeIndex(fills["time"]))  # realised P&L kept, at fills
    assert realised.y[-1] == pytest.approx(100_000.0 + fills["pnl"].sum())
    assert app.equity.layout.xaxis.type == "date" and app.equity.layout.xaxis2.type == "date"
    assert app.equity.layout.xaxis2.title.text == "market time (UTC)"
    # The headline figures are the log's, as of the last bar's market time.
    assert f"<b>{log['equity'].iloc[-1]:,.2f}</b>" in app.perf.value and "2013-03-01 00:00:00" in app.perf.value
    assert "max drawdown" in app.perf.value and "buy &amp; hold" in app.perf.value and "win rate" in app.perf.value
    assert "market time 2013-03-01 00:00:00 UTC" in app.banner.value


def test_every_table_shows_market_time_during_a_replay(replayed: Path) -> None:
    import re

    app = MonitorApp(replayed, view="trades")
    for widget in (app.decisions, app.orders, app.fills):
        assert "<th>market time</th>" in widget.value
        years = {int(y) for y in re.findall(r'data-col="market time">(\d{4})-', widget.value)}
        assert years and years <= set(range(2005, 2014)), years  # never the wall clock's year
    assert "<th>market time</th>" in app.adaptations.value and "(wall clock)" in app.adaptations.value
    assert "wall clock" in app.journal.value


def test_a_folder_without_an_equity_log_falls_back_and_says_so(session: tuple[Path, PaperBroker]) -> None:
    from memlab.dashboard.figures import FALLBACK_TITLE

    root, broker = session
    assert not (root / "equity.sqlite").exists()
    app = MonitorApp(root, view="metrics")
    assert "No equity log in this folder" in app.perf.value and 'memlab-card">Sharpe' not in app.perf.value
    assert "realised P&amp;L" in app.perf.value and "win rate" in app.perf.value
    assert app.equity.layout.title.text == FALLBACK_TITLE
    assert len(app.equity.data[0].y) == len(read_fills(root)) and not app.equity.data[1].y


def test_the_price_chart_is_the_logs_closes_with_the_trades_at_market_times(replayed: Path) -> None:
    from memlab.dashboard.app import PRICE_BARS
    from memlab.dashboard.figures import market_times
    from memlab.trader.equity import read_equity

    log = read_equity(replayed)
    fills = read_fills(replayed)
    app = MonitorApp(replayed)
    close, *marks = app.price.data
    window = log["close:GOOG"].iloc[-PRICE_BARS:]
    assert close.name == "close" and list(close.y) == window.tolist()  # the bars' closes, none invented
    assert market_times(close.x).equals(window.index) and app.price.layout.xaxis.type == "date"
    assert {t.name for t in marks} <= {"entry", "exit", "stop", "take profit"}
    shown = pd.DatetimeIndex(sorted(t for m in marks for t in market_times(m.x)))
    assert shown.equals(pd.DatetimeIndex(fills["time"])) and shown.year.min() >= 2005 and shown.year.max() <= 2013
    [entries] = [m for m in marks if m.name == "entry"]
    assert "confidence" in entries.hovertext[0] and entries.hovertext[0].count("(market time)") == 1
    labels = [label for label in entries.text if label]  # the agent's confidence at the newest entries
    assert len(labels) == min(20, len(entries.x)) and all(label.endswith(" %") for label in labels)
    assert "GOOG price (market time)" in app.price.layout.title.text
    # The first screen's cards: the last market day's P&L, win rate of round trips, Sharpe.
    assert "today&#x27;s P&amp;L" in app.cards.value and "market day 2013-03-01" in app.cards.value
    assert "win rate" in app.cards.value and "Sharpe" in app.cards.value and "business-day returns" in app.cards.value
    years = {int(y) for y in __import__("re").findall(r'data-col="entry \(market time\)">(\d{4})-', app.round_trips.value)}
    assert years and years <= set(range(2005, 2014))


# -- alerts by severity, and bad input on the page -------------------------------------------------

def test_alerts_are_ranked_by_severity_and_adaptations_are_info(session: tuple[Path, PaperBroker]) -> None:
    from memlab.connectors.health import HealthBoard
    from memlab.trader.equity import EquityLog

    root, broker = session
    board = HealthBoard(root)  # the trader's own health writer: one connection lost
    board.register("binance", "broker", "binance")
    board.failure("binance", ConnectionError("refused"), retrying=False)
    board.flush()
    log = EquityLog(root, ["GOOG/USD"])  # equity 20 % below its peak
    log.hold(100_000.0, [0.0])
    for i, close in enumerate([100.0, 100.0]):
        log.mark(1.7e9 + 86400 * i, [close])
    log.hold(0.0, [1000.0])
    log.mark(1.7e9 + 86400 * 2, [80.0])
    log.close()
    app = MonitorApp(root)
    items = app.alert_items(app.snapshot)
    severities = [s for s, _ in items]
    assert severities == sorted(severities, key=("critical", "warning", "info").index)
    texts = dict((t, s) for s, t in items)
    assert any(s == "critical" and t.startswith("Drawdown 20.0%") for t, s in texts.items())
    assert any(s == "critical" and t.startswith("Lost connection: binance") for t, s in texts.items())
    [adaptation] = [t for t, s in texts.items() if "win rate 0.41" in t]
    assert texts[adaptation] == "info"
    page = app.alerts.value
    assert page.index('data-severity="critical"') < page.index('data-severity="info"')
    assert f'<li class="memlab-alert" data-severity="info">{adaptation.replace("<", "&lt;")}</li>' in page


def test_a_memory_folder_that_does_not_exist_says_how_to_start_a_trader(tmp_path: Path) -> None:
    import shlex

    from memlab.trader.cli import register as trader_register

    missing = tmp_path / "nowhere"
    app = MonitorApp(missing)
    assert 'class="memlab-banner-missing"' in app.banner.value and "does not exist" in app.banner.value
    command = app.banner.value.split("<code>")[1].split("</code>")[0]
    assert command.startswith("memlab paper ") and str(missing) in command
    parser = argparse.ArgumentParser()
    trader_register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(shlex.split(command)[1:])  # the flags the page gives parse as `memlab paper`'s
    assert (args.symbol, args.synthetic, args.memory_path) == ("BTC/USDT", 2000, str(missing))
    assert not missing.exists()  # looking never creates it


def test_a_corrupt_store_is_named_and_the_others_still_show(session: tuple[Path, PaperBroker]) -> None:
    root, broker = session
    broker.close()
    path = root / "paper_broker.sqlite"
    data = bytearray(path.read_bytes())
    data[:100] = b"\x00" * 100  # the header gone: not a database any more
    path.write_bytes(bytes(data))
    app = MonitorApp(root, view="trades")
    assert "unreadable" in app.positions.value and "paper broker book" in app.positions.value
    assert "unreadable" in app.orders.value
    page = app.alerts.value
    [damaged] = [t for s, t in app.alert_items(app.snapshot) if "damaged store" in t]  # one alert for the store
    assert damaged.startswith("Source unreadable (damaged store?) — positions, orders") and "fills" in damaged
    assert "CorruptMemoryError" in damaged and "paper_broker.sqlite" in damaged
    assert 'data-severity="critical">Source unreadable (damaged store?)' in page
    assert "sma_cross buy at bar 25" in app.decisions.value  # the decisions store is fine and still shown
    assert "position_size" in app.adaptations.value


def test_a_trader_killed_mid_write_shows_its_last_consistent_state(tmp_path: Path) -> None:
    """kill -9 while the paper session writes, and a copy of the folder taken mid-session with
    its write-ahead log cut mid-frame: the page shows what the last commit held."""
    import os
    import shutil
    import signal

    from tests.support.paper_session import start_paper, wait_for_fills

    memory = tmp_path / "mem"
    proc = start_paper(memory, 20_000)
    try:
        wait_for_fills(proc, memory, 40)
        copy = tmp_path / "copy"
        copy.mkdir()
        for name in ("paper_broker.sqlite", "decisions.sqlite", "equity.sqlite"):
            for suffix in ("-wal", ""):  # the log first: what it holds is newer than the file
                if (memory / f"{name}{suffix}").exists():
                    shutil.copyfile(memory / f"{name}{suffix}", copy / f"{name}{suffix}")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    wal = copy / "paper_broker.sqlite-wal"
    if wal.exists() and wal.stat().st_size > 4096:
        with wal.open("r+b") as f:  # a write torn mid-frame
            f.truncate(wal.stat().st_size - 1000)
    for folder in (memory, copy):
        app = MonitorApp(folder, view="trades")
        assert not app.snapshot.errors, app.snapshot.errors
        db = sqlite3.connect(f"file:{folder / 'paper_broker.sqlite'}?mode=ro", uri=True)
        fills = db.execute("SELECT o.side, f.amount FROM fills f JOIN orders o ON o.id = f.order_id").fetchall()
        held = db.execute("SELECT coalesce(sum(amount), 0) FROM positions").fetchone()[0]
        db.close()
        assert app.trips.fills_seen == len(fills) > 0
        bought = sum(a for s, a in fills if s == "buy") - sum(a for s, a in fills if s == "sell")
        assert bought == pytest.approx(held, abs=1e-6)  # fills and position from one consistent commit
        assert sum(t.size for t in app.trips.open_trips()) == pytest.approx(held, abs=1e-6)
        shown = float(app.snapshot.positions["quantity"].sum()) if len(app.snapshot.positions) else 0.0
        assert shown == pytest.approx(held, abs=1e-6)
