"""Webhooks on the ConnectionManager of a running trader: alerts in become orders, alerts go out.

A paper session replays bars (paced, like a live feed) on its own event loop; the
manager's webhook endpoint (``add_webhook``) takes signed alerts over real HTTP and the
trader handles them exactly like its strategy's signals; fills and lost connections go
out to a loopback chat receiver (``add_alert_target``).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from memlab.connectors import ConnectionManager, RetryPolicy
from memlab.data import synthetic_ohlcv
from memlab.memory import MemoryStores
from memlab.trader import TraderConfig, UnifiedMemGPTTrader
from memlab.webhooks.alerts import sign
from tests.support.webhooks import SECRET, FlakyReceiver, post


class Session:
    """A trader with a webhook and an alert target, on a background event loop."""

    def __init__(self, root: Path, receiver: FlakyReceiver) -> None:
        self.root, self.receiver = root, receiver
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.ready = threading.Event()
        self.future = asyncio.run_coroutine_threadsafe(self._main(), self.loop)
        assert self.ready.wait(60), self.future.exception() if self.future.done() else "trader did not start"

    async def _main(self) -> dict[str, Any]:
        self.manager = ConnectionManager(self.root, retry=RetryPolicy(attempts=2, base=0.01, cap=0.02))
        self.server = await self.manager.add_webhook("alerts", {"port": 0, "rate": 100, "burst": 100}, secret=SECRET)
        self.manager.add_alert_target(self.receiver.url(), backoff=0.01)
        bars = synthetic_ohlcv(3000, freq="1min", seed=12)
        config = TraderConfig(symbols=("BTC/USDT",), strategy="sma_cross", params={"fast": 50, "slow": 200},
                              memory_path=self.root, sizing="full", balance=10_000.0,
                              feed={"data": bars, "warmup": 200, "speed": 600})  # 10 bars a second
        self.trader = UnifiedMemGPTTrader(config, manager=self.manager)
        self.loop.call_later(0.5, self.ready.set)
        return await self.trader.run()

    def stop(self) -> dict[str, Any]:
        self.loop.call_soon_threadsafe(self.trader.request_stop)
        return self.future.result(60)

    def orders(self) -> list[tuple[str, str]]:
        import sqlite3

        db = sqlite3.connect(self.root / "paper_broker.sqlite")
        try:
            return db.execute("SELECT client_id, side FROM orders ORDER BY id").fetchall()
        finally:
            db.close()


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    receiver = FlakyReceiver(failures=2)  # the chat tool fails twice, then accepts
    s = Session(tmp_path, receiver)
    try:
        yield s
    finally:
        if not s.future.done():
            s.stop()
        receiver.close()


def signed(alert_id: str, **kw: Any) -> tuple[bytes, dict[str, str]]:
    body = {"id": alert_id, "symbol": "BTCUSDT", "side": "buy", "strategy": "tv_breakout",
            "time": datetime.now(UTC).isoformat(), **kw}
    raw = json.dumps(body).encode()
    return raw, {"X-Memlab-Signature": sign(raw, SECRET)}


def test_a_signed_alert_is_traded_like_a_strategy_signal_and_bad_ones_place_nothing(session: Session) -> None:
    url = session.server.url
    before = session.orders()
    raw, headers = signed("tv-1")
    status, reply = post(url, raw, {"X-Memlab-Signature": "sha256=" + "0" * 64})
    assert status == 401
    status, reply = post(url, b'{"id": "tv-2", "symbol": ', {"X-Memlab-Signature": sign(b'{"id": "tv-2", "symbol": ', SECRET)})
    assert status == 400
    status, reply = post(url, *signed("tv-3", symbol="DOGEUSDT"))
    assert status == 422 and "this trader trades BTC/USDT" in reply["error"]
    big = b'{"id": "tv-4", "pad": "' + b"x" * 20_000 + b'"}'
    assert post(url, big, {"X-Memlab-Signature": sign(big, SECRET)})[0] == 413
    assert session.orders() == before  # nothing placed

    status, reply = post(url, raw, headers)
    assert status == 200, reply
    result = reply["result"]
    assert result["status"] == "placed" and 0 <= result["confidence"] <= 1 and result["reason"]
    assert post(url, raw, headers)[0] == 409  # the same alert again: a replay, refused
    orders = session.orders()
    assert [o for o in orders if o[0].startswith("wh-")] == [(result["client_order_id"], "buy")]

    deadline = time.monotonic() + 20
    while not any(b["event"] == "fill" and b["data"]["side"] == "buy" for b in session.receiver.accepted):
        assert time.monotonic() < deadline, "the fill of the alert's order was not announced"
        time.sleep(0.1)
    report = session.stop()
    assert report["orders"] >= 1
    with MemoryStores(session.root) as mem:
        stored = mem.decisions.get(result["decision_id"])
        lines = [str(e) for e in mem.journal.entries()]
    assert (stored.symbol, stored.strategy, stored.action) == ("BTC/USDT", "tv_breakout", "BUY")
    assert any("Strategy: tv_breakout - Decision: BUY" in line for line in lines)
    # The live monitor shows the alert's decision and every request with its answer.
    from memlab.dashboard.app import MonitorApp

    app = MonitorApp(session.root)
    assert 'data-col="strategy">tv_breakout<' in app.decisions.value
    assert app.webhooks.value.count('data-col="status">') == 6 and "replay" in app.webhooks.value
    assert "alerts out:" in app.health.value
    # Every announcement was delivered once, after the receiver's two failures.
    ids = [d for d, _ in session.receiver.requests]
    assert len(session.receiver.accepted) == len(set(ids)) and len(ids) == len(set(ids)) + 2


def test_a_lost_connection_is_announced(tmp_path: Path) -> None:
    receiver = FlakyReceiver(failures=0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main() -> None:
        async with ConnectionManager(tmp_path, retry=RetryPolicy(attempts=2, base=0.01, cap=0.02)) as manager:
            sender = manager.add_alert_target(receiver.url("discord-ish"))
            api = f"http://127.0.0.1:{port}/api/v3"
            with pytest.raises(Exception, match="binance"):
                await manager.add_broker_connection("binance", urls={"public": api, "private": api},
                                                    options={"fetchMarkets": {"types": ["spot"]}})
            assert await asyncio.get_running_loop().run_in_executor(None, sender.flush, 20)

    try:
        asyncio.run(main())
    finally:
        receiver.close()
    [body] = receiver.accepted
    assert body["event"] == "connection_lost" and "lost connection binance" in body["text"]


def test_an_alert_too_early_after_a_start_is_refused_for_now_and_taken_on_its_retry(tmp_path: Path) -> None:
    """Right after a (re)start the trader has no bar to judge an alert by: a 422 the sender
    may retry, which does not use up the alert. Quantities must fit the market."""
    from memlab.trader.loop import FEED

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def on_loop(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

    async def build() -> tuple[UnifiedMemGPTTrader, Any]:
        manager = ConnectionManager(tmp_path)
        server = await manager.add_webhook("alerts", {"port": 0}, secret=SECRET)
        config = TraderConfig(symbols=("BTC/USDT",), strategy="sma_cross", params={"fast": 50, "slow": 200},
                              memory_path=tmp_path, balance=10_000.0,
                              feed={"data": synthetic_ohlcv(600, freq="1min", seed=12), "warmup": 200})
        trader = UnifiedMemGPTTrader(config, manager=manager)
        await trader.start()  # resumed and taking alerts, no bar seen yet
        return trader, server

    async def one_bar(trader: UnifiedMemGPTTrader) -> None:
        symbol, bar = await trader.manager.feed(FEED).__aiter__().__anext__()
        await trader.on_bar(symbol, bar)

    trader, server = on_loop(build())
    try:
        raw, headers = signed("early-1", qty=0.5)
        status, reply = post(server.url, raw, headers)
        assert status == 422 and reply["retry"] is True and "not enough market data" in reply["error"]
        on_loop(one_bar(trader))
        status, reply = post(server.url, raw, headers)  # the retry, same alert
        assert status == 200 and reply["result"]["status"] == "placed", reply
        for alert_id, qty, code in (("dust", 1e-300, 422), ("fine", 0.123456789, 422), ("bool", True, 400),
                                    ("text", "0.01", 400)):
            status, reply = post(server.url, *signed(alert_id, side="sell", qty=qty))
            assert status == code and reply["retry"] is False, (alert_id, reply)
    finally:
        on_loop(trader.close())
        loop.call_soon_threadsafe(loop.stop)
    db = sqlite3.connect(tmp_path / "paper_broker.sqlite")
    orders = db.execute("SELECT client_id, side, amount FROM orders").fetchall()
    db.close()
    assert len(orders) == 1 and orders[0][1:] == ("buy", 0.5) and orders[0][0].startswith("wh-")  # one order, the retry's
