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


class MemoryInUseError(MemoryStoreError):
    """Another process holds the memory folder's writer lock; the message names it.

    Retrying helps once that process has stopped, so ``retryable`` is true.
    """

    retryable = True

    def __init__(self, message: str, *, holder_pid: int | None = None, holder_command: str = "") -> None:
        super().__init__(message)
        self.holder_pid = holder_pid
        self.holder_command = holder_command


class ReadOnlyMemoryError(MemoryStoreError):
    """The memory folder (or a file in it) cannot be written: read-only, or not ours.

    Nothing is wrong with the files; the message names the folder and says so.
    """


def storage_error(path: Path, exc: BaseException) -> MemoryStoreError | None:
    """A :class:`ReadOnlyMemoryError` when ``exc`` means ``path``'s folder is not writable, else None."""
    import errno
    import os

    text = str(exc).lower()
    folder = Path(path).parent
    readonly = (
        isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
    ) or "readonly database" in text or "read-only" in text
    if not readonly and "unable to open database" in text:
        readonly = not os.access(folder, os.W_OK)
    if not readonly:
        return None
    return ReadOnlyMemoryError(
        f"{path}: the memory folder {folder} is read-only (or not writable by this user), so "
        "this store cannot be opened for writing. The file itself is fine: make the folder "
        "writable, or point --memory-path / MEM_MEMORY_PATH at a writable copy."
    )
