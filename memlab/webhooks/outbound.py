"""Outbound alerts: fills, adaptations, lessons, drawdowns and lost connections to chat tools.

:class:`AlertSender` queues each alert and returns at once; a background thread posts
it to every target (Slack, Discord or plain JSON bodies), retrying connection errors,
timeouts, 429 and 5xx with exponential backoff and jitter. A delivery is retried only
after a failed attempt and carries an ``X-Memlab-Delivery`` id, so a receiver never
gets the same alert twice as two deliveries. Each attempt is a line in the delivery log
(target URLs masked: chat webhook URLs are secrets).
"""

from __future__ import annotations

import asyncio
import json
import logging
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
from memlab.memory.durable import append_durable, ensure_private_dir

log = logging.getLogger(__name__)

DELIVERY_LOG = "alert_deliveries.jsonl"
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
