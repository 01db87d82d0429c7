"""The monitor's data layer and widgets show exactly what the trader's stores hold."""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

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
            broker.create_order("GOOG/USD", "market", side, qty, params={"clientOrderId": f"sig-{i}"})
            mem.decisions.record(Decision("GOOG/USD", "sma_cross", side.upper(), 0.55 + i / 100,
                                          f"sma_cross {side} at bar {i}", decided_at=t, price=float(row["Close"]), features={"ret_5": i / 10, "volatility": 1.0},
                                          meta={"similar": i, "won": i // 2}))
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
