"""``parameter_updates.json``: the agent's parameters by date, with every change's reason.

The document is keyed by UTC date. Each date holds the values in force at the end of that
day and the day's ``adjustments``, each with its time, ``reason``, ``from`` and ``to``::

    {"2025-10-16": {"momentum_threshold": 0.05, "position_size": 0.1,
                    "adjustments": [{"time": "2025-10-16T14:30:15+00:00",
                                     "reason": "Increased volatility observed",
                                     "from": {"momentum_threshold": 0.04},
                                     "to": {"momentum_threshold": 0.05}}]}}

A hand-written file in the seed's shape (``adjustments`` as one object) is read as a
one-item list. Every write replaces the file atomically.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from memlab.errors import InvalidInputError
from memlab.memory.audit import AuditTrail, sha256_hex
from memlab.memory.crypto import MemoryCipher, is_token, require_cipher
from memlab.memory.durable import atomic_write_bytes, ensure_private_dir, file_lock, lock_path_for
from memlab.memory.errors import CorruptMemoryError

PARAMETERS_FILE = "parameter_updates.json"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MISSING = object()


def _utc_iso(value: datetime | str | pd.Timestamp) -> str:
    ts = pd.Timestamp(value)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).isoformat()


def _check_value(name: str, value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(f"parameter {name!r}: {value!r} is not a finite number")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"parameter {name!r}: {type(value).__name__} values cannot be stored "
            "(use numbers, text, booleans, lists or dicts of them)"
        ) from None
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        value = value.item()  # numpy scalar -> Python
    return value


class ParameterStore:
    """Dated parameter values with the reason for each change.

    >>> import tempfile
    >>> store = ParameterStore(Path(tempfile.mkdtemp()))
    >>> store.update({"position_size": 0.1}, reason="initial")
    {'position_size': (None, 0.1)}
    >>> store.set("position_size", 0.07, reason="win rate 0.40 < 0.45")
    (0.1, 0.07)
    >>> store.get("position_size")
    0.07
    """

    def __init__(
        self, root: Path, *, cipher: MemoryCipher | None = None, audit: AuditTrail | None = None
    ) -> None:
        self.root = ensure_private_dir(Path(root))
        self.path = self.root / PARAMETERS_FILE
        self._cipher = cipher
        self._audit = audit
        self._lock = threading.Lock()
        self._current: tuple[tuple[int, int, int], dict[str, Any]] | None = None

    # -- reading -----------------------------------------------------------------
    def document(self) -> dict[str, dict[str, Any]]:
        """The whole file as a dict (dates in order), validated."""
        if not self.path.exists():
            return {}
        raw = self.path.read_bytes()
        if is_token(raw.strip()):
            raw = require_cipher(self._cipher, where=str(self.path)).decrypt(
                raw.strip(), where=str(self.path)
            )
        try:
            doc = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise CorruptMemoryError(self.path, "not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise CorruptMemoryError(
                self.path, f"invalid JSON: {exc.msg} at column {exc.colno}", exc.lineno
            ) from None
        if not isinstance(doc, dict):
            raise CorruptMemoryError(self.path, "the top level must be an object keyed by date")
        for day, values in doc.items():
            if not _DATE.match(day):
                raise CorruptMemoryError(self.path, f"key {day!r} is not a date YYYY-MM-DD")
            if not isinstance(values, dict):
                raise CorruptMemoryError(self.path, f"{day}: must be an object of parameter values")
            adj = values.get("adjustments", [])
            if isinstance(adj, dict):
                values["adjustments"] = [adj]
            elif not isinstance(adj, list):
                raise CorruptMemoryError(
                    self.path, f"{day}: 'adjustments' must be a list or object"
                )
        return dict(sorted(doc.items()))

    def current(self) -> dict[str, Any]:
        """Every parameter's latest value (re-read only when the file changed on disk)."""
        try:
            st = self.path.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            return {}
        cached = self._current
        if cached is not None and cached[0] == stamp:
            return dict(cached[1])
        values: dict[str, Any] = {}
        for day_values in self.document().values():
            values.update({k: v for k, v in day_values.items() if k != "adjustments"})
        self._current = (stamp, values)
        return dict(values)

    def get(self, name: str, default: Any = _MISSING) -> Any:
        """The latest value of ``name``; ``default`` (or a KeyError naming the known ones)."""
        values = self.current()
        if name in values:
            return values[name]
        if default is not _MISSING:
            return default
        known = ", ".join(sorted(values)) or "none yet"
        raise KeyError(f"no parameter {name!r} in {self.path} (known: {known})")

    def history(self, name: str | None = None) -> pd.DataFrame:
        """Every change, oldest first: UTC ``time`` index (when it was written), ``parameter``,
        ``from``, ``to``, ``reason``, and ``market_time`` (the replayed bar that caused it;
        NaT for changes made live or by hand)."""
        rows = []
        for day, values in self.document().items():
            for adj in values.get("adjustments", []):
                when = pd.Timestamp(adj.get("time") or day)
                when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
                before = adj.get("from") or {}
                for param, after in (adj.get("to") or {}).items():
                    if name is not None and param != name:
                        continue
                    rows.append(
                        {
                            "time": when,
                            "parameter": param,
                            "from": before.get(param),
                            "to": after,
                            "reason": adj.get("reason", ""),
                            "market_time": adj.get("market_time"),
                        }
                    )
        frame = pd.DataFrame(rows, columns=["time", "parameter", "from", "to", "reason", "market_time"])
        frame["time"] = pd.to_datetime(frame["time"], utc=True)
        frame["market_time"] = pd.to_datetime(frame["market_time"], utc=True)
        return frame.set_index("time")

    # -- writing -----------------------------------------------------------------
    def set(
        self, name: str, value: Any, *, reason: str, at: datetime | str | None = None
    ) -> tuple[Any, Any] | None:
        """Set one parameter; returns ``(from, to)``, or None when the value is unchanged."""
        return self.update({name: value}, reason=reason, at=at).get(name)

    def update(
        self, values: Mapping[str, Any], *, reason: str, at: datetime | str | None = None,
        market_time: datetime | str | pd.Timestamp | None = None,
    ) -> dict[str, tuple[Any, Any]]:
        """Set several parameters in one atomic write with one reason.

        ``at`` dates the change (now by default; the history is append-only by date).
        ``market_time`` is the time of the market bar that caused it, when replaying
        history: kept beside the date and shown by :meth:`history`. Returns
        ``{name: (from, to)}`` for the values that changed; unchanged values write nothing.
        """
        if not reason or not str(reason).strip():
            raise InvalidInputError("a parameter change needs a reason")
        checked = {}
        for name, value in values.items():
            if not isinstance(name, str) or not name or name == "adjustments":
                raise InvalidInputError(f"{name!r} is not a usable parameter name")
            checked[name] = _check_value(name, value)
        when = pd.Timestamp(at) if at is not None else pd.Timestamp(datetime.now(UTC))
        when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
        day = when.strftime("%Y-%m-%d")
        with self._lock, file_lock(lock_path_for(self.path)):
            if self._audit is not None:
                self._audit.check_writable()
            doc = self.document()  # an encrypted file read with a missing or wrong key: refused here
            if doc and day < max(doc):
                raise InvalidInputError(
                    f"parameter history is append-only: {day} is before the latest date {max(doc)}"
                )
            current: dict[str, Any] = {}
            for day_values in doc.values():
                current.update({k: v for k, v in day_values.items() if k != "adjustments"})
            changes = {
                k: (current.get(k), v)
                for k, v in checked.items()
                if k not in current or current[k] != v
            }
            if not changes:
                return {}
            entry = doc.setdefault(day, {})
            adjustments = entry.pop("adjustments", [])
            current.update(checked)
            entry.clear()
            entry.update(current)
            adjustment: dict[str, Any] = {"time": when.isoformat()}
            if market_time is not None:
                adjustment["market_time"] = _utc_iso(market_time)
            adjustments.append(
                {
                    **adjustment,
                    "reason": str(reason),
                    "from": {k: old for k, (old, _) in changes.items()},
                    "to": {k: new for k, (_, new) in changes.items()},
                }
            )
            entry["adjustments"] = adjustments
            self._write(doc)
        return changes

    def _write(self, doc: dict[str, Any]) -> None:
        data = (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode()
        if self._cipher is not None:
            data = self._cipher.encrypt(data) + b"\n"
        atomic_write_bytes(self.path, data)
        if self._audit is not None:
            self._audit.record(PARAMETERS_FILE, "write", digest=sha256_hex(data))
