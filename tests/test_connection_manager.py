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
