"""Webhooks over real HTTP on loopback: signed alerts in, alerts out with retries."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from memlab.webhooks import AlertSender, WebhookAlert, WebhookConfig, WebhookServer
from memlab.webhooks.alerts import AlertRejected, sign
from tests.support.webhooks import SECRET, FlakyReceiver, Recorder, alert, post, signed


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


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("qty", True, "JSON number"),  # was a 1-unit order
        ("qty", "0.01", "JSON number"),  # was accepted as text
        ("qty", float("inf"), "finite"),
        ("price", "65000", "JSON number"),
        ("time", 1e20, "plausible"),  # was a 500, missing from the log
        ("time", -1e15, "plausible"),
        ("time", "9999-12-31T23:59:59Z", "plausible"),
        ("time", "2024-02-30T00:00:00Z", "ISO 8601"),
        ("strategy", "s" * 65, "longer than 64"),
    ],
)
def test_loose_fields_are_refused_and_logged(server: tuple[WebhookServer, Recorder], field: str, value: Any,
                                             reason: str) -> None:
    srv, rec = server
    status, reply = post(srv.url, *signed(alert(f"f-{field}", **{field: value})))
    assert status == 400 and reason in reply["error"], reply
    assert reply["retry"] is False and rec.alerts == []
    assert srv.requests()[-1]["status"] == 400 and reason in srv.requests()[-1]["reason"]


@pytest.mark.parametrize(("offset", "reason"), [(timedelta(days=-2), "stale"), (timedelta(minutes=10), "future")])
def test_times_outside_the_window_are_refused(server: tuple[WebhookServer, Recorder], offset: timedelta,
                                              reason: str) -> None:
    srv, rec = server
    status, reply = post(srv.url, *signed(alert("w1", time=(datetime.now(UTC) + offset).isoformat())))
    assert status == 400 and reason in reply["error"] and rec.alerts == []
    assert srv.requests()[-1]["status"] == 400


def test_long_ids_are_refused_never_cut(server: tuple[WebhookServer, Recorder]) -> None:
    srv, rec = server
    longest = "a" * 128
    assert post(srv.url, *signed(alert(longest)))[0] == 200
    # Cut to 128 characters this would be the id above, and refused as its replay.
    status, reply = post(srv.url, *signed(alert(longest + "b")))
    assert status == 400 and "longer than 128" in reply["error"]
    assert [a.alert_id for a in rec.alerts] == [longest]
    assert srv.requests()[-1]["status"] == 400


class Temporary:
    """A handler that refuses with ``status`` (a temporary refusal) until ``ready`` is set."""

    def __init__(self, status: int, retryable: bool | None) -> None:
        self.status, self.retryable = status, retryable
        self.ready = False
        self.alerts: list[WebhookAlert] = []

    async def __call__(self, a: WebhookAlert) -> dict[str, Any]:
        if not self.ready:
            raise AlertRejected(self.status, "not enough market data yet", retryable=self.retryable)
        self.alerts.append(a)
        return {"order_id": "paper-1"}


@pytest.mark.parametrize(("status", "retryable"), [(422, True), (503, None), (429, None)])
def test_a_temporary_refusal_does_not_use_up_the_id(tmp_path: Path, status: int, retryable: bool | None) -> None:
    handler = Temporary(status, retryable)
    body, headers = signed(alert("t1"))
    with WebhookServer(WebhookConfig(port=0), SECRET, handler, store_dir=tmp_path) as srv:
        req = urllib.request.Request(srv.url, data=body, headers={"Content-Type": "application/json", **headers})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=10)
        assert refused.value.code == status and refused.value.headers["Retry-After"] == "1"
        assert json.loads(refused.value.read())["retry"] is True
        handler.ready = True
        assert post(srv.url, body, headers)[0] == 200  # the sender's retry is handled, not a "replay"
        status2, reply = post(srv.url, body, headers)
        assert status2 == 409 and "replay" in reply["error"] and reply["first"]["status"] == 200
    assert [a.alert_id for a in handler.alerts] == ["t1"]


def test_a_final_refusal_uses_up_the_id_and_its_replay_says_the_first_answer(server: tuple[WebhookServer, Recorder]) -> None:
    srv, _ = server
    body, headers = signed(alert("d2", symbol="DELISTED"))
    status, reply = post(srv.url, body, headers)
    assert status == 422 and reply["retry"] is False
    status, reply = post(srv.url, body, headers)
    assert status == 409 and reply["retry"] is False
    assert reply["first"] == {"status": 422, "answer": {"error": "the broker does not list DELISTED"}}


class Gate:
    """A handler held at a gate until the test opens it; ``fail_first`` raises once."""

    def __init__(self, *, fail_first: bool = False) -> None:
        self.entered = threading.Event()
        self.open = threading.Event()
        self.fail_first = fail_first
        self.seen: list[tuple[str, bool]] = []

    async def __call__(self, a: WebhookAlert) -> dict[str, Any]:
        self.seen.append((a.alert_id, a.retry))
        if self.fail_first and len(self.seen) == 1:
            raise RuntimeError("the broker's connection dropped")
        self.entered.set()
        await asyncio.to_thread(self.open.wait, 30)
        return {"order_id": "paper-1"}


def test_the_same_alert_while_it_is_handled_is_told_to_retry_not_replay(tmp_path: Path) -> None:
    gate = Gate()
    body, headers = signed(alert("g1"))
    with WebhookServer(WebhookConfig(port=0), SECRET, gate, store_dir=tmp_path) as srv:
        first: list[tuple[int, dict[str, Any]]] = []
        sender = threading.Thread(target=lambda: first.append(post(srv.url, body, headers)))
        sender.start()
        assert gate.entered.wait(10)
        status, reply = post(srv.url, body, headers)
        assert status == 409 and reply["retry"] is True and "still being handled" in reply["error"]
        gate.open.set()
        sender.join(10)
        assert first[0][0] == 200
        assert post(srv.url, body, headers)[1]["retry"] is False  # now a replay
    assert gate.seen == [("g1", False)]


def test_a_handler_error_leaves_the_alert_to_its_retry_which_is_told_it_is_one(tmp_path: Path) -> None:
    gate = Gate(fail_first=True)
    gate.open.set()
    body, headers = signed(alert("e1"))
    with WebhookServer(WebhookConfig(port=0), SECRET, gate, store_dir=tmp_path) as srv:
        status, reply = post(srv.url, body, headers)
        assert status == 500 and reply["retry"] is True and "connection dropped" in reply["error"]
        assert post(srv.url, body, headers)[0] == 200
    # The retry is flagged: an order the failed attempt may have placed is looked for first.
    assert gate.seen == [("e1", False), ("e1", True)]


def test_a_slow_alert_is_answered_202_and_settled_when_its_handler_ends(tmp_path: Path) -> None:
    gate = Gate()
    body, headers = signed(alert("s2"))
    with WebhookServer(WebhookConfig(port=0, handler_timeout=0.2), SECRET, gate, store_dir=tmp_path) as srv:
        status, reply = post(srv.url, body, headers)
        assert status == 202 and reply["retry"] is True
        gate.open.set()
        deadline = time.monotonic() + 20
        while True:  # the sender's retries: "still being handled" until it is settled
            status, reply = post(srv.url, body, headers)
            if not reply["retry"]:
                break
            assert time.monotonic() < deadline, reply
        assert status == 409 and reply["first"]["status"] == 200
    assert len(gate.seen) == 1


def test_an_alert_a_stopped_server_left_unfinished_is_completed_or_released_on_start(tmp_path: Path) -> None:
    gate = Gate()
    placed, unplaced = signed(alert("u-placed")), signed(alert("u-none"))
    with WebhookServer(WebhookConfig(port=0, handler_timeout=0.2), SECRET, gate, store_dir=tmp_path) as srv:
        assert post(srv.url, *placed)[0] == 202
        assert post(srv.url, *unplaced)[0] == 202
    # Stopped mid-alert (its handler never returned): both claims are unfinished.
    recovered: list[tuple[str, bool]] = []

    async def recover(a: WebhookAlert) -> dict[str, Any] | None:
        recovered.append((a.alert_id, a.retry))
        return {"order_id": "paper-7", "recovered": True} if a.alert_id == "u-placed" else None

    rec = Recorder()
    try:
        with WebhookServer(WebhookConfig(port=0), SECRET, rec, store_dir=tmp_path, recover=recover) as srv:
            assert sorted(recovered) == [("u-none", True), ("u-placed", True)]
            status, reply = post(srv.url, *placed)  # its order exists: completed, so a replay
            assert status == 409 and reply["first"]["answer"] == {"order_id": "paper-7", "recovered": True}
            assert post(srv.url, *unplaced)[0] == 200  # nothing was placed: handled afresh
            assert [(r["status"], r["reason"][:9]) for r in srv.requests()[-3:]] == [
                (200, "completed"), (409, "replay: a"), (200, "accepted")]
    finally:
        gate.open.set()
    assert [a.alert_id for a in rec.alerts] == ["u-none"]


def test_a_late_retry_of_an_answered_alert_is_a_replay_not_stale(tmp_path: Path) -> None:
    rec = Recorder()
    body, headers = signed(alert("late-1", time=(datetime.now(UTC) - timedelta(seconds=100)).isoformat()))
    with WebhookServer(WebhookConfig(port=0, max_age=300), SECRET, rec, store_dir=tmp_path) as srv:
        assert post(srv.url, body, headers)[0] == 200
    with WebhookServer(WebhookConfig(port=0, max_age=50), SECRET, rec, store_dir=tmp_path) as srv:
        status, reply = post(srv.url, body, headers)  # the sender never got the first answer
        assert status == 409 and reply["first"]["status"] == 200
        status, reply = post(srv.url, *signed(alert("late-2", time=(datetime.now(UTC) - timedelta(seconds=100)).isoformat())))
        assert status == 400 and "stale" in reply["error"]
    assert [a.alert_id for a in rec.alerts] == ["late-1"]
