"""A signed alert over real HTTP becomes a paper order and a journal line; bad ones place nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from memlab.agent import MemoryAgent
from memlab.connectors import Bar, PaperBroker
from memlab.data import synthetic_ohlcv
from memlab.webhooks import AlertRouter, WebhookConfig, WebhookServer
from memlab.webhooks.alerts import sign
from tests.test_webhooks import SECRET, post

BARS = synthetic_ohlcv(600, freq="1min", seed=9)


@pytest.fixture
def trading(tmp_path: Path) -> Iterator[tuple[WebhookServer, PaperBroker, MemoryAgent]]:
    agent = MemoryAgent(tmp_path, agent_id="webhook_trader")
    broker = PaperBroker(tmp_path, balances={"USDT": 100_000.0}, fees=0.001)
    broker.add_market("BTC/USDT")
    last = BARS.iloc[-1]
    broker.on_bar("BTC/USDT", Bar(BARS.index[-1].timestamp(), last.Open, last.High, last.Low, last.Close))
    router = AlertRouter(agent, broker, lambda symbol: BARS)
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
    assert (order["clientOrderId"], order["side"], order["amount"]) == ("webhook:tv-1", "buy", 0.5)
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
