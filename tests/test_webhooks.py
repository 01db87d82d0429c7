"""Webhooks over real HTTP on loopback: signed alerts in, alerts out with retries."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from memlab.webhooks import AlertSender, WebhookAlert, WebhookConfig, WebhookServer
from memlab.webhooks.alerts import AlertRejected, sign

SECRET = "whsec-DO-NOT-LEAK-31f9"


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def alert(alert_id: str = "a1", **kw: Any) -> dict[str, Any]:
    body = {"id": alert_id, "symbol": "BTCUSDT", "side": "buy", "qty": 0.1, "strategy": "momentum",
            "time": datetime.now(UTC).isoformat()}
    body.update(kw)
    return body


def signed(body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    return raw, {"X-Memlab-Signature": sign(raw, SECRET)}


class Recorder:
    def __init__(self) -> None:
        self.alerts: list[WebhookAlert] = []

    async def __call__(self, a: WebhookAlert) -> dict[str, Any]:
        if a.symbol == "DELISTED":
            raise AlertRejected(422, "the broker does not list DELISTED")
        self.alerts.append(a)
        return {"order_id": f"paper-{len(self.alerts)}"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[WebhookServer, Recorder]]:
    recorder = Recorder()
    config = WebhookConfig(port=0, rate=1000, burst=1000, symbols=frozenset({"BTCUSDT", "ETHUSDT", "DELISTED"}))
    with WebhookServer(config, SECRET, recorder, store_dir=tmp_path) as srv:
        yield srv, recorder


def test_a_valid_signed_alert_reaches_the_handler_once(server: tuple[WebhookServer, Recorder]) -> None:
    srv, rec = server
    status, reply = post(srv.url, *signed(alert("tv-1")))
    assert status == 200 and reply["result"] == {"order_id": "paper-1"}
    assert [(a.alert_id, a.symbol, a.action, a.qty, a.strategy) for a in rec.alerts] == [("tv-1", "BTCUSDT", "BUY", 0.1, "momentum")]


def test_passphrase_authentication_for_tools_that_cannot_sign(server: tuple[WebhookServer, Recorder]) -> None:
    srv, rec = server
    assert post(srv.url, json.dumps(alert("p1", passphrase=SECRET)).encode())[0] == 200
    assert post(srv.url, json.dumps(alert("p2", passphrase="guess")).encode())[0] == 401
    assert [a.alert_id for a in rec.alerts] == ["p1"]


@pytest.mark.parametrize(
    ("make", "status", "reason"),
    [
        (lambda: (json.dumps(alert("u1")).encode(), {}), 401, "unsigned"),
        (lambda: (json.dumps(alert("b1")).encode(), {"X-Memlab-Signature": sign(b"other body", SECRET)}), 401, "bad signature"),
        (lambda: (b"{not json", {}), 400, "not JSON"),
        (lambda: signed(alert("s1", time=(datetime.now(UTC) - timedelta(hours=1)).isoformat())), 400, "stale"),
        (lambda: signed(alert("n1", symbol="NOPEUSDT")), 422, "unknown symbol"),
        (lambda: signed(alert("q1", qty=-1)), 400, "qty"),
        (lambda: signed(alert("x1", side="hold")), 400, "side"),
        (lambda: signed({k: v for k, v in alert("").items() if k != "id"}), 400, "'id'"),
        (lambda: signed(alert("big", note="x" * 20_000)), 413, "larger than"),
        (lambda: signed(alert("d1", symbol="DELISTED")), 422, "does not list"),
    ],
)
def test_bad_requests_get_a_clear_4xx_and_place_nothing(server: tuple[WebhookServer, Recorder], make, status: int, reason: str) -> None:  # type: ignore[no-untyped-def]
    srv, rec = server
    got, reply = post(srv.url, *make())
    assert got == status and reason in reply["error"]
    assert rec.alerts == []
    logged = srv.requests()[-1]
    assert logged["status"] == status and SECRET not in json.dumps(srv.requests())


def test_replays_are_refused_even_after_a_restart(tmp_path: Path) -> None:
    rec = Recorder()
    body, headers = signed(alert("r1"))
    with WebhookServer(WebhookConfig(port=0), SECRET, rec, store_dir=tmp_path) as srv:
        assert post(srv.url, body, headers)[0] == 200
        status, reply = post(srv.url, body, headers)
        assert status == 409 and "replay" in reply["error"]
    with WebhookServer(WebhookConfig(port=0), SECRET, rec, store_dir=tmp_path) as srv:
        assert post(srv.url, body, headers)[0] == 409
    assert len(rec.alerts) == 1


def test_rate_limit_per_source(tmp_path: Path) -> None:
    rec = Recorder()
    with WebhookServer(WebhookConfig(port=0, rate=0.5, burst=3), SECRET, rec, store_dir=tmp_path) as srv:
        statuses = [post(srv.url, *signed(alert(f"rl{i}")))[0] for i in range(6)]
    assert statuses[:3] == [200, 200, 200] and set(statuses[3:]) == {429}
    assert len(rec.alerts) == 3


def test_handler_runs_on_the_trader_loop_which_is_never_blocked(tmp_path: Path) -> None:
    """Alerts are served on their own thread; the handler runs on the trader's loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    seen: list[int] = []

    async def handler(a: WebhookAlert) -> dict[str, Any]:
        seen.append(threading.get_ident())
        return {"ok": True}

    try:
        with WebhookServer(WebhookConfig(port=0), SECRET, handler, store_dir=tmp_path, handler_loop=loop) as srv:
            assert post(srv.url, *signed(alert("loop1")))[0] == 200
        assert seen == [thread.ident]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


class FlakyReceiver:
    """A loopback chat webhook that fails ``failures`` times, then accepts."""

    def __init__(self, failures: int, fail_status: int = 500) -> None:
        self.failures, self.fail_status = failures, fail_status
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.accepted: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_post("/hook/{name:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.headers["X-Memlab-Delivery"], body))
        if len(self.requests) <= self.failures:
            return web.Response(status=self.fail_status, text="try later")
        self.accepted.append(body)
        return web.Response(text="ok")

    def url(self, name: str = "T000/B000/SECRETTOKEN") -> str:
        return f"http://127.0.0.1:{self.port}/hook/{name}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_outbound_alert_is_retried_and_delivered_exactly_once(tmp_path: Path) -> None:
    receiver = FlakyReceiver(failures=2)
    sender = AlertSender([receiver.url()], log_dir=tmp_path, backoff=0.01)
    try:
        delivery = sender.send("fill", "BUY 0.1 BTCUSDT @ 65000", {"symbol": "BTCUSDT", "qty": 0.1})
        assert sender.flush(30)
    finally:
        sender.close()
        receiver.close()
    assert len(receiver.requests) == 3 and {d for d, _ in receiver.requests} == {delivery}
    assert len(receiver.accepted) == 1 and receiver.accepted[0]["data"] == {"symbol": "BTCUSDT", "qty": 0.1}
    outcomes = [(r["attempt"], r["outcome"]) for r in sender.deliveries()]
    assert outcomes == [(1, "retrying"), (2, "retrying"), (3, "delivered")]
    assert "SECRETTOKEN" not in sender.log_path.read_text()  # chat webhook URLs are secrets


def test_outbound_client_errors_are_not_retried(tmp_path: Path) -> None:
    receiver = FlakyReceiver(failures=99, fail_status=400)
    sender = AlertSender([receiver.url()], log_dir=tmp_path, backoff=0.01)
    try:
        sender.send("lesson", "Learned: support at 64500 is strong")
        assert sender.flush(30)
    finally:
        sender.close()
        receiver.close()
    assert len(receiver.requests) == 1
    assert [r["outcome"] for r in sender.deliveries()] == ["failed"]


def test_slack_and_discord_bodies(tmp_path: Path) -> None:
    receiver = FlakyReceiver(failures=0)
    from memlab.webhooks.outbound import AlertTarget

    targets = [AlertTarget(receiver.url("slack"), "slack"), AlertTarget(receiver.url("discord"), "discord")]
    sender = AlertSender(targets, log_dir=tmp_path)
    try:
        sender.send("drawdown", "drawdown 12% beyond the 10% limit")
        assert sender.flush(30)
    finally:
        sender.close()
        receiver.close()
    bodies = sorted(receiver.accepted, key=lambda b: list(b))
    assert bodies == [{"content": "[memlab] drawdown: drawdown 12% beyond the 10% limit"},
                      {"text": "[memlab] drawdown: drawdown 12% beyond the 10% limit"}]
