"""The decision store: every decision with its market features and, later, its outcome.

One SQLite file (``decisions.sqlite``, WAL mode, ``synchronous=FULL``) under the memory
path. A decision is committed before :meth:`DecisionStore.record` returns, so a crash,
even ``kill -9``, loses nothing that was acknowledged. Reasons and notes are searchable
with FTS5; :meth:`DecisionStore.nearest` finds the past decisions whose features are
closest to a new situation. Each row carries a hash chained to the row before it, and
each commit anchors the chain head in the audit trail, so edits to past decisions are
detected by ``memlab memory verify``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memlab.errors import InvalidInputError
from memlab.memory.audit import AuditTrail
from memlab.memory.durable import ensure_private_dir, open_store_db, read_store_db, relax_sqlite
from memlab.memory.errors import CorruptMemoryError
from memlab.memory.similarity import FeatureIndex

DECISIONS_FILE = "decisions.sqlite"
SCHEMA_VERSION = "1"
GENESIS = bytes(32)
_SEP = b"\x1f"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    decided_at REAL NOT NULL,
    agent_id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    strategy TEXT NOT NULL,
    action TEXT NOT NULL,
    confidence REAL NOT NULL,
    price REAL,
    reason TEXT NOT NULL,
    notes TEXT NOT NULL,
    features BLOB NOT NULL,
    key TEXT UNIQUE,
    meta TEXT NOT NULL,
    chain BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_time ON decisions (decided_at);
CREATE TABLE IF NOT EXISTS outcomes (
    seq INTEGER PRIMARY KEY,
    decision_id INTEGER NOT NULL UNIQUE REFERENCES decisions (id),
    closed_at REAL NOT NULL,
    pnl REAL NOT NULL,
    return_pct REAL,
    notes TEXT NOT NULL,
    chain BLOB NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS decisions_fts USING fts5 (
    reason, notes, tokenize = 'porter unicode61'
);
"""

_COLUMNS = (
    "id",
    "decided_at",
    "agent_id",
    "symbol",
    "strategy",
    "action",
    "confidence",
    "price",
    "reason",
    "notes",
    "features",
    "key",
    "meta",
    "closed_at",
    "pnl",
    "return_pct",
    "outcome_notes",
)
_SELECT = (
    "SELECT d.id, d.decided_at, d.agent_id, d.symbol, d.strategy, d.action, d.confidence, "
    "d.price, d.reason, d.notes, d.features, d.key, d.meta, o.closed_at, o.pnl, o.return_pct, "
    "o.notes FROM decisions d LEFT JOIN outcomes o ON o.decision_id = d.id"
)


def _timestamp(value: datetime | str | pd.Timestamp | None) -> float:
    if value is None:
        return datetime.now(UTC).timestamp()
    ts = pd.Timestamp(value)
    if ts is pd.NaT:
        raise InvalidInputError("time must not be NaT")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.timestamp()


#: Training tags each experience with ``meta.sample``: ``"in-sample"`` (bars its parameters
#: were chosen on) or ``"out-of-sample"`` (a walk-forward test window).
IN_SAMPLE = "in-sample"
OUT_OF_SAMPLE = "out-of-sample"
IN_SAMPLE_SQL = "coalesce(json_extract(d.meta, '$.sample') = 'in-sample', 0)"


def _as_of_seconds(value: datetime | str | pd.Timestamp | float | int) -> float:
    """A point in time as epoch seconds (numbers are taken as epoch seconds already)."""
    if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
        number = float(value)
        if math.isnan(number):
            raise InvalidInputError("as_of must be a time, got NaN")
        return number
    return _timestamp(value)


def _utc_times(seconds: np.ndarray) -> pd.DatetimeIndex:
    """Epoch seconds (NaN for none) to a UTC DatetimeIndex, without per-element Python."""
    missing = np.isnan(seconds)
    micros = np.where(missing, 0.0, np.round(seconds * 1e6)).astype(np.int64)
    micros[missing] = np.iinfo(np.int64).min  # NaT
    return pd.DatetimeIndex(micros.view("datetime64[us]")).tz_localize("UTC")


def _finite(name: str, value: Any, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidInputError(f"{name} must be finite, got {value!r}")
    return number


@dataclass(frozen=True)
class Outcome:
    """What a decision led to: P&L in account currency, return in percent (+1.1 = +1.1 %)."""

    pnl: float
    return_pct: float | None = None
    closed_at: datetime | str | None = None
    notes: str = ""


@dataclass(frozen=True)
class Decision:
    """A decision as the agent made it.

    ``features`` is a mapping of feature name to value (see :mod:`memlab.features`) or a
    sequence in the store's feature order. ``key`` makes recording idempotent: a
    decision whose key is already stored is not stored again. ``outcome`` may be given
    at once (as training does) or attached later with :meth:`DecisionStore.close_outcome`.
    """

    symbol: str
    strategy: str
    action: str
    confidence: float
    reason: str = ""
    features: Mapping[str, float] | Sequence[float] = ()
    agent_id: str = "trader_001"
    decided_at: datetime | str | None = None
    price: float | None = None
    notes: str = ""
    key: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    outcome: Outcome | None = None


@dataclass(frozen=True)
class StoredDecision(Decision):
    """A decision read back from the store, with its id and UTC time."""

    id: int = field(default=0, kw_only=True)


@dataclass(frozen=True)
class Neighbourhood:
    """Nearest past decisions as arrays (nearest first); NaN where an outcome is unknown.

    Times are epoch seconds (UTC); ``return_pct`` is in percent.
    """

    ids: np.ndarray
    distance: np.ndarray
    decided_at: np.ndarray
    action: list[str]
    confidence: np.ndarray
    closed_at: np.ndarray
    pnl: np.ndarray
    return_pct: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def closed(self) -> np.ndarray:
        return ~np.isnan(self.pnl)

    @classmethod
    def empty(cls) -> Neighbourhood:
        nothing = np.empty(0)
        return cls(np.empty(0, np.int64), nothing, nothing, [], nothing, nothing, nothing, nothing)


@dataclass
class _Row:
    decided_at: float
    agent_id: str
    symbol: str
    strategy: str
    action: str
    confidence: float
    price: float | None
    reason: str
    notes: str
    features: bytes
    key: str | None
    meta: str
    outcome: tuple[float, float, float | None, str] | None


def _decision_payload(id_: int, r: _Row) -> bytes:
    return _SEP.join(
        [
            str(id_).encode(),
            repr(r.decided_at).encode(),
            r.agent_id.encode(),
            r.symbol.encode(),
            r.strategy.encode(),
            r.action.encode(),
            repr(r.confidence).encode(),
            repr(r.price).encode(),
            r.reason.encode(),
            r.notes.encode(),
            r.features,
            repr(r.key).encode(),
            r.meta.encode(),
        ]
    )


def _outcome_payload(
    seq: int, decision_id: int, closed_at: float, pnl: float, return_pct: float | None, notes: str
) -> bytes:
    return _SEP.join(
        [
            str(seq).encode(),
            str(decision_id).encode(),
            repr(closed_at).encode(),
            repr(pnl).encode(),
            repr(return_pct).encode(),
            notes.encode(),
        ]
    )


def _chain(prev: bytes, payload: bytes) -> bytes:
    return hashlib.sha256(prev + payload).digest()


class DecisionStore:
    """Durable, searchable store of decisions and outcomes.

    >>> import tempfile
    >>> store = DecisionStore(Path(tempfile.mkdtemp()))
    >>> i = store.record(Decision("BTCUSDT", "momentum", "BUY", 0.85, reason="breakout on volume",
    ...                           features={"ret_5": 1.2, "volatility": 2.5}))
    >>> store.close_outcome(i, pnl=500.0, return_pct=0.77)
    >>> store.search("volume").loc[i, "pnl"]
    np.float64(500.0)
    """

    def __init__(self, root: Path, *, audit: AuditTrail | None = None) -> None:
        self.root = ensure_private_dir(Path(root))
        self.path = self.root / DECISIONS_FILE
        self._audit = audit
        self._lock = threading.RLock()
        self._conn = open_store_db(self.path, _SCHEMA, pragmas=("busy_timeout=30000",), check=self._check_schema)
        self._index: FeatureIndex | None = None
        self._index_outcome_seq = 0
        self._data_version = -1

    # -- set-up ------------------------------------------------------------------
    def _check_schema(self, conn: sqlite3.Connection) -> None:
        """Stamp a new store with :data:`SCHEMA_VERSION`; refuse one of another version."""
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
            )
        elif row[0] != SCHEMA_VERSION:
            raise CorruptMemoryError(
                self.path, f"schema version {row[0]} is not the supported {SCHEMA_VERSION}"
            )

    @property
    def feature_names(self) -> list[str] | None:
        """The feature order fixed by the first decision stored (None before that)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key='feature_names'").fetchone()
        return None if row is None else json.loads(row[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> DecisionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------
    def record(self, decision: Decision) -> int:
        """Store one decision (committed on return); returns its id."""
        return self.record_many([decision])[0]

    def record_many(
        self, decisions: Iterable[Decision], *, batch_size: int | None = None
    ) -> list[int]:
        """Store decisions; returns their ids in order.

        Every decision is validated before anything is written. With ``batch_size``
        None all go in one transaction (all or nothing); otherwise one commit per batch.
        A decision whose ``key`` is already stored is skipped and its existing id returned.
        """
        items = list(decisions)
        if not items:
            return []
        with self._lock:
            names = self.feature_names
            rows: list[_Row] = []
            for n, decision in enumerate(items):
                row, names = self._validate(decision, names, n)
                rows.append(row)
            step = batch_size or len(rows)
            ids: list[int] = []
            for lo in range(0, len(rows), step):
                ids.extend(self._write_batch(rows[lo : lo + step], names))
            return ids

    def _validate(self, d: Decision, names: list[str] | None, n: int) -> tuple[_Row, list[str]]:
        where = f"decision #{n} ({d.symbol}/{d.strategy})"
        for attr in ("symbol", "strategy", "action", "agent_id"):
            value = getattr(d, attr)
            if not isinstance(value, str) or not value.strip():
                raise InvalidInputError(f"{where}: {attr} must be non-empty text, got {value!r}")
        confidence = _finite(f"{where}: confidence", d.confidence)
        assert confidence is not None
        if not 0.0 <= confidence <= 1.0:
            raise InvalidInputError(f"{where}: confidence must be in [0, 1], got {confidence}")
        if isinstance(d.features, Mapping):
            given = list(d.features.keys())
            if names is None:
                names = [str(k) for k in given]
            elif set(given) != set(names):
                raise InvalidInputError(
                    f"{where}: features {sorted(given)} differ from this store's {names}"
                )
            values = [d.features[k] for k in names]
        else:
            values = list(d.features)
            if names is None:
                names = [f"f{i}" for i in range(len(values))]
            elif len(values) != len(names):
                raise InvalidInputError(
                    f"{where}: {len(values)} feature values, this store holds {len(names)} ({names})"
                )
        if not names:
            raise InvalidInputError(f"{where}: a decision needs at least one market feature")
        vector = np.array(
            [_finite(f"{where}: feature {k}", v) for k, v in zip(names, values, strict=True)],
            dtype=np.float32,
        )
        outcome = None
        if d.outcome is not None:
            o = d.outcome
            outcome = (
                _timestamp(o.closed_at),
                _finite(f"{where}: pnl", o.pnl),
                _finite(f"{where}: return_pct", o.return_pct, optional=True),
                str(o.notes or ""),
            )
        try:
            meta = json.dumps(dict(d.meta), sort_keys=True, allow_nan=False)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{where}: meta must be JSON-serialisable") from None
        row = _Row(
            decided_at=_timestamp(d.decided_at),
            agent_id=d.agent_id,
            symbol=d.symbol,
            strategy=d.strategy,
            action=d.action.upper(),
            confidence=confidence,
            price=_finite(f"{where}: price", d.price, optional=True),
            reason=str(d.reason or ""),
            notes=str(d.notes or ""),
            features=vector.tobytes(),
            key=d.key,
            meta=meta,
            outcome=outcome,  # type: ignore[arg-type]
        )
        return row, names

    def _write_batch(self, rows: list[_Row], names: list[str]) -> list[int]:
        if self._audit is not None:
            self._audit.check_writable()  # wrong key, or a trail deleted under us: write nothing
        conn = self._conn
        relax_sqlite(conn, self.path, self._lock)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if self.feature_names is None:
                conn.execute("INSERT INTO meta VALUES ('feature_names', ?)", (json.dumps(names),))
            existing: dict[str, int] = {}
            keys = [r.key for r in rows if r.key is not None]
            for lo in range(0, len(keys), 500):
                chunk = keys[lo : lo + 500]
                marks = ",".join("?" * len(chunk))
                existing.update(
                    conn.execute(
                        f"SELECT key, id FROM decisions WHERE key IN ({marks})", chunk
                    ).fetchall()
                )
            last = conn.execute(
                "SELECT id, chain FROM decisions ORDER BY id DESC LIMIT 1"
            ).fetchone()
            next_id, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
            olast = conn.execute(
                "SELECT seq, chain FROM outcomes ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            next_seq, oprev = (olast[0] + 1, olast[1]) if olast else (1, GENESIS)
            ids: list[int] = []
            d_rows, fts_rows, o_rows = [], [], []
            for r in rows:
                if r.key is not None and r.key in existing:
                    ids.append(existing[r.key])
                    continue
                prev = _chain(prev, _decision_payload(next_id, r))
                d_rows.append(
                    (
                        next_id,
                        r.decided_at,
                        r.agent_id,
                        r.symbol,
                        r.strategy,
                        r.action,
                        r.confidence,
                        r.price,
                        r.reason,
                        r.notes,
                        r.features,
                        r.key,
                        r.meta,
                        prev,
                    )
                )
                fts_rows.append((next_id, r.reason, r.notes))
                if r.outcome is not None:
                    closed_at, pnl, ret, onotes = r.outcome
                    oprev = _chain(
                        oprev, _outcome_payload(next_seq, next_id, closed_at, pnl, ret, onotes)
                    )
                    o_rows.append((next_seq, next_id, closed_at, pnl, ret, onotes, oprev))
                    next_seq += 1
                if r.key is not None:
                    existing[r.key] = next_id
                ids.append(next_id)
                next_id += 1
            conn.executemany("INSERT INTO decisions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", d_rows)
            conn.executemany(
                "INSERT INTO decisions_fts (rowid, reason, notes) VALUES (?,?,?)", fts_rows
            )
            conn.executemany("INSERT INTO outcomes VALUES (?,?,?,?,?,?,?)", o_rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if d_rows:
            self._anchor()
        return ids

    def close_outcome(
        self,
        decision_id: int,
        *,
        pnl: float,
        return_pct: float | None = None,
        closed_at: datetime | str | None = None,
        notes: str = "",
    ) -> None:
        """Attach the outcome of a decision (once). Repeating the same outcome is a no-op."""
        pnl_f = _finite("pnl", pnl)
        ret = _finite("return_pct", return_pct, optional=True)
        when = _timestamp(closed_at)
        with self._lock:
            if self._audit is not None:
                self._audit.check_writable()
            conn = self._conn
            relax_sqlite(conn, self.path, self._lock)
            conn.execute("BEGIN IMMEDIATE")
            try:
                if (
                    conn.execute("SELECT 1 FROM decisions WHERE id=?", (decision_id,)).fetchone()
                    is None
                ):
                    raise KeyError(f"no decision with id {decision_id} in {self.path}")
                old = conn.execute(
                    "SELECT pnl, return_pct FROM outcomes WHERE decision_id=?", (decision_id,)
                ).fetchone()
                if old is not None:
                    if old == (pnl_f, ret):
                        conn.execute("ROLLBACK")
                        return
                    raise InvalidInputError(
                        f"decision {decision_id} already has an outcome (pnl {old[0]}); outcomes are not overwritten"
                    )
                olast = conn.execute(
                    "SELECT seq, chain FROM outcomes ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                seq, oprev = (olast[0] + 1, olast[1]) if olast else (1, GENESIS)
                chain = _chain(oprev, _outcome_payload(seq, decision_id, when, pnl_f, ret, notes))
                conn.execute(
                    "INSERT INTO outcomes VALUES (?,?,?,?,?,?,?)",
                    (seq, decision_id, when, pnl_f, ret, notes, chain),
                )
                if notes:
                    conn.execute(
                        "UPDATE decisions_fts SET notes = trim(notes || ' ' || ?) WHERE rowid = ?",
                        (notes, decision_id),
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._anchor()

    def _anchor(self) -> None:
        if self._audit is None:
            return
        d = self._conn.execute(
            "SELECT id, chain FROM decisions ORDER BY id DESC LIMIT 1"
        ).fetchone()
        o = self._conn.execute(
            "SELECT seq, chain FROM outcomes ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        self._audit.record(
            DECISIONS_FILE,
            "commit",
            decisions_id=d[0] if d else 0,
            decisions_head=(d[1] if d else GENESIS).hex(),
            outcomes_seq=o[0] if o else 0,
            outcomes_head=(o[1] if o else GENESIS).hex(),
        )

    # -- reading -----------------------------------------------------------------
    def __len__(self) -> int:
        return self.count()

    def count(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT max(id) FROM decisions").fetchone()
            return int(row[0] or 0)

    def find_key(self, key: str) -> int | None:
        """The id of the decision recorded with idempotency ``key``, or None."""
        row = self._conn.execute("SELECT id FROM decisions WHERE key=?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def get(self, decision_id: int) -> StoredDecision:
        """One decision with its outcome (if closed)."""
        with self._lock:
            row = self._conn.execute(_SELECT + " WHERE d.id = ?", (decision_id,)).fetchone()
        if row is None:
            raise KeyError(f"no decision with id {decision_id} in {self.path}")
        rec = dict(zip(_COLUMNS, row, strict=True))
        names = self.feature_names or []
        vector = np.frombuffer(rec["features"], dtype=np.float32)
        outcome = None
        if rec["pnl"] is not None:
            outcome = Outcome(
                pnl=rec["pnl"],
                return_pct=rec["return_pct"],
                closed_at=datetime.fromtimestamp(rec["closed_at"], UTC),
                notes=rec["outcome_notes"],
            )
        return StoredDecision(
            symbol=rec["symbol"],
            strategy=rec["strategy"],
            action=rec["action"],
            confidence=rec["confidence"],
            reason=rec["reason"],
            features={k: float(v) for k, v in zip(names, vector, strict=True)},
            agent_id=rec["agent_id"],
            decided_at=datetime.fromtimestamp(rec["decided_at"], UTC),
            price=rec["price"],
            notes=rec["notes"],
            key=rec["key"],
            meta=json.loads(rec["meta"]),
            outcome=outcome,
            id=rec["id"],
        )

    def frame(
        self,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        symbol: str | None = None,
        strategy: str | None = None,
        action: str | None = None,
        agent_id: str | None = None,
        closed: bool | None = None,
        limit: int | None = None,
        ids: Sequence[int] | None = None,
    ) -> pd.DataFrame:
        """Decisions as a DataFrame indexed by UTC ``decided_at`` (newest last), with outcome
        columns ``closed_at``, ``pnl``, ``return_pct`` and one column per feature.
        ``limit`` keeps the most recent rows."""
        clauses, args = [], []
        for col, value in (("d.symbol", symbol), ("d.strategy", strategy), ("d.action", action), ("d.agent_id", agent_id)):
            if value is not None:
                clauses.append(f"{col} = ?")
                args.append(value if col != "d.action" else value.upper())
        if since is not None:
            clauses.append("d.decided_at >= ?")
            args.append(_timestamp(since))
        if until is not None:
            clauses.append("d.decided_at <= ?")
            args.append(_timestamp(until))
        if closed is not None:
            clauses.append("o.decision_id IS NOT NULL" if closed else "o.decision_id IS NULL")
        if ids is not None:
            id_list = [int(i) for i in ids]
            if not id_list:
                return self._to_frame([])
            clauses.append(f"d.id IN ({','.join('?' * len(id_list))})")
            args.extend(id_list)
        sql = _SELECT + (" WHERE " + " AND ".join(clauses) if clauses else "")
        sql += " ORDER BY d.id DESC" + (f" LIMIT {int(limit)}" if limit is not None else "")
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        rows.reverse()
        return self._to_frame(rows)

    def outcomes(self, *, agent_id: str | None = None, limit: int | None = None,
                 until: datetime | str | pd.Timestamp | float | None = None) -> pd.DataFrame:
        """Closed outcomes only (``decision_id``, ``closed_at``, ``pnl``, ``return_pct``), in
        order of closing, newest ``limit``: the lean read performance triggers need.
        ``until`` keeps the outcomes known by then (``closed_at <= until``)."""
        where, args = [], []
        if agent_id is not None:
            where.append("d.agent_id = ?")
            args.append(agent_id)
        if until is not None:
            where.append("o.closed_at <= ?")
            args.append(_as_of_seconds(until))
        sql = ("SELECT o.decision_id, o.closed_at, o.pnl, o.return_pct FROM outcomes o"
               + (" JOIN decisions d ON d.id = o.decision_id" if agent_id is not None else "")
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY o.closed_at DESC, o.seq DESC" + (f" LIMIT {int(limit)}" if limit is not None else ""))
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        rows.reverse()
        arr = np.array(rows, dtype=float).reshape(-1, 4)
        return pd.DataFrame({"decision_id": arr[:, 0].astype(np.int64),
                             "closed_at": pd.to_datetime(arr[:, 1], unit="s", utc=True),
                             "pnl": arr[:, 2], "return_pct": arr[:, 3]})

    def recent(self, n: int = 20) -> pd.DataFrame:
        """The last ``n`` decisions."""
        return self.frame(limit=n)

    def _to_frame(self, rows: list[tuple[Any, ...]], *, index: str = "decided_at") -> pd.DataFrame:
        names = self.feature_names or []
        n = len(rows)
        cols = (
            dict(zip(_COLUMNS, zip(*rows, strict=True), strict=True))
            if n
            else {c: () for c in _COLUMNS}
        )
        vectors = (
            np.frombuffer(b"".join(cols["features"]), dtype=np.float32).reshape(n, len(names))
            if n
            else np.empty((0, len(names)), dtype=np.float32)
        )
        data: dict[str, Any] = {"id": np.array(cols["id"], dtype=np.int64)}
        data["decided_at"] = _utc_times(np.array(cols["decided_at"], dtype=np.float64))
        for col in (
            "agent_id",
            "symbol",
            "strategy",
            "action",
            "reason",
            "notes",
            "key",
            "meta",
            "outcome_notes",
        ):
            data[col] = np.array(cols[col], dtype=object)
        for col in ("confidence", "price", "pnl", "return_pct"):
            data[col] = np.array(cols[col], dtype=np.float64)
        data["closed_at"] = _utc_times(np.array(cols["closed_at"], dtype=np.float64))
        for i, name in enumerate(names):
            data[name] = vectors[:, i].astype(np.float64)
        idx = data.pop(index)
        frame = pd.DataFrame(data, index=pd.Index(idx, name=index))
        return frame

    def win_rates(self, *, agent_id: str | None = None,
                  as_of: datetime | str | pd.Timestamp | float | None = None,
                  include_in_sample: bool = True) -> pd.DataFrame:
        """Closed decisions per strategy and action: ``n``, ``wins``, ``win_rate``,
        ``mean_return_pct`` (one SQL aggregate, for priors and reports). ``as_of`` counts
        only outcomes known strictly before it; ``include_in_sample=False`` leaves out
        training's in-sample experience."""
        where, args = [], []
        if agent_id is not None:
            where.append("d.agent_id = ?")
            args.append(agent_id)
        if as_of is not None:
            where.append("o.closed_at < ?")
            args.append(_as_of_seconds(as_of))
        if not include_in_sample:
            where.append(f"NOT {IN_SAMPLE_SQL}")
        sql = (
            "SELECT d.strategy, d.action, count(*), sum(o.pnl > 0), avg(o.return_pct) "
            "FROM decisions d JOIN outcomes o ON o.decision_id = d.id"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " GROUP BY d.strategy, d.action ORDER BY d.strategy, d.action"
        )
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        frame = pd.DataFrame(rows, columns=["strategy", "action", "n", "wins", "mean_return_pct"])
        frame["win_rate"] = frame["wins"] / frame["n"]
        return frame.set_index(["strategy", "action"])[["n", "wins", "win_rate", "mean_return_pct"]]

    def win_rate_history(self, *, include_in_sample: bool = True) -> WinRateHistory:
        """Every closed decision's strategy, action, closing time and win, ready to count the
        win rate known at any time (what the agent's priors use; :meth:`win_rates` gives the
        same counts as one table). Read through a separate read-only connection, so it never
        waits for this store's lock."""
        return DecisionReader(self.root).win_rate_history(include_in_sample=include_in_sample)

    def search(
        self,
        text: str,
        *,
        limit: int = 20,
        order: str = "recent",
        raw: bool = False,
        window: int | None = 1000,
    ) -> pd.DataFrame:
        """Full-text search over reasons and outcome notes.

        Words are matched with stemming ("breakouts" finds "breakout"); all words must
        occur. ``raw=True`` passes ``text`` as an FTS5 query (``support OR resistance``).
        ``order="recent"`` lists the newest matches first; ``order="relevance"`` ranks by
        bm25 among the newest ``window`` matches (so it stays fast when a word occurs in
        hundreds of thousands of decisions; ``window=None`` ranks the whole history).
        Returns the decisions indexed by id in result order, with a ``decided_at`` column.
        """
        if order not in ("relevance", "recent"):
            raise InvalidInputError(f"order must be 'relevance' or 'recent', not {order!r}")
        if raw:
            query = text
        else:
            words = re.findall(r"\w+", text)
            if not words:
                raise InvalidInputError(f"nothing to search for in {text!r}")
            query = " ".join(f'"{w}"' for w in words)
        if order == "recent":
            sql = "SELECT rowid FROM decisions_fts WHERE decisions_fts MATCH ? ORDER BY rowid DESC LIMIT ?"
            args: tuple[Any, ...] = (query, int(limit))
        elif window is None:
            sql = "SELECT rowid FROM decisions_fts WHERE decisions_fts MATCH ? ORDER BY rank LIMIT ?"
            args = (query, int(limit))
        else:
            sql = (
                "SELECT id FROM (SELECT rowid AS id, rank AS score FROM decisions_fts "
                "WHERE decisions_fts MATCH ? ORDER BY rowid DESC LIMIT ?) ORDER BY score, id DESC LIMIT ?"
            )
            args = (query, int(window), int(limit))
        with self._lock:
            try:
                hits = self._conn.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                raise InvalidInputError(f"bad search query {text!r}: {exc}") from None
        return self._by_ids([h[0] for h in hits])

    def _by_ids(self, ids: list[int]) -> pd.DataFrame:
        """Decisions indexed by id, in the order of ``ids``."""
        rows = self._rows_by_ids(ids)
        return self._to_frame(rows, index="id")

    def _rows_by_ids(self, ids: list[int]) -> list[tuple[Any, ...]]:
        if not ids:
            return []
        with self._lock:
            found = {
                r[0]: r
                for r in self._conn.execute(
                    _SELECT + f" WHERE d.id IN ({','.join('?' * len(ids))})", ids
                ).fetchall()
            }
        return [found[i] for i in ids if i in found]

    # -- similar situations --------------------------------------------------------
    def neighbourhood(
        self,
        features: Mapping[str, float] | Sequence[float],
        k: int = 20,
        *,
        symbol: str | None = None,
        strategy: str | None = None,
        action: str | None = None,
        closed_only: bool = False,
        as_of: datetime | str | pd.Timestamp | float | None = None,
        include_in_sample: bool = True,
    ) -> Neighbourhood:
        """The ``k`` past decisions most similar to ``features`` as arrays, nearest first.

        The fast path behind :meth:`nearest` (no DataFrame), for callers on the hot
        path such as the agent scoring every signal. ``as_of`` (a time, or epoch seconds)
        makes the answer point in time: only decisions made strictly before it, and only
        outcomes known (closed) strictly before it; a later outcome shows as NaN.
        ``include_in_sample=False`` leaves out training's in-sample experience.
        """
        names = self.feature_names
        if names is None:
            return Neighbourhood.empty()
        if isinstance(features, Mapping):
            missing = [n for n in names if n not in features]
            if missing:
                raise InvalidInputError(f"features lack {missing} (this store uses {names})")
            point = [features[n] for n in names]
        else:
            point = list(features)
            if len(point) != len(names):
                raise InvalidInputError(
                    f"{len(point)} feature values given, this store uses {len(names)}"
                )
        vector = np.array([_finite(f"feature {n}", v) for n, v in zip(names, point, strict=True)])
        with self._lock:
            index = self._refresh_index(len(names))
            cutoff = None if as_of is None else _as_of_seconds(as_of)
            found = index.query(
                vector,
                k,
                symbol=symbol,
                strategy=strategy,
                action=action.upper() if action else None,
                closed_only=closed_only,
                as_of=cutoff,
                include_in_sample=include_in_sample,
            )
            ids = [int(i) for i in found.ids]
            if not ids:
                return Neighbourhood.empty()
            rows = {
                r[0]: r
                for r in self._conn.execute(
                    "SELECT d.id, d.decided_at, d.action, d.confidence, o.closed_at, o.pnl, o.return_pct "
                    f"FROM decisions d LEFT JOIN outcomes o ON o.decision_id = d.id WHERE d.id IN ({','.join('?' * len(ids))})",
                    ids,
                ).fetchall()
            }
        ordered = [rows[i] for i in ids]
        _, decided, actions, conf, closed_at, pnl, ret = zip(*ordered, strict=True)
        closed_a = np.array(closed_at, dtype=np.float64)
        pnl_a = np.array(pnl, dtype=np.float64)
        ret_a = np.array(ret, dtype=np.float64)
        if cutoff is not None:
            later = ~(closed_a < cutoff)  # not yet known at as_of (NaN: never closed)
            closed_a[later], pnl_a[later], ret_a[later] = np.nan, np.nan, np.nan
        return Neighbourhood(
            ids=np.array(ids, dtype=np.int64),
            distance=found.distances.astype(np.float64),
            decided_at=np.array(decided, dtype=np.float64),
            action=list(actions),
            confidence=np.array(conf, dtype=np.float64),
            closed_at=closed_a,
            pnl=pnl_a,
            return_pct=ret_a,
        )

    def nearest(
        self,
        features: Mapping[str, float] | Sequence[float],
        k: int = 20,
        *,
        symbol: str | None = None,
        strategy: str | None = None,
        action: str | None = None,
        closed_only: bool = False,
        as_of: datetime | str | pd.Timestamp | float | None = None,
        include_in_sample: bool = True,
    ) -> pd.DataFrame:
        """The ``k`` past decisions most similar to ``features``, nearest first.

        Distance is Euclidean over features standardised across the store (each
        feature in standard deviations), so no single feature's units dominate.
        Filters narrow to a symbol, strategy or action; ``closed_only`` keeps decisions
        whose outcome is known. ``as_of`` sees the store as it stood at that time (see
        :meth:`neighbourhood`). Returns decisions indexed by id with a ``distance`` column.
        """
        hood = self.neighbourhood(
            features, k, symbol=symbol, strategy=strategy, action=action, closed_only=closed_only,
            as_of=as_of, include_in_sample=include_in_sample,
        )
        frame = self._by_ids(hood.ids.tolist())
        frame["distance"] = hood.distance
        if as_of is not None and len(frame):
            later = hood.closed_at != hood.closed_at  # NaN: not known at as_of
            frame.loc[later, ["pnl", "return_pct", "outcome_notes"]] = [np.nan, np.nan, ""]
            frame.loc[later, "closed_at"] = pd.NaT
        return frame

    def _refresh_index(self, dim: int) -> FeatureIndex:
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        if self._index is not None and version == self._data_version and not self._dirty():
            return self._index
        if self._index is None:
            self._index = FeatureIndex(dim)
        index = self._index
        cur = self._conn.execute(
            "SELECT d.id, d.features, d.symbol, d.strategy, d.action, d.decided_at, o.closed_at, "
            f"{IN_SAMPLE_SQL} FROM decisions d LEFT JOIN outcomes o ON o.decision_id = d.id "
            "WHERE d.id > ? ORDER BY d.id",
            (index.last_id,),
        )
        while batch := cur.fetchmany(200_000):
            ids, blobs, symbols, strategies, actions, decided, known, in_sample = zip(*batch, strict=True)
            vectors = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(batch), dim)
            index.add(
                np.array(ids),
                vectors,
                list(symbols),
                list(strategies),
                list(actions),
                np.array(known, dtype=np.float64),
                decided=np.array(decided, dtype=np.float64),
                in_sample=np.array(in_sample, dtype=np.bool_),
            )
        new_closed = self._conn.execute(
            "SELECT seq, decision_id, closed_at FROM outcomes WHERE seq > ? ORDER BY seq",
            (self._index_outcome_seq,),
        ).fetchall()
        if new_closed:
            index.mark_closed(np.array([r[1] for r in new_closed], dtype=np.int64),
                              np.array([r[2] for r in new_closed], dtype=np.float64))
            self._index_outcome_seq = new_closed[-1][0]
        self._data_version = version
        return index

    def _dirty(self) -> bool:
        # Our own commits do not change PRAGMA data_version for this connection.
        assert self._index is not None
        last = self._conn.execute("SELECT max(id) FROM decisions").fetchone()[0] or 0
        if last != self._index.last_id:
            return True
        seq = self._conn.execute("SELECT max(seq) FROM outcomes").fetchone()[0] or 0
        return seq != self._index_outcome_seq


# -- reading from another process ------------------------------------------------------
class WinRateHistory:
    """Closed decisions per (strategy, action), sorted by closing time with a running count
    of wins: the win rate known at any time is a binary search, not a query.

    Counts agree with :meth:`DecisionStore.win_rates` (``as_of`` excludes outcomes closed at
    or after it). A process that closes outcomes itself counts them in with :meth:`add`.

    >>> h = WinRateHistory.from_outcomes(["m", "m", "m"], ["BUY"] * 3, [1.0, 2.0, 3.0], [True, False, True])
    >>> h.count("m", "BUY"), h.count("m", "BUY", as_of=3.0), h.count(None, "SELL")
    ((3, 2), (2, 1), (0, 0))
    """

    def __init__(self) -> None:
        self._series: dict[tuple[str, str], _Closings] = {}

    @classmethod
    def from_outcomes(cls, strategies: Sequence[str], actions: Sequence[str], closed_at: Sequence[float],
                      won: Sequence[bool]) -> WinRateHistory:
        """From parallel sequences of closed decisions (closing times in epoch seconds)."""
        history = cls()
        frame = pd.DataFrame({"strategy": list(strategies), "action": list(actions),
                              "closed_at": np.asarray(closed_at, dtype=np.float64),
                              "won": np.asarray(won, dtype=bool)})
        for (strategy, action), group in frame.groupby(["strategy", "action"], sort=False):
            history._series[(str(strategy), str(action))] = _Closings(
                group["closed_at"].to_numpy(np.float64), group["won"].to_numpy(np.int64))
        return history

    def pairs(self) -> list[tuple[str, str]]:
        """The (strategy, action) pairs with a closed decision."""
        return list(self._series)

    def add(self, strategy: str, action: str, won: bool, closed_at: float = -math.inf) -> None:
        """Count one newly closed decision, known from ``closed_at`` (epoch seconds) on."""
        if (strategy, action) not in self._series:
            self._series[(strategy, action)] = _Closings(np.empty(0), np.empty(0, np.int64))
        self._series[(strategy, action)].append(float(closed_at), bool(won))

    def count(self, strategy: str | None, action: str | None,
              as_of: float | None = None) -> tuple[int, int]:
        """``(closed, won)`` among the pair's outcomes known strictly before ``as_of`` (epoch
        seconds; None: all). ``strategy`` or ``action`` None counts every one."""
        if strategy is not None and action is not None:  # the hot path: one pair, one binary search
            pair = self._series.get((strategy, action))
            return (0, 0) if pair is None else pair.count(as_of)
        closed = won = 0
        for (s, a), series in self._series.items():
            if (strategy is None or s == strategy) and (action is None or a == action):
                n, w = series.count(as_of)
                closed, won = closed + n, won + w
        return closed, won


class _Closings:
    """One (strategy, action)'s closing times, sorted, with the running count of wins."""

    def __init__(self, times: np.ndarray, won: np.ndarray) -> None:
        order = np.argsort(times, kind="stable")
        self.n = len(times)
        cap = max(64, 2 * self.n)
        self._times = np.empty(cap)
        self._wins = np.empty(cap, np.int64)
        self._times[: self.n] = times[order]
        self._wins[: self.n] = np.cumsum(won[order].astype(np.int64))

    def append(self, time_: float, won: bool) -> None:
        if self.n and time_ < self._times[self.n - 1]:  # out of order (rare): rebuild sorted
            times = np.append(self._times[: self.n], time_)
            wins = np.diff(self._wins[: self.n], prepend=0)
            self.__init__(times, np.append(wins, int(won)))  # type: ignore[misc]
            return
        if self.n == len(self._times):
            self._times = np.resize(self._times, 2 * self.n)
            self._wins = np.resize(self._wins, 2 * self.n)
        self._times[self.n] = time_
        self._wins[self.n] = (self._wins[self.n - 1] if self.n else 0) + int(won)
        self.n += 1

    def count(self, as_of: float | None) -> tuple[int, int]:
        n = self.n if as_of is None else int(np.searchsorted(self._times[: self.n], as_of, "left"))
        return n, int(self._wins[n - 1]) if n else 0


@dataclass(frozen=True)
class DecisionChain:
    """The decision store's two hash chains, recomputed row by row from what is stored.

    ``integrity`` is SQLite's ``quick_check`` (``"ok"``, else what it found, and then
    nothing else is read); ``decision_heads`` maps each decision id to its stored chain
    hash and ``outcome_heads`` each outcome's sequence number to its; ``first_break`` says
    in words where the stored rows first stop matching their hashes (None: nowhere).
    ``memlab memory verify`` compares the heads with those the audit trail anchored.
    """

    integrity: str
    decision_heads: dict[int, bytes] = field(default_factory=dict)
    outcome_heads: dict[int, bytes] = field(default_factory=dict)
    first_break: str | None = None


class DecisionReader:
    """The decision store read from another process (the monitor, ``memlab memory verify``,
    the agent's priors): each call opens ``decisions.sqlite`` read-only, reads, closes.

    A missing store raises :class:`FileNotFoundError`; a damaged one
    :class:`~memlab.memory.errors.CorruptMemoryError`. Neither ever creates or changes it.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> with DecisionStore(root) as store:
    ...     _ = store.record(Decision("BTCUSDT", "momentum", "BUY", 0.8, reason="breakout", features=[1.0],
    ...                               outcome=Outcome(pnl=5.0)))
    >>> DecisionReader(root).recent(5)[["symbol", "action", "pnl"]].values.tolist()
    [['BTCUSDT', 'BUY', 5.0]]
    """

    name = "decision store"

    def __init__(self, root: str | Path, *, timeout: float = 30.0) -> None:
        self.path = Path(root) / DECISIONS_FILE
        self.timeout = timeout

    def _read(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return read_store_db(self.path, timeout=self.timeout, name=self.name)

    def recent(self, limit: int = 50) -> pd.DataFrame:
        """The newest ``limit`` decisions, newest first: ``id``, ``decided_at`` (UTC),
        ``symbol``, ``strategy``, ``action``, ``confidence``, ``price``, ``reason``, ``meta``
        (the JSON text stored) and ``pnl`` (NaN while open)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT d.id, d.decided_at, d.symbol, d.strategy, d.action, d.confidence, d.price, d.reason, "
                "d.meta, o.pnl FROM decisions d LEFT JOIN outcomes o ON o.decision_id = d.id "
                "ORDER BY d.id DESC LIMIT ?", (int(limit),)).fetchall()
        frame = pd.DataFrame(rows, columns=["id", "decided_at", "symbol", "strategy", "action", "confidence",
                                            "price", "reason", "meta", "pnl"])
        frame["decided_at"] = pd.to_datetime(frame["decided_at"].astype("float64"), unit="s", utc=True)
        frame["pnl"] = frame["pnl"].astype("float64")
        return frame

    def win_rate_history(self, *, include_in_sample: bool = True) -> WinRateHistory:
        """Every closed decision, to count win rates point in time (see :class:`WinRateHistory`);
        empty when the store does not exist yet. ``include_in_sample=False`` leaves out
        training's in-sample experience."""
        try:
            with self._read() as conn:
                rows = conn.execute(
                    "SELECT d.strategy, d.action, o.closed_at, o.pnl > 0 FROM decisions d "
                    "JOIN outcomes o ON o.decision_id = d.id"
                    + ("" if include_in_sample else f" WHERE NOT {IN_SAMPLE_SQL}")
                ).fetchall()
        except FileNotFoundError:
            rows = []
        strategies, actions, closed_at, won = zip(*rows, strict=True) if rows else ((), (), (), ())
        return WinRateHistory.from_outcomes(strategies, actions, closed_at, won)

    def chain(self) -> DecisionChain:
        """Recompute both hash chains from the stored rows (see :class:`DecisionChain`)."""
        with self._read() as conn:
            integrity = conn.execute("PRAGMA quick_check").fetchone()[0]
            if integrity != "ok":
                return DecisionChain(integrity)
            heads: dict[int, bytes] = {}
            prev, expected, first_break = GENESIS, 1, None
            for row in conn.execute(
                "SELECT id, decided_at, agent_id, symbol, strategy, action, confidence, price, reason, "
                "notes, features, key, meta, chain FROM decisions ORDER BY id"
            ):
                if row[0] != expected and first_break is None:
                    first_break = f"decision ids jump from {expected - 1} to {row[0]} (rows removed)"
                prev = _chain(prev, _decision_payload(row[0], _Row(*row[1:13], outcome=None)))
                if prev != row[13] and first_break is None:
                    first_break = f"decision {row[0]} differs from what was recorded (edited)"
                heads[row[0]] = row[13]
                expected = row[0] + 1
            oprev, oheads = GENESIS, {}
            for seq, did, closed_at, pnl, ret, notes, chain in conn.execute(
                "SELECT seq, decision_id, closed_at, pnl, return_pct, notes, chain FROM outcomes ORDER BY seq"
            ):
                oprev = _chain(oprev, _outcome_payload(seq, did, closed_at, pnl, ret, notes))
                if oprev != chain and first_break is None:
                    first_break = f"the outcome of decision {did} differs from what was recorded (edited)"
                oheads[seq] = chain
        return DecisionChain(integrity, heads, oheads, first_break)
