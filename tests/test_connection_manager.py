"""ConnectionManager with the paper broker: the seed's API, command routing, errors, health, feeds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import ccxt
import pytest

from memlab import ConnectionManager
from memlab.connectors import Bar, RetryPolicy, read_health
from memlab.data import synthetic_ohlcv
from memlab.errors import ConfigurationError, InvalidInputError


def arun(coro: Any) -> Any:
    return asyncio.run(coro)


async def paper(tmp_path: Path) -> ConnectionManager:
    manager = ConnectionManager(tmp_path)
    await manager.add_broker_connection("paper", balances={"USDT": 10_000.0}, fees=0.001, markets=["BTC/USDT"])
    manager.broker("paper").on_bar("BTC/USDT", Bar(0, 100, 101, 99, 100))
    return manager


def test_the_seeds_place_order_goes_to_the_paper_broker_and_fills_on_the_next_bar(tmp_path: Path) -> None:
    async def main() -> None:
        async with await paper(tmp_path) as manager:
            order = await manager.execute_on_broker("paper", "place_order", {"symbol": "BTCUSDT", "qty": 0.1, "side": "BUY"})
            assert order["status"] == "open" and order["symbol"] == "BTC/USDT" and order["clientOrderId"]
            assert [o["id"] for o in await manager.execute_on_broker("paper", "fetch_open_orders")] == [order["id"]]
            [fill] = manager.broker("paper").on_bar("BTC/USDT", Bar(60, 102, 103, 101, 102))
            assert fill["price"] == 102
            [position] = await manager.execute_on_broker("paper", "fetch_positions")
            assert position["symbol"] == "BTC/USDT" and position["contracts"] == pytest.approx(0.1)
            balance = await manager.execute_on_broker("paper", "fetch_balance")
            assert balance["total"]["USDT"] == pytest.approx(10_000 - 0.1 * 102 * 1.001)
            again = await manager.execute_on_broker(
                "paper", "fetch_order", {"client_order_id": order["clientOrderId"], "symbol": "BTC/USDT"})
            assert again["id"] == order["id"] and again["status"] == "closed"
            limit = await manager.execute_on_broker("paper", "place_order", {"symbol": "BTC/USDT", "qty": 1, "side": "buy",
                                                                            "type": "limit", "price": 50})
            cancelled = await manager.execute_on_broker("paper", "cancel_order", {"id": limit["id"], "symbol": "BTC/USDT"})
            assert cancelled["status"] == "canceled"

    arun(main())


@pytest.mark.parametrize(
    ("command", "params", "error", "message"),
    [
        ("place_ordr", {}, InvalidInputError, "did you mean 'place_order'"),
        ("place_order", {"symbol": "BTCUSDT", "qty": 0, "side": "BUY"}, InvalidInputError, "'qty' must be positive"),
        ("place_order", {"symbol": "BTCUSDT", "qty": "lots", "side": "BUY"}, InvalidInputError, "numeric 'qty'"),
        ("place_order", {"symbol": "BTCUSDT", "qty": 1, "side": "HOLD"}, InvalidInputError, "BUY or SELL"),
        ("place_order", {"qty": 1, "side": "BUY"}, InvalidInputError, "needs 'symbol'"),
        ("place_order", {"symbol": "BTCUSDT", "qty": 1, "side": "BUY", "type": "limit"}, InvalidInputError, "needs 'price'"),
        ("place_order", {"symbol": "ETHUSDT", "qty": 1, "side": "BUY"}, ccxt.BadSymbol, "unknown symbol"),
        ("place_order", {"symbol": "BTCUSDT", "qty": 1000, "side": "BUY"}, ccxt.InsufficientFunds, "needs"),
        ("cancel_order", {"symbol": "BTCUSDT"}, InvalidInputError, "needs 'id'"),
        ("cancel_order", {"id": "999"}, ccxt.OrderNotFound, "no order 999"),
    ],
)
def test_bad_commands_get_clear_errors_and_change_nothing(tmp_path: Path, command: str, params: dict[str, Any],
                                                          error: type[Exception], message: str) -> None:
    async def main() -> None:
        async with await paper(tmp_path) as manager:
            with pytest.raises(error, match=message):
                await manager.execute_on_broker("paper", command, params)
            assert await manager.execute_on_broker("paper", "fetch_open_orders") == []
            assert (await manager.execute_on_broker("paper", "fetch_balance"))["total"] == {"USDT": 10_000.0}

    arun(main())


def test_unknown_venues_and_connections_are_named(tmp_path: Path) -> None:
    async def main() -> None:
        async with ConnectionManager(tmp_path) as manager:
            with pytest.raises(ConfigurationError, match="did you mean bybit"):
                await manager.add_broker_connection("bybitt")
            with pytest.raises(InvalidInputError, match="no broker connection 'kraken'"):
                await manager.execute_on_broker("kraken", "fetch_balance")
            with pytest.raises(InvalidInputError, match="unknown paper broker options"):
                await manager.add_broker_connection("paper", leverage=100)
            await manager.add_broker_connection("paper", balances={"USD": 1.0})
            with pytest.raises(InvalidInputError, match="exists already"):
                await manager.add_broker_connection("paper")

    arun(main())


def test_health_is_written_for_the_monitor_and_says_closed_at_the_end(tmp_path: Path) -> None:
    async def main() -> None:
        manager = await paper(tmp_path)
        await manager.execute_on_broker("paper", "fetch_balance")
        status = manager.status()["paper"]
        assert status["state"] == "up" and status["calls"] >= 1 and status["latency_ms"] is not None
        on_disk = read_health(tmp_path)
        assert on_disk is not None and on_disk["connections"]["paper"]["state"] == "up"
        await manager.close()
        assert read_health(tmp_path)["connections"]["paper"]["state"] == "closed"

    arun(main())
    assert oct((tmp_path / "connections.json").stat().st_mode & 0o777) == "0o600"
    json.loads((tmp_path / "connections.json").read_text())


def test_a_replay_feed_yields_bars_in_time_order_across_symbols(tmp_path: Path) -> None:
    async def main() -> list[tuple[str, float]]:
        async with await paper(tmp_path) as manager:
            frames = {"BTC/USDT": synthetic_ohlcv(50, freq="1min", seed=1),
                      "ETH/USDT": synthetic_ohlcv(30, freq="2min", seed=2)}
            feed = await manager.add_data_feed("replay", {"symbols": list(frames), "data": frames, "warmup": 5})
            assert len(feed.history("BTC/USDT")) == 5 and "ETH/USDT" in manager.broker("paper").broker.markets()
            return [(symbol, bar.time) async for symbol, bar in feed]

    seen = arun(main())
    assert len(seen) == 45 + 25
    times = [t for _, t in seen]
    assert times == sorted(times)
    with pytest.raises(InvalidInputError, match="needs 'symbols'"):
        arun(ConnectionManager(tmp_path / "x").add_data_feed("f", {"sample": "GOOG"}))


def test_retry_policy_backs_off_exponentially_with_bounded_jitter() -> None:
    import random

    policy = RetryPolicy(attempts=6, base=0.1, cap=1.0, jitter=0.5)
    rng = random.Random(1)
    waits = [policy.delay(i, rng) for i in range(6)]
    for i, w in enumerate(waits):
        full = min(1.0, 0.1 * 2**i)
        assert full * 0.5 <= w <= full
    with pytest.raises(InvalidInputError):
        RetryPolicy(attempts=0)


# -- a feed with only the paper broker: a public market-data venue --------------------------

QUICK = RetryPolicy(attempts=2, base=0.01, cap=0.05)


def closed_port() -> int:
    """A loopback port nobody listens on: every request to it is refused."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(condition: Any, what: str, timeout: float = 15.0) -> None:
    """Wait for ``condition()`` to hold (checked every 10 ms); fail naming ``what`` after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


def candles(n: int) -> list[tuple[float, Any]]:
    bars = synthetic_ohlcv(n, freq="1min", start="2024-01-01", seed=5)
    return [(t.timestamp(), row) for t, row in zip(bars.index, bars.itertuples(), strict=True)]


@pytest.fixture()
def no_venue_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMLAB_MARKET_DATA", raising=False)


def test_the_seeds_feed_with_only_the_paper_broker_comes_up_offline_and_keeps_trying(
        tmp_path: Path, no_venue_setting: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.exchange_emulator import BinanceEmulator

    monkeypatch.setenv("BINANCE_API_KEY", "not-for-market-data")
    offline = BinanceEmulator(port=closed_port())  # never started: the venue cannot be reached

    async def main() -> None:
        async with asyncio.timeout(60):  # (not wait_for: it would be a second task)
            manager = ConnectionManager(tmp_path, retry=QUICK, market_data=offline.manager_options())
            await manager.add_broker_connection('paper', balances={'USDT': 10_000})
            feed = await manager.add_data_feed('crypto_feed', {'symbols': ['BTCUSDT']})

            venue = manager.market_data["binance"]
            assert venue.name == "market_data:binance" and not venue.exchange.apiKey  # public: nobody's keys
            await until(lambda: feed.attempts >= 3, "three failed tries to connect")
            status = manager.status()
            assert status["market_data:binance"]["kind"] == "market_data"
            assert status["market_data:binance"]["state"] in ("retrying", "down")
            assert status["crypto_feed"]["state"] in ("retrying", "down") and not feed.connected
            errors = status["market_data:binance"]["errors"]
            await until(lambda: manager.status()["market_data:binance"]["errors"] > errors, "another try")
            on_disk = read_health(tmp_path)["connections"]
            assert on_disk["market_data:binance"]["state"] in ("retrying", "down")
            assert "ExchangeNotAvailable" in on_disk["market_data:binance"]["last_error"]

            await manager.close()
            assert asyncio.all_tasks() == {asyncio.current_task()}  # nothing still trying
            assert venue.exchange.session is None and manager.market_data == {}
            assert read_health(tmp_path)["connections"]["market_data:binance"]["state"] == "closed"

    asyncio.run(main())


def test_a_public_venue_feed_resolves_the_symbol_and_delivers_bars(tmp_path: Path, no_venue_setting: None) -> None:
    from tests.support.exchange_emulator import BinanceEmulator

    rows = candles(12)
    with BinanceEmulator(markets={"BTC/USDT": 100.0}) as emu:
        for t, r in rows[:8]:
            emu.push_bar("BTC/USDT", t, r.Open, r.High, r.Low, r.Close)

        async def main() -> list[float]:
            async with ConnectionManager(tmp_path, retry=QUICK, market_data=emu.manager_options()) as manager:
                await manager.add_broker_connection("paper", balances={"USDT": 10_000})
                feed = await manager.add_data_feed("crypto_feed", {"symbols": ["BTCUSDT"], "interval": 0.02, "warmup": 5})
                seen: list[float] = []
                async for symbol, bar in feed:
                    assert symbol == "BTC/USDT"
                    seen.append(bar.time)
                    if len(seen) == 3:  # the market moves on
                        for t, r in rows[8:]:
                            emu.push_bar("BTC/USDT", t, r.Open, r.High, r.Low, r.Close)
                    if bar.time == rows[-1][0]:
                        break
                assert feed.symbols == ["BTC/USDT"] and len(feed.history("BTC/USDT")) == 5
                assert manager.status()["market_data:binance"]["state"] == "up"
                assert manager.status()["crypto_feed"]["state"] == "up"
                return seen

        seen = asyncio.run(asyncio.wait_for(main(), 60))
    assert seen == [t for t, _ in rows[5:]]  # after the warm-up, each candle once, in order


def test_a_venue_that_comes_up_late_is_connected_to_and_health_says_so(tmp_path: Path, no_venue_setting: None) -> None:
    from tests.support.exchange_emulator import BinanceEmulator

    rows = candles(8)
    emu = BinanceEmulator(markets={"BTC/USDT": 100.0}, port=closed_port())
    for t, r in rows:
        emu.push_bar("BTC/USDT", t, r.Open, r.High, r.Low, r.Close)
    events: list[tuple[str, str]] = []

    async def main() -> list[float]:
        async with ConnectionManager(tmp_path, retry=QUICK, market_data=emu.manager_options()) as manager:
            manager.add_listener(lambda event, payload: events.append((event, payload["name"])))
            await manager.add_broker_connection("paper", balances={"USDT": 10_000})
            feed = await manager.add_data_feed("crypto_feed", {"symbols": ["BTCUSDT"], "interval": 0.02, "warmup": 5})
            await until(lambda: feed.attempts >= 3, "three failed tries to connect")
            assert manager.status()["market_data:binance"]["state"] in ("retrying", "down")
            await asyncio.get_running_loop().run_in_executor(None, emu.start)  # the venue comes up
            seen = []
            async for _symbol, bar in feed:
                seen.append(bar.time)
                if bar.time == rows[-1][0]:
                    break
            status = manager.status()
            assert status["market_data:binance"]["state"] == "up" and status["market_data:binance"]["reconnects"] >= 1
            assert status["crypto_feed"]["state"] == "up" and feed.symbols == ["BTC/USDT"]
            return seen

    try:
        seen = asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        emu.stop()
    assert seen == [t for t, _ in rows[5:]]
    venue_events = [e for e, name in events if name == "market_data:binance"]
    assert venue_events == ["connection_lost", "connection_restored"]  # once per outage, however many tries


def test_a_symbol_the_public_venue_does_not_list_is_the_callers_error(tmp_path: Path, no_venue_setting: None) -> None:
    from tests.support.exchange_emulator import BinanceEmulator

    with BinanceEmulator(markets={"BTC/USDT": 100.0}) as emu:
        async def main() -> None:
            async with ConnectionManager(tmp_path, retry=QUICK, market_data=emu.manager_options()) as manager:
                feed = await manager.add_data_feed("doge", {"symbols": ["DOGEUSDT"], "interval": 0.02})
                with pytest.raises(ccxt.BadSymbol, match="unknown symbol 'DOGEUSDT'"):
                    async for _ in feed:
                        pass
                assert manager.status()["doge"]["state"] == "down" and feed.attempts == 0

        asyncio.run(asyncio.wait_for(main(), 60))


def test_the_market_data_venue_setting_is_checked_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from memlab.config import market_data_venue

    monkeypatch.delenv("MEMLAB_MARKET_DATA", raising=False)
    assert market_data_venue() == "binance"
    monkeypatch.setenv("MEMLAB_MARKET_DATA", " Kraken ")
    assert market_data_venue() == "kraken" and market_data_venue("bybit") == "bybit"
    monkeypatch.setenv("MEMLAB_MARKET_DATA", "krakn")

    async def main() -> None:
        async with ConnectionManager(tmp_path) as manager:
            with pytest.raises(ConfigurationError, match=r"^MEMLAB_MARKET_DATA='krakn' is not a ccxt exchange id; did you mean kraken"):
                await manager.add_data_feed("f", {"symbols": ["BTCUSDT"]})
            with pytest.raises(ConfigurationError, match=r"^venue='nasdaq' is not a ccxt exchange id"):
                await manager.add_data_feed("f", {"symbols": ["BTCUSDT"], "venue": "nasdaq"})
            with pytest.raises(InvalidInputError, match="'broker' .* or 'venue' .* not both"):
                await manager.add_data_feed("f", {"symbols": ["BTCUSDT"], "venue": "binance", "broker": "paper"})
            assert manager.feeds == {} and manager.market_data == {}

    asyncio.run(main())
