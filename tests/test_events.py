"""One event bus: the agent, the connection manager and the health board publish on it, a broken
subscriber harms nothing, and the outbound alerts module writes the text people read."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import ccxt
import pytest

from memlab.agent import MemoryAgent
from memlab.connectors import ConnectionManager, RetryPolicy
from memlab.events import EventBus
from memlab.webhooks.outbound import describe_event
from tests.support.webhooks import FlakyReceiver

FEATURES = {"ret_5": 1.0, "ret_20": 2.0, "volatility": 0.5, "vol_ratio": 1.0, "rsi": 60.0, "trend": 1.0}
SIGNAL = {"symbol": "BTCUSDT", "strategy": "momentum", "action": "BUY", "price": 65000.0, "features": FEATURES}
FILL = {"symbol": "BTC/USDT", "side": "buy", "amount": 0.1, "price": 64500.0, "pnl": None}


def broken(kind: str, payload: dict[str, Any]) -> None:
    raise RuntimeError("subscriber bug")


def test_a_listener_that_raises_does_not_stop_the_others_or_the_publisher(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus("test")
    first: list[str] = []
    last: list[str] = []
    bus.subscribe(lambda kind, payload: first.append(kind))
    bus.subscribe(broken)
    stop_last = bus.subscribe(lambda kind, payload: last.append(kind), kinds=["fill"])
    with caplog.at_level(logging.ERROR, logger="memlab.events"):
        bus.publish("fill", FILL)  # returns: the subscriber's error is not the publisher's
        bus.publish("lesson", {"text": "Learned: x"})
    assert first == ["fill", "lesson"] and last == ["fill"]
    failures = [r for r in caplog.records if "failed on a" in r.getMessage()]
    assert len(failures) == 2 and failures[0].exc_info is not None and "subscriber bug" in str(failures[0].exc_info[1])

    stop_last()
    bus.unsubscribe(broken)
    bus.publish("fill", FILL)
    assert last == ["fill"] and first == ["fill", "lesson", "fill"] and len(bus) == 1


def test_async_listeners_run_on_their_loop_even_when_published_from_a_thread(caplog: pytest.LogCaptureFixture) -> None:
    heard: list[tuple[str, str]] = []

    async def listener(kind: str, payload: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        heard.append((kind, payload["text"]))

    async def failing(kind: str, payload: dict[str, Any]) -> None:
        raise RuntimeError("async subscriber bug")

    async def main() -> None:
        bus = EventBus()
        bus.subscribe(listener)
        bus.subscribe(failing)
        bus.publish("lesson", {"text": "here"})
        await asyncio.to_thread(bus.publish, "lesson", {"text": "from a worker thread"})
        await bus.drain()

    with caplog.at_level(logging.ERROR, logger="memlab.events"):
        asyncio.run(main())
    assert sorted(heard) == [("lesson", "from a worker thread"), ("lesson", "here")]
    assert sum("async listener" in r.getMessage() for r in caplog.records) == 2


def test_events_from_health_manager_and_agent_reach_one_subscriber_through_the_bus(tmp_path: Path) -> None:
    bus = EventBus()
    heard: list[tuple[str, dict[str, Any]]] = []
    bus.subscribe(broken)  # first in line, and broken: nobody after it notices
    bus.subscribe(lambda kind, payload: heard.append((kind, payload)))
    with socket.socket() as s:  # a port nobody listens on: the venue is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main() -> None:
        async with ConnectionManager(tmp_path / "mem", events=bus,
                                     retry=RetryPolicy(attempts=2, base=0.01, cap=0.02)) as manager:
            api = f"http://127.0.0.1:{port}/api/v3"
            with pytest.raises(ccxt.NetworkError):  # the venue's error, never the listener's
                await manager.add_broker_connection("binance", urls={"public": api, "private": api},
                                                    options={"fetchMarkets": {"types": ["spot"]}})
            manager.publish("fill", FILL)

    asyncio.run(main())
    agent = MemoryAgent(tmp_path / "mem", events=bus)
    try:
        agent.log_decision({**SIGNAL, "mem_confidence": 0.5}, {"order_id": "o-1", "status": "filled"})
    finally:
        agent.close()

    kinds = [kind for kind, _ in heard]
    assert kinds == ["connection_lost", "fill", "decision"]  # health, manager, agent
    assert heard[0][1]["name"] == "binance" and "ExchangeNotAvailable" in heard[0][1]["error"]
    assert heard[2][1]["symbol"] == "BTCUSDT"


def test_the_old_listener_methods_are_the_bus(tmp_path: Path) -> None:
    agent = MemoryAgent(tmp_path / "mem")
    manager = ConnectionManager(tmp_path / "mem", write_health=False)
    try:
        heard: list[str] = []
        stop_agent = agent.add_listener(lambda kind, payload: heard.append(f"agent {kind}"))
        stop_manager = manager.add_listener(lambda kind, payload: heard.append(f"manager {kind}"))
        manager.health.add_listener(lambda kind, payload: heard.append(f"health {kind}"))
        agent.events.publish("lesson", {"text": "x"})
        manager.events.publish("fill", FILL)
        assert heard == ["agent lesson", "manager fill", "health fill"]  # the board publishes on the manager's bus
        stop_agent()
        stop_manager()
        agent.events.publish("lesson", {"text": "x"})
        assert heard[-1] == "health fill"
    finally:
        agent.close()


def test_alert_text_comes_from_the_outbound_alerts_module(tmp_path: Path) -> None:
    receiver = FlakyReceiver(failures=0)

    async def main() -> None:
        async with ConnectionManager(tmp_path, write_health=False) as manager:
            sender = manager.add_alert_target(receiver.url("json-hook"))
            manager.publish("decision", {"symbol": "BTCUSDT"})  # an event, not an alert
            manager.publish("fill", FILL)
            manager.publish("connection_restored", {"name": "binance", "venue": "binance"})
            assert await asyncio.get_running_loop().run_in_executor(None, sender.flush, 20)

    try:
        asyncio.run(main())
    finally:
        receiver.close()
    sent = {b["event"]: b["text"] for b in receiver.accepted}  # (delivered concurrently: in any order)
    assert len(receiver.accepted) == 2 and sent == {
        "fill": describe_event("fill", FILL),
        "info": describe_event("connection_restored", {"name": "binance", "venue": "binance"}),
    }
    assert sent["fill"] == "BUY 0.1 BTC/USDT filled at 64,500.0000"
