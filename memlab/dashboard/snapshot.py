"""Read-only snapshot of every store the trader writes, opened so the monitor never blocks it.

SQLite files are opened with ``file:...?mode=ro`` URIs (WAL readers never block the
writer); a source that does not exist yet is reported as missing, never invented.
Times are market times (the bar's) wherever the store has them: fills, orders, decisions
and the equity log; the journal, webhook requests and connection health are wall-clock
events and say so where they are shown.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from memlab.config import memory_path as _memory_path
from memlab.connectors.health import read_health
from memlab.trader.equity import EQUITY_DB, read_equity
from memlab.trader.status import read_status

PAPER_DB = "paper_broker.sqlite"
DECISIONS_DB = "decisions.sqlite"
ARCHIVAL_DB = "archival.sqlite"
CORE_MEMORY_FILE = "core_memory.json"
STALE_AFTER_S = 10.0


def _ro(path: Path) -> sqlite3.Connection | None:
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
    conn.execute("PRAGMA query_only=1")
    return conn


def _utc(seconds: Any) -> pd.Series:
    return pd.to_datetime(pd.Series(seconds, dtype="float64"), unit="s", utc=True)


def read_positions(root: Path) -> pd.DataFrame | None:
    """Open positions of the paper broker: symbol, entry price, quantity, mark, unrealised P&L."""
    conn = _ro(root / PAPER_DB)
    if conn is None:
        return None
    with conn:
        rows = conn.execute(
            "SELECT p.symbol, p.avg_price, p.amount, COALESCE(pr.close, p.avg_price), p.realized_pnl "
            "FROM positions p LEFT JOIN prices pr ON pr.symbol = p.symbol WHERE p.amount > 1e-12 ORDER BY p.symbol"
        ).fetchall()
    frame = pd.DataFrame(rows, columns=["symbol", "entry_price", "quantity", "mark_price", "realized_pnl"])
    frame["unrealized_pnl"] = (frame["mark_price"] - frame["entry_price"]) * frame["quantity"]
    return frame


def read_orders(root: Path, *, limit: int = 200) -> pd.DataFrame | None:
    """The newest ``limit`` orders (open, closed, canceled), newest first, via the rowid index."""
    conn = _ro(root / PAPER_DB)
    if conn is None:
        return None
    with conn:
        rows = conn.execute(
            "SELECT id, created_at, symbol, type, side, amount, price, status, filled, average, fee "
            "FROM orders ORDER BY id DESC LIMIT ?", (int(limit),)
        ).fetchall()
    frame = pd.DataFrame(rows, columns=["id", "time", "symbol", "type", "side", "amount", "price", "status",
                                        "filled", "average", "fee"])
    frame["time"] = _utc(frame["time"])
    return frame


def read_webhook_requests(root: Path, *, limit: int = 50) -> pd.DataFrame | None:
    """The newest inbound webhook requests (time, webhook, source, status, reason, alert id)."""
    conn = _ro(root / "webhooks.sqlite")
    if conn is None:
        return None
    with conn:
        rows = conn.execute("SELECT received_at, webhook, source, status, reason, alert_id FROM requests "
                            "ORDER BY seq DESC LIMIT ?", (int(limit),)).fetchall()
    frame = pd.DataFrame(rows, columns=["time", "webhook", "source", "status", "reason", "alert_id"])
    frame["time"] = _utc(frame["time"])
    return frame


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
    conn = _ro(root / PAPER_DB)
    if conn is None:
        return None
    with conn:
        rows = conn.execute("SELECT f.id, f.bar_time, o.symbol, o.side, f.price, f.amount, f.fee, f.pnl "
                            "FROM fills f JOIN orders o ON o.id = f.order_id WHERE f.id > ? ORDER BY f.id",
                            (int(after_id),)).fetchall()
    frame = pd.DataFrame(rows, columns=["id", "time", "symbol", "side", "price", "amount", "fee", "pnl"])
    frame["time"] = _utc(frame["time"])
    return frame


def read_balances(root: Path) -> dict[str, float] | None:
    conn = _ro(root / PAPER_DB)
    if conn is None:
        return None
    with conn:
        return {a: float(t) for a, t in conn.execute("SELECT asset, total FROM balances ORDER BY asset")}


def read_decisions(root: Path, *, limit: int = 50) -> pd.DataFrame | None:
    """The newest ``limit`` agent decisions, newest first: action, confidence, reason, evidence."""
    conn = _ro(root / DECISIONS_DB)
    if conn is None:
        return None
    with conn:
        rows = conn.execute(
            "SELECT d.id, d.decided_at, d.symbol, d.strategy, d.action, d.confidence, d.price, d.reason, d.meta, "
            "o.pnl FROM decisions d LEFT JOIN outcomes o ON o.decision_id = d.id ORDER BY d.id DESC LIMIT ?",
            (int(limit),),
        ).fetchall()
    frame = pd.DataFrame(rows, columns=["id", "time", "symbol", "strategy", "action", "confidence", "price",
                                        "reason", "evidence", "pnl"])
    frame["time"] = _utc(frame["time"])
    return frame


def read_core_memory(root: Path) -> dict[str, str] | None:
    """Core memory blocks (label → text) from ``core_memory.json``; None when absent or encrypted."""
    path = root / CORE_MEMORY_FILE
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        return None
    blocks = doc.get("blocks", doc) if isinstance(doc, dict) else {}
    out: dict[str, str] = {}
    for label, value in blocks.items():
        out[str(label)] = str(value.get("value", value)) if isinstance(value, dict) else str(value)
    return out


def search_archival(root: Path, query: str, *, limit: int = 10) -> pd.DataFrame | None:
    """Full-text search of archival memory (lessons), read-only."""
    conn = _ro(root / ARCHIVAL_DB)
    if conn is None:
        return None
    with conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(passages)")]
        text_col = "text" if "text" in cols else cols[1]
        if query.strip():
            terms = " ".join('"' + t.replace('"', "") + '"' for t in query.split())
            rows = conn.execute(f"SELECT p.rowid, p.{text_col} FROM passages_fts f JOIN passages p ON p.rowid = f.rowid "
                                "WHERE passages_fts MATCH ? ORDER BY p.rowid DESC LIMIT ?", (terms, limit)).fetchall()
        else:
            rows = conn.execute(f"SELECT rowid, {text_col} FROM passages ORDER BY rowid DESC LIMIT ?", (limit,)).fetchall()
    return pd.DataFrame(rows, columns=["id", "text"])


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
    trader: dict[str, Any] | None = None
    connections: dict[str, Any] | None = None
    webhooks: pd.DataFrame | None = None
    deliveries: dict[str, Any] | None = None
    equity: pd.DataFrame | None = None  #: the equity log (:func:`~memlab.trader.equity.read_equity`)

    @property
    def trader_live(self) -> bool:
        """True when the trader's heartbeat says it runs (its process exists and beat in the
        last seconds); without a heartbeat, when a store was written in the last ``STALE_AFTER_S`` s."""
        if self.trader is not None:
            return bool(self.trader.get("alive"))
        return self.last_write is not None and (self.read_at - self.last_write).total_seconds() < STALE_AFTER_S


def _last_write(root: Path) -> pd.Timestamp | None:
    newest = 0.0
    for name in (PAPER_DB, PAPER_DB + "-wal", DECISIONS_DB, DECISIONS_DB + "-wal", EQUITY_DB, EQUITY_DB + "-wal",
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

    def safe(name: str, fn: Any, *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except Exception as exc:  # noqa: BLE001 - shown to the user, one source at a time
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            return None

    lines: list[str] = []
    params = None
    if (root / "core_memory_updates.txt").exists() or (root / "parameter_updates.json").exists():
        from memlab.memory.crypto import MemoryCipher
        from memlab.memory.journal import CoreMemoryJournal
        from memlab.memory.parameters import ParameterStore

        cipher = safe("encryption key", MemoryCipher.from_env)
        entries = safe("journal", lambda: CoreMemoryJournal(root, cipher=cipher).tail(journal)) or []
        lines = [str(e) for e in entries]
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
        equity=safe("equity log", read_equity, root) if equity else None,
    )
