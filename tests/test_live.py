"""Against real venues (``pytest --live``): Binance's spot testnet and public market data.

Credentials come from the environment or ``.env`` through CredentialManager:
``BINANCE_TESTNET_API_KEY`` / ``BINANCE_TESTNET_API_SECRET`` (https://testnet.binance.vision).
Without them the trading test is skipped; without ``--live`` everything here is.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

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


def test_public_candles_download_from_binance(tmp_path: Path) -> None:
    import ccxt

    from memlab.data import download_ohlcv

    frame = download_ohlcv(ccxt.binance(), "BTC/USDT", "1h", since="2024-01-01", until="2024-01-03",
                           cache_dir=tmp_path, progress=False)
    assert len(frame) == 48 and frame.index.is_monotonic_increasing
