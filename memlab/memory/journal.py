"""The core-memory journal ``core_memory_updates.txt``: one event per line, append-only.

Lines are in the seed's format::

    [2025-10-16 14:30:15] Strategy: momentum - Decision: BUY - Confidence: 0.85
    [2025-10-16 14:40:00] P&L: +$500 - Closed position successfully

Times are UTC. Segments are separated by ``" - "``; a segment with ``"Key: value"`` is a
field, one without is a note. Characters that would break that shape inside a value
(``" - "``, ``": "`` in notes, newlines, backslashes) are backslash-escaped on write and
restored on read, so every entry reads back exactly as it was written.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from memlab.errors import InvalidInputError
from memlab.memory.audit import AuditTrail, sha256_hex
from memlab.memory.crypto import MemoryCipher, is_token, require_cipher
from memlab.memory.durable import (
    append_durable,
    ensure_private_dir,
    file_lock,
    lock_path_for,
    set_aside_torn_tail,
)
from memlab.memory.errors import CorruptMemoryError, EncryptionKeyError

log = logging.getLogger(__name__)

JOURNAL_FILE = "core_memory_updates.txt"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_LINE = re.compile(r"^\[(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})\] (.+)$")
_KEY = re.compile(r"^[^\s\[\]:\\][^:\\\n]*$")
_SEP = " - "


@dataclass(frozen=True)
class JournalEntry:
    """One journal line read back: its UTC time, its fields in order, and its notes."""

    time: datetime
    fields: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    line: int = 0

    @property
    def text(self) -> str:
        """The line as a person reads it, without the time stamp."""
        return format_body(self.fields, self.notes)

    def __str__(self) -> str:
        return f"[{self.time.strftime(TIME_FORMAT)}] {self.text}"


def _escape(text: str, *, note: bool) -> str:
    out = text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")
    out = out.replace(" - ", " \\- ")
    if note:
        out = out.replace(": ", "\\: ")
    return out


_UNESCAPE = re.compile(r"\\(.)")
_UNESCAPE_MAP = {"\\": "\\", "n": "\n", "r": "\r", "-": "-", ":": ":"}


def _unescape(text: str) -> str:
    return _UNESCAPE.sub(lambda m: _UNESCAPE_MAP.get(m.group(1), m.group(0)), text)


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"journal values must be finite numbers, got {value!r}")
        return f"{value:.10g}"
    return str(value)


def format_body(fields: Mapping[str, Any], notes: Iterable[str] = ()) -> str:
    """The text after the time stamp for ``fields`` and ``notes``."""
    parts = []
    for key, value in fields.items():
        if not isinstance(key, str) or not _KEY.match(key) or key != key.strip():
            raise InvalidInputError(
                f"journal key {key!r} is not usable: a key is non-empty text without ':', "
                "'\\', brackets at the start, or surrounding spaces"
            )
        if _SEP in key:
            raise InvalidInputError(f"journal key {key!r} must not contain ' - '")
        parts.append(f"{key}: {_escape(_format_value(value), note=False)}")
    for note in notes:
        if note:
            parts.append(_escape(str(note), note=True))
    if not parts:
        raise InvalidInputError("a journal entry needs at least one field or note")
    return _SEP.join(parts)


def _split_segments(body: str) -> list[str]:
    # " - " is the separator; an escaped one reads " \- " and so never matches.
    return body.split(_SEP)


def _split_key(segment: str) -> tuple[str | None, str]:
    i = 0
    while True:
        j = segment.find(": ", i)
        if j < 0:
            return None, segment
        # A colon preceded by an odd number of backslashes is escaped.
        k, slashes = j - 1, 0
        while k >= 0 and segment[k] == "\\":
            slashes += 1
            k -= 1
        if slashes % 2 == 0:
            return segment[:j], segment[j + 2 :]
        i = j + 1


def parse_line(text: str, *, path: Path, line: int) -> JournalEntry:
    """Parse one journal line; a line in another shape is a :class:`CorruptMemoryError`."""
    match = _LINE.match(text)
    if not match:
        raise CorruptMemoryError(
            path,
            f"not a journal line ('[YYYY-MM-DD HH:MM:SS] Key: value - ...'): {text[:80]!r}",
            line,
        )
    try:
        when = datetime.strptime(match.group(1), TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise CorruptMemoryError(path, f"bad time stamp {match.group(1)!r}", line) from None
    fields: dict[str, str] = {}
    notes: list[str] = []
    for segment in _split_segments(match.group(2)):
        key, value = _split_key(segment)
        if key is None:
            notes.append(_unescape(value))
        else:
            fields.setdefault(key, _unescape(value))
    return JournalEntry(when, fields, tuple(notes), line)


def _utc(at: datetime | str | pd.Timestamp | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    ts = pd.Timestamp(at)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


class MemoryJournal:
    """Append-only journal of the agent's core-memory events.

    >>> import tempfile
    >>> journal = MemoryJournal(Path(tempfile.mkdtemp()))
    >>> str(journal.append({"Strategy": "momentum", "Decision": "BUY", "Confidence": 0.85},
    ...                    at="2025-10-16 14:30:15"))
    '[2025-10-16 14:30:15] Strategy: momentum - Decision: BUY - Confidence: 0.85'
    >>> [e.fields["Decision"] for e in journal.entries(key="Decision")]
    ['BUY']
    """

    def __init__(
        self,
        root: Path,
        *,
        cipher: MemoryCipher | None = None,
        audit: AuditTrail | None = None,
    ) -> None:
        self.root = ensure_private_dir(Path(root))
        self.path = self.root / JOURNAL_FILE
        self._cipher = cipher
        self._audit = audit
        self._lock = threading.Lock()
        self._batch: list[JournalEntry] | None = None
        self._key_ok: tuple[int, int] | None = None  # the file our key was found to decrypt
        self._recorded_end: int | None = None  # where the trail's last record of this file ends

    # -- writing -----------------------------------------------------------------
    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group the appends inside the block into one durable write at its end.

        For hot loops (a replay writing thousands of lines a second): one fsync and one
        audit record for the whole block. Lines appended inside the block are durable
        when the block exits; if the block raises, what was appended is still written.
        """
        if self._batch is not None:
            yield  # nested: the outer block writes
            return
        self._batch = []
        try:
            yield
        finally:
            pending, self._batch = self._batch, None
            if pending:
                self._write(pending)

    def append(
        self,
        fields: Mapping[str, Any] | None = None,
        /,
        *,
        note: str | None = None,
        at: datetime | str | None = None,
        **more: Any,
    ) -> JournalEntry:
        """Append one event (fields in order, then an optional free-text note); durable on return."""
        merged = {**(fields or {}), **more}
        return self.append_many([(at, merged, (note,) if note else ())])[0]

    def append_many(
        self,
        events: Iterable[
            Mapping[str, Any] | tuple[datetime | str | None, Mapping[str, Any], Iterable[str]]
        ],
    ) -> list[JournalEntry]:
        """Append several events in one durable write (one fsync, one audit record).

        Each event is a mapping of fields (stamped now) or ``(at, fields, notes)``.
        """
        prepared: list[JournalEntry] = []
        for event in events:
            if isinstance(event, Mapping):
                at, fields, notes = None, event, ()
            else:
                at, fields, notes = event
            when = _utc(at).replace(microsecond=0)
            notes_t = tuple(str(n) for n in notes if n)
            body = format_body(fields, notes_t)
            prepared.append(
                JournalEntry(when, {k: _format_value(v) for k, v in fields.items()}, notes_t)
            )
            del body
        if not prepared:
            return []
        if self._batch is not None:
            self._batch.extend(prepared)
            return prepared
        self._write(prepared)
        return prepared

    def _write(self, prepared: list[JournalEntry]) -> None:
        payload = b"".join(self._encode(str(e)) for e in prepared)
        with self._lock, file_lock(lock_path_for(self.path)):
            if self._audit is not None:
                self._audit.check_writable()
            self._check_key()
            torn = set_aside_torn_tail(self.path)
            if torn is not None:
                log.warning("%s ended in a torn line (crash?); kept it in %s", self.path, torn)
            if self._audit is not None:
                self._record_late_lines()
            start, end = append_durable(self.path, payload)
            if self._audit is not None:
                self._audit.record(
                    JOURNAL_FILE, "append", start=start, end=end, digest=sha256_hex(payload)
                )
                self._recorded_end = end

    def _record_late_lines(self) -> None:
        """Record lines a killed writer appended but did not live to record.

        A ``kill -9`` between a durable append and its audit record leaves whole lines the
        trail does not cover; the next append would then start past the last recorded
        byte, and ``memlab memory verify`` would call every later record out of place. So
        the gap is recorded first, marked ``late``, which verify reports as a warning
        naming the lines. Only a journal memlab already recorded is continued this way: a
        journal with no record at all is left for verify to flag. Called under the
        journal's writer lock, after a torn last line was set aside.
        """
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size == self._recorded_end:
            return
        assert self._audit is not None
        last = self._audit.last_for(JOURNAL_FILE)
        if last is None or last.get("op") != "append":
            return
        recorded = int(last.get("end", -1))
        if 0 <= recorded < size:
            with open(self.path, "rb") as handle:
                handle.seek(recorded)
                gap = handle.read(size - recorded)
            self._audit.record(JOURNAL_FILE, "append", start=recorded, end=size, digest=sha256_hex(gap), late=True)
            log.warning("%s: bytes %d-%d were written before a crash without their audit record; "
                        "recorded them now (marked late)", self.path, recorded, size)
            recorded = size
        self._recorded_end = recorded

    def _check_key(self) -> None:
        """Refuse to append to an encrypted journal without its key, or with another key.

        A line written with the wrong key (or in clear among encrypted ones) would make
        the journal unreadable for the right key, so this is checked before every write
        (against the newest line; once per file for a key that works).
        """
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return
        if st.st_size == 0 or self._key_ok == (st.st_ino, st.st_dev):
            return
        with open(self.path, "rb") as handle:
            handle.seek(max(0, st.st_size - 65536))
            tail = handle.read()
        lines = [line for line in tail.split(b"\n")[:-1] if line.strip()]
        if not lines or not is_token(lines[-1]):
            return
        if self._cipher is None:
            raise EncryptionKeyError(
                f"{self.path} is encrypted: set MEM_ENCRYPTION_KEY to the key it was written "
                "with. Nothing was written."
            )
        self._cipher.decrypt(lines[-1], where=f"{self.path} (its newest line; nothing was written)")
        self._key_ok = (st.st_ino, st.st_dev)

    def _encode(self, line: str) -> bytes:
        raw = line.encode("utf-8")
        if self._cipher is not None:
            raw = self._cipher.encrypt(raw)
        return raw + b"\n"

    # -- reading -----------------------------------------------------------------
    def entries(
        self,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        key: str | None = None,
        where: Mapping[str, str] | None = None,
        contains: str | None = None,
    ) -> list[JournalEntry]:
        """Entries in file order, filtered by time range ``[since, until]``, by having ``key``,
        by field values ``where`` (exact match), and by ``contains`` (case-insensitive text)."""
        lo = _utc(since) if since is not None else None
        hi = _utc(until) if until is not None else None
        needle = contains.lower() if contains else None
        out = []
        for entry in self._read():
            if lo is not None and entry.time < lo:
                continue
            if hi is not None and entry.time > hi:
                continue
            if key is not None and key not in entry.fields:
                continue
            if where and any(entry.fields.get(k) != str(v) for k, v in where.items()):
                continue
            if needle and needle not in str(entry).lower():
                continue
            out.append(entry)
        return out

    def tail(self, n: int = 20) -> list[JournalEntry]:
        """The last ``n`` entries."""
        return self._read(last=n) if n > 0 else []

    def frame(self, **filters: Any) -> pd.DataFrame:
        """Entries as a DataFrame indexed by UTC time: ``line``, ``text`` and one column per key."""
        rows = [
            {"time": e.time, "line": e.line, "text": e.text, **e.fields}
            for e in self.entries(**filters)
        ]
        if not rows:
            return pd.DataFrame(
                columns=["line", "text"], index=pd.DatetimeIndex([], tz="UTC", name="time")
            )
        frame = pd.DataFrame(rows)
        frame["time"] = pd.to_datetime(frame["time"], utc=True)
        return frame.set_index("time")

    def __len__(self) -> int:
        return len(self._read())

    def _read(self, last: int | None = None) -> list[JournalEntry]:
        if not self.path.exists():
            return []
        out = []
        with open(self.path, "rb") as handle:
            data = handle.read()
        lines = data.split(b"\n")
        complete = lines[:-1]  # the part after the last newline is empty or a torn write
        if lines[-1]:
            log.warning("%s: last line is incomplete (crash mid-write?); it is not read", self.path)
        first = 0 if last is None else max(0, len(complete) - last)
        for number, raw in enumerate(complete[first:], start=first + 1):
            if not raw.strip():
                raise CorruptMemoryError(self.path, "empty line in the journal", number)
            if is_token(raw):
                where = f"{self.path}:{number}"
                raw = require_cipher(self._cipher, where=str(self.path)).decrypt(raw, where=where)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise CorruptMemoryError(self.path, "line is not valid UTF-8", number) from None
            out.append(parse_line(text, path=self.path, line=number))
        return out
