"""The inbound webhook endpoint: signed alerts in, orders placed through the normal path.

The HTTP server runs on its own thread and event loop, so a burst of requests never
stalls the trader; each valid alert is handed to the handler coroutine on the trader's
loop (``handler_loop``) and the response says what became of it. Every request is
logged in ``webhooks.sqlite`` (status and reason, never the secret); alert ids are kept
there too, so a replay is refused even after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from memlab.credentials import Secret
from memlab.errors import InvalidInputError
from memlab.memory.durable import create_private, ensure_private_dir
from memlab.webhooks.alerts import SIGNATURE_HEADER, AlertRejected, WebhookAlert, parse_alert

log = logging.getLogger(__name__)

WEBHOOK_DB = "webhooks.sqlite"
Handler = Callable[[WebhookAlert], Awaitable[dict[str, Any]]]


@dataclass
class WebhookConfig:
    """Where the endpoint listens and what it accepts.

    ``port=0`` picks a free port (see :attr:`WebhookServer.url`). ``max_age`` refuses
    alerts whose ``time`` is older than that many seconds (``max_skew`` for the future);
    ``rate``/``burst`` is a token bucket per source address; ``symbols``, when given,
    refuses unknown symbols before anything else happens.
    """

    name: str = "alerts"
    host: str = "127.0.0.1"
    port: int = 5002
    path: str = "/signal"
    max_body: int = 16 * 1024
    max_age: float = 300.0
    max_skew: float = 30.0
    rate: float = 10.0
    burst: int = 20
    handler_timeout: float = 10.0
    symbols: frozenset[str] | None = None

    @classmethod
    def from_mapping(cls, name: str, options: dict[str, Any]) -> WebhookConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(options) - known
        if unknown:
            raise InvalidInputError(f"unknown webhook options {sorted(unknown)}; known: {sorted(known - {'name'})}")
        values = dict(options)
        if "symbols" in values and values["symbols"] is not None:
            values["symbols"] = frozenset(values["symbols"])
        return cls(name=name, **values)


@dataclass
class _Bucket:
    tokens: float
    stamp: float = field(default_factory=time.monotonic)


class WebhookServer:
    """Serve ``POST config.path``; valid alerts go to ``handler`` on ``handler_loop``."""

    def __init__(
        self,
        config: WebhookConfig,
        secret: Secret | str,
        handler: Handler,
        *,
        store_dir: Path,
        handler_loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.config = config
        self._secret = secret if isinstance(secret, Secret) else Secret(secret)
        if not self._secret:
            raise InvalidInputError(f"webhook {config.name!r} needs a non-empty shared secret")
        self._handler = handler
        self._handler_loop = handler_loop
        self._buckets: dict[str, _Bucket] = {}
        root = ensure_private_dir(Path(store_dir))
        self.db_path = root / WEBHOOK_DB
        if not self.db_path.exists():
            create_private(self.db_path)
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL survives a killed process (what replay protection needs); only a
        # power cut could lose the newest records. It spares an fsync per request.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS alerts (
                webhook TEXT NOT NULL, alert_id TEXT NOT NULL, received_at REAL NOT NULL,
                symbol TEXT, action TEXT, status INTEGER, result TEXT,
                PRIMARY KEY (webhook, alert_id));
            CREATE TABLE IF NOT EXISTS requests (
                seq INTEGER PRIMARY KEY, webhook TEXT NOT NULL, received_at REAL NOT NULL,
                source TEXT, status INTEGER NOT NULL, reason TEXT NOT NULL, alert_id TEXT);
            """
        )
        self._db_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port: int | None = None

    # -- lifecycle ---------------------------------------------------------------
    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the webhook server is not started")
        return f"http://{self.config.host}:{self.port}{self.config.path}"

    def start(self, timeout: float = 10.0) -> WebhookServer:
        """Start serving on a background thread; returns once the port is bound."""
        self._thread = threading.Thread(target=self._serve, name=f"webhook-{self.config.name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"webhook server {self.config.name!r} did not start within {timeout} s")
        if self._error is not None:
            raise self._error
        log.info("webhook %r listening on %s", self.config.name, self.url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._db.close()
        self._loop = None

    def __enter__(self) -> WebhookServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _startup(self) -> None:
        app = web.Application(client_max_size=self.config.max_body + 1)
        app.router.add_post(self.config.path, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- requests ----------------------------------------------------------------
    def _allow(self, source: str) -> bool:
        now = time.monotonic()
        bucket = self._buckets.setdefault(source, _Bucket(float(self.config.burst), now))
        bucket.tokens = min(self.config.burst, bucket.tokens + (now - bucket.stamp) * self.config.rate)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _log_request(self, source: str, status: int, reason: str, alert_id: str | None) -> None:
        with self._db_lock:
            self._db.execute(
                "INSERT INTO requests (webhook, received_at, source, status, reason, alert_id) VALUES (?,?,?,?,?,?)",
                (self.config.name, time.time(), source, status, reason, alert_id),
            )
        if status >= 400:
            log.warning("webhook %r: %d %s (from %s)", self.config.name, status, reason, source)

    def _claim(self, alert: WebhookAlert) -> bool:
        """Record the alert id; False when it was seen before (a replay)."""
        try:
            with self._db_lock:
                self._db.execute(
                    "INSERT INTO alerts (webhook, alert_id, received_at, symbol, action) VALUES (?,?,?,?,?)",
                    (self.config.name, alert.alert_id, time.time(), alert.symbol, alert.action),
                )
            return True
        except sqlite3.IntegrityError:
            return False

    def _settle(self, alert: WebhookAlert, status: int, result: str, source: str, reason: str) -> None:
        """Record the alert's result and log the request, in one transaction."""
        with self._db_lock:
            self._db.execute("BEGIN")
            self._db.execute(
                "UPDATE alerts SET status=?, result=? WHERE webhook=? AND alert_id=?",
                (status, result[:500], self.config.name, alert.alert_id),
            )
            self._db.execute(
                "INSERT INTO requests (webhook, received_at, source, status, reason, alert_id) VALUES (?,?,?,?,?,?)",
                (self.config.name, time.time(), source, status, reason, alert.alert_id),
            )
            self._db.execute("COMMIT")
        if status >= 400:
            log.warning("webhook %r: %d %s (from %s)", self.config.name, status, reason, source)

    async def _handle(self, request: web.Request) -> web.Response:
        source = request.remote or "unknown"
        alert: WebhookAlert | None = None
        try:
            if not self._allow(source):
                raise AlertRejected(429, f"rate limit: at most {self.config.rate:g} alerts/s per source")
            if request.content_length is not None and request.content_length > self.config.max_body:
                raise AlertRejected(413, f"body larger than {self.config.max_body} bytes")
            body = await request.content.read(self.config.max_body + 1)
            if len(body) > self.config.max_body:
                raise AlertRejected(413, f"body larger than {self.config.max_body} bytes")
            alert = parse_alert(
                body, signature=request.headers.get(SIGNATURE_HEADER),
                secret=self._secret.reveal(), source=source,
            )
            age = (datetime.now(UTC) - alert.time).total_seconds()
            if age > self.config.max_age:
                raise AlertRejected(400, f"stale: sent {age:.0f} s ago (limit {self.config.max_age:g} s)")
            if age < -self.config.max_skew:
                raise AlertRejected(400, f"'time' is {-age:.0f} s in the future")
            if self.config.symbols is not None and alert.symbol not in self.config.symbols:
                raise AlertRejected(422, f"unknown symbol {alert.symbol!r}")
            if not self._claim(alert):
                raise AlertRejected(409, f"replay: alert {alert.alert_id!r} was already received")
        except AlertRejected as exc:
            self._log_request(source, exc.status, exc.reason, alert.alert_id if alert else None)
            return web.json_response({"ok": False, "error": exc.reason}, status=exc.status)
        try:
            result = await self._dispatch(alert)
        except AlertRejected as exc:
            self._settle(alert, exc.status, exc.reason, source, exc.reason)
            return web.json_response({"ok": False, "error": exc.reason, "alert_id": alert.alert_id}, status=exc.status)
        except TimeoutError:
            self._settle(alert, 202, "still processing", source, "accepted; still processing")
            return web.json_response({"ok": True, "alert_id": alert.alert_id, "status": "processing"}, status=202)
        except Exception as exc:  # the handler failed: say so, keep serving
            reason = f"handler error: {exc.__class__.__name__}: {exc}"
            self._settle(alert, 500, reason, source, reason)
            return web.json_response({"ok": False, "error": reason, "alert_id": alert.alert_id}, status=500)
        self._settle(alert, 200, str(result), source, "accepted")
        return web.json_response({"ok": True, "alert_id": alert.alert_id, "result": result})

    async def _dispatch(self, alert: WebhookAlert) -> dict[str, Any]:
        coro = self._handler(alert)
        if self._handler_loop is None:
            return await asyncio.wait_for(coro, self.config.handler_timeout)
        future = asyncio.run_coroutine_threadsafe(coro, self._handler_loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), self.config.handler_timeout)

    # -- inspection --------------------------------------------------------------
    def requests(self) -> list[dict[str, Any]]:
        """Every request seen, oldest first: time, source, status, reason, alert id."""
        with self._db_lock:
            rows = self._db.execute(
                "SELECT received_at, source, status, reason, alert_id FROM requests WHERE webhook=? ORDER BY seq",
                (self.config.name,),
            ).fetchall()
        return [dict(zip(("time", "source", "status", "reason", "alert_id"), r, strict=True)) for r in rows]
