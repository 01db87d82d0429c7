"""The hash-chained audit trail: one line per write to memory, each sealing the one before.

``audit_log.jsonl`` records, for every memory write, which file changed and a digest of
what was written (appended byte range, whole-file digest, or the decision store's
chain head). Each record carries the hash of the previous record, so editing, removing
or reordering any past record breaks the chain. With ``MEM_ENCRYPTION_KEY`` set the
links are HMACs, which nobody without the key can forge.

**The chain head lives outside the folder.** A chain alone cannot show that its own end
was cut off, or that the whole file was deleted. So every record also updates a small
*head file* beside the memory folder, ``<parent>/.<folder>.audit-head`` (next to the
default ``backups/``), holding the sequence number and hash of the newest record, sealed
like the records. What that buys, and what it does not (see ``docs/threat_model.md``):

- Anyone or anything that can only change files *inside* the memory folder (a sync
  tool, a careless script, an agent given the folder, a person editing by hand) cannot
  hide an edit: deleting ``audit_log.jsonl``, truncating it, or replacing it with a
  fresh chain is caught by the head, and memory files that the trail does not cover
  fail ``memlab memory verify``. Writers refuse to write on top of such a folder, and
  ``strategy_modules.py`` is never imported without a matching, authentic record.
- Someone who can also write the head file (the same Unix user, in general) can forge
  both unless ``MEM_ENCRYPTION_KEY`` is set: then records and head are HMACs and forging
  them needs the key. The key is what an attacker with the user's files must not have.

The head file has two 512-byte slots written in turn, each a complete sealed JSON
object, so a crash in the middle of updating one leaves the other intact.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memlab.memory.crypto import MemoryCipher
from memlab.memory.durable import (
    FILE_MODE,
    append_durable,
    at_group_end,
    atomic_write_bytes,
    ensure_private_dir,
    file_lock,
    fsync_dir,
    lock_path_for,
    open_store_readonly,
    set_aside_torn_tail,
)
from memlab.memory.errors import (
    CorruptMemoryError,
    EncryptionKeyError,
    ReadOnlyMemoryError,
    TamperedMemoryError,
)

log = logging.getLogger(__name__)

AUDIT_FILE = "audit_log.jsonl"
GENESIS = "0" * 64
HEAD_SLOT = 512

#: The files the trail covers. When any of them holds memory, the trail must exist and
#: cover it (``memory_files_with_data``).
AUDITED_TEXT_FILES = (
    "core_memory_updates.txt",
    "parameter_updates.json",
    "strategy_modules.py",
    "core_memory.json",
)
#: SQLite stores the trail covers: file -> tables whose rows are memory.
AUDITED_SQLITE_FILES = {"decisions.sqlite": ("decisions", "outcomes"), "archival.sqlite": ("passages",)}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(entry: dict[str, Any]) -> bytes:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def head_path_for(root: Path) -> Path:
    """Where the chain head of the memory folder ``root`` is kept: beside it, not in it."""
    real = Path(root).resolve()
    return real.parent / f".{real.name}.audit-head"


def _sqlite_rows(path: Path, tables: tuple[str, ...]) -> bool:
    """Whether the SQLite store holds any row in ``tables`` (unreadable counts as yes)."""
    if path.stat().st_size == 0:
        return False
    try:
        conn = open_store_readonly(path, name=path.name)
    except FileNotFoundError:  # removed since it was listed
        return False
    except (sqlite3.Error, CorruptMemoryError):
        return True
    try:
        for table in tables:
            try:
                if conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
                    return True
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    return True
        return False
    except sqlite3.Error:
        return True
    finally:
        conn.close()


def memory_files_with_data(root: Path) -> list[str]:
    """The audited memory files in ``root`` that hold something (empty stores do not count)."""
    root = Path(root)
    out = []
    for name in AUDITED_TEXT_FILES:
        path = root / name
        if path.is_file() and path.stat().st_size > 0:
            out.append(name)
    for name, tables in AUDITED_SQLITE_FILES.items():
        path = root / name
        if path.is_file() and _sqlite_rows(path, tables):
            out.append(name)
    return sorted(out)


@dataclass(frozen=True)
class ChainProblem:
    """A break in the audit chain itself."""

    line: int
    detail: str


_pending_heads: dict[tuple[int, str], tuple[bytes, int]] = {}
_pending_guard = threading.Lock()


class AuditTrail:
    """Appends sealed records to ``audit_log.jsonl`` and checks the chain.

    >>> import tempfile
    >>> trail = AuditTrail(Path(tempfile.mkdtemp()))
    >>> trail.record("notes.txt", "append", start=0, end=5, digest=sha256_hex(b"hello"))["seq"]
    1
    >>> trail.chain_problems(), trail.head_problems()
    ([], [])
    """

    def __init__(self, root: Path, *, cipher: MemoryCipher | None = None) -> None:
        self.root = ensure_private_dir(Path(root))
        self.path = self.root / AUDIT_FILE
        self.head_path = head_path_for(self.root)
        self._mac_key = None if cipher is None else _derive_mac_key(cipher)
        self._lock = threading.Lock()
        self._known_last: str | None = None  # hash of the newest record this trail checked or wrote
        self._preflight_stamp: tuple[int, int, int] | None = None
        self._head_warned = False

    # -- before a write ----------------------------------------------------------
    def check_writable(self) -> None:
        """Refuse, before anything is written, a write that would corrupt or launder memory.

        Raises :class:`EncryptionKeyError` when the trail was sealed with
        ``MEM_ENCRYPTION_KEY`` and the key is unset or another one, and
        :class:`TamperedMemoryError` when the trail is missing while memory files hold data,
        or is shorter than (or not) the chain whose head is kept beside the folder. Cheap
        when nothing changed since the last check: one ``stat``.
        """
        try:
            st = self.path.stat()
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = None
        if stamp is not None and stamp == self._preflight_stamp:
            return
        last = self._last_entry()
        if last is None or last.get("hash") != self._known_last:
            # Someone else wrote: check under the writers' lock, since another process appends
            # a record and then moves the head, and a trail read without it could be older
            # than the head read a moment later.
            with self._lock, file_lock(lock_path_for(self.path)):
                last = self._last_entry()
                if last is None:
                    self._check_fresh_start()
                elif last.get("hash") != self._known_last:
                    self._check_continuity(last)
                    self._known_last = str(last.get("hash"))
        self._preflight_stamp = stamp

    def _check_fresh_start(self, just_written: str | None = None) -> None:
        held = [name for name in memory_files_with_data(self.root) if name != just_written]
        if held:
            done = "Nothing was written" if just_written is None else f"{just_written} was written but not recorded"
            raise TamperedMemoryError(
                f"{self.path} is missing, but {', '.join(held)} in {self.root} hold memory: the trail "
                f"was deleted or those files were written outside memlab. {done}. "
                "Run `memlab memory verify`, then restore a backup (memlab memory restore)."
            )
        head = self.head()
        if head is not None and int(head.get("seq", 0)) > 0:
            # Everything memlab wrote here is gone: a deliberate fresh start, not a hidden edit.
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            aside = self.head_path.with_name(f"{self.head_path.name}.replaced-{stamp}")
            os.replace(self.head_path, aside)
            log.warning(
                "%s: the memory folder is empty but %d records were written to it before; "
                "starting a new audit trail (the old head is kept in %s)",
                self.root, int(head["seq"]), aside,
            )

    def _check_continuity(self, last: dict[str, Any]) -> None:
        """The newest record is sealed with our key and extends the chain the head names."""
        if last.get("mac") == "hmac-sha256":
            if self._mac_key is None:
                raise EncryptionKeyError(
                    f"the memory in {self.root} is encrypted: set MEM_ENCRYPTION_KEY to the key it "
                    "was written with. Nothing was written."
                )
            if not hmac.compare_digest(str(last.get("hash")), self._seal(last)):
                raise EncryptionKeyError(
                    f"MEM_ENCRYPTION_KEY is not the key the memory in {self.root} was written with "
                    f"(the newest record of {self.path.name} does not verify with it; or that record "
                    "was altered). Nothing was written."
                )
        problems = self._head_vs_trail(last)
        if problems:
            raise TamperedMemoryError(
                f"{problems[0]} Nothing was written. Run `memlab memory verify`, then restore a "
                "backup (memlab memory restore)."
            )

    # -- writing -----------------------------------------------------------------
    def record(self, file: str, op: str, **fields: Any) -> dict[str, Any]:
        """Append one sealed record for a write to ``file`` (a name inside the memory folder)."""
        with self._lock, file_lock(lock_path_for(self.path)):
            torn = set_aside_torn_tail(self.path)
            if torn is not None:
                log.warning("audit log ended in a torn record (crash?); kept it in %s", torn)
            last = self._last_entry()
            if last is None:
                self._check_fresh_start(just_written=file)
            elif last.get("hash") != self._known_last:
                self._check_continuity(last)
            entry: dict[str, Any] = {
                "seq": (last["seq"] + 1) if last else 1,
                "time": datetime.now(UTC).isoformat(timespec="microseconds"),
                "file": file,
                "op": op,
                **fields,
                "prev": last["hash"] if last else GENESIS,
                "mac": "hmac-sha256" if self._mac_key else "sha256",
            }
            entry["hash"] = self._seal(entry)
            line = json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n"
            append_durable(self.path, line.encode())
            self._known_last = entry["hash"]
            self._write_head(entry)
            return entry

    def reset_head(self) -> None:
        """Point the head at this trail's newest record, whatever it said before.

        Only for a restore, which replaces the whole folder (and holds its writer lock).
        """
        last = self._last_entry()
        if last is None:
            if self.head_path.exists():
                os.unlink(self.head_path)
                fsync_dir(self.head_path.parent)
            return
        slot = self._head_slot(last)
        atomic_write_bytes(self.head_path, slot + slot)
        self._known_last = str(last.get("hash"))

    def _head_slot(self, entry: dict[str, Any]) -> bytes:
        body: dict[str, Any] = {
            "v": 1,
            "seq": int(entry["seq"]),
            "hash": str(entry["hash"]),
            "mac": "hmac-sha256" if self._mac_key else "sha256",
        }
        body["seal"] = self._head_seal(body)
        raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return raw.ljust(HEAD_SLOT - 1) + b"\n"

    def _write_head(self, entry: dict[str, Any]) -> None:
        data = self._head_slot(entry)
        offset = (int(entry["seq"]) % 2) * HEAD_SLOT
        key = (threading.get_ident(), str(self.head_path))
        with _pending_guard:
            _pending_heads[key] = (data, offset)
        if not at_group_end(("audit-head", key), lambda: self._flush_head(key)):
            self._flush_head(key)

    def _flush_head(self, key: tuple[int, str]) -> None:
        with _pending_guard:
            pending = _pending_heads.pop(key, None)
        if pending is None:
            return
        data, offset = pending
        try:
            new = not self.head_path.exists()
            fd = os.open(self.head_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            try:
                os.pwrite(fd, data, offset)
                os.fsync(fd)
            finally:
                os.close(fd)
            if new:
                fsync_dir(self.head_path.parent)
        except PermissionError as exc:
            # A folder whose parent we may not write (a mount point): no head, said once.
            if not self._head_warned:
                self._head_warned = True
                log.warning(
                    "cannot keep the audit chain head at %s (%s): a deleted or truncated "
                    "audit trail will not be detectable for %s", self.head_path, exc, self.root,
                )
        except OSError as exc:
            raise ReadOnlyMemoryError(f"{self.head_path}: cannot update the audit chain head ({exc})") from exc

    # -- reading -----------------------------------------------------------------
    def entries(self) -> list[dict[str, Any]]:
        """All records in order; a line that is not JSON is a corrupt-file error."""
        if not self.path.exists():
            return []
        out = []
        with open(self.path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.endswith(b"\n"):
                    # A crash cut the last record short; it sealed nothing that was acknowledged.
                    break
                try:
                    entry = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise CorruptMemoryError(
                        self.path, f"audit record is not JSON ({exc.msg})", number
                    ) from None
                if not isinstance(entry, dict):
                    raise CorruptMemoryError(self.path, "audit record is not an object", number)
                entry["_line"] = number
                out.append(entry)
        return out

    def chain_problems(self, entries: list[dict[str, Any]] | None = None) -> list[ChainProblem]:
        """Every place the chain is broken (edited, removed, reordered or forged records)."""
        problems: list[ChainProblem] = []
        prev = GENESIS
        expected_seq = 1
        for entry in self.entries() if entries is None else entries:
            entry = dict(entry)
            line = entry.pop("_line", 0)
            if entry.get("seq") != expected_seq:
                problems.append(
                    ChainProblem(
                        line,
                        f"sequence {entry.get('seq')} where {expected_seq} was expected (a record was removed or inserted)",
                    )
                )
            if entry.get("prev") != prev:
                problems.append(
                    ChainProblem(
                        line,
                        "does not link to the record before it (a record was edited, removed or reordered)",
                    )
                )
            try:
                good = hmac.compare_digest(str(entry.get("hash")), self._seal(entry))
            except EncryptionKeyError as exc:
                problems.append(ChainProblem(line, str(exc)))
                good = True
            if not good:
                problems.append(
                    ChainProblem(
                        line, "its seal does not match its content (the record was edited)"
                    )
                )
            prev = str(entry.get("hash"))
            try:
                expected_seq = int(entry.get("seq", expected_seq)) + 1
            except (TypeError, ValueError):
                expected_seq += 1
        return problems

    def head(self) -> dict[str, Any] | None:
        """The newest readable slot of the head file; None when there is no head (yet)."""
        try:
            data = self.head_path.read_bytes()
        except FileNotFoundError:
            return None
        best: dict[str, Any] | None = None
        for offset in range(0, len(data), HEAD_SLOT):
            chunk = data[offset : offset + HEAD_SLOT].strip(b" \n\x00")
            try:
                slot = json.loads(chunk)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # a slot torn by a crash; the other one holds the head before it
            if (isinstance(slot, dict) and isinstance(slot.get("seq"), int)
                    and (best is None or slot["seq"] > best["seq"])):
                best = slot
        return best

    def head_problems(self, entries: list[dict[str, Any]] | None = None) -> list[str]:
        """What is wrong between the trail and the head kept beside the folder (as sentences)."""
        try:
            return self._head_problems(entries)
        except OSError as exc:  # fail closed: a head we cannot read vouches for nothing
            return [f"{self.head_path}: the chain head cannot be read ({exc.strerror or exc}), so the "
                    "trail cannot be checked for truncation"]

    def _head_problems(self, entries: list[dict[str, Any]] | None) -> list[str]:
        last = self._last_entry() if entries is None else (entries[-1] if entries else None)
        if last is None:
            head = self.head()
            if head is not None and int(head.get("seq", 0)) > 0:
                return [
                    f"{self.path.name} is missing or empty, but {head['seq']} records were written to it "
                    f"(chain head in {self.head_path}): the trail was deleted"
                ]
            return []
        return self._head_vs_trail(last, entries)

    def _head_vs_trail(
        self, last: dict[str, Any], entries: list[dict[str, Any]] | None = None
    ) -> list[str]:
        head = self.head()
        if head is None:
            return []
        problems = []
        if head.get("mac") == "hmac-sha256" and self._mac_key is None:
            problems.append(
                f"{self.head_path.name}: sealed with MEM_ENCRYPTION_KEY, which is not set; it cannot be checked"
            )
        elif not hmac.compare_digest(str(head.get("seal")), self._head_seal(head)):
            return [f"{self.head_path}: its seal does not match its content (the head was edited)"]
        seq, last_seq = int(head["seq"]), int(last.get("seq", 0))
        if last_seq < seq:
            problems.append(
                f"{self.path.name} ends at record {last_seq}, but {seq} records were written "
                f"(chain head in {self.head_path}): the trail was truncated or replaced"
            )
            return problems
        at = self._entry_at(seq, entries)
        if at is None or at.get("hash") != head.get("hash"):
            problems.append(
                f"{self.path.name}: record {seq} is not the one sealed in the chain head "
                f"{self.head_path} (the trail was replaced or rewritten)"
            )
        return problems

    def for_file(self, file: str) -> list[dict[str, Any]]:
        return [e for e in self.entries() if e.get("file") == file]

    def last_for(self, file: str) -> dict[str, Any] | None:
        """The newest record of ``file`` (searched from the end), or None when it has none.

        Callers that need it stable hold ``file``'s own writer lock: only its writers add
        records for it.
        """
        if not self.path.exists():
            return None
        for raw in self._lines_from_end():
            try:
                entry = json.loads(raw)
            except json.JSONDecodeError:
                raise CorruptMemoryError(self.path, "a record is not JSON") from None
            if isinstance(entry, dict) and entry.get("file") == file:
                return entry
        return None

    def require_record(self, file: str, digest: str) -> None:
        """Raise :class:`TamperedMemoryError` unless the newest write of ``file`` recorded in an
        intact trail (chain and head) has ``digest``. Used before running stored code."""
        entries = self.entries()
        if not entries:
            raise TamperedMemoryError(
                f"{self.root / file} has no audit record ({self.path.name} is missing or empty), so "
                "memlab cannot tell it was written by memlab; it was not imported. Run "
                "`memlab memory verify` and restore a backup."
            )
        broken = [f"line {p.line}: {p.detail}" for p in self.chain_problems(entries)]
        broken += self.head_problems(entries)
        if broken:
            raise TamperedMemoryError(
                f"{self.root / file} was not imported: the audit trail is not intact ({broken[0]}). "
                "Run `memlab memory verify` and restore a backup."
            )
        writes = []
        for entry in entries:
            if entry.get("file") != file:
                continue
            if entry.get("op") == "quarantine":
                writes = []
            elif entry.get("op") == "write":
                writes.append(entry)
        if not writes:
            raise TamperedMemoryError(
                f"{self.root / file} has no audit record of being written by memlab; it was not "
                "imported. Run `memlab memory verify` and restore a backup."
            )
        if writes[-1].get("digest") != digest:
            raise TamperedMemoryError(
                f"{self.root / file} was changed outside memlab since its last save; it was not "
                "imported. Run `memlab memory verify` and restore a backup if needed."
            )

    # -- internals ---------------------------------------------------------------
    def _seal(self, entry: dict[str, Any]) -> str:
        body = {k: v for k, v in entry.items() if k != "_line"}
        data = str(body.get("prev", GENESIS)).encode() + _canonical(body)
        if body.get("mac") == "hmac-sha256":
            if self._mac_key is None:
                raise EncryptionKeyError(
                    "audit records sealed with MEM_ENCRYPTION_KEY cannot be checked without it"
                )
            return hmac.new(self._mac_key, data, hashlib.sha256).hexdigest()
        return sha256_hex(data)

    def _head_seal(self, head: dict[str, Any]) -> str:
        body = {k: head.get(k) for k in ("v", "seq", "hash", "mac")}
        data = b"memlab-audit-head-v1" + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        if body["mac"] == "hmac-sha256":
            if self._mac_key is None:
                return ""
            return hmac.new(self._mac_key, data, hashlib.sha256).hexdigest()
        return sha256_hex(data)

    def _tail_lines(self, back: int) -> tuple[list[bytes], bool]:
        """The complete lines in the last ``back`` bytes, and whether that was the whole file."""
        with open(self.path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            back = min(size, back)
            handle.seek(size - back)
            data = handle.read(back)
        whole = back == size
        if not data.endswith(b"\n"):
            data = data[: data.rfind(b"\n") + 1]  # a torn last record sealed nothing
        lines = data.split(b"\n")[:-1]
        if not whole and lines:
            lines = lines[1:]  # the first may be cut by the window
        return lines, whole

    def _last_entry(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        back = 4096  # a record is a few hundred bytes: read more only for a longer one
        while True:
            lines, whole = self._tail_lines(back)
            if lines or whole:
                break
            back *= 16
        if not lines:
            return None
        try:
            entry = json.loads(lines[-1])
        except json.JSONDecodeError:
            raise CorruptMemoryError(self.path, "its last record is not JSON") from None
        if not isinstance(entry, dict):
            raise CorruptMemoryError(self.path, "its last record is not an object")
        return entry

    def _entry_at(self, seq: int, entries: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
        """The record with sequence number ``seq`` (searched from the end: it is usually near it)."""
        if entries is not None:
            return next((e for e in reversed(entries) if e.get("seq") == seq), None)
        for raw in self._lines_from_end():
            try:
                entry = json.loads(raw)
            except json.JSONDecodeError:
                return None
            if isinstance(entry, dict) and entry.get("seq") == seq:
                return entry
            if isinstance(entry, dict) and isinstance(entry.get("seq"), int) and entry["seq"] < seq:
                return None
        return None

    def _lines_from_end(self) -> Iterator[bytes]:
        """The trail's complete lines, newest first, read in growing windows from the end."""
        back, given = 16384, 0
        while True:
            lines, whole = self._tail_lines(back)
            yield from reversed(lines[: len(lines) - given])
            given = len(lines)
            if whole:
                return
            back *= 8


def _derive_mac_key(cipher: MemoryCipher) -> bytes:
    # A key for the seals derived from (not equal to) the encryption key.
    token_key = cipher.mac_material()
    return hashlib.sha256(b"memlab-audit-v1" + token_key).digest()
