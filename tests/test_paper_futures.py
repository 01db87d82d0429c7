"""The paper broker's linear perpetuals: margin, liquidation, funding, shorts, refusals, kill -9."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import ccxt
import pytest

from memlab.connectors import margin
from memlab.connectors.brokers import PaperConnection
from memlab.connectors.paper_broker import Bar, PaperBookReader, PaperBroker

PERP = "BTC/USDT:USDT"
H = 3600.0


def perp(tmp_path: Path, *, leverage: float = 20, fees: float = 0.0005, slippage: float = 0.0, close: float = 50_000.0,
         t: float = H) -> PaperBroker:
    """A book with BTC/USDT:USDT listed, ``leverage`` set and one bar at ``t`` (01:00 UTC:
    no funding time before 08:00)."""
    b = PaperBroker(tmp_path, balances={"USDT": 10_000.0}, fees=fees, slippage=slippage)
    b.add_market(PERP)
    b.add_market("BTC/USDT")
    b.set_leverage(leverage, PERP)
    b.on_bar(PERP, Bar(t, close, close, close, close))
    return b


def opened(b: PaperBroker, side: str, contracts: float, at: float = 50_000.0, t: float = 2 * H) -> dict:  # type: ignore[type-arg]
    b.create_order(PERP, "market", side, contracts)
    [fill] = b.on_bar(PERP, Bar(t, at, at, at, at))
    assert fill["price"] == at and fill["amount"] == contracts
    [pos] = b.fetch_positions()
    return pos


def test_the_published_tiers_give_the_published_deductions() -> None:
    # Bybit's BTCUSDT page lists the deduction of every tier; the recurrence must give them all.
    published = [0, 1_200, 3_020, 4_300, 5_820, 8_460, 15_460, 20_500, 46_000, 66_000, 80_000, 160_000, 300_000,
                 452_000, 502_000, 777_000, 837_000, 967_000, 1_107_000, 1_482_000]
    assert margin.maintenance_deductions(margin.BYBIT_BTCUSDT_TIERS) == [float(d) for d in published]


def test_opening_takes_margin_and_fees_and_reports_the_ccxt_position(tmp_path: Path) -> None:
    b = perp(tmp_path)
    pos = opened(b, "buy", 0.1)
    margin_ = 0.1 * 50_000 / 20
    assert pos["side"] == "long" and pos["leverage"] == 20 and pos["marginMode"] == "isolated"
    assert pos["collateral"] == pytest.approx(margin_) and pos["initialMargin"] == pytest.approx(margin_)
    assert pos["notional"] == pytest.approx(5_000) and pos["maintenanceMargin"] == pytest.approx(25)
    bal = b.fetch_balance()
    assert bal["total"]["USDT"] == pytest.approx(10_000 - 5_000 * 0.0005)  # the fee left; the margin is held
    assert bal["used"]["USDT"] == pytest.approx(margin_) and bal["free"]["USDT"] == pytest.approx(10_000 - 2.5 - 250)
    b.on_bar(PERP, Bar(3 * H, 50_000, 51_000, 49_900, 51_000))
    [pos] = b.fetch_positions()
    assert pos["markPrice"] == 51_000 and pos["unrealizedPnl"] == pytest.approx(100)
    assert b.equity("USDT") == pytest.approx(10_000 - 2.5 + 100)


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_a_planted_path_liquidates_at_the_computed_price_exactly(tmp_path: Path, side: str) -> None:
    b = perp(tmp_path, leverage=20)
    pos = opened(b, side, 0.1)
    s = 1 if side == "buy" else -1
    expected = margin.liquidation_price(s, 0.1, 50_000.0, 250.0, margin.BYBIT_BTCUSDT_TIERS)
    # By hand: (±qty·entry − collateral) / (qty·(±1 − MMR)), tier 1 (MMR 0.5 %, no deduction).
    by_hand = (0.1 * 50_000 - 250) / (0.1 * 0.995) if s > 0 else (0.1 * 50_000 + 250) / (0.1 * 1.005)
    assert expected == pytest.approx(by_hand, rel=1e-12) and pos["liquidationPrice"] == expected
    stop = b.create_order(PERP, "limit", "sell" if s > 0 else "buy", 0.05, 60_000 if s > 0 else 40_000)
    # A bar that comes within a dollar of it liquidates nothing...
    near = expected + 1 if s > 0 else expected - 1
    assert b.on_bar(PERP, Bar(3 * H, 50_000, max(50_000, near), min(50_000, near), 50_000)) == []
    # ...one that trades through it liquidates at it, exactly.
    through = expected - 50 if s > 0 else expected + 50
    [fill] = b.on_bar(PERP, Bar(4 * H, 50_000, max(50_000, through), min(50_000, through), through))
    assert fill["price"] == expected and fill["amount"] == 0.1 and fill["pnl"] == -250.0
    # The margin is gone, no more: what was left at the fill is the liquidation fee.
    assert fill["fee"] == pytest.approx(250 + s * 0.1 * (expected - 50_000))
    assert fill["fee"] == pytest.approx(0.1 * expected * 0.005)  # = the maintenance margin at that price
    assert b.fetch_positions() == [] and b.fetch_balance()["total"]["USDT"] == pytest.approx(10_000 - 2.5 - 250)
    assert b.fetch_order(stop["id"])["status"] == "open"  # an order that would open again is not the position's
    assert b.fetch_order(fill["order_id"])["type"] == "liquidation"


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_a_bar_that_gaps_through_the_liquidation_price_liquidates_at_its_open(tmp_path: Path, side: str) -> None:
    b = perp(tmp_path, leverage=20)
    pos = opened(b, side, 0.1)
    gap = pos["liquidationPrice"] * (0.97 if side == "buy" else 1.03)
    [fill] = b.on_bar(PERP, Bar(3 * H, gap, gap * 1.01, gap * 0.99, gap))
    assert fill["price"] == gap and fill["pnl"] == -250.0 and fill["fee"] == 0.0  # loss capped at the margin
    assert b.fetch_balance()["total"]["USDT"] == pytest.approx(10_000 - 2.5 - 250)


def test_a_stop_before_the_liquidation_price_fills_first_and_one_beyond_it_waits(tmp_path: Path) -> None:
    b = perp(tmp_path, leverage=20)
    b.create_order(PERP, "market", "buy", 0.1, params={"stopLoss": 48_500})  # liquidation is at ~47,739
    b.on_bar(PERP, Bar(2 * H, 50_000, 50_000, 50_000, 50_000))
    [fill] = b.on_bar(PERP, Bar(3 * H, 50_000, 50_000, 47_000, 47_500))
    assert fill["price"] == 48_500 and fill["pnl"] == pytest.approx(-150 - 0.1 * 48_500 * 0.0005)
    c = perp(tmp_path / "beyond", leverage=20)
    c.create_order(PERP, "market", "buy", 0.1, params={"stopLoss": 47_000})  # beyond the liquidation price
    c.on_bar(PERP, Bar(2 * H, 50_000, 50_000, 50_000, 50_000))
    liq = c.fetch_positions()[0]["liquidationPrice"]
    [fill] = c.on_bar(PERP, Bar(3 * H, 50_000, 50_000, 46_000, 46_500))
    assert fill["price"] == liq and c.fetch_order(fill["order_id"])["type"] == "liquidation"
    assert c.fetch_open_orders() == []  # the stop went with the position


def test_funding_over_three_intervals_longs_pay_shorts_when_positive(tmp_path: Path) -> None:
    rates = {8 * H: 0.0001, 16 * H: -0.0002, 24 * H: 0.0003}
    paid = {}
    for side in ("buy", "sell"):
        b = perp(tmp_path / side, leverage=10, t=6 * H)
        assert b.set_funding_rates(PERP, [{"timestamp": t * 1000, "fundingRate": r} for t, r in rates.items()]) == 3
        opened(b, side, 0.2, t=7 * H)
        collateral = b.fetch_positions()[0]["collateral"]
        closes = {}
        for k in range(8, 26):  # hourly bars 08:00 .. next day 01:00, each closing 10 higher
            close = 50_000 + 10 * k
            b.on_bar(PERP, Bar(k * H, close, close + 5, close - 5, close))
            closes[k * H] = close
        history = b.fetch_funding_history(PERP)
        assert [h["timestamp"] for h in history] == [int(t * 1000) for t in rates]
        s = 1 if side == "buy" else -1
        for h, (t, rate) in zip(history, rates.items(), strict=True):
            mark = closes.get(t - H, 50_000)  # the close before the funding time
            assert h["info"]["mark"] == mark and h["info"]["rate"] == rate
            assert h["amount"] == pytest.approx(-s * 0.2 * mark * rate)
        total = sum(h["amount"] for h in history)
        [pos] = b.fetch_positions()
        assert pos["collateral"] == pytest.approx(collateral + total) and pos["info"]["fundingPaid"] == pytest.approx(-total)
        paid[side] = total
    assert paid["buy"] < 0 < paid["sell"] and paid["buy"] == pytest.approx(-paid["sell"])
    # Marks: the entry bar's close at 08:00, then the 15:00 and 23:00 closes. A long pays, net,
    # 0.2 × (50,000 × 0.0001 − 50,150 × 0.0002 + 50,230 × 0.0003) = 2.0078 USDT.
    assert paid["buy"] == pytest.approx(-2.0078, abs=1e-9)


def test_a_funding_time_without_a_rate_is_reported_and_not_filled(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    b = perp(tmp_path, leverage=10, t=6 * H)
    b.set_funding_rates(PERP, [(8 * H, 0.0001), (24 * H, 0.0001)])  # 16:00 is missing
    opened(b, "buy", 0.2, t=7 * H)
    with caplog.at_level(logging.WARNING, logger="memlab.connectors.paper_broker"):
        for k in range(8, 26):
            b.on_bar(PERP, Bar(k * H, 50_000, 50_005, 49_995, 50_000))
    history = b.fetch_funding_history(PERP)
    assert [(h["info"]["missing"], h["amount"]) for h in history] == [(False, -1.0), (True, 0.0), (False, -1.0)]
    assert "no funding rate for BTC/USDT:USDT at 1970-01-01T16:00:00+00:00" in caplog.text
    assert b.funding_gaps(PERP) == (1, 16 * 3_600_000)


def test_leverage_above_the_maximum_is_refused_naming_it(tmp_path: Path) -> None:
    b = perp(tmp_path)
    with pytest.raises(ccxt.BadRequest, match="maximum leverage is 100x"):
        b.set_leverage(101, PERP)
    b.add_market("ETH/USDT:USDT")  # no published tiers here: the illustrative ones (50x)
    with pytest.raises(ccxt.BadRequest, match="maximum leverage is 50x"):
        b.set_leverage(75, "ETH/USDT:USDT")
    with pytest.raises(ccxt.BadRequest, match="spot market"):
        b.set_leverage(2, "BTC/USDT")
    opened(b, "buy", 0.1)
    with pytest.raises(ccxt.BadRequest, match="open position"):
        b.set_leverage(5, PERP)
    assert b.fetch_leverage(PERP)["longLeverage"] == 20
    [row] = PaperBookReader(tmp_path).swap_positions().to_dict("records")
    assert (row["side"], row["contracts"], row["collateral"]) == ("long", 0.1, pytest.approx(250))
    with pytest.raises(ccxt.NotSupported, match="isolated only"):
        b.set_margin_mode("cross", PERP)
    assert b.fetch_market_leverage_tiers(PERP)[0]["maxLeverage"] == 100


def test_the_risk_limit_of_the_leverage_is_enforced(tmp_path: Path) -> None:
    b = PaperBroker(tmp_path, balances={"USDT": 10_000_000.0}, fees=0.0)
    b.add_market(PERP)
    b.set_leverage(100, PERP)
    b.on_bar(PERP, Bar(H, 50_000, 50_000, 50_000, 50_000))
    with pytest.raises(ccxt.InvalidOrder, match="risk limit 2e\\+06 USDT of 100x"):
        b.create_order(PERP, "market", "buy", 41)  # 2.05 M USDT: above tier 1, the only one allowing 100x


def test_orders_below_the_minimum_name_it(tmp_path: Path) -> None:
    b = perp(tmp_path)
    with pytest.raises(ccxt.InvalidOrder, match="below the minimum amount 0.001 contracts"):
        b.create_order(PERP, "market", "buy", 0.0005)
    b.add_market("DOGE/USDT:USDT", market={"limits": {"amount": {"min": 1}, "cost": {"min": 5}}})
    b.on_bar("DOGE/USDT:USDT", Bar(H, 0.1, 0.1, 0.1, 0.1))
    with pytest.raises(ccxt.InvalidOrder, match="1.00 USDT notional is below the minimum cost 5 USDT"):
        b.create_order("DOGE/USDT:USDT", "market", "sell", 10)
    assert b.fetch_open_orders() == []


def test_an_unknown_symbol_names_the_nearest_known_ones(tmp_path: Path) -> None:
    b = perp(tmp_path)
    with pytest.raises(ccxt.BadSymbol, match="unknown symbol 'BTC/USDC:USDC'; nearest known: BTC/USDT:USDT"):
        b.create_order("BTC/USDC:USDC", "market", "buy", 1)


def test_a_short_on_spot_is_refused_pointing_at_the_perpetual(tmp_path: Path) -> None:
    b = perp(tmp_path)
    b.on_bar("BTC/USDT", Bar(H, 50_000, 50_000, 50_000, 50_000))
    with pytest.raises(ccxt.InsufficientFunds, match="BTC/USDT is a spot market: no shorts; trade BTC/USDT:USDT"):
        b.create_order("BTC/USDT", "market", "sell", 0.1)
    with pytest.raises(ccxt.InvalidOrder, match="reduceOnly is for swap markets"):
        b.create_order("BTC/USDT", "market", "buy", 0.1, params={"reduceOnly": True})


def test_reduce_only_orders_that_would_open_add_or_flip_are_refused(tmp_path: Path) -> None:
    b = perp(tmp_path)
    with pytest.raises(ccxt.InvalidOrder, match="would open a position"):
        b.create_order(PERP, "market", "sell", 0.1, params={"reduceOnly": True})
    opened(b, "buy", 0.1)
    with pytest.raises(ccxt.InvalidOrder, match="would increase the long position"):
        b.create_order(PERP, "market", "buy", 0.1, params={"reduceOnly": True})
    with pytest.raises(ccxt.InvalidOrder, match="would flip the position of 0.1 contracts"):
        b.create_order(PERP, "market", "sell", 0.2, params={"reduceOnly": True})
    # Closing as on the venue: a reduce-only market order for the position's contracts.
    b.create_order(PERP, "market", "sell", 0.1, params={"reduceOnly": True})
    [fill] = b.on_bar(PERP, Bar(3 * H, 50_500, 50_500, 50_500, 50_500))
    assert fill["pnl"] == pytest.approx(50 - 0.1 * 50_500 * 0.0005)
    assert b.fetch_positions() == [] and b.fetch_balance()["used"]["USDT"] == pytest.approx(0)
    assert b.fetch_balance()["total"]["USDT"] == pytest.approx(10_000 - 2.5 + 50 - 2.525)


def test_an_opposite_order_reduces_then_flips_the_position(tmp_path: Path) -> None:
    b = perp(tmp_path, fees=0.0)
    opened(b, "buy", 0.1)
    b.create_order(PERP, "market", "sell", 0.3)
    [fill] = b.on_bar(PERP, Bar(3 * H, 51_000, 51_000, 51_000, 51_000))
    assert fill["amount"] == pytest.approx(0.3) and fill["pnl"] == pytest.approx(100)
    [pos] = b.fetch_positions()
    assert pos["side"] == "short" and pos["contracts"] == pytest.approx(0.2) and pos["entryPrice"] == 51_000
    assert pos["collateral"] == pytest.approx(0.2 * 51_000 / 20)


# Hand-built paths: reference close 100, trailing 10 %. The fill bar's extreme (130 / 70)
# must not move the level; the next bar is checked at 90 / 110 and then ratchets to
# 110 × 0.9 = 99 / 90 × 1.1 = 99; the last bar trades through 99 and fills there, with slippage.
TRAIL_PATHS = {
    "buy": [(101, 130, 100, 105), (104, 110, 95, 108), (100, 100.5, 98, 98.5)],
    "sell": [(99, 100, 70, 95), (96, 105, 90, 92), (97, 99.5, 96, 98)],
}


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_a_perp_trailing_stop_ratchets_after_the_fill_bar_and_fills_where_computed_by_hand(tmp_path: Path, side: str) -> None:
    b = PaperBroker(tmp_path, balances={"USDT": 10_000.0}, fees=0.0, slippage=0.001)
    b.add_market("X/USDT:USDT")
    b.set_leverage(5, "X/USDT:USDT")
    b.on_bar("X/USDT:USDT", Bar(H, 100, 100, 100, 100))
    b.create_order("X/USDT:USDT", "market", side, 10, params={"trailingPercent": 10})
    fill_bar, quiet_bar, stop_bar = (Bar(k * H, *ohlc) for k, ohlc in zip((2, 3, 4), TRAIL_PATHS[side], strict=True))
    [entry] = b.on_bar("X/USDT:USDT", fill_bar)
    assert entry["price"] == pytest.approx(101 * 1.001 if side == "buy" else 99 * 0.999)
    [trail] = b.fetch_open_orders()
    assert trail["price"] == pytest.approx(90 if side == "buy" else 110) and trail["reduceOnly"]
    assert b.on_bar("X/USDT:USDT", quiet_bar) == []
    assert b.fetch_open_orders()[0]["price"] == pytest.approx(99)
    [stop] = b.on_bar("X/USDT:USDT", stop_bar)
    expected = 110 * 0.9 * (1 - 0.001) if side == "buy" else 90 * 1.1 * (1 + 0.001)
    assert stop["price"] == pytest.approx(expected, rel=1e-12)
    assert stop["pnl"] == pytest.approx(10 * (expected - entry["price"]) * (1 if side == "buy" else -1))
    assert b.fetch_positions() == [] and b.fetch_open_orders() == []


def test_connections_report_what_the_paper_broker_can_do_and_pass_the_verbs_through(tmp_path: Path) -> None:
    conn = PaperConnection("paper", perp(tmp_path))
    for flag in ("swap", "shorts", "trailingStops", "setLeverage", "fetchFundingRateHistory", "attachedStops"):
        assert conn.has[flag] is True
    assert conn.amount_rules(PERP) == (conn.STEP, 0.001) and conn.amount_rules("BTC/USDT") == (conn.STEP, conn.STEP)

    async def go() -> None:
        assert (await conn.set_leverage(3, PERP))["leverage"] == 3
        with pytest.raises(ccxt.BadRequest, match="maximum leverage is 100x"):
            await conn.set_leverage(500, PERP)
        assert len(await conn.fetch_market_leverage_tiers(PERP)) == 20
        await conn.create_order(PERP, "market", "sell", 0.01)
        conn.on_bar(PERP, Bar(2 * H, 50_000, 50_000, 50_000, 50_000))
        [pos] = await conn.fetch_positions()
        assert pos["side"] == "short" and pos["leverage"] == 3

    asyncio.run(go())


def test_a_book_from_before_perpetuals_opens_and_keeps_its_spot_state(tmp_path: Path) -> None:
    old = sqlite3.connect(tmp_path / "paper_broker.sqlite")
    old.executescript("""
        CREATE TABLE markets (symbol TEXT PRIMARY KEY, base TEXT NOT NULL, quote TEXT NOT NULL);
        CREATE TABLE balances (asset TEXT PRIMARY KEY, total REAL NOT NULL);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, client_id TEXT NOT NULL UNIQUE, symbol TEXT NOT NULL,
            type TEXT NOT NULL, side TEXT NOT NULL, amount REAL, cost REAL, price REAL, status TEXT NOT NULL,
            filled REAL NOT NULL DEFAULT 0, average REAL, fee REAL NOT NULL DEFAULT 0, created_at REAL NOT NULL,
            updated_at REAL NOT NULL, parent_id INTEGER, stop_loss REAL, take_profit REAL, reason TEXT NOT NULL DEFAULT '');
        INSERT INTO markets VALUES ('BTC/USDT', 'BTC', 'USDT');
        INSERT INTO balances VALUES ('USDT', 500.0), ('BTC', 0.1);
        INSERT INTO orders (client_id, symbol, type, side, amount, price, status, created_at, updated_at)
            VALUES ('old', 'BTC/USDT', 'limit', 'buy', 1, 100, 'open', 0, 0);
    """)
    old.commit()
    old.close()
    b = PaperBroker(tmp_path)
    assert b.fetch_balance()["used"]["USDT"] == pytest.approx(100 * 1.001)
    assert b.fetch_open_orders()[0]["clientOrderId"] == "old" and b.market("BTC/USDT")["spot"] is True


SESSION = textwrap.dedent(
    """
    import math, random, sys
    from pathlib import Path
    from memlab.connectors.paper_broker import Bar, PaperBookReader, PaperBroker
    from memlab.data.funding import load_funding

    root, stop_after = Path(sys.argv[1]), int(sys.argv[2])
    S = "BTC/USDT:USDT"
    rng = random.Random(11)
    bars, price = [], 42_000.0
    for i in range(1_400):  # hourly bars from 2024-01-01 00:00 UTC, the funding sample's start
        o = price
        c = o * math.exp(rng.gauss(0, 0.01))
        bars.append(Bar(1_704_067_200 + 3_600 * i, o, max(o, c) * (1 + abs(rng.gauss(0, 0.004))),
                        min(o, c) * (1 - abs(rng.gauss(0, 0.004))), c))
        price = c
    b = PaperBroker(root, balances={"USDT": 100_000.0}, fees=0.00055, slippage=0.0002)
    b.add_market(S)
    b.set_funding_rates(S, load_funding("sample"))
    last = b.last_bar_time(S)  # a restarted session resumes at the last bar its book has (and redoes it)
    start = 0 if last is None else next(i for i, bar in enumerate(bars) if bar.time >= last)
    for i in range(start, len(bars)):
        bar = bars[i]
        b.on_bar(S, bar)
        pos = next((p for p in b.fetch_positions() if p["symbol"] == S), None)
        phase, cycle = i % 60, i // 60
        if phase == 2 and pos is None:
            b.set_leverage(10 + 5 * (cycle % 3), S)
            b.create_order(S, "market", "buy" if cycle % 2 == 0 else "sell", 1.5,
                           params={"clientOrderId": f"open-{i}", "trailingPercent": 5 + cycle % 3})
        elif phase == 10:
            b.create_order(S, "limit", "buy", 0.5, round(bar.close * 0.8, 1), params={"clientOrderId": f"limit-{i}"})
        elif phase == 40 and pos is not None:
            b.create_order(S, "market", "sell" if pos["side"] == "long" else "buy", pos["contracts"],
                           params={"clientOrderId": f"close-{i}", "reduceOnly": True})
        elif phase == 50:
            for o in b.fetch_open_orders(S):
                if o["type"] == "limit":
                    b.cancel_order(o["id"])
        print(i, int(pos is not None), flush=True)
        if i == stop_after:
            break
    positions = [(p["side"], p["contracts"], p["entryPrice"], p["collateral"], p["liquidationPrice"])
                 for p in b.fetch_positions()]
    opens = [(o["type"], o["side"], o["amount"], o["price"]) for o in b.fetch_open_orders()]
    funding = [(f["timestamp"], f["amount"]) for f in b.fetch_funding_history()]
    fills = [(f["bar_time"], f["side"], f["price"], f["amount"], f["fee"], f["pnl"]) for f in b.fills()]
    kinds = sorted({o[0] for o in b._db.execute("SELECT type FROM orders")})
    print("END", repr((b.equity("USDT"), b.fetch_balance()["total"], positions, opens, funding, fills, kinds)), flush=True)
    """
)


def session(root: Path, stop_after: int = 10**9) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SESSION, str(root), str(stop_after)], capture_output=True, text=True,
                          timeout=600)


def test_kill_9_with_open_leveraged_positions_and_pending_orders_then_restart_equals_an_uninterrupted_run(
        tmp_path: Path) -> None:
    reference = session(tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr
    end = reference.stdout.splitlines()[-1]
    assert end.startswith("END")
    # The session does what it should exercise: trailing stops, liquidations, funding, closes.
    for kind in ("'liquidation'", "'trailing_stop'", "'limit'"):
        assert kind in end
    crashed = tmp_path / "crashed"
    for after in (300, 700, 1_100):  # killed three times, each time resumed on the same book
        proc = subprocess.Popen([sys.executable, "-c", SESSION, str(crashed), "1000000"],
                                stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert proc.stdout is not None
        for line in proc.stdout:
            i, has_position = (int(x) for x in line.split())
            if i >= after and has_position and 15 <= i % 60 <= 35:  # a position open, the limit order pending
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        book = sqlite3.connect(f"file:{crashed / 'paper_broker.sqlite'}?mode=ro", uri=True)
        try:
            assert book.execute("SELECT count(*) FROM swap_positions WHERE contracts <> 0").fetchone()[0] == 1
            assert book.execute("SELECT count(*) FROM orders WHERE status = 'open' AND type = 'limit'").fetchone()[0] == 1
            assert book.execute("SELECT count(*) FROM funding").fetchone()[0] > 0
        finally:
            book.close()
    resumed = session(crashed)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines()[-1] == end


def test_a_market_s_own_funding_interval_is_used(tmp_path: Path) -> None:
    b = PaperBroker(tmp_path, balances={"USDT": 10_000.0}, fees=0.0)
    b.add_market("ETH/USDT:USDT", market={"fundingInterval": "4h"})
    b.set_funding_rates("ETH/USDT:USDT", [(4 * H, 0.001), (8 * H, 0.001)])
    b.on_bar("ETH/USDT:USDT", Bar(2 * H, 2_000, 2_000, 2_000, 2_000))
    b.create_order("ETH/USDT:USDT", "market", "buy", 1)
    for k in range(3, 10):
        b.on_bar("ETH/USDT:USDT", Bar(k * H, 2_000, 2_000, 2_000, 2_000))
    assert [(h["timestamp"], h["amount"]) for h in b.fetch_funding_history()] == [(4 * 3_600_000, -2.0), (8 * 3_600_000, -2.0)]


def test_short_trailing_stops_fill_where_the_backtest_engine_fills_them(tmp_path: Path) -> None:
    """Shorts only (the strategy's short entries and exits), trailing 5 %, on GOOG's daily
    bars through a perpetual at 1x: each entry and exit price equals vectorbt's."""
    import pandas as pd

    from memlab.backtest import simulate
    from memlab.data import sample
    from memlab.strategies import compute_signals

    bars = sample("GOOG")
    signals = compute_signals("sma_cross", bars, {"fast": 10, "slow": 30})
    shorts = pd.DataFrame({"entry": False, "exit": False, "short_entry": signals["short_entry"],
                           "short_exit": signals["short_exit"]}, index=bars.index)
    pf = simulate(bars, shorts, fees=0.001, slippage=0.0005, direction="both", trailing_stop=0.05)
    trades = pf.trades.records_readable
    b = PaperBroker(tmp_path, balances={"USD": 1e9}, fees=0.001, slippage=0.0005)
    b.add_market("GOOG/USD:USD")
    first, last = int(bars.index[0].timestamp()) // 28_800 * 28_800, int(bars.index[-1].timestamp())
    b.set_funding_rates("GOOG/USD:USD", [(t, 0.0) for t in range(first, last + 28_800, 28_800)])  # no funding here
    stopped = 0
    for i, (t, row) in enumerate(bars.iterrows()):
        fills = b.on_bar("GOOG/USD:USD", Bar(t.timestamp(), row.Open, row.High, row.Low, row.Close))
        stopped += sum(1 for f in fills if b.fetch_order(f["order_id"])["type"] == "trailing_stop")
        pos = b.fetch_positions()
        if shorts["short_entry"].iloc[i] and not pos:
            b.create_order("GOOG/USD:USD", "market", "sell", 10, params={"trailingPercent": 5})
        elif shorts["short_exit"].iloc[i] and pos:
            for order in b.fetch_open_orders("GOOG/USD:USD"):
                b.cancel_order(order["id"])
            b.create_order("GOOG/USD:USD", "market", "buy", pos[0]["contracts"], params={"reduceOnly": True})
    fills = b.fills("GOOG/USD:USD")
    assert stopped >= 5 and len(trades) >= 20
    assert [f["price"] for f in fills if f["side"] == "sell"] == pytest.approx(list(trades["Avg Entry Price"]), rel=1e-12)
    closed = trades[trades["Status"] == "Closed"]
    assert [f["price"] for f in fills if f["side"] == "buy"] == pytest.approx(list(closed["Avg Exit Price"]), rel=1e-12)
