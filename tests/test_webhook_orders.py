"""A signed alert over real HTTP becomes a paper order and a journal line; bad ones place nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from memlab.agent import MemoryAgent
from memlab.connectors import Bar, PaperBroker, PaperConnection
from memlab.data import synthetic_ohlcv
from memlab.trader.pipeline import alert_client_id
from memlab.webhooks import AlertRouter, WebhookConfig, WebhookServer
from memlab.webhooks.alerts import sign
from tests.support.webhooks import SECRET, post

BARS = synthetic_ohlcv(600, freq="1min", seed=9)


@pytest.fixture
def trading(tmp_path: Path) -> Iterator[tuple[WebhookServer, PaperBroker, MemoryAgent]]:
    agent = MemoryAgent(tmp_path, agent_id="webhook_trader")
    broker = PaperBroker(tmp_path, balances={"USDT": 100_000.0}, fees=0.001)
    broker.add_market("BTC/USDT")
    last = BARS.iloc[-1]
    broker.on_bar("BTC/USDT", Bar(BARS.index[-1].timestamp(), last.Open, last.High, last.Low, last.Close))
    router = AlertRouter(agent, PaperConnection("paper", broker), lambda symbol: BARS)
    with WebhookServer(WebhookConfig(port=0), SECRET, router, store_dir=tmp_path) as server:
        yield server, broker, agent
    agent.close()


def signed_alert(alert_id: str, **kw: object) -> tuple[bytes, dict[str, str]]:
    body = {"id": alert_id, "symbol": "BTC/USDT", "side": "buy", "qty": 0.5, "strategy": "tv_breakout",
            "time": datetime.now(UTC).isoformat(), **kw}
    raw = json.dumps(body).encode()
    return raw, {"X-Memlab-Signature": sign(raw, SECRET)}


def test_a_valid_signed_alert_places_one_paper_order_and_journals_it(trading) -> None:  # type: ignore[no-untyped-def]
    server, broker, agent = trading
    status, reply = post(server.url, *signed_alert("tv-1"))
    assert status == 200, reply
    result = reply["result"]
    assert result["status"] == "placed" and 0 <= result["confidence"] <= 1 and result["reason"]
    [order] = broker.fetch_open_orders()
    assert (order["clientOrderId"], order["side"], order["amount"]) == (alert_client_id("webhook_trader", "tv-1"), "buy", 0.5)
    stored = agent.stores.decisions.get(result["decision_id"])
    assert (stored.symbol, stored.strategy, stored.action) == ("BTC/USDT", "tv_breakout", "BUY")
    assert any(e.fields.get("Strategy") == "tv_breakout" and e.fields.get("Decision") == "BUY"
               for e in agent.stores.journal.entries())
    # The order fills on the next bar like any other.
    t = BARS.index[-1].timestamp() + 60
    [fill] = broker.on_bar("BTC/USDT", Bar(t, 100.0, 101.0, 99.0, 100.0))
    assert fill["amount"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (lambda: (signed_alert("bad")[0], {"X-Memlab-Signature": "sha256=" + "0" * 64}), 401),
        (lambda: signed_alert("big", note="x" * 20_000), 413),
        (lambda: (b"{not json", {}), 400),
        (lambda: signed_alert("nosym", symbol="DOGE/USDT"), 422),
        (lambda: signed_alert("huge", qty=10_000), 422),
    ],
)
def test_rejected_alerts_place_nothing(trading, make, status: int) -> None:  # type: ignore[no-untyped-def]
    server, broker, agent = trading
    got, reply = post(server.url, *make())
    assert got == status, reply
    assert broker.fetch_open_orders() == [] and agent.stores.decisions.count() == 0


def test_a_replayed_alert_is_not_a_second_order(trading) -> None:  # type: ignore[no-untyped-def]
    server, broker, _ = trading
    body, headers = signed_alert("tv-7")
    assert post(server.url, body, headers)[0] == 200
    assert post(server.url, body, headers)[0] == 409
    assert len(broker.fetch_open_orders()) == 1


@pytest.mark.parametrize(
    ("qty", "status", "reason"),
    [
        (1e-300, 422, "minimum order size"),  # dust: placed, it could never be sold
        (0.123456789, 422, "precision"),  # finer than the market's 1e-8 step
        (True, 400, "JSON number"),  # not a 1-unit order
        ("0.5", 400, "JSON number"),
    ],
)
def test_a_quantity_must_be_a_number_that_fits_the_market(trading, qty: object, status: int, reason: str) -> None:  # type: ignore[no-untyped-def]
    server, broker, agent = trading
    got, reply = post(server.url, *signed_alert(f"q-{qty!r}", qty=qty))
    assert got == status and reason in reply["error"], reply
    assert broker.fetch_open_orders() == [] and agent.stores.decisions.count() == 0
    assert server.requests()[-1]["status"] == status  # refused, and logged


def test_a_quantity_on_the_markets_step_is_placed_as_sent(trading) -> None:  # type: ignore[no-untyped-def]
    server, broker, _ = trading
    assert post(server.url, *signed_alert("q-ok", qty=0.12345678))[0] == 200
    [order] = broker.fetch_open_orders()
    assert order["amount"] == 0.12345678


def test_not_enough_market_data_yet_does_not_use_up_the_alert(tmp_path: Path) -> None:
    agent = MemoryAgent(tmp_path, agent_id="webhook_trader")
    broker = PaperBroker(tmp_path, balances={"USDT": 100_000.0})
    broker.add_market("BTC/USDT")
    last = BARS.iloc[-1]
    broker.on_bar("BTC/USDT", Bar(BARS.index[-1].timestamp(), last.Open, last.High, last.Low, last.Close))
    known = {"bars": BARS.iloc[:20]}  # right after a restart: too little history to judge
    router = AlertRouter(agent, PaperConnection("paper", broker), lambda symbol: known["bars"])
    body, headers = signed_alert("early-1")
    try:
        with WebhookServer(WebhookConfig(port=0), SECRET, router, store_dir=tmp_path) as server:
            status, reply = post(server.url, body, headers)
            assert status == 422 and reply["retry"] is True and "not enough market data" in reply["error"]
            known["bars"] = BARS
            status, reply = post(server.url, body, headers)  # the sender's retry: the same alert
            assert status == 200 and reply["result"]["status"] == "placed", reply
            status, reply = post(server.url, body, headers)
            assert status == 409 and reply["retry"] is False and reply["first"]["status"] == 200
        assert len(broker.fetch_open_orders()) == 1 and agent.stores.decisions.count() == 1
    finally:
        agent.close()
        broker.close()


def _crashed_router(root: Path, point: str) -> tuple[bytes, dict[str, str]]:
    """Run the router in a process that kills itself at ``point`` of the alert it gets."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "tests.faults.crash_points", "router", point, "--", str(root),
                             str(port), SECRET], cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the server is listening once it says so
    assert "taking signed alerts" in line, proc.communicate(timeout=30)[1][-2000:]
    body, headers = signed_alert("crash-1")
    try:
        status, _ = post(line.split(" at ")[1].strip(), body, headers)
    except Exception:  # the process died mid-request: no answer, as a sender sees a crash
        status = None
    assert status is None
    assert proc.wait(30) == -9
    return body, headers


def test_killed_after_the_order_before_the_decision_the_restart_logs_the_decision(tmp_path: Path) -> None:
    import sqlite3

    from tests.faults.crash_points import router_parts

    body, headers = _crashed_router(tmp_path, "after-order")
    # What the crash left: the order in the book, no decision, the alert's id claimed but unfinished.
    db = sqlite3.connect(tmp_path / "webhooks.sqlite")
    assert db.execute("SELECT status FROM alerts WHERE alert_id='crash-1'").fetchall() == [(None,)]
    db.close()
    agent, broker, router = router_parts(tmp_path)
    try:
        assert agent.stores.decisions.count() == 0 and len(broker.fetch_open_orders()) == 1
        with WebhookServer(WebhookConfig(port=0), SECRET, router, store_dir=tmp_path) as server:
            # Before serving, the restart found the order by its client id and logged its decision.
            [order] = broker.fetch_open_orders()
            decision_id = agent.stores.decisions.find_key(f"webhook_trader:order:{order['id']}")
            assert decision_id is not None and agent.stores.decisions.get(decision_id).strategy == "tv_breakout"
            status, reply = post(server.url, body, headers)  # the sender retries what it never got an answer to
            assert status == 409 and reply["first"]["status"] == 200
            assert reply["first"]["answer"]["decision_id"] == decision_id
            assert server.requests()[-2]["reason"].startswith("completed after a restart")
        assert len(broker.fetch_open_orders()) == 1 and agent.stores.decisions.count() == 1
    finally:
        agent.close()
        broker.close()


def test_killed_after_the_claim_before_the_order_the_retry_is_placed_once(tmp_path: Path) -> None:
    from tests.faults.crash_points import router_parts

    body, headers = _crashed_router(tmp_path, "before-order")
    agent, broker, router = router_parts(tmp_path)
    try:
        with WebhookServer(WebhookConfig(port=0), SECRET, router, store_dir=tmp_path) as server:
            status, reply = post(server.url, body, headers)  # not "409 replay": the alert was never handled
            assert status == 200 and reply["result"]["status"] == "placed", reply
            assert post(server.url, body, headers)[0] == 409
        [order] = broker.fetch_open_orders()
        assert order["clientOrderId"] == alert_client_id("webhook_trader", "crash-1")
        assert agent.stores.decisions.find_key(f"webhook_trader:order:{order['id']}") is not None
    finally:
        agent.close()
        broker.close()
