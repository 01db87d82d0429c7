"""Perpetual futures over real HTTP: ccxt's own ``binanceusdm`` client against a loopback
Binance USDⓈ-M with faults (:mod:`tests.support.futures_emulator`).

A futures order hit by any fault a venue can throw — a dropped connection, an answer that
comes after the client gave up, a rate limit, an outage page, a garbled body, a request
that stalls — ends in exactly one order, a short as much as a reduce-only close; the
venue's "no" is not retried; and the trader runs a leveraged long/short session live
through ccxt the way it runs it on paper.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import ccxt
import numpy as np
import pandas as pd
import pytest

from memlab.connectors import ConnectionManager, PaperBroker, ReplayFeed, RetryPolicy
from memlab.connectors.paper_broker import PaperBookReader
from memlab.data import synthetic_ohlcv
from memlab.memory import MemoryStores
from memlab.trader import TraderConfig, UnifiedMemGPTTrader
from memlab.trader.loop import FEED
from tests.support.futures_emulator import BinanceFuturesEmulator

SWAP = "BTC/USDT:USDT"
ORDER = "/fapi/v1/order"
FAST = RetryPolicy(attempts=5, base=0.02, cap=0.1)


@pytest.fixture()
def emu() -> Any:
    with BinanceFuturesEmulator(balances={"USDT": 10_000.0}, markets={SWAP: 100.0}) as e:
        yield e


async def connect(tmp_path: Path, emu: BinanceFuturesEmulator, **kw: Any) -> ConnectionManager:
    manager = ConnectionManager(tmp_path, retry=kw.pop("retry", FAST))
    await manager.add_broker_connection("binanceusdm", emu.api_key, emu._secret, exchange="binanceusdm",
                                        **emu.manager_options(), **kw)
    return manager


def posts(emu: BinanceFuturesEmulator) -> int:
    return sum(1 for method, path, _ in emu.requests if method == "POST" and path == ORDER)


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_the_emulator_speaks_binanceusdm_to_the_real_ccxt_client(emu: BinanceFuturesEmulator) -> None:
    ex = ccxt.binanceusdm(emu.ccxt_config())
    market = ex.load_markets()[SWAP]
    assert (market["swap"], market["linear"], market["settle"], market["contractSize"]) == (True, True, "USDT", 1.0)
    assert market["limits"]["amount"]["min"] == 0.001 and market["limits"]["cost"]["min"] == 5.0
    assert ex.set_leverage(2, SWAP)["leverage"] == 2
    ex.set_margin_mode("isolated", SWAP)
    with pytest.raises(ccxt.MarginModeAlreadySet):
        ex.set_margin_mode("isolated", SWAP)
    short = ex.create_order(SWAP, "market", "sell", 10.0, None, {"clientOrderId": "s-1"})
    assert (short["status"], short["side"], short["filled"], short["average"], short["reduceOnly"]) == \
        ("closed", "sell", 10.0, 100.0, False)
    assert ex.fetch_order(None, SWAP, {"clientOrderId": "s-1"})["id"] == short["id"]
    emu.set_price(SWAP, 95.0)
    for method in ("positionRisk v3", "positionRisk v2"):
        [pos] = ex.fetch_positions(None, {"useV2": method.endswith("v2")})
        assert (pos["symbol"], pos["side"], pos["contracts"], pos["entryPrice"], pos["markPrice"]) == \
            (SWAP, "short", 10.0, 100.0, 95.0)
        assert pos["unrealizedPnl"] == pytest.approx(50.0) and pos["marginMode"] == "isolated"
        assert pos["collateral"] == pytest.approx(500.0 + 50.0)  # the isolated wallet, 1,000 / 2x, and the gain
        # Binance's isolated formula: (wallet + cum + qty x entry) / (qty x (1 + MMR)) for a short.
        assert pos["liquidationPrice"] == pytest.approx((500.0 + 10 * 100.0) / (10 * 1.004), abs=1e-6)
    assert ex.fetch_positions(None, {"useV2": True})[0]["leverage"] == 2  # v3 has no leverage, as on Binance
    balance = ex.fetch_balance()["USDT"]
    assert balance["total"] == pytest.approx(10_000 - 0.5 + 50.0)  # ccxt's total: the margin balance (with the gain)
    assert balance["free"] == pytest.approx(10_000 - 0.5 - 500.0)
    close = ex.create_order(SWAP, "market", "buy", 10.0, None, {"reduceOnly": True})
    assert (close["status"], close["average"], close["reduceOnly"]) == ("closed", 95.0, True)
    assert ex.fetch_positions() == []
    assert ex.fetch_balance()["USDT"]["total"] == pytest.approx(10_000 + 50.0 - 0.5 - 0.475)
    assert [(t["side"], t["price"], t["fee"]["cost"]) for t in ex.fetch_my_trades(SWAP)] == \
        [("sell", 100.0, 0.5), ("buy", 95.0, 0.475)]
    with pytest.raises(ccxt.InvalidOrder, match="ReduceOnly Order is rejected"):
        ex.create_order(SWAP, "market", "buy", 1.0, None, {"reduceOnly": True})
    with pytest.raises(ccxt.InsufficientFunds, match="Margin is insufficient"):
        ex.create_order(SWAP, "market", "sell", 250.0)  # 23,750 notional at 2x: more margin than the wallet
    limit = ex.create_order(SWAP, "limit", "buy", 1.0, 90.0)
    assert [o["id"] for o in ex.fetch_open_orders(SWAP)] == [limit["id"]]
    emu.push_bar(SWAP, 1_700_000_000, 95, 96, 89, 91)
    assert ex.fetch_order(limit["id"], SWAP)["status"] == "closed" and emu.position(SWAP) == (1.0, 90.0)
    assert ex.fetch_ohlcv(SWAP, "1m")[-1][1:5] == [95, 96, 89, 91]
    tiers = ex.fetch_market_leverage_tiers(SWAP)
    assert tiers[0]["maxLeverage"] == 125 and tiers[1]["minNotional"] == tiers[0]["maxNotional"]
    emu.set_funding_rates(SWAP, [(1_700_000_000 + 28_800 * i, 0.0001 * (i + 1)) for i in range(3)])
    assert [r["fundingRate"] for r in ex.fetch_funding_rate_history(SWAP)] == [0.0001, 0.0002, 0.0003]
    with pytest.raises(ccxt.BadRequest):
        ccxt.binanceusdm(emu.ccxt_config()).set_leverage(1.5, SWAP)  # an INT parameter on Binance
    with pytest.raises(ccxt.AuthenticationError):  # the signature is checked, as Binance does
        ccxt.binanceusdm({**emu.ccxt_config(), "secret": "wrong"}).fetch_balance()


@pytest.mark.parametrize("fault", ["drop", "delay", "429", "500", "malformed"])
@pytest.mark.parametrize("order", ["short", "reduce-only close"])
def test_a_futures_order_hit_by_a_fault_is_placed_exactly_once(tmp_path: Path, emu: BinanceFuturesEmulator,
                                                                fault: str, order: str) -> None:
    if order == "reduce-only close":
        ccxt.binanceusdm(emu.ccxt_config()).create_order(SWAP, "market", "sell", 0.5)  # the short it closes

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        manager = await connect(tmp_path, emu, timeout=500)
        try:
            emu.fault(fault, path=ORDER, method="POST", delay=1.5)
            side, params = ("SELL", {}) if order == "short" else ("BUY", {"reduceOnly": True})
            placed = await manager.execute_on_broker("binanceusdm", "place_order", {
                "symbol": "BTCUSDT", "qty": 0.5, "side": side, "params": params})
            return placed, manager.status()["binanceusdm"]
        finally:
            await manager.close()

    placed, health = asyncio.run(main())
    assert placed["status"] == "closed" and placed["filled"] == 0.5
    assert len(emu.orders_with_client_id(placed["clientOrderId"])) == 1
    assert len(emu.orders) == (1 if order == "short" else 2)
    assert health["errors"] == 1 and health["state"] == "up" and health["reconnects"] == 1
    assert emu.position(SWAP)[0] == (-0.5 if order == "short" else 0.0)  # shorted once / closed, not flipped long


def test_a_stalled_futures_order_that_never_happened_is_sent_again_once(tmp_path: Path,
                                                                       emu: BinanceFuturesEmulator) -> None:
    async def main() -> dict[str, Any]:
        manager = await connect(tmp_path, emu, timeout=400)
        try:
            emu.fault("stall", path=ORDER, method="POST", delay=1.0)
            return await manager.execute_on_broker("binanceusdm", "place_order",
                                                   {"symbol": SWAP, "qty": 0.1, "side": "SELL"})
        finally:
            await manager.close()

    placed = asyncio.run(main())
    # The stalled request wakes up to a client that left: it must not place anything late.
    wait_for(lambda: 0 in emu.served("POST", ORDER))
    assert len(emu.orders_with_client_id(placed["clientOrderId"])) == 1 and len(emu.orders) == 1
    assert posts(emu) == 2 and emu.position(SWAP)[0] == -0.1


def test_a_reduce_only_close_with_nothing_to_reduce_is_not_retried_and_says_why(tmp_path: Path,
                                                                               emu: BinanceFuturesEmulator) -> None:
    async def main() -> None:
        manager = await connect(tmp_path, emu)
        try:
            with pytest.raises(ccxt.InvalidOrder, match="ReduceOnly Order is rejected"):
                await manager.execute_on_broker("binanceusdm", "place_order", {
                    "symbol": SWAP, "qty": 0.5, "side": "BUY", "params": {"reduceOnly": True}})
            short = await manager.execute_on_broker("binanceusdm", "place_order",
                                                    {"symbol": SWAP, "qty": 0.5, "side": "SELL"})
            with pytest.raises(ccxt.InvalidOrder, match="ReduceOnly Order is rejected"):  # a sell reduces no short
                await manager.execute_on_broker("binanceusdm", "place_order", {
                    "symbol": SWAP, "qty": 0.5, "side": "SELL", "params": {"reduceOnly": True}})
            assert short["status"] == "closed"
            health = manager.status()["binanceusdm"]
            assert health["state"] == "up" and health["errors"] == 0
        finally:
            await manager.close()

    asyncio.run(main())
    assert posts(emu) == 3 and len(emu.orders) == 1 and emu.position(SWAP) == (-0.5, 100.0)


def test_the_derivatives_verbs_reach_the_venue_and_the_balance_is_the_wallet(tmp_path: Path,
                                                                             emu: BinanceFuturesEmulator) -> None:
    """What the trader reads of a futures venue: leverage as it sets it (a float), margin
    mode, tiers, funding, positions, and a balance whose ``total`` is the wallet (as the
    paper broker's), so equity counts unrealised P&L once."""
    emu.set_funding_rates(SWAP, [(1_700_000_000, 0.0001), (1_700_028_800, -0.0002)])

    async def main() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        manager = await connect(tmp_path, emu)
        try:
            conn = manager.broker("binanceusdm")
            assert conn.has["shorts"] and not conn.has["simulatedFills"]
            assert conn.amount_rules(SWAP) == (0.001, 0.001) and conn.taker_fee(SWAP) == emu.fees
            await conn.set_leverage(2.0, SWAP)  # TraderConfig.leverage is a float; Binance takes an integer
            await conn.set_margin_mode("isolated", SWAP)
            with pytest.raises(ccxt.BadRequest, match="between 1 and 125"):
                await conn.set_leverage(150.0, SWAP)
            tiers = await conn.fetch_market_leverage_tiers(SWAP)
            rates = await conn.fetch_funding_rate_history(SWAP)
            assert len(tiers) == 12 and [r["fundingRate"] for r in rates] == [0.0001, -0.0002]
            await manager.execute_on_broker("binanceusdm", "place_order", {"symbol": SWAP, "qty": 10, "side": "SELL"})
            emu.set_price(SWAP, 90.0)  # the short gains 100
            balance = await manager.execute_on_broker("binanceusdm", "fetch_balance")
            return balance, await manager.execute_on_broker("binanceusdm", "fetch_positions")
        finally:
            await manager.close()

    balance, positions = asyncio.run(main())
    assert emu.leverage[SWAP] == 2 and emu.margin_types[SWAP] == "isolated"
    assert balance["total"]["USDT"] == pytest.approx(10_000 - 0.5)  # the wallet: the 100 of gain is not in it
    assert balance["USDT"]["total"] == balance["total"]["USDT"]
    assert balance["free"]["USDT"] == pytest.approx(10_000 - 0.5 - 500)
    [pos] = positions
    assert (pos["side"], pos["contracts"], pos["entryPrice"], pos["unrealizedPnl"]) == ("short", 10.0, 100.0, 100.0)
    assert pos["collateral"] == pytest.approx(600.0) and pos["marginMode"] == "isolated"


# -- the trader, live on the perpetual and on paper -------------------------------------------
LEVERAGE, FEES = 2.0, 0.0005
STRATEGY = {"strategy": "momentum", "params": {"lookback": 10, "threshold": 0.004}}  # long, short, and plain exits


def continuous(n: int, seed: int) -> pd.DataFrame:
    """1-minute bars whose every open is the previous close (a 24/7 market's bars): a paper
    order filled at the next open gets the price a venue order gets at this close."""
    bars = synthetic_ohlcv(n, freq="1min", seed=seed).copy()
    opens = np.r_[bars["Open"].iloc[0], bars["Close"].to_numpy()[:-1]]
    bars["Open"] = opens
    bars["High"] = np.maximum(bars["High"], opens)
    bars["Low"] = np.minimum(bars["Low"], opens)
    return bars


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One session on the paper broker and one live through ccxt against the emulator
    (``memlab paper --symbol BTC/USDT:USDT --leverage 2 --exit-after 7 --mode live
    --confirm-live``), on the same bars with the same settings (fees as the venue's, no
    slippage). The trader sets the venue's leverage and isolated margin itself."""
    bars = continuous(700, 9)
    root = tmp_path_factory.mktemp("perp")
    common = {"symbols": (SWAP,), **STRATEGY, "sizing": "full", "balance": 10_000.0, "leverage": LEVERAGE, "exit_after": 7,
              "fees": FEES, "slippage": 0.0}
    paper_config = TraderConfig(memory_path=root / "paper", feed={"data": bars, "warmup": 200}, **common)
    paper_report = asyncio.run(UnifiedMemGPTTrader(paper_config).run())
    ids = sorted(PaperBookReader(root / "paper").orders(limit=10_000)["id"])
    book = PaperBroker(root / "paper")
    try:
        paper_orders = [book.fetch_order(int(i)) for i in ids]
        paper_fills = book.fills(SWAP)
    finally:
        book.close()

    with BinanceFuturesEmulator(balances={"USDT": 10_000.0}, markets={SWAP: float(bars["Close"].iloc[0])},
                                fees=FEES) as emu:
        class VenueFeed(ReplayFeed):
            async def _run(self):  # type: ignore[no-untyped-def]
                async for symbol, bar in super()._run():
                    emu.set_price(symbol, bar.close)  # the venue trades where the replayed market is
                    yield symbol, bar

        async def live() -> dict[str, Any]:
            manager = await connect(root / "live", emu)
            manager.feeds[FEED] = VenueFeed(FEED, {SWAP: bars}, warmup=200)
            config = TraderConfig(memory_path=root / "live", mode="live", confirm_live=True, broker="binanceusdm",
                                  **common)
            return await UnifiedMemGPTTrader(config, manager=manager).run()

        live_report = asyncio.run(live())
        venue = ccxt.binanceusdm(emu.ccxt_config())
        venue_positions, venue_balance = venue.fetch_positions(), venue.fetch_balance()
        orders = list(emu.orders)
        leverage, margin_type = emu.leverage[SWAP], emu.margin_types[SWAP]
    with MemoryStores(root / "paper") as mem:
        paper_decisions = mem.decisions.frame(symbol=SWAP)
    with MemoryStores(root / "live") as mem:
        live_decisions = mem.decisions.frame(symbol=SWAP)
    return {"paper": paper_report, "live": live_report, "paper_orders": paper_orders, "paper_fills": paper_fills,
            "orders": orders, "leverage": leverage, "margin_type": margin_type, "positions": venue_positions, "balance": venue_balance,
            "paper_decisions": paper_decisions, "live_decisions": live_decisions}


def test_the_trader_runs_live_on_the_perpetual_the_same_way_as_on_paper(sessions: dict[str, Any]) -> None:
    """Live mode (confirmed) against the futures emulator: leverage set on the venue, market
    orders through ccxt (shorts, reversals, reduce-only exits), fills from the venue's
    answers; the same orders at the same bars as the paper session, sized alike."""
    live, paper, orders, paper_orders = sessions["live"], sessions["paper"], sessions["orders"], sessions["paper_orders"]
    assert sessions["leverage"] == LEVERAGE and sessions["margin_type"] == "isolated"  # set by the trader
    assert live["orders"] == paper["orders"] == len(orders) == len(paper_orders) > 40
    assert live["decisions"] == paper["decisions"] and live["skipped"] == paper["skipped"] == 0
    assert all(o["status"] == "FILLED" for o in orders)
    # The same signal at the same bar gives the same client order id: the same orders, in order.
    assert [o["clientOrderId"] for o in orders] == [o["clientOrderId"] for o in paper_orders]
    assert [o["side"].lower() for o in orders] == [o["side"] for o in paper_orders]
    assert [o["reduceOnly"] for o in orders] == [bool(o.get("reduceOnly")) for o in paper_orders]
    # Amounts: the live entry leaves the venue's price buffer (0.2 %) unspent and rounds to its step.
    ratios = [float(o["origQty"]) / p["amount"] for o, p in zip(orders, paper_orders, strict=True)]
    assert all(0.99 < r <= 1.0 + 1e-9 for r in ratios), (min(ratios), max(ratios))
    # A paper order fills at the next open, which is this close: the price the venue filled at.
    fills = sessions["paper_fills"]
    np.testing.assert_allclose([float(o["avgPrice"]) for o in orders[:len(fills)]], [f["price"] for f in fills],
                               rtol=1e-8)
    # Shorts were opened (sells that are not reduce-only), reversed and closed reduce-only.
    position, positions = 0.0, []
    for o in orders:
        position = round(position + (1 if o["side"] == "BUY" else -1) * float(o["executedQty"]), 9)
        positions.append(position)
    assert sum(1 for p in positions if p < 0) > 10 and sum(1 for o in orders if o["reduceOnly"]) > 10
    paper_positions = np.cumsum([(1 if f["side"] == "buy" else -1) * f["amount"] for f in fills])
    assert np.sign(positions[:len(fills)]).tolist() == np.sign(np.round(paper_positions, 9)).tolist()
    # The venue's position is the sum of the session's fills; its equity is the session's.
    held = sum(p["contracts"] * (1 if p["side"] == "long" else -1) for p in sessions["positions"])
    assert held == pytest.approx(positions[-1], abs=1e-9)
    equity = float(sessions["balance"]["info"]["totalMarginBalance"])
    assert live["equity"] == pytest.approx(equity, rel=1e-6)
    assert live["equity"] == pytest.approx(paper["equity"], rel=0.01)
    live_d, paper_d = sessions["live_decisions"], sessions["paper_decisions"]
    assert live_d["action"].tolist() == paper_d["action"].tolist() and (live_d["action"] == "SELL").sum() > 10
    assert live_d.index.equals(paper_d.index)


def test_live_perpetual_outcomes_have_the_pnl_paper_gives_them(sessions: dict[str, Any]) -> None:
    live_d, paper_d = sessions["live_decisions"], sessions["paper_decisions"]
    closed = paper_d["pnl"].notna() & live_d["pnl"].notna()
    assert closed.sum() > 20
    # Each outcome within 1 % of the position's notional of paper's (the live one is 0.2 % smaller).
    np.testing.assert_allclose(live_d.loc[closed, "pnl"], paper_d.loc[closed, "pnl"], rtol=0.02, atol=5.0)
