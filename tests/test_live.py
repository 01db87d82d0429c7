"""Against real venues (``pytest --live``): Binance's spot and USDⓈ-M futures testnets and
public market data.

Credentials come from the environment or ``.env`` through CredentialManager:
``BINANCE_TESTNET_API_KEY`` / ``BINANCE_TESTNET_API_SECRET`` (https://testnet.binance.vision)
and ``BINANCEUSDM_TESTNET_API_KEY`` / ``BINANCEUSDM_TESTNET_API_SECRET``
(https://testnet.binancefuture.com). Without them the trading tests are skipped; without
``--live`` everything here is.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from pathlib import Path

import ccxt
import pytest

from memlab.connectors import ConnectionManager
from memlab.credentials import CredentialManager

pytestmark = pytest.mark.live


def test_binance_testnet_limit_order_round_trip(tmp_path: Path) -> None:
    if not CredentialManager().has_credentials("binance_testnet"):
        pytest.skip("set BINANCE_TESTNET_API_KEY and BINANCE_TESTNET_API_SECRET (testnet.binance.vision)")

    async def main() -> None:
        async with ConnectionManager(tmp_path) as manager:
            await manager.add_broker_connection("binance_testnet", exchange="binance", sandbox=True,
                                                options={"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False})
            ticker = await manager.execute_on_broker("binance_testnet", "fetch_ticker", {"symbol": "BTCUSDT"})
            price = round(float(ticker["last"]) * 0.5, 2)  # far below the market: it rests
            order = await manager.execute_on_broker("binance_testnet", "place_order", {
                "symbol": "BTCUSDT", "qty": 0.0002, "side": "BUY", "type": "limit", "price": price})
            assert order["status"] == "open"
            open_ids = [o["id"] for o in await manager.execute_on_broker(
                "binance_testnet", "fetch_open_orders", {"symbol": "BTCUSDT"})]
            assert order["id"] in open_ids
            found = await manager.execute_on_broker("binance_testnet", "fetch_order", {
                "client_order_id": order["clientOrderId"], "symbol": "BTCUSDT"})
            assert found["id"] == order["id"]
            cancelled = await manager.execute_on_broker("binance_testnet", "cancel_order",
                                                        {"id": order["id"], "symbol": "BTCUSDT"})
            assert cancelled["status"] == "canceled"
            feed = await manager.add_data_feed("candles", {"symbols": ["BTCUSDT"], "source": "poll",
                                                           "broker": "binance_testnet", "warmup": 50})
            assert len(feed.history("BTC/USDT")) > 0
            assert manager.status()["binance_testnet"]["state"] == "up"

    asyncio.run(main())


def test_binance_futures_testnet_short_round_trip(tmp_path: Path) -> None:
    """The loopback futures session (tests/test_futures_connections.py) against Binance's
    USDⓈ-M futures testnet: leverage and isolated margin set, a short opened with a market
    order, seen as a position, closed reduce-only; a second reduce-only close is refused.
    Needs a flat BTCUSDT position on the testnet account."""
    if not CredentialManager().has_credentials("binanceusdm_testnet"):
        pytest.skip("set BINANCEUSDM_TESTNET_API_KEY and BINANCEUSDM_TESTNET_API_SECRET (testnet.binancefuture.com)")
    swap, name = "BTC/USDT:USDT", "binanceusdm_testnet"

    async def main() -> None:
        async with ConnectionManager(tmp_path) as manager:
            # ccxt refuses signed calls to the futures testnet unless told the sandbox is meant.
            conn = await manager.add_broker_connection(name, exchange="binanceusdm", sandbox=True, options={
                "fetchCurrencies": False, "disableFuturesSandboxWarning": True})
            assert conn.has["shorts"]
            await conn.set_leverage(2.0, swap)  # type: ignore[attr-defined]
            with contextlib.suppress(ccxt.MarginModeAlreadySet):  # isolated already
                await conn.set_margin_mode("isolated", swap)  # type: ignore[attr-defined]
            ticker = await manager.execute_on_broker(name, "fetch_ticker", {"symbol": "BTCUSDT"})
            step, minimum = conn.amount_rules(swap)
            assert step and minimum
            qty = max(minimum, math.ceil(150 / float(ticker["last"]) / step) * step)  # above the minimum notional
            qty = conn.amount_to_precision(swap, qty + step / 2)
            short = await manager.execute_on_broker(name, "place_order", {"symbol": "BTCUSDT", "qty": qty, "side": "SELL"})
            try:
                assert short["status"] == "closed" and short["filled"] == pytest.approx(qty)
                [position] = [p for p in await manager.execute_on_broker(name, "fetch_positions") if p["symbol"] == swap]
                assert position["side"] == "short" and position["contracts"] == pytest.approx(qty)
                assert position["marginMode"] == "isolated" and position["liquidationPrice"] > float(ticker["last"])
            finally:
                close = await manager.execute_on_broker(name, "place_order", {
                    "symbol": "BTCUSDT", "qty": qty, "side": "BUY", "params": {"reduceOnly": True}})
            assert close["status"] == "closed" and close["reduceOnly"] is True
            assert [p for p in await manager.execute_on_broker(name, "fetch_positions") if p["symbol"] == swap] == []
            with pytest.raises(ccxt.InvalidOrder):  # nothing left to reduce: refused, not retried
                await manager.execute_on_broker(name, "place_order", {
                    "symbol": "BTCUSDT", "qty": qty, "side": "BUY", "params": {"reduceOnly": True}})
            assert manager.status()[name]["state"] == "up" and manager.status()[name]["errors"] == 0

    asyncio.run(main())


def test_public_candles_download_from_binance(tmp_path: Path) -> None:
    import ccxt

    from memlab.data import download_ohlcv

    frame = download_ohlcv(ccxt.binance(), "BTC/USDT", "1h", since="2024-01-01", until="2024-01-03",
                           cache_dir=tmp_path, progress=False)
    assert len(frame) == 48 and frame.index.is_monotonic_increasing
