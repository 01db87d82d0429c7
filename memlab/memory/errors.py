"""Errors of the memory stores: each names the file (and line) and what to do."""

from __future__ import annotations

from pathlib import Path

from memlab.errors import MemlabError


class MemoryStoreError(MemlabError):
    """Base of memory-store errors."""


class CorruptMemoryError(MemoryStoreError):
    """A memory file cannot be read as what it should be. The file is left untouched.

    ``path`` and ``line`` (1-based, when known) say where; the message says how to
    move the damaged file aside (``memlab memory quarantine FILE``) and start afresh.
    """

    def __init__(self, path: Path, detail: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.detail = detail
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(
            f"{where}: {detail}. The file was left as it is; fix it, restore a backup "
            f"(memlab memory restore) or move it aside (memlab memory quarantine {self.path})."
        )


class EncryptionKeyError(MemoryStoreError):
    """The encryption key is missing, malformed, or not the one the file was written with."""


class TamperedMemoryError(MemoryStoreError):
    """The audit trail shows that past memory was edited outside memlab."""
