"""Round trips paired FIFO from the paper broker's real fills, numbers as traders read them, and
a refresh with 100,000 round trips in the book that reads only the new fills."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from memlab.connectors import Bar, PaperBroker
from memlab.dashboard import tables
from memlab.dashboard.app import MonitorApp
from memlab.dashboard.round_trips import RoundTripBook, describe_evidence
from memlab.dashboard.snapshot import read_fills

DAY = 86400.0


def _bar(broker: PaperBroker, i: int, price: float, symbol: str = "X/USD") -> None:
    broker.on_bar(symbol, Bar(i * 3600.0, price, price + 1, price - 1, price))


def test_fifo_pairs_partial_exits_fees_and_an_open_lot(tmp_path: Path) -> None:
    broker = PaperBroker(tmp_path, balances={"USD": 100_000.0}, fees=0.001, slippage=0.0)
    broker.add_market("X/USD")
    prices = [100, 100, 105, 110, 120, 90, 95, 95]
    orders = {0: ("buy", 10), 1: ("buy", 5), 2: ("sell", 8), 3: ("sell", 7), 5: ("buy", 3)}
    for i, p in enumerate(prices):
        _bar(broker, i, p)
        if i in orders:
            side, qty = orders[i]
            broker.create_order("X/USD", "market", side, qty)
    fills = read_fills(tmp_path)
    assert fills["side"].tolist() == ["buy", "buy", "sell", "sell", "buy"]
    book = RoundTripBook()
    assert book.add(fills) == 5
    b1, b2, s1, s2, b3 = fills.itertuples(index=False)
    # The first sell closes 8 of the first lot; the second the other 2 of it, then the second lot.
    got = [(t.entry_fill, t.exit_fill, t.size) for t in book.closed]
    assert got == [(b1.id, s1.id, 8.0), (b1.id, s2.id, pytest.approx(2.0)), (b2.id, s2.id, pytest.approx(5.0))]
    first, second, third = book.closed
    assert first.entry_fee == pytest.approx(b1.fee * 8 / 10) and second.entry_fee == pytest.approx(b1.fee * 2 / 10)
    assert second.exit_fee == pytest.approx(s2.fee * 2 / 7) and third.exit_fee == pytest.approx(s2.fee * 5 / 7)
    assert first.pnl == pytest.approx(8 * (s1.price - b1.price) - b1.fee * 0.8 - s1.fee)
    assert first.pnl_pct == pytest.approx(first.pnl / (8 * b1.price + b1.fee * 0.8))
    assert first.duration() == s1.time - b1.time
    # Everything bought before was sold: FIFO's P&L adds up to the broker's own (average-cost) P&L.
    assert sum(t.pnl for t in book.closed) == pytest.approx(fills["pnl"].sum())
    [open_lot] = book.open_trips()
    assert (open_lot.entry_fill, open_lot.size, open_lot.is_open) == (b3.id, pytest.approx(b3.amount), True)
    pnl, frac = open_lot.unrealised(95.0)
    assert pnl == pytest.approx(b3.amount * (95.0 - b3.price) - b3.fee)
    assert book.newest(2)[0] is open_lot and book.newest(2)[1] is third
    assert book.add(fills) == 0 and book.fills_seen == 5  # a re-read adds nothing
    broker.close()


def test_the_trades_view_shows_round_trips_with_the_agents_confidence_and_evidence(tmp_path: Path) -> None:
    from tests.test_dashboard import seed_session

    root = tmp_path / "mem"
    broker = seed_session(root)
    try:
        app = MonitorApp(root, view="trades")
        page = app.round_trips.value
        assert 'class="memlab-round-trips"' not in page  # the class is on the widget, the cells carry data-col
        assert "memlab-round-trips" in app.round_trips._dom_classes
        rows = page.split("<tbody>")[1].split("</tr>")[:-1]
        assert len(rows) == 2  # the open position first, then the closed round trip
        assert 'data-col="exit">open<' in rows[0] and 'data-col="exit">exit<' in rows[1]
        # GOOG's 2004 bars: market time, to the minute; the entry's decision: confidence as a percentage, its reason.
        fills = read_fills(root)
        held = fills["time"].iloc[1] - fills["time"].iloc[0]
        assert 'data-col="entry (market time)">2004-08-' in rows[1] and held.components.hours == 0
        assert f'data-col="duration">{held.days} d<' in rows[1]
        assert 'data-col="confidence" class="memlab-num">60 %<' in rows[1]
        assert "sma_cross buy at bar 5" in rows[1]
        assert 'data-col="similar past trades" class="memlab-wrap">5 similar: 2 won (40 %)<' in rows[1]
        closed = app.trips.closed[0]
        assert closed.pnl == pytest.approx(fills["pnl"].dropna().iloc[0])  # one lot: FIFO = the broker's P&L
        assert f">{tables.signed_money(closed.pnl)}<" in rows[1]
        # The first screen's compact table has the newest few, P&L and % in one cell.
        assert app.recent_trips.value.count("<tr>") == 3 and "Newest round trips" in app.recent_trips.value
        assert f"{tables.signed_money(closed.pnl)} ({tables.signed_pct(closed.pnl_pct)})" in app.recent_trips.value
        # Decisions show confidence as a percentage and evidence as words, not JSON.
        assert 'data-col="confidence" class="memlab-num">80 %<' in app.decisions.value
        assert "{" not in app.decisions.value.split('data-col="evidence"')[1]
    finally:
        broker.close()


def test_numbers_read_as_a_trader_reads_them() -> None:
    assert tables.price(43251.3712) == "43,251.37" and tables.price(120.596542) == "120.597"
    assert tables.price(1.0853271) == "1.08533" and tables.price(0.0000123456) == "0.00001235"
    assert tables.price(90.0) == "90.00" and tables.price(120.6) == "120.60" and tables.price(1.085) == "1.085"
    assert tables.price(float("nan")) == "" and tables.price(None) == ""
    assert tables.money(1234567.891) == "1,234,567.89" and tables.signed_money(-12.5) == "−12.50"
    assert tables.signed_money(1234.5) == "+1,234.50" and tables.signed_pct(0.0123) == "+1.23 %"
    assert tables.confidence(0.199646) == "20 %" and tables.pct(0.615) == "61.5 %"
    assert tables.pnl_with_pct(-88.6, -0.008) == "−88.60 (−0.80 %)"
    assert tables.duration(pd.Timedelta(hours=3, minutes=20)) == "3 h 20 m"
    assert tables.duration(pd.Timedelta(days=2, hours=4, minutes=5)) == "2 d 4 h"
    assert tables.duration(45) == "45 s" and tables.duration(pd.Timedelta(minutes=17)) == "17 m"
    assert tables.quantity(92.73668391893733) == "92.7367" and tables.quantity(12345.678) == "12,345.68"


def test_evidence_is_listed_in_words() -> None:
    past = {7: (0.012, pd.Timestamp("2024-03-01", tz="UTC")), 3: (-0.004, pd.Timestamp("2024-02-11", tz="UTC"))}
    meta = '{"evidence": {"similar": 3, "wins": 1, "decision_ids": [7, 3, 9]}}'
    assert describe_evidence(meta, "", past.get) == "3 similar: +1.2 % (2024-03-01), −0.4 % (2024-02-11), #9 (open or unknown)"
    assert describe_evidence({"similar": 14, "wins": 10, "mean_return_pct": 1.1}) == "14 similar: 10 won (71 %), mean +1.1 %"
    # What the trader stores today (its order only): the counts the brain cited in its reason.
    reason = "14 similar sma_cross BUYs in high volatility: 10 won, mean -0.4% -> confidence 0.66 (prior 0.5)"
    assert describe_evidence('{"order": {"order_id": "5"}}', reason) == "14 similar: 10 won (71 %), mean −0.4 %"
    assert describe_evidence("{}", "no similar past decisions: prior only") == "none similar yet (prior only)"
    assert describe_evidence("not json", "") == ""


def test_market_orders_show_their_fill_price_and_amount(tmp_path: Path) -> None:
    broker = PaperBroker(tmp_path, balances={"USD": 10_000.0}, fees=0.001)
    broker.add_market("X/USD")
    _bar(broker, 0, 100)
    by_cost = broker.create_order("X/USD", "market", "buy", None, params={"cost": 5_000.0})
    waiting = None
    _bar(broker, 1, 101)
    waiting = broker.create_order("X/USD", "market", "sell", 1.0)
    try:
        app = MonitorApp(tmp_path, view="trades")
        done = broker.fetch_order(by_cost["id"])
        row = app.orders.value.split(f'data-col="id">{by_cost["id"]}<')[1].split("</tr>")[0]
        assert f'data-col="price" class="memlab-num">{tables.price(done["average"])}<' in row
        assert f'data-col="amount" class="memlab-num">{tables.quantity(done["filled"])}<' in row
        assert f'data-col="avg fill price" class="memlab-num">{tables.price(done["average"])}<' in row
        pending = app.open_orders.value.split(f'data-col="id">{waiting["id"]}<')[1].split("</tr>")[0]
        assert 'data-col="price" class="memlab-num">market<' in pending and 'data-col="amount" class="memlab-num">1<' in pending
    finally:
        broker.close()


def _bulk_book(root: Path, trips: int) -> PaperBroker:
    """A real paper book (the broker's own schema and file) holding ``trips`` round trips:
    rows written in bulk, as the broker writes them, since 200,000 fills through its API take minutes."""
    broker = PaperBroker(root, balances={"USD": 1_000_000.0}, fees=0.001)
    broker.add_market("X/USD")
    broker.close()
    db = sqlite3.connect(root / "paper_broker.sqlite")
    orders, fills = [], []
    for k in range(trips):
        t = k * 7200.0
        buy, sell = 2 * k + 1, 2 * k + 2
        p_in, p_out = 100.0 + (k % 7), 100.0 + (k % 5)
        orders += [(buy, f"b{k}", "X/USD", "market", "buy", 1.0, None, None, "closed", 1.0, p_in, p_in * 0.001, t, t + 60),
                   (sell, f"s{k}", "X/USD", "market", "sell", 1.0, None, None, "closed", 1.0, p_out, p_out * 0.001,
                    t + 3600, t + 3660)]
        fills += [(buy, buy, t + 60, p_in, 1.0, p_in * 0.001, None),
                  (sell, sell, t + 3660, p_out, 1.0, p_out * 0.001, p_out * 0.999 - p_in * 1.001)]
    with db:
        db.executemany("INSERT INTO orders (id, client_id, symbol, type, side, amount, cost, price, status, filled, "
                       "average, fee, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", orders)
        db.executemany("INSERT INTO fills (id, order_id, bar_time, price, amount, fee, pnl) VALUES (?,?,?,?,?,?,?)", fills)
        db.execute("INSERT OR REPLACE INTO prices (symbol, time, close) VALUES ('X/USD', ?, 100.0)", (trips * 7200.0,))
    db.close()
    return PaperBroker(root, fees=0.001)


def test_a_refresh_with_100000_round_trips_reads_only_the_new_fills(tmp_path: Path) -> None:
    broker = _bulk_book(tmp_path, 100_000)
    try:
        app = MonitorApp(tmp_path, view="dashboard")
        assert len(app.trips.closed) == 100_000 and app.trips.fills_seen == 200_000
        first = app.trips.closed[0]
        assert "newest 6 of 100,000" in app.recent_trips.value
        t = 100_000 * 7200.0
        _bar(broker, int(t // 3600) + 1, 103.0)
        broker.create_order("X/USD", "market", "buy", 2.0)
        _bar(broker, int(t // 3600) + 2, 104.0)
        app.refresh()
        assert app.trips.fills_seen == 200_001  # one new fill read and paired, not 200,001
        assert app.trips.closed[0] is first and len(app.trips.closed) == 100_000
        [lot] = app.trips.open_trips()
        assert lot.entry_price == pytest.approx(104.0 * (1 + broker.slippage))
        broker.create_order("X/USD", "market", "sell", 0.5)  # a partial exit
        _bar(broker, int(t // 3600) + 3, 105.0)
        app.refresh()
        assert app.trips.fills_seen == 200_002 and len(app.trips.closed) == 100_001
        assert app.trips.closed[-1].size == pytest.approx(0.5) and app.trips.open_trips()[0].size == pytest.approx(1.5)
        assert 'data-col="exit">open<' in app.recent_trips.value
    finally:
        broker.close()


def test_a_stop_is_told_from_an_exit_on_the_chart_and_in_the_tables(tmp_path: Path) -> None:
    from memlab.dashboard.figures import market_times
    from memlab.trader.equity import EquityLog

    broker = PaperBroker(tmp_path, balances={"USD": 10_000.0}, fees=0.001, slippage=0.0)
    broker.add_market("X/USD")
    log = EquityLog(tmp_path, ["X/USD"])
    closes = [100, 101, 102, 94, 95, 96, 97]
    for i, p in enumerate(closes):
        broker.on_bar("X/USD", Bar(i * 60.0, p, p + 1, p - 1, p))
        if i == 0:
            broker.create_order("X/USD", "market", "buy", 10, params={"stopLoss": 96.0})
        if i == 4:
            broker.create_order("X/USD", "market", "buy", 10, params={"stopLoss": 90.0})
        usd, held = broker.fetch_balance()["total"].get("USD", 0.0), broker.fetch_balance()["total"].get("X", 0.0)
        log.hold(usd, [held])
        log.mark(i * 60.0, [float(p)])
    log.close()
    try:
        app = MonitorApp(tmp_path, view="trades")
        fills = read_fills(tmp_path)
        assert fills["side"].tolist() == ["buy", "sell", "buy"]
        [stop] = [t for t in app.price.data if t.name == "stop"]
        assert market_times(stop.x).equals(pd.DatetimeIndex(fills["time"].iloc[[1]]))
        assert list(stop.y) == [fills["price"].iloc[1]]
        assert 'data-col="exit">stop<' in app.round_trips.value and 'data-col="kind">stop<' in app.fills.value
        [level] = app.price.layout.shapes  # the open stop's level, dashed across the chart
        assert level.y0 == level.y1 == 90.0
        row = app.positions.value.split("<tbody>")[1]
        assert 'data-col="stop" class="memlab-num">90.00<' in row
    finally:
        broker.close()
