"""Exchange connections over real HTTP: ccxt's own client against a loopback Binance with faults.

Every fault a venue can throw at an order — a dropped connection, an answer that comes
after the client gave up, a rate limit, an outage page, a garbled body — must end in
exactly one order, with health saying what happened.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import ccxt
import pytest

from memlab.connectors import Bar, ConnectionManager, ReplayFeed, RetryPolicy
from memlab.data import synthetic_ohlcv
from memlab.memory import MemoryStores
from memlab.trader import TraderConfig, UnifiedMemGPTTrader
from memlab.trader.loop import FEED
from tests.support.exchange_emulator import BinanceEmulator

FAST = RetryPolicy(attempts=5, base=0.02, cap=0.1)


@pytest.fixture()
def emu() -> Any:
    with BinanceEmulator(balances={"USDT": 10_000.0}, markets={"BTC/USDT": 100.0}, fees=0.001) as e:
        yield e


async def connect(tmp_path: Path, emu: BinanceEmulator, **kw: Any) -> ConnectionManager:
    manager = ConnectionManager(tmp_path, retry=kw.pop("retry", FAST))
    await manager.add_broker_connection("binance", emu.api_key, emu._secret, **emu.manager_options(), **kw)
    return manager


def posts(emu: BinanceEmulator) -> int:
    return sum(1 for method, path, _ in emu.requests if method == "POST" and path.endswith("/order"))


def test_the_emulator_speaks_binance_to_the_real_ccxt_client(emu: BinanceEmulator) -> None:
    ex = ccxt.binance(emu.ccxt_config())
    market = ex.load_markets()["BTC/USDT"]
    assert market["spot"] and market["limits"]["amount"]["min"] == 0.00001
    order = ex.create_order("BTC/USDT", "market", "buy", 2.0, None, {"clientOrderId": "c-1"})
    assert (order["status"], order["average"], order["clientOrderId"]) == ("closed", 100.0, "c-1")
    assert ex.fetch_balance()["total"]["USDT"] == pytest.approx(10_000 - 200 * 1.001)
    assert ex.fetch_order(None, "BTC/USDT", {"clientOrderId": "c-1"})["id"] == order["id"]
    limit = ex.create_order("BTC/USDT", "limit", "sell", 1.0, 110.0)
    assert ex.fetch_balance()["used"]["BTC"] == 1.0 and [o["id"] for o in ex.fetch_open_orders("BTC/USDT")] == [limit["id"]]
    emu.push_bar("BTC/USDT", 1_700_000_000, 100, 111, 99, 108)
    assert ex.fetch_order(limit["id"], "BTC/USDT")["status"] == "closed"
    assert ex.fetch_ohlcv("BTC/USDT", "1m")[-1][1:5] == [100, 111, 99, 108]
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order("BTC/USDT", "market", "buy", 1000.0)
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order("999", "BTC/USDT")
    with pytest.raises(ccxt.AuthenticationError):  # the signature is checked, as Binance does
        ccxt.binance({**emu.ccxt_config(), "secret": "wrong"}).fetch_balance()


@pytest.mark.parametrize("fault", ["drop", "delay", "429", "500", "malformed"])
def test_an_order_hit_by_a_fault_is_placed_exactly_once(tmp_path: Path, emu: BinanceEmulator, fault: str) -> None:
    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        manager = await connect(tmp_path, emu, timeout=500)
        try:
            emu.fault(fault, path="/api/v3/order", method="POST", delay=1.5)
            order = await manager.execute_on_broker("binance", "place_order", {"symbol": "BTCUSDT", "qty": 0.5, "side": "BUY"})
            return order, manager.status()["binance"]
        finally:
            await manager.close()

    order, health = asyncio.run(main())
    assert order["status"] == "closed" and order["filled"] == 0.5
    assert len(emu.orders_with_client_id(order["clientOrderId"])) == 1 and len(emu.orders) == 1
    assert health["errors"] == 1 and health["state"] == "up" and health["reconnects"] == 1
    assert emu.balances["BTC"][0] == pytest.approx(0.5)  # bought once, not twice


def test_a_stalled_order_that_never_happened_is_sent_again_once(tmp_path: Path, emu: BinanceEmulator) -> None:
    async def main() -> dict[str, Any]:
        manager = await connect(tmp_path, emu, timeout=400)
        try:
            emu.fault("stall", path="/api/v3/order", method="POST", delay=1.0)
            return await manager.execute_on_broker("binance", "place_order", {"symbol": "BTC/USDT", "qty": 0.1, "side": "BUY"})
        finally:
            await manager.close()

    order = asyncio.run(main())
    import time

    time.sleep(1.2)  # the stalled request wakes up to a client that left: it must not place anything late
    assert len(emu.orders_with_client_id(order["clientOrderId"])) == 1 and len(emu.orders) == 1
    assert posts(emu) == 2


def test_the_venues_no_is_not_retried_and_says_why(tmp_path: Path, emu: BinanceEmulator) -> None:
    async def main() -> None:
        manager = await connect(tmp_path, emu)
        try:
            with pytest.raises(ccxt.InsufficientFunds, match="insufficient balance"):
                await manager.execute_on_broker("binance", "place_order", {"symbol": "BTCUSDT", "qty": 1000, "side": "BUY"})
            with pytest.raises(ccxt.BadSymbol):
                await manager.execute_on_broker("binance", "place_order", {"symbol": "DOGEUSDT", "qty": 1, "side": "BUY"})
            assert manager.status()["binance"]["state"] == "up" and manager.status()["binance"]["errors"] == 0
        finally:
            await manager.close()

    asyncio.run(main())
    assert posts(emu) == 1 and emu.orders == []


def test_a_venue_that_stays_down_is_a_lost_connection_until_it_answers_again(tmp_path: Path, emu: BinanceEmulator) -> None:
    events: list[str] = []

    async def main() -> None:
        manager = await connect(tmp_path, emu, retry=RetryPolicy(attempts=3, base=0.01, cap=0.02))
        manager.add_listener(lambda event, _: events.append(event))
        try:
            emu.fault("500", path="/api/v3/account", times=3)
            with pytest.raises(ccxt.ExchangeNotAvailable):
                await manager.execute_on_broker("binance", "fetch_balance")
            assert manager.status()["binance"]["state"] == "down"
            balance = await manager.execute_on_broker("binance", "fetch_balance")
            assert balance["total"]["USDT"] == 10_000.0
            assert manager.status()["binance"]["state"] == "up"
        finally:
            await manager.close()

    asyncio.run(main())
    assert events == ["connection_lost", "connection_restored"]


def test_a_polling_feed_delivers_each_closed_candle_once_through_an_outage(tmp_path: Path, emu: BinanceEmulator) -> None:
    bars = synthetic_ohlcv(30, freq="1min", start="2024-01-01", seed=3)
    t0 = [t.timestamp() for t in bars.index]
    for t, row in zip(t0[:10], bars.itertuples(), strict=False):
        emu.push_bar("BTC/USDT", t, row.Open, row.High, row.Low, row.Close)

    async def main() -> list[float]:
        manager = await connect(tmp_path, emu)
        try:
            feed = await manager.add_data_feed("candles", {"symbols": ["BTCUSDT"], "source": "poll", "interval": 0.02,
                                                           "warmup": 5})
            assert len(feed.history("BTC/USDT")) == 5
            seen: list[float] = []
            pushed = 10
            async for _symbol, bar in feed:
                seen.append(bar.time)
                if pushed < 30 and len(seen) % 3 == 0:
                    for t, row in list(zip(t0, bars.itertuples(), strict=False))[pushed:pushed + 4]:
                        emu.push_bar("BTC/USDT", t, row.Open, row.High, row.Low, row.Close)
                    pushed += 4
                    emu.fault("500", path="/api/v3/klines")  # an outage between polls
                if bar.time == t0[-1]:
                    return seen
            return seen
        finally:
            await manager.close()

    seen = asyncio.run(asyncio.wait_for(main(), 30))
    assert seen == t0[5:]  # every candle after the warm-up, in order, none twice


def test_the_trader_runs_live_through_ccxt_the_same_way_as_on_paper(tmp_path: Path, emu: BinanceEmulator) -> None:
    """Live mode (confirmed) against the emulator: market orders through ccxt, fills from the
    venue's answers, outcomes into memory: the code path a real exchange would see."""
    bars = synthetic_ohlcv(700, freq="1min", seed=9)

    class VenueFeed(ReplayFeed):
        async def _run(self):  # type: ignore[no-untyped-def]
            async for symbol, bar in super()._run():
                emu.set_price(symbol, bar.close)  # the venue trades where the replayed market is
                yield symbol, bar

    async def main() -> dict[str, Any]:
        manager = await connect(tmp_path, emu)
        manager.feeds[FEED] = VenueFeed(FEED, {"BTC/USDT": bars}, warmup=200)
        config = TraderConfig(symbols=("BTC/USDT",), strategy="sma_cross", params={"fast": 5, "slow": 20}, mode="live",
                              confirm_live=True, broker="binance", memory_path=tmp_path, sizing="full", balance=10_000.0)
        return await UnifiedMemGPTTrader(config, manager=manager).run()

    report = asyncio.run(main())
    assert report["orders"] > 10 and report["orders"] == len(emu.orders)
    assert all(o["status"] == "FILLED" for o in emu.orders)
    with MemoryStores(tmp_path) as mem:
        decided = mem.decisions.frame(agent_id="trader_001")
    assert len(decided) == report["decisions"] and decided["pnl"].notna().sum() == report["outcomes"] > 5
    sells = [o for o in emu.orders if o["side"] == "SELL"]
    assert len(sells) == report["outcomes"]


def test_bar_type_is_shared() -> None:
    assert Bar(1.0, 1, 2, 0.5, 1.5).close == 1.5


def test_a_websocket_feed_yields_each_candle_once_it_has_closed(tmp_path: Path, emu: BinanceEmulator) -> None:
    """ccxt.pro's own client subscribes to the emulator's kline stream (Binance's SUBSCRIBE
    protocol over a real websocket); a candle is yielded when the next one starts."""
    bars = synthetic_ohlcv(20, freq="1min", start="2024-01-01", seed=3)
    rows = [(t.timestamp(), r) for t, r in zip(bars.index, bars.itertuples(), strict=True)]
    for t, r in rows[:5]:
        emu.push_bar("BTC/USDT", t, r.Open, r.High, r.Low, r.Close)

    async def main() -> list[float]:
        manager = await connect(tmp_path, emu)
        try:
            feed = await manager.add_data_feed("stream", {"symbols": ["BTCUSDT"], "source": "watch", "warmup": 5})
            assert len(feed.history("BTC/USDT")) == 5

            async def market() -> None:
                while not emu._sockets:  # until the feed has subscribed
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.2)
                for t, r in rows[5:]:
                    emu.push_bar("BTC/USDT", t, r.Open, r.High, r.Low, r.Close)
                    await asyncio.sleep(0.03)

            pushing = asyncio.create_task(market())
            seen = []
            async for _symbol, bar in feed:
                seen.append(bar.time)
                if bar.time == rows[-2][0]:
                    break
            await pushing
            return seen
        finally:
            await manager.close()

    seen = asyncio.run(asyncio.wait_for(main(), 30))
    assert seen == [t for t, _ in rows[5:-1]]  # the last candle is still forming
