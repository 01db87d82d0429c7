"""The hash-chained audit trail: one line per write to memory, each sealing the one before.

``audit_log.jsonl`` records, for every memory write, which file changed and a digest of
what was written (appended byte range, whole-file digest, or the decision store's
chain head). Each record carries the hash of the previous record, so editing, removing
or reordering any past record breaks the chain. With ``MEM_ENCRYPTION_KEY`` set the
links are HMACs, which nobody without the key can forge.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memlab.memory.crypto import MemoryCipher
from memlab.memory.durable import (
    append_durable,
    ensure_private_dir,
    file_lock,
    lock_path_for,
    set_aside_torn_tail,
)
from memlab.memory.errors import CorruptMemoryError, EncryptionKeyError

log = logging.getLogger(__name__)

AUDIT_FILE = "audit_log.jsonl"
GENESIS = "0" * 64


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(entry: dict[str, Any]) -> bytes:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class ChainProblem:
    """A break in the audit chain itself."""

    line: int
    detail: str


class AuditTrail:
    """Appends sealed records to ``audit_log.jsonl`` and checks the chain.

    >>> import tempfile
    >>> trail = AuditTrail(Path(tempfile.mkdtemp()))
    >>> trail.record("notes.txt", "append", start=0, end=5, digest=sha256_hex(b"hello"))["seq"]
    1
    >>> trail.chain_problems()
    []
    """

    def __init__(self, root: Path, *, cipher: MemoryCipher | None = None) -> None:
        self.root = ensure_private_dir(Path(root))
        self.path = self.root / AUDIT_FILE
        self._mac_key = None if cipher is None else _derive_mac_key(cipher)
        self._lock = threading.Lock()

    # -- writing -----------------------------------------------------------------
    def record(self, file: str, op: str, **fields: Any) -> dict[str, Any]:
        """Append one sealed record for a write to ``file`` (a name inside the memory folder)."""
        with self._lock, file_lock(lock_path_for(self.path)):
            torn = set_aside_torn_tail(self.path)
            if torn is not None:
                log.warning("audit log ended in a torn record (crash?); kept it in %s", torn)
            last = self._last_entry()
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
            return entry

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

    def chain_problems(self) -> list[ChainProblem]:
        """Every place the chain is broken (edited, removed, reordered or forged records)."""
        problems: list[ChainProblem] = []
        prev = GENESIS
        expected_seq = 1
        for entry in self.entries():
            line = entry.pop("_line")
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
            expected_seq = int(entry.get("seq", expected_seq)) + 1
        return problems

    def for_file(self, file: str) -> list[dict[str, Any]]:
        return [e for e in self.entries() if e.get("file") == file]

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

    def _last_entry(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        with open(self.path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return None
            back = 4096  # a record is a few hundred bytes: read more only for a longer one
            while True:
                back = min(size, back)
                handle.seek(size - back)
                lines = handle.read(back).rstrip(b"\n").split(b"\n")
                if len(lines) > 1 or back == size:
                    break
                back *= 16
        try:
            return json.loads(lines[-1])
        except json.JSONDecodeError:
            raise CorruptMemoryError(self.path, "its last record is not JSON") from None


def _derive_mac_key(cipher: MemoryCipher) -> bytes:
    # A key for the seals derived from (not equal to) the encryption key.
    token_key = cipher.mac_material()
    return hashlib.sha256(b"memlab-audit-v1" + token_key).digest()
