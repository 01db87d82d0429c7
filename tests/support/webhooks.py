"""Webhook helpers the tests share: signed alerts over real HTTP, a recording handler, and a
loopback chat webhook that fails on demand."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from memlab.webhooks import WebhookAlert
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
