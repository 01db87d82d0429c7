"""Read-only snapshot of every store the trader writes, through each store's own read API.

Each store owns its file and its SQL and offers a reader (:class:`~memlab.connectors.paper_broker.PaperBookReader`,
:class:`~memlab.memory.decisions.DecisionReader`, :class:`~memlab.memory.archival.ArchivalReader`,
:class:`~memlab.webhooks.inbound.WebhookLogReader`, :func:`~memlab.memory.core_memory.read_core_memory`,
:func:`~memlab.trader.equity.read_equity`); this module only names their columns for display.
Readers open SQLite files read-only (WAL readers never block the writer); a source that does
not exist yet is reported as missing (None), never invented, and a damaged one is named in
:attr:`Snapshot.errors` while the others are still shown.
Times are market times (the bar's) wherever the store has them: fills, orders, decisions
and the equity log; the journal, webhook requests and connection health are wall-clock
events and say so where they are shown.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from memlab.config import memory_path as _memory_path
from memlab.connectors.health import read_health
from memlab.connectors.paper_broker import PAPER_DB, PaperBookReader
from memlab.memory.archival import ArchivalReader
from memlab.memory.core_memory import read_core_memory as _read_blocks
from memlab.memory.decisions import DECISIONS_FILE, DecisionReader
from memlab.memory.errors import EncryptionKeyError
from memlab.trader.equity import EQUITY_DB, read_equity
from memlab.trader.status import read_status
from memlab.webhooks.inbound import WebhookLogReader

STALE_AFTER_S = 10.0
#: How long a read waits for a store's writer before the source is reported unreadable.
READ_TIMEOUT_S = 1.0

T = TypeVar("T")


def _unless_missing(read: Callable[[], T]) -> T | None:
    """``read()``, or None when its store does not exist yet."""
    try:
        return read()
    except FileNotFoundError:
        return None


def read_positions(root: Path) -> pd.DataFrame | None:
    """Open positions of the paper broker: symbol, entry price, quantity, mark, unrealised P&L."""
    return _unless_missing(PaperBookReader(root, timeout=READ_TIMEOUT_S).positions)


def read_orders(root: Path, *, limit: int = 200) -> pd.DataFrame | None:
    """The newest ``limit`` orders (open, closed, canceled), newest first."""
    return _unless_missing(lambda: PaperBookReader(root, timeout=READ_TIMEOUT_S).orders(limit))


def read_webhook_requests(root: Path, *, limit: int = 50) -> pd.DataFrame | None:
    """The newest inbound webhook requests (time, webhook, source, status, reason, alert id)."""
    frame = _unless_missing(lambda: WebhookLogReader(root, timeout=READ_TIMEOUT_S).requests(limit))
    return None if frame is None else frame.rename(columns={"received_at": "time"})


def read_deliveries(root: Path) -> dict[str, Any] | None:
    """Outbound alert deliveries: how many were delivered and failed, and the last failure."""
    path = root / "alert_deliveries.jsonl"
    if not path.exists():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    failed = [r for r in records if r.get("outcome") in ("failed", "dropped")]
    return {"delivered": sum(r.get("outcome") == "delivered" for r in records), "failed": len(failed),
            "last_failure": failed[-1] if failed else None}


def read_fills(root: Path, *, after_id: int = 0) -> pd.DataFrame | None:
    """Fills with id > ``after_id``, oldest first: time, price, amount, fee, realised P&L
    (sells). A refresh passes the last id it has, so it reads only what is new."""
    return _unless_missing(lambda: PaperBookReader(root, timeout=READ_TIMEOUT_S).fills(after_id=after_id))


def read_decisions_after(root: Path, after_id: int = 0, *, window: int = 256) -> pd.DataFrame | None:
    """Decisions with id > ``after_id``, oldest first, so a refresh reads what is new.

    :class:`~memlab.memory.decisions.DecisionReader` reads newest first with a limit, so
    the window grows x4 until it reaches ``after_id``: a refresh that finds a few new
    decisions reads one window of ``window`` rows, however long the history."""
    reader = DecisionReader(root, timeout=READ_TIMEOUT_S)
    limit = max(1, int(window))
    while True:
        frame = _unless_missing(lambda n=limit: reader.recent(n))  # type: ignore[misc]
        if frame is None:
            return None
        if len(frame) < limit or int(frame["id"].min()) <= after_id:
            break
        limit *= 4
    frame = frame[frame["id"] > after_id].iloc[::-1].reset_index(drop=True)
    return frame.rename(columns={"decided_at": "time", "meta": "evidence"})


_protections_lock = threading.Lock()
_protections_read: dict[Path, tuple[tuple[int, int], Any]] = {}  # journal -> ((mtime, size), ProtectionLog)


def read_protections(root: Path, cipher: Any = None) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """Protection starts in the journal (:meth:`~memlab.dashboard.protections.ProtectionLog.starts`:
    market time, protection, bars, reason, entries blocked) and the cooldown's blocks
    (``{"blocked": n, "time": market time, "note": what the newest says}``); None without a journal.

    Starts can be far back (SKIP lines follow them every bar), so every line counts; the
    journal is append-only, so each line is parsed once per process: a change of the file
    parses only the lines after those taken (the journal's own reader, asked for its newest
    lines), shared by every page of a server and every refresh. A file that shrank (replaced)
    is read again from its start."""
    from memlab.dashboard.protections import ProtectionLog, cooldown_note
    from memlab.memory.journal import JOURNAL_FILE, MemoryJournal

    path = root / JOURNAL_FILE
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    key = (stat.st_mtime_ns, stat.st_size)
    with _protections_lock:
        known = _protections_read.get(path)
        if known is None or known[0] != key:
            scan = known[1] if known is not None and stat.st_size >= known[0][1] else ProtectionLog()
            journal = MemoryJournal(root, cipher=cipher)
            if scan.lines == 0:
                new = journal.entries()
            else:
                wanted = 64
                while True:  # enough of the newest lines to reach the last one taken
                    new = journal.tail(wanted)
                    if len(new) < wanted or new[0].line <= scan.lines + 1:
                        break
                    wanted *= 4
            scan.add([e for e in new if e.line > scan.lines])
            _protections_read[path] = known = (key, scan)
        scan = known[1]
        last = scan.cooldown_last
        cooldown = {"blocked": scan.cooldown_blocked, "time": None if last is None else pd.Timestamp(last.time),
                    "note": None if last is None else cooldown_note(last)}
        return scan.starts(), cooldown


def read_balances(root: Path) -> dict[str, float] | None:
    return _unless_missing(PaperBookReader(root, timeout=READ_TIMEOUT_S).balances)


def read_decisions(root: Path, *, limit: int = 50) -> pd.DataFrame | None:
    """The newest ``limit`` agent decisions, newest first: action, confidence, reason, evidence."""
    frame = _unless_missing(lambda: DecisionReader(root, timeout=READ_TIMEOUT_S).recent(limit))
    return None if frame is None else frame.rename(columns={"decided_at": "time", "meta": "evidence"})


def read_core_memory(root: Path) -> dict[str, str] | None:
    """Core memory blocks (label → text); None when absent or encrypted."""
    try:
        blocks = _read_blocks(root)
    except (FileNotFoundError, EncryptionKeyError):
        return None
    return {label: block.value for label, block in blocks.items()}


def search_archival(root: Path, query: str, *, limit: int = 10) -> pd.DataFrame | None:
    """Archival memory (lessons), newest first: the newest ``limit``, or those containing
    every word of ``query``."""
    reader = ArchivalReader(root, timeout=READ_TIMEOUT_S)
    if query.strip():
        found = _unless_missing(lambda: reader.search(query, limit=limit, order="recent"))
    else:
        found = _unless_missing(lambda: reader.recent(limit).iloc[::-1])
    return None if found is None else found.reset_index()[["id", "text"]]


@dataclass
class Snapshot:
    """Everything the monitor shows, read once. ``None`` means the source does not exist yet."""

    memory_path: Path
    read_at: pd.Timestamp
    last_write: pd.Timestamp | None
    positions: pd.DataFrame | None
    orders: pd.DataFrame | None
    fills: pd.DataFrame | None
    balances: dict[str, float] | None
    decisions: pd.DataFrame | None
    journal: list[str]
    parameters: pd.DataFrame | None
    core_memory: dict[str, str] | None
    errors: list[str] = field(default_factory=list)
    #: source name -> why it could not be read (damaged, locked...): shown, the others still are
    failed: dict[str, str] = field(default_factory=dict)
    trader: dict[str, Any] | None = None
    connections: dict[str, Any] | None = None
    webhooks: pd.DataFrame | None = None
    deliveries: dict[str, Any] | None = None
    equity: pd.DataFrame | None = None  #: the equity log (:func:`~memlab.trader.equity.read_equity`)
    #: protection starts from the journal (:func:`read_protections`); None without a journal
    protections: pd.DataFrame | None = None
    #: entries the cooldown blocked: ``{"blocked": n, "time": market time, "note": ...}`` of the newest
    cooldown: dict[str, Any] | None = None
    exists: bool = True  #: whether the memory folder exists at all
    #: the live app's incremental reads: decisions new since its last read, and the orders
    #: behind its new fills (to tell a stop from an exit and find the decision that placed it)
    new_decisions: pd.DataFrame | None = None
    link_orders: pd.DataFrame | None = None

    def fail(self, name: str, exc: BaseException) -> None:
        """Record that source ``name`` could not be read (the live app's incremental reads)."""
        self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
        self.failed[name] = f"{type(exc).__name__}: {exc}"

    @property
    def trader_live(self) -> bool:
        """True when the trader's heartbeat says it runs (its process exists and beat in the
        last seconds); without a heartbeat, when a store was written in the last ``STALE_AFTER_S`` s."""
        if self.trader is not None:
            return bool(self.trader.get("alive"))
        return self.last_write is not None and (self.read_at - self.last_write).total_seconds() < STALE_AFTER_S


def _last_write(root: Path) -> pd.Timestamp | None:
    newest = 0.0
    for name in (PAPER_DB, PAPER_DB + "-wal", DECISIONS_FILE, DECISIONS_FILE + "-wal", EQUITY_DB, EQUITY_DB + "-wal",
                 "core_memory_updates.txt", "parameter_updates.json", "trader_status.json", "connections.json"):
        try:
            newest = max(newest, os.stat(root / name).st_mtime)
        except OSError:
            continue
    return pd.Timestamp(newest, unit="s", tz="UTC") if newest else None


def read_snapshot(memory_path: str | os.PathLike[str] | None = None, *, orders: int = 200,
                  decisions: int = 50, journal: int = 30, fills: bool = True, equity: bool = True) -> Snapshot:
    """Read every store once, read-only. Each source failing is reported in ``errors``, not hidden.
    ``fills=False`` / ``equity=False`` skip the full fill history / equity log (the live app
    reads both incrementally instead)."""
    root = Path(_memory_path(memory_path))
    errors: list[str] = []
    failed: dict[str, str] = {}

    def safe(name: str, fn: Any, *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except Exception as exc:  # noqa: BLE001 - shown to the user, one source at a time
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            failed[name] = f"{type(exc).__name__}: {exc}"
            return None

    lines: list[str] = []
    params = None
    protections = None
    if (root / "core_memory_updates.txt").exists() or (root / "parameter_updates.json").exists():
        from memlab.memory.crypto import MemoryCipher
        from memlab.memory.journal import MemoryJournal
        from memlab.memory.parameters import ParameterStore

        cipher = safe("encryption key", MemoryCipher.from_env)
        entries = safe("journal", lambda: MemoryJournal(root, cipher=cipher).tail(journal)) or []
        lines = [str(e) for e in entries]
        if "journal" not in failed:
            protections = safe("journal", read_protections, root, cipher)
        if (root / "parameter_updates.json").exists():
            params = safe("parameters", lambda: ParameterStore(root, cipher=cipher).history())
    return Snapshot(
        memory_path=root, read_at=pd.Timestamp(time.time(), unit="s", tz="UTC"), last_write=_last_write(root),
        positions=safe("positions", read_positions, root), orders=safe("orders", read_orders, root, limit=orders),
        fills=safe("fills", read_fills, root) if fills else None, balances=safe("balances", read_balances, root),
        decisions=safe("decisions", read_decisions, root, limit=decisions), journal=lines, parameters=params,
        core_memory=safe("core memory", read_core_memory, root), errors=errors,
        trader=safe("trader status", read_status, root), connections=safe("connections", read_health, root),
        webhooks=safe("webhooks", read_webhook_requests, root), deliveries=safe("alert deliveries", read_deliveries, root),
        equity=safe("equity log", read_equity, root) if equity else None, failed=failed, exists=root.is_dir(),
        protections=None if protections is None else protections[0],
        cooldown=None if protections is None else protections[1],
    )
