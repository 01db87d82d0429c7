"""Outbound alerts: fills, adaptations, lessons, drawdowns and lost connections to chat tools.

:func:`describe_event` is the one place an event becomes the line a person reads;
:meth:`AlertSender.on_event` subscribes it to an :class:`~memlab.events.EventBus` (the
connection manager's, for the trader's events), so publishers never format chat text.

:class:`AlertSender` queues each alert and returns at once; a background thread posts
it to every target (Slack, Discord or plain JSON bodies), retrying connection errors,
timeouts, 429 and 5xx with exponential backoff and jitter. A delivery is retried only
after a failed attempt and carries an ``X-Memlab-Delivery`` id, so a receiver never
gets the same alert twice as two deliveries. Each attempt is a line in the delivery log
(target URLs masked: chat webhook URLs are secrets).

:class:`DrawdownState` keeps what the trader has already said about drawdowns (the
equity peak, and the alert levels crossed since it) in the memory folder, so a restart
neither measures drawdowns from a forgotten, lower peak nor announces a level twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from memlab.errors import InvalidInputError
from memlab.memory.durable import FILE_MODE, append_durable, ensure_private_dir, fsync_dir

log = logging.getLogger(__name__)

DELIVERY_LOG = "alert_deliveries.jsonl"
DRAWDOWN_STATE = "drawdown_state.json"
EVENTS = ("fill", "adaptation", "lesson", "drawdown", "connection_lost", "error", "info")


@dataclass(frozen=True)
class AlertTarget:
    """One destination; ``format`` is ``slack``, ``discord`` or ``json`` (guessed from the URL)."""

    url: str
    format: str = ""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidInputError(f"alert target must be an http(s) URL, got {mask_url(self.url)!r}")
        if not self.format:
            host = parts.netloc.lower()
            guess = "slack" if "slack.com" in host else "discord" if "discord" in host else "json"
            object.__setattr__(self, "format", guess)
        if self.format not in ("slack", "discord", "json"):
            raise InvalidInputError(f"alert format must be slack, discord or json, not {self.format!r}")


def mask_url(url: str) -> str:
    """``https://hooks.slack.com/services/T0/B0/XYZ`` → ``https://hooks.slack.com/…``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…" if parts.netloc else "…"


def describe_event(event: str, p: Mapping[str, Any]) -> str | None:
    """One line a person reads in a chat tool; None for events that are not alerts.

    >>> describe_event("fill", {"side": "buy", "amount": 0.1, "symbol": "BTC/USDT", "price": 64500.0, "pnl": 12.5})
    'BUY 0.1 BTC/USDT filled at 64,500.0000, P&L +12.50'
    >>> describe_event("decision", {}) is None
    True
    """
    if event == "fill":
        pnl = p.get("pnl")
        tail = "" if pnl is None else f", P&L {pnl:+,.2f}"
        return f"{p['side'].upper()} {p['amount']:.6g} {p['symbol']} filled at {p['price']:,.4f}{tail}"
    if event == "adaptation":
        return f"adapted ({p.get('trigger')}): {p.get('reason')}"
    if event == "lesson":
        return str(p.get("text"))
    if event == "drawdown":
        return f"drawdown {p['drawdown']:.1%}: equity {p['equity']:,.2f} against a peak of {p['peak']:,.2f}"
    if event == "connection_lost":
        return f"lost connection {p['name']} ({p['venue']}): {p.get('error')}"
    if event == "connection_restored":
        return f"connection {p['name']} ({p['venue']}) is back"
    if event == "error":
        return f"error in {p.get('source')}: {p.get('message')}"
    return None


def format_body(target_format: str, event: str, text: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body for a target: Slack ``text``, Discord ``content``, or the full event."""
    line = f"[memlab] {event}: {text}"
    if target_format == "slack":
        return {"text": line}
    if target_format == "discord":
        return {"content": line[:2000]}
    return {"event": event, "text": text, "data": dict(data), "time": datetime.now(UTC).isoformat()}


class AlertSender:
    """Posts alerts to webhook URLs in the background, with retries and a delivery log."""

    def __init__(
        self,
        targets: Sequence[str | AlertTarget],
        *,
        log_dir: Path,
        max_attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: float = 5.0,
        max_queue: int = 10_000,
    ) -> None:
        self.targets = [t if isinstance(t, AlertTarget) else AlertTarget(t) for t in targets]
        if max_attempts < 1:
            raise InvalidInputError("max_attempts must be at least 1")
        self.log_path = ensure_private_dir(Path(log_dir)) / DELIVERY_LOG
        self.max_attempts, self.backoff, self.max_backoff = max_attempts, backoff, max_backoff
        self.timeout = timeout
        self.max_queue = max_queue
        self._pending = 0
        self._idle = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._session: aiohttp.ClientSession | None = None
        self._thread = threading.Thread(target=self._run, name="alert-sender", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    # -- public ------------------------------------------------------------------
    def send(self, event: str, text: str, data: Mapping[str, Any] | None = None) -> str:
        """Queue an alert for every target; returns its delivery id at once."""
        if event not in EVENTS:
            raise InvalidInputError(f"unknown alert event {event!r}; one of {EVENTS}")
        delivery_id = uuid.uuid4().hex
        with self._idle:
            if self._pending >= self.max_queue:
                self._log(delivery_id, event, None, 0, None, "dropped", "queue full")
                return delivery_id
            self._pending += len(self.targets)
        for target in self.targets:
            asyncio.run_coroutine_threadsafe(self._deliver(delivery_id, event, text, dict(data or {}), target), self._loop)
        return delivery_id

    def on_event(self, event: str, payload: Mapping[str, Any]) -> None:
        """An :class:`~memlab.events.EventBus` listener: sends the events that are alerts
        (with :func:`describe_event`'s text; a restored connection as ``info``), ignores the rest."""
        text = describe_event(event, payload)
        if text is not None:
            self.send("info" if event == "connection_restored" else event, text, payload)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued alert is delivered or has failed; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)

        async def _close() -> None:
            if self._session is not None:
                await self._session.close()

        asyncio.run_coroutine_threadsafe(_close(), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def deliveries(self) -> list[dict[str, Any]]:
        """The delivery log, oldest first: one record per attempt."""
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]

    # -- internals ---------------------------------------------------------------
    def _log(self, delivery_id: str, event: str, target: AlertTarget | None, attempt: int,
             status: int | None, outcome: str, error: str = "") -> None:
        record = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"), "delivery_id": delivery_id,
            "event": event, "target": mask_url(target.url) if target else None, "attempt": attempt,
            "status": status, "outcome": outcome, "error": error,
        }
        append_durable(self.log_path, (json.dumps(record) + "\n").encode())

    async def _deliver(self, delivery_id: str, event: str, text: str, data: dict[str, Any], target: AlertTarget) -> None:
        try:
            if self._session is None:
                self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
            body = format_body(target.format, event, text, data)
            headers = {"X-Memlab-Delivery": delivery_id, "Content-Type": "application/json"}
            for attempt in range(1, self.max_attempts + 1):
                status, error, retry_after = None, "", None
                try:
                    async with self._session.post(target.url, json=body, headers=headers) as resp:
                        status = resp.status
                        if 200 <= status < 300:
                            self._log(delivery_id, event, target, attempt, status, "delivered")
                            return
                        error = (await resp.text())[:200]
                        retry_after = resp.headers.get("Retry-After")
                        retryable = status == 429 or status >= 500
                except (aiohttp.ClientError, TimeoutError) as exc:
                    error, retryable = f"{exc.__class__.__name__}: {exc}"[:200], True
                if not retryable or attempt == self.max_attempts:
                    self._log(delivery_id, event, target, attempt, status, "failed", error)
                    log.warning("alert %s to %s failed after %d attempt(s): %s", event, mask_url(target.url), attempt, error)
                    return
                self._log(delivery_id, event, target, attempt, status, "retrying", error)
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                if retry_after and retry_after.isdigit():
                    delay = max(delay, float(retry_after))
                await asyncio.sleep(delay)
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()


class DrawdownState:
    """The equity peak and the drawdown levels alerted since it, kept across restarts.

    :meth:`update` takes each new equity and returns the levels it newly crosses; the new
    state is on disk before they are returned, so an alert is announced at most once
    whatever the moment a process is killed. The file (``drawdown_state.json`` in the
    memory folder, mode 600) is one small JSON object a person can read, rewritten in
    place with a single write of a fixed size: the peak moves on many bars, and a killed
    process loses none of them (the kernel has the bytes); it is fsynced when a level is
    crossed, before the alert goes out, and a power cut can only take newer peaks.

    >>> import tempfile
    >>> state = DrawdownState(tempfile.mkdtemp())
    >>> state.update(100.0, (0.05, 0.10)), state.update(94.0, (0.05, 0.10))
    ((0.0, []), (0.06000000000000005, [0.05]))
    >>> DrawdownState(state.path.parent).alerted     # what a restarted trader knows
    {0.05}
    """

    _SIZE = 256

    def __init__(self, memory_path: str | os.PathLike[str]) -> None:
        self.path = Path(memory_path) / DRAWDOWN_STATE
        self.peak = math.nan
        self.alerted: set[float] = set()
        self._dir_synced = False
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        try:
            data = json.loads(raw.decode().strip() or "{}")
            self.peak = float(data.get("peak", math.nan))
            self.alerted = {float(level) for level in data.get("alerted", [])}
        except (ValueError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            log.warning("%s is damaged (%s): drawdowns are measured from the next equity on", self.path, exc)
            self.peak, self.alerted = math.nan, set()

    def update(self, equity: float, levels: Sequence[float]) -> tuple[float, list[float]]:
        """``(drawdown, levels newly crossed)`` at ``equity``: a new peak clears the levels;
        each level is returned once per peak, after the state that says so is durable."""
        changed = False
        if not self.peak >= equity:
            self.peak, self.alerted, changed = equity, set(), True
        drawdown = 1 - equity / self.peak
        crossed = [level for level in levels if drawdown >= level and level not in self.alerted]
        self.alerted.update(crossed)
        if changed or crossed:
            self._save(sync=bool(crossed))
        return drawdown, crossed

    def _save(self, *, sync: bool) -> None:
        data = json.dumps({"peak": self.peak, "alerted": sorted(self.alerted)}).encode()
        if not self.path.parent.exists():
            ensure_private_dir(self.path.parent)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
        try:
            # One write at offset 0, padded to the file's size: the file is always one whole
            # state, never a new head on an old tail.
            os.pwrite(fd, data.ljust(max(self._SIZE, os.fstat(fd).st_size)), 0)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if sync and not self._dir_synced:  # the file's name is durable too
            fsync_dir(self.path.parent)
            self._dir_synced = True
