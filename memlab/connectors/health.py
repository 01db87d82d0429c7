"""Health of every connection: state, latency, errors; written to ``connections.json`` for the monitor.

A connection is ``connecting`` until its first success, then ``up``; a retryable
failure makes it ``retrying`` (with the attempt), exhausted retries make it ``down``
(a lost connection), and the next success brings it back ``up``. The board publishes
``connection_lost`` when a connection goes ``down`` and ``connection_restored`` when it is
back ``up`` — once per outage, however often it retries in between — on its
:class:`~memlab.events.EventBus`, which is how lost connections become alerts.

The board is written atomically to ``connections.json`` in the memory folder on each
change of state and at most once a second otherwise, with the writer's pid, so the live
monitor (another process) shows each connection and knows whether its writer is alive.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from memlab.events import EventBus, Listener
from memlab.memory.durable import atomic_write_bytes, ensure_private_dir

log = logging.getLogger(__name__)

HEALTH_FILE = "connections.json"
STATES = ("connecting", "up", "retrying", "down", "closed")


@dataclass
class ConnectionHealth:
    """One connection's health; times are epoch seconds, latencies milliseconds."""

    name: str
    kind: str
    venue: str
    state: str = "connecting"
    since: float = 0.0
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    errors: int = 0
    consecutive_errors: int = 0
    reconnects: int = 0
    calls: int = 0
    latency_ms: float | None = None
    latency_avg_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class HealthBoard:
    """The health of all of a :class:`~memlab.connectors.ConnectionManager`'s connections;
    ``events`` is the bus its ``connection_lost`` / ``connection_restored`` go to (its own if None)."""

    def __init__(self, path: Path | None = None, *, write_interval: float = 1.0, events: EventBus | None = None) -> None:
        self.path = None if path is None else ensure_private_dir(Path(path)) / HEALTH_FILE
        self.write_interval = write_interval
        self._items: dict[str, ConnectionHealth] = {}
        self.events = events if events is not None else EventBus("health")
        self._lost: set[str] = set()  # down since it was last up: announced once per outage
        self._lock = threading.Lock()
        self._written = 0.0
        self._dirty = False

    def __getitem__(self, name: str) -> ConnectionHealth:
        return self._items[name]

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {name: h.as_dict() for name, h in self._items.items()}

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """``listener(event, payload)`` for ``connection_lost`` / ``connection_restored``
        (an alias of :meth:`EventBus.subscribe <memlab.events.EventBus.subscribe>` on :attr:`events`)."""
        return self.events.subscribe(listener)

    def register(self, name: str, kind: str, venue: str) -> ConnectionHealth:
        with self._lock:
            health = ConnectionHealth(name=name, kind=kind, venue=venue, since=time.time())
            self._items[name] = health
            self._lost.discard(name)
        self._write(force=True)
        return health

    def _set_state(self, health: ConnectionHealth, state: str) -> None:
        previous = health.state
        if previous == state:
            return
        health.state, health.since = state, time.time()
        if state == "up" and previous in ("retrying", "down"):
            health.reconnects += 1
        level = logging.WARNING if state in ("down", "retrying") else logging.INFO if previous in ("down", "retrying") else logging.DEBUG
        log.log(level, "connection %r: %s -> %s", health.name, previous, state)
        self._write(force=True)
        about = {"name": health.name, "kind": health.kind, "venue": health.venue}
        if state == "down" and health.name not in self._lost:
            self._lost.add(health.name)
            self.events.publish("connection_lost", {**about, "error": health.last_error, "errors": health.errors})
        elif state == "up" and health.name in self._lost:
            self._lost.discard(health.name)
            self.events.publish("connection_restored", {**about, "previous": previous})
        elif state == "closed":
            self._lost.discard(health.name)

    def success(self, name: str, latency: float) -> None:
        health = self._items[name]
        ms = latency * 1000.0
        with self._lock:
            health.calls += 1
            health.last_success = time.time()
            health.consecutive_errors = 0
            health.latency_ms = round(ms, 3)
            avg = health.latency_avg_ms
            health.latency_avg_ms = round(ms if avg is None else 0.9 * avg + 0.1 * ms, 3)
        if health.state != "up":
            self._set_state(health, "up")
        else:
            self._write()

    def failure(self, name: str, exc: BaseException, *, retrying: bool) -> None:
        health = self._items[name]
        with self._lock:
            health.calls += 1
            health.errors += 1
            health.consecutive_errors += 1
            health.last_error = f"{type(exc).__name__}: {str(exc)[:300]}"
            health.last_error_at = time.time()
        self._set_state(health, "retrying" if retrying else "down")
        self._write()

    def closed(self, name: str) -> None:
        health = self._items.get(name)
        if health is not None:
            self._set_state(health, "closed")

    def _write(self, *, force: bool = False) -> None:
        if self.path is None:
            return
        now = time.monotonic()
        if not force and now - self._written < self.write_interval:
            self._dirty = True
            return
        payload = {"pid": os.getpid(), "written_at": time.time(), "connections": self.snapshot()}
        try:
            atomic_write_bytes(self.path, (json.dumps(payload, indent=1) + "\n").encode())
        except OSError:
            log.exception("could not write %s", self.path)
        self._written, self._dirty = now, False

    def flush(self) -> None:
        """Write the board now if anything changed since the last write."""
        if self._dirty:
            self._write(force=True)


def read_health(memory_path: Path) -> dict[str, Any] | None:
    """What the last writer left in ``connections.json`` (None when there is none)."""
    try:
        return json.loads((Path(memory_path) / HEALTH_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
