"""The inbound webhook endpoint: signed alerts in, orders placed through the normal path.

The HTTP server runs on its own thread and event loop, so a burst of requests never
stalls the trader; each valid alert is handed to the handler coroutine on the trader's
loop (``handler_loop``) and the response says what became of it. Every request is
logged in ``webhooks.sqlite`` (status and reason, never the secret); alert ids are kept
there too, so a replay is refused even after a restart.

Exactly once, across crashes. An alert's id is *claimed* (a row in ``alerts``, with the
alert) before the handler runs, and the claim is *settled* (its answer recorded) only
after the handler returned, that is once the order and the decision are on disk. In
between the claim is provisional:

- the same id arriving meanwhile is answered 409 with ``"retry": true`` (still being
  handled), not "replay";
- a temporary refusal (429, 5xx, or a handler's ``AlertRejected(..., retryable=True)``
  such as "not enough market data yet") releases the id: a retry is handled afresh;
- a handler error, or a process killed mid-alert, leaves the claim *unfinished*. The
  next attempt with that id (``alert.retry``), and :meth:`WebhookServer.reconcile` at
  start-up, first look for the order an earlier attempt may have placed (its client id
  comes from the alert id): found, the alert is completed (its decision logged if it
  was not) and settled; not found, the id is released.

A final refusal (400, 401, 413, 422...) and a handled alert spend the id: a retry gets
409 "replay" with the first answer. Responses that are worth retrying carry
``"retry": true`` and a ``Retry-After`` header.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
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
#: Completes an unfinished alert: its result when the alert's order exists (its decision is
#: logged if it was not), None when no order was placed (the id is then released).
Recover = Callable[[WebhookAlert], Awaitable[dict[str, Any] | None]]
_RETRY_AFTER = "1"


@dataclass
class WebhookConfig:
    """Where the endpoint listens and what it accepts.

    ``port=0`` picks a free port (see :attr:`WebhookServer.url`). ``max_age`` refuses
    (400) alerts whose ``time`` is older than that many seconds (5 minutes), ``max_skew``
    those more than that many seconds in the future (30 s: a sender's clock may be a
    little ahead, not more);
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
    """Serve ``POST config.path``; valid alerts go to ``handler`` on ``handler_loop``.

    ``recover`` (default: the handler's ``recover`` method, if it has one) completes the
    alerts a killed process left unfinished, before the first request is served; without
    it, call :meth:`reconcile` once the handler is ready (the trader does, when it starts).
    """

    def __init__(
        self,
        config: WebhookConfig,
        secret: Secret | str,
        handler: Handler,
        *,
        store_dir: Path,
        handler_loop: asyncio.AbstractEventLoop | None = None,
        recover: Recover | None = None,
    ) -> None:
        self.config = config
        self._secret = secret if isinstance(secret, Secret) else Secret(secret)
        if not self._secret:
            raise InvalidInputError(f"webhook {config.name!r} needs a non-empty shared secret")
        self._handler = handler
        self._handler_loop = handler_loop
        self._recover: Recover | None = recover if recover is not None else getattr(handler, "recover", None)
        self._buckets: dict[str, _Bucket] = {}
        # Claims this server holds are in flight here; others' unfinished ones are a dead process's.
        self._owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        root = ensure_private_dir(Path(store_dir))
        self.db_path = root / WEBHOOK_DB
        if not self.db_path.exists():
            create_private(self.db_path)
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None, timeout=30)
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
        # Claims: ``status`` NULL while unfinished; ``owner`` the server handling it (NULL:
        # nobody, an earlier attempt's outcome unknown); ``payload`` the alert, to finish it.
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(alerts)")}
        for name, decl in (("owner", "TEXT"), ("payload", "TEXT"), ("attempts", "INTEGER NOT NULL DEFAULT 1")):
            if name not in columns:
                self._db.execute(f"ALTER TABLE alerts ADD COLUMN {name} {decl}")
        self._db.execute("CREATE INDEX IF NOT EXISTS alerts_unfinished ON alerts (webhook) WHERE status IS NULL")
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
        with self._db_lock:
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
        if self._recover is not None:
            await self.reconcile(self._recover)
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

    # -- the claim ---------------------------------------------------------------
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
        try:
            with self._db_lock:
                self._db.execute(
                    "INSERT INTO requests (webhook, received_at, source, status, reason, alert_id) VALUES (?,?,?,?,?,?)",
                    (self.config.name, time.time(), source, status, reason, alert_id),
                )
        except sqlite3.Error as exc:  # the answer still goes out; the log says it could not be kept
            log.error("webhook %r: could not log a request in %s: %s", self.config.name, self.db_path, exc)
        if status >= 400:
            log.warning("webhook %r: %d %s (from %s)", self.config.name, status, reason, source)

    def _claim(self, alert: WebhookAlert, *, refuse: AlertRejected | None = None
               ) -> tuple[str, tuple[int, str | None] | None]:
        """Take the alert's id. Returns ``("new", None)``, ``("retry", None)`` (an unfinished
        earlier claim, taken over), ``("busy", None)`` (in flight here) or ``("done", (status,
        result))`` (answered before: a replay). ``refuse``: raised instead of taking the id
        (but a replay is still answered as one)."""
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT status, owner, result FROM alerts WHERE webhook=? AND alert_id=?",
                    (self.config.name, alert.alert_id),
                ).fetchone()
                payload = json.dumps(alert.to_dict())
                if refuse is not None and (row is None or row[0] is None):
                    raise refuse
                if row is None:
                    self._db.execute(
                        "INSERT INTO alerts (webhook, alert_id, received_at, symbol, action, owner, payload) "
                        "VALUES (?,?,?,?,?,?,?)",
                        (self.config.name, alert.alert_id, time.time(), alert.symbol, alert.action, self._owner, payload),
                    )
                    outcome: tuple[str, tuple[int, str | None] | None] = ("new", None)
                elif row[0] is not None:
                    outcome = ("done", (int(row[0]), row[2]))
                elif row[1] == self._owner:
                    outcome = ("busy", None)
                else:
                    self._db.execute(
                        "UPDATE alerts SET owner=?, payload=coalesce(payload, ?), attempts=attempts+1 "
                        "WHERE webhook=? AND alert_id=?",
                        (self._owner, payload, self.config.name, alert.alert_id),
                    )
                    outcome = ("retry", None)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return outcome

    def _record(self, alert_id: str, sql: str, args: tuple[Any, ...], source: str | None, status: int,
                reason: str) -> None:
        """Change the claim and log the request, in one transaction."""
        with self._db_lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute(sql, args)
                if source is not None:
                    self._db.execute(
                        "INSERT INTO requests (webhook, received_at, source, status, reason, alert_id) VALUES (?,?,?,?,?,?)",
                        (self.config.name, time.time(), source, status, reason, alert_id),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if status >= 400:
            log.warning("webhook %r: %d %s (from %s)", self.config.name, status, reason, source)

    def _settle(self, alert_id: str, status: int, result: str, source: str | None, reason: str) -> None:
        """Record the alert's final answer: its id is spent."""
        self._record(alert_id, "UPDATE alerts SET status=?, result=?, owner=NULL WHERE webhook=? AND alert_id=?",
                     (status, result, self.config.name, alert_id), source, status, reason)

    def _release(self, alert_id: str, *, placed_nothing: bool, source: str | None, status: int, reason: str) -> None:
        """Give the id back. When nothing can have been placed the claim goes; otherwise it
        stays, unowned, so the next attempt (or :meth:`reconcile`) looks for the order first."""
        if placed_nothing:
            sql = "DELETE FROM alerts WHERE webhook=? AND alert_id=? AND status IS NULL"
            args: tuple[Any, ...] = (self.config.name, alert_id)
        else:
            sql = "UPDATE alerts SET owner=NULL WHERE webhook=? AND alert_id=? AND status IS NULL"
            args = (self.config.name, alert_id)
        self._record(alert_id, sql, args, source, status, reason)

    def _conclude(self, alert: WebhookAlert, kind: str, outcome: Any, source: str | None) -> tuple[int, dict[str, Any]]:
        """Record what the handler's ``outcome`` (its result, or the exception it raised)
        means for the claim; returns the HTTP status and body to answer with."""
        aid = alert.alert_id
        if isinstance(outcome, AlertRejected):
            body: dict[str, Any] = {"ok": False, "error": outcome.reason, "alert_id": aid, "retry": outcome.retryable}
            if outcome.retryable:
                # A refusal raised before anything was placed; a claim taken over from an
                # earlier attempt keeps its doubt (that attempt may have placed an order).
                self._release(aid, placed_nothing=kind == "new", source=source, status=outcome.status,
                              reason=outcome.reason)
            else:
                self._settle(aid, outcome.status, json.dumps({"error": outcome.reason}), source, outcome.reason)
            return outcome.status, body
        if isinstance(outcome, BaseException):
            if isinstance(outcome, asyncio.CancelledError):
                reason = "handler cancelled (shutting down)"
            else:
                reason = f"handler error: {outcome.__class__.__name__}: {outcome}"
            self._release(aid, placed_nothing=False, source=source, status=500, reason=reason)
            return 500, {"ok": False, "error": reason, "alert_id": aid, "retry": True}
        self._settle(aid, 200, json.dumps(outcome, default=str), source, "accepted")
        return 200, {"ok": True, "alert_id": aid, "result": outcome}

    # -- requests ----------------------------------------------------------------
    @staticmethod
    def _answer(status: int, body: dict[str, Any]) -> web.Response:
        headers = {"Retry-After": _RETRY_AFTER} if body.get("retry") else None
        return web.json_response(body, status=status, headers=headers)

    async def _handle(self, request: web.Request) -> web.Response:
        source = request.remote or "unknown"
        alert: WebhookAlert | None = None
        try:
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
                if self.config.symbols is not None and alert.symbol not in self.config.symbols:
                    raise AlertRejected(422, f"unknown symbol {alert.symbol!r}")
                age = (datetime.now(UTC) - alert.time).total_seconds()
                refuse = None
                if age > self.config.max_age:
                    refuse = AlertRejected(400, f"stale: sent {age:.0f} s ago (limit {self.config.max_age:g} s)")
                elif age < -self.config.max_skew:
                    refuse = AlertRejected(400, f"'time' is {-age:.0f} s in the future "
                                                f"(limit {self.config.max_skew:g} s)")
                # An alert answered before is a replay however old its retry; otherwise a
                # stale one is refused before it claims anything.
                kind, first = self._claim(alert, refuse=refuse)
            except AlertRejected:
                raise
            except Exception as exc:  # a bug, or the disk: answered and logged, never a bare 500
                log.exception("webhook %r: request failed", self.config.name)
                raise AlertRejected(500, f"internal error: {exc.__class__.__name__}") from None
            if kind == "busy":
                raise AlertRejected(409, f"alert {alert.alert_id!r} is still being handled; retry", retryable=True)
            if kind == "done":
                assert first is not None
                reason = f"replay: alert {alert.alert_id!r} was already received (answered {first[0]})"
                self._log_request(source, 409, reason, alert.alert_id)
                try:
                    answered = json.loads(first[1]) if first[1] else None
                except ValueError:  # kept as text by an older memlab
                    answered = first[1]
                return self._answer(409, {"ok": False, "error": reason, "alert_id": alert.alert_id, "retry": False,
                                          "first": {"status": first[0], "answer": answered}})
        except AlertRejected as exc:
            self._log_request(source, exc.status, exc.reason, alert.alert_id if alert else None)
            body = {"ok": False, "error": exc.reason, "retry": exc.retryable}
            if alert is not None:
                body["alert_id"] = alert.alert_id
            return self._answer(exc.status, body)
        if kind == "retry":
            alert = dataclasses.replace(alert, retry=True)
        claimed = alert
        outcome: Any
        try:
            # Shielded: neither a timeout nor a client hanging up stops an alert half-handled.
            future = self._start_handler(alert)
            outcome = await asyncio.wait_for(asyncio.shield(future), self.config.handler_timeout)
        except TimeoutError:
            # Still running on the trader's loop: it is answered now, and settled when done.
            future.add_done_callback(lambda f: self._late(claimed, kind, f))
            self._log_request(source, 202, "accepted; still processing", alert.alert_id)
            return self._answer(202, {"ok": True, "alert_id": alert.alert_id, "status": "processing", "retry": True})
        except asyncio.CancelledError:
            if not future.done():  # this request was cancelled, not the handler: settle it when done
                future.add_done_callback(lambda f: self._late(claimed, kind, f))
                raise
            outcome = asyncio.CancelledError()
        except Exception as exc:  # the handler raised: its exception is the outcome
            outcome = exc
        try:
            status, reply = self._conclude(alert, kind, outcome, source)
        except Exception as exc:
            log.exception("webhook %r: could not record alert %r", self.config.name, alert.alert_id)
            status, reply = 500, {"ok": False, "error": f"internal error: {exc.__class__.__name__}",
                                  "alert_id": alert.alert_id, "retry": True}
        return self._answer(status, reply)

    def _late(self, alert: WebhookAlert, kind: str, future: asyncio.Future[dict[str, Any]]) -> None:
        outcome: Any = future.exception() if not future.cancelled() else asyncio.CancelledError()
        if outcome is None:
            outcome = future.result()
        try:
            self._conclude(alert, kind, outcome, None)
        except Exception:
            log.exception("webhook %r: could not record alert %r", self.config.name, alert.alert_id)

    def _start_handler(self, alert: WebhookAlert) -> asyncio.Future[dict[str, Any]]:
        return self._on_handler_loop(self._handler(alert))

    def _on_handler_loop(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        """Run ``coro`` on the handler's loop; a future of this (the server's) loop."""
        if self._handler_loop is None:
            return asyncio.ensure_future(coro)
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._handler_loop))  # type: ignore[arg-type]

    # -- recovery ----------------------------------------------------------------
    def unfinished(self) -> list[WebhookAlert]:
        """Alerts claimed but not settled by a server that is gone (killed mid-alert), or whose
        last attempt ended in a handler error: each may or may not have placed its order."""
        with self._db_lock:
            rows = self._db.execute(
                "SELECT alert_id, payload, symbol, action, received_at FROM alerts "
                "WHERE webhook=? AND status IS NULL AND (owner IS NULL OR owner != ?) ORDER BY received_at",
                (self.config.name, self._owner),
            ).fetchall()
        out = []
        for alert_id, payload, symbol, action, received_at in rows:
            if payload:
                out.append(WebhookAlert.from_dict(json.loads(payload), retry=True))
            else:  # claimed by an older memlab, which kept no payload
                out.append(WebhookAlert(alert_id, symbol or "", action or "BUY",
                                        datetime.fromtimestamp(received_at, UTC), retry=True))
        return out

    async def reconcile(self, recover: Recover) -> dict[str, int]:
        """Finish every unfinished alert (see :meth:`unfinished`) with ``recover``: an alert
        whose order exists is completed and settled (a retry then gets 409 "replay"); one
        that placed nothing is released, so the sender's retry is handled afresh. Call it
        before the handler takes alerts; returns ``{"completed": n, "released": m}``."""
        counts = {"completed": 0, "released": 0, "failed": 0}
        for alert in self.unfinished():
            with self._db_lock:  # taken over, so a retry meanwhile is told to come back
                taken = self._db.execute(
                    "UPDATE alerts SET owner=? WHERE webhook=? AND alert_id=? AND status IS NULL "
                    "AND (owner IS NULL OR owner != ?)",
                    (self._owner, self.config.name, alert.alert_id, self._owner),
                ).rowcount
            if not taken:
                continue
            try:
                if self._handler_loop is None or self._handler_loop is asyncio.get_running_loop():
                    result = await recover(alert)
                else:  # from the server's start-up: on the handler's loop, like the handler
                    result = await self._on_handler_loop(recover(alert))
            except Exception as exc:
                log.exception("webhook %r: could not finish alert %r", self.config.name, alert.alert_id)
                self._release(alert.alert_id, placed_nothing=False, source=None, status=500,
                              reason=f"recovery failed: {exc.__class__.__name__}")
                counts["failed"] += 1
                continue
            if result is None:  # nothing placed: the sender's retry is handled afresh
                self._release(alert.alert_id, placed_nothing=True, source=None, status=0, reason="released")
                counts["released"] += 1
            else:
                self._settle(alert.alert_id, 200, json.dumps(result, default=str), "restart",
                             "completed after a restart: its order was placed before the process stopped")
                counts["completed"] += 1
        if any(counts.values()):
            log.warning("webhook %r: alerts a stopped process left unfinished: %d completed, %d released, %d failed",
                        self.config.name, counts["completed"], counts["released"], counts["failed"])
        return counts

    # -- inspection --------------------------------------------------------------
    def requests(self) -> list[dict[str, Any]]:
        """Every request seen, oldest first: time, source, status, reason, alert id."""
        with self._db_lock:
            rows = self._db.execute(
                "SELECT received_at, source, status, reason, alert_id FROM requests WHERE webhook=? ORDER BY seq",
                (self.config.name,),
            ).fetchall()
        return [dict(zip(("time", "source", "status", "reason", "alert_id"), r, strict=True)) for r in rows]


class WebhookLogReader:
    """The webhook endpoints' request log read from another process (the live monitor):
    each call opens ``webhooks.sqlite`` read-only, reads, closes.

    A missing log raises :class:`FileNotFoundError`; a damaged one
    :class:`~memlab.memory.errors.CorruptMemoryError`. Neither ever creates or changes it.
    """

    name = "webhook log"
    # Frames are typed Any: pandas is imported on the first read, so the server needs none.

    def __init__(self, root: str | os.PathLike[str], *, timeout: float = 10.0) -> None:
        self.path = Path(root) / WEBHOOK_DB
        self.timeout = timeout

    def requests(self, limit: int = 50, *, webhook: str | None = None) -> Any:
        """The newest ``limit`` requests (of one ``webhook``, else of all), newest first, as a
        DataFrame: ``received_at`` (wall clock, UTC), ``webhook``, ``source``, ``status``,
        ``reason``, ``alert_id``."""
        import pandas as pd

        from memlab.memory.durable import read_store_db

        with read_store_db(self.path, timeout=self.timeout, name=self.name) as conn:
            rows = conn.execute(
                "SELECT received_at, webhook, source, status, reason, alert_id FROM requests"
                + (" WHERE webhook = ?" if webhook is not None else "") + " ORDER BY seq DESC LIMIT ?",
                (*(() if webhook is None else (webhook,)), int(limit)),
            ).fetchall()
        frame = pd.DataFrame(rows, columns=["received_at", "webhook", "source", "status", "reason", "alert_id"])
        frame["received_at"] = pd.to_datetime(pd.Series(frame["received_at"], dtype="float64"), unit="s", utc=True)
        return frame
