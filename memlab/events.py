"""``EventBus``: the one way memlab says what happened — publishers name an event, subscribers hear it.

The agent (``decision``, ``adaptation``, ``lesson``, ``error``), the connection manager
(``fill``, ``drawdown`` and whatever the trader publishes), the health board
(``connection_lost``, ``connection_restored``) and the seed's connector each publish on an
:class:`EventBus`. Give them the same bus and one subscriber hears everything; the
outbound alerts (:meth:`memlab.webhooks.AlertSender.on_event`) are such a subscriber, and
turn the events that are alerts into chat text.

A subscriber is ``listener(kind, payload)``. One that raises is logged and skipped: the
others still hear the event and the publisher never sees the error, so a broken alert
sink cannot stop a trade. A listener may be ``async``: its coroutine runs on the event
loop it subscribed from (or the publisher's), and :meth:`EventBus.drain` waits for them.

>>> bus = EventBus()
>>> heard = []
>>> stop = bus.subscribe(lambda kind, payload: heard.append((kind, payload["text"])))
>>> _ = bus.subscribe(lambda kind, payload: 1 / 0, kinds=["lesson"])   # broken: logged, skipped
>>> bus.publish("lesson", {"text": "Learned: support at 64500 is strong"})
>>> stop()
>>> bus.publish("lesson", {"text": "unheard"})
>>> heard
[('lesson', 'Learned: support at 64500 is strong')]
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: ``listener(kind, payload)``; an ``async`` one is scheduled on an event loop.
Listener = Callable[[str, dict[str, Any]], "None | Awaitable[None]"]


@dataclass(frozen=True, eq=False)
class Subscription:
    """One subscriber: its listener, the kinds it hears (None: all), the loop it came from."""

    listener: Listener
    kinds: frozenset[str] | None
    loop: asyncio.AbstractEventLoop | None


class EventBus:
    """Synchronous publish/subscribe of ``(kind, payload)`` events (see the module docstring).

    ``publish`` calls each subscriber in the order they subscribed, in the publisher's
    thread; subscribing and publishing are safe from any thread.
    """

    def __init__(self, name: str = "events") -> None:
        self.name = name
        self._subscriptions: tuple[Subscription, ...] = ()  # replaced, never mutated: publish reads without a lock
        self._lock = threading.Lock()
        self._pending: set[asyncio.Future[Any] | concurrent.futures.Future[Any]] = set()

    def __repr__(self) -> str:
        return f"EventBus({self.name!r}, subscribers={len(self._subscriptions)})"

    def __len__(self) -> int:
        return len(self._subscriptions)

    def subscribe(self, listener: Listener, kinds: Iterable[str] | None = None) -> Callable[[], None]:
        """Call ``listener(kind, payload)`` on every event (only ``kinds``, if given).

        Returns a function that unsubscribes; :meth:`unsubscribe` does the same.
        """
        if not callable(listener):
            raise TypeError(f"a listener is called as listener(kind, payload), got {listener!r}")
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        entry = Subscription(listener, None if kinds is None else frozenset(kinds), loop)
        with self._lock:
            self._subscriptions = (*self._subscriptions, entry)
        return lambda: self._remove(entry)

    def unsubscribe(self, listener: Listener) -> None:
        """Stop calling ``listener`` (every subscription of it); unknown listeners are ignored."""
        with self._lock:
            self._subscriptions = tuple(s for s in self._subscriptions if s.listener != listener)

    def _remove(self, entry: Subscription) -> None:
        with self._lock:
            self._subscriptions = tuple(s for s in self._subscriptions if s is not entry)

    def publish(self, kind: str, payload: Mapping[str, Any]) -> None:
        """Tell every subscriber that ``kind`` happened; never raises for a subscriber's error."""
        body = dict(payload)
        for entry in self._subscriptions:
            if entry.kinds is not None and kind not in entry.kinds:
                continue
            try:
                out = entry.listener(kind, body)
                if inspect.isawaitable(out):
                    self._schedule(entry, kind, out)
            except Exception:  # a broken subscriber must not break the publisher or the others
                log.exception("%s: listener %r failed on a %s event", self.name, entry.listener, kind)

    def _schedule(self, entry: Subscription, kind: str, awaitable: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await awaitable
            except Exception:
                log.exception("%s: async listener %r failed on a %s event", self.name, entry.listener, kind)

        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        future: asyncio.Future[Any] | concurrent.futures.Future[Any]
        if running is not None:
            future = running.create_task(run())
        elif entry.loop is not None and not entry.loop.is_closed():
            future = asyncio.run_coroutine_threadsafe(run(), entry.loop)  # published from another thread
        else:
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            log.error("%s: async listener %r has no event loop to run on; %s event dropped",
                      self.name, entry.listener, kind)
            return
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Any) -> None:
        with self._lock:
            self._pending.discard(future)

    async def drain(self) -> None:
        """Wait until every async listener scheduled so far (on this loop, or from another
        thread) has finished."""
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                pending = [asyncio.wrap_future(f) if isinstance(f, concurrent.futures.Future) else f
                           for f in self._pending
                           if isinstance(f, concurrent.futures.Future) or f.get_loop() is loop]
            if not pending:
                return
            await asyncio.gather(*pending, return_exceptions=True)
