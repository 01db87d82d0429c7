"""Archival memory: free-text lessons ("Learned: ...") the agent writes and searches later.

One SQLite file, ``archival.sqlite`` under the memory path (mode 600, WAL,
``synchronous=FULL``: an insert is durable when it returns), with an FTS5 index for
word search (stemmed: "breakouts" finds "breakout"). Every insert is sealed in the audit
trail with a digest of its text. A ``key`` makes an insert idempotent, which is how the
agent writes each learned pattern once.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from memlab.errors import InvalidInputError
from memlab.memory.audit import AuditTrail, sha256_hex
from memlab.memory.durable import ensure_private_dir, open_store_db, read_store_db

ARCHIVAL_FILE = "archival.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS passages (
    id INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    agent_id TEXT NOT NULL,
    text TEXT NOT NULL,
    tags TEXT NOT NULL,
    key TEXT UNIQUE
);
CREATE VIRTUAL TABLE IF NOT EXISTS passages_fts USING fts5 (text, tokenize = 'porter unicode61');
"""

_COLUMNS = ["created_at", "agent_id", "text", "tags", "key"]


class ArchivalMemory:
    """Durable, searchable store of the agent's free-text lessons.

    >>> import tempfile
    >>> arch = ArchivalMemory(Path(tempfile.mkdtemp()))
    >>> i = arch.insert("Learned: Support at 64500 is strong", tags=["BTCUSDT"])
    >>> arch.search("support")["text"].tolist()
    ['Learned: Support at 64500 is strong']
    """

    def __init__(self, root: Path, *, audit: AuditTrail | None = None, agent_id: str = "trader_001") -> None:
        self.root = ensure_private_dir(Path(root))
        self.path = self.root / ARCHIVAL_FILE
        self.agent_id = agent_id
        self._audit = audit
        self._lock = threading.Lock()
        self._conn = open_store_db(self.path, _SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM passages").fetchone()[0])

    # -- writing -----------------------------------------------------------------
    def insert(
        self, text: str, *, tags: Sequence[str] = (), key: str | None = None, at: datetime | None = None
    ) -> int:
        """Store one passage (durable on return); returns its id. A known ``key`` is not stored twice."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(f"an archival passage is non-empty text, got {text!r}")
        text = text.strip()
        when = (at or datetime.now(UTC)).timestamp()
        tags_json = json.dumps([str(t) for t in tags])
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                if key is not None:
                    row = conn.execute("SELECT id FROM passages WHERE key = ?", (key,)).fetchone()
                    if row is not None:
                        conn.execute("ROLLBACK")
                        return int(row[0])
                cur = conn.execute(
                    "INSERT INTO passages (created_at, agent_id, text, tags, key) VALUES (?,?,?,?,?)",
                    (when, self.agent_id, text, tags_json, key),
                )
                pid = int(cur.lastrowid or 0)
                conn.execute("INSERT INTO passages_fts (rowid, text) VALUES (?, ?)", (pid, text))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        if self._audit is not None:
            self._audit.record(ARCHIVAL_FILE, "insert", id=pid, digest=sha256_hex(text.encode()))
        return pid

    # -- reading -----------------------------------------------------------------
    def has_key(self, key: str) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM passages WHERE key = ?", (key,)).fetchone() is not None

    def search(self, query: str, *, limit: int = 10) -> pd.DataFrame:
        """Passages containing every word of ``query``, best match first (bm25), indexed by id."""
        with self._lock:
            return _frame(_search_rows(self._conn, query, limit, "relevance"))

    def recent(self, n: int = 10) -> pd.DataFrame:
        """The last ``n`` passages, oldest first."""
        with self._lock:
            return _frame(_recent_rows(self._conn, n))


def _search_rows(conn: sqlite3.Connection, query: str, limit: int, order: str) -> list[tuple]:  # type: ignore[type-arg]
    words = re.findall(r"\w+", query or "")
    if not words:
        raise InvalidInputError(f"nothing to search for in {query!r}")
    if order not in ("relevance", "recent"):
        raise InvalidInputError(f"order must be 'relevance' or 'recent', not {order!r}")
    match = " ".join(f'"{w}"' for w in words)
    return conn.execute(
        "SELECT p.id, p.created_at, p.agent_id, p.text, p.tags, p.key FROM passages_fts f "
        "JOIN passages p ON p.id = f.rowid WHERE passages_fts MATCH ? "
        f"ORDER BY {'f.rank' if order == 'relevance' else 'p.id DESC'} LIMIT ?",
        (match, int(limit)),
    ).fetchall()


def _recent_rows(conn: sqlite3.Connection, n: int) -> list[tuple]:  # type: ignore[type-arg]
    rows = conn.execute(
        "SELECT id, created_at, agent_id, text, tags, key FROM passages ORDER BY id DESC LIMIT ?", (int(n),)
    ).fetchall()
    return rows[::-1]


def _frame(rows: list[tuple]) -> pd.DataFrame:  # type: ignore[type-arg]
    frame = pd.DataFrame(rows, columns=["id", *_COLUMNS]).set_index("id")
    frame["created_at"] = pd.to_datetime(frame["created_at"].astype(float), unit="s", utc=True)
    frame["tags"] = [json.loads(t) for t in frame["tags"]]
    return frame


class ArchivalReader:
    """Archival memory read from another process (the monitor, ``memlab memory verify``):
    each call opens ``archival.sqlite`` read-only, reads, closes.

    A missing store raises :class:`FileNotFoundError`; a damaged one
    :class:`~memlab.memory.errors.CorruptMemoryError`. Neither ever creates or changes it.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> ArchivalMemory(root).insert("Learned: Support at 64500 is strong")
    1
    >>> ArchivalReader(root).search("supports", order="recent")["text"].tolist()
    ['Learned: Support at 64500 is strong']
    """

    name = "archival memory"

    def __init__(self, root: str | Path, *, timeout: float = 10.0) -> None:
        self.path = Path(root) / ARCHIVAL_FILE
        self.timeout = timeout

    def search(self, query: str, *, limit: int = 10, order: str = "relevance") -> pd.DataFrame:
        """Passages containing every word of ``query`` (stemmed), indexed by id: best match
        first (``order="relevance"``, bm25) or newest first (``"recent"``)."""
        with read_store_db(self.path, timeout=self.timeout, name=self.name) as conn:
            return _frame(_search_rows(conn, query, limit, order))

    def recent(self, n: int = 10) -> pd.DataFrame:
        """The last ``n`` passages, oldest first, indexed by id."""
        with read_store_db(self.path, timeout=self.timeout, name=self.name) as conn:
            return _frame(_recent_rows(conn, n))

    def texts(self) -> dict[int, str]:
        """Every passage's text by id (what the audit trail's digests cover)."""
        with read_store_db(self.path, timeout=self.timeout, name=self.name) as conn:
            return dict(conn.execute("SELECT id, text FROM passages").fetchall())
