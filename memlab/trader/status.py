"""The trader's heartbeat: ``trader_status.json`` (pid, state, progress, memory use), for the monitor.

Written atomically at most once a second while the trader runs and once when it stops,
so the live monitor knows whether a trader is alive (the pid exists and the heartbeat
is fresh), what it trades, how far it got, and how much memory the process uses.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path
from typing import Any

from memlab.memory.durable import atomic_write_bytes

STATUS_FILE = "trader_status.json"


def rss_mb() -> float:
    """This process's resident memory in MB (current on Linux, peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if os.uname().sysname == "Darwin" else peak / 1024


class Heartbeat:
    """Writes the status file; ``beat`` is cheap to call on every bar."""

    def __init__(self, memory_path: Path, info: dict[str, Any], *, interval: float = 1.0) -> None:
        self.path = Path(memory_path) / STATUS_FILE
        self.interval = interval
        self.info = {"pid": os.getpid(), "started_at": time.time(), **info}
        self._last = 0.0

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.interval

    def beat(self, state: str = "running", *, force: bool = False, **progress: Any) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        payload = {**self.info, **progress, "state": state, "heartbeat_at": time.time(), "rss_mb": round(rss_mb(), 1)}
        atomic_write_bytes(self.path, (json.dumps(payload, indent=1, default=str) + "\n").encode())


def read_status(memory_path: Path) -> dict[str, Any] | None:
    """The last heartbeat, with ``alive``: its process exists and it beat in the last 5 s."""
    try:
        status = json.loads((Path(memory_path) / STATUS_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    alive = status.get("state") == "running" and time.time() - float(status.get("heartbeat_at", 0)) < 5.0
    if alive:
        try:
            os.kill(int(status["pid"]), 0)
        except (OSError, KeyError, ValueError):
            alive = False
    status["alive"] = alive
    return status
