"""One writer per memory folder: an exclusive ``fcntl`` lock on ``.writer.lock`` inside it.

The trader (for its whole session), training (while it writes), ``memlab memory restore``
and ``memlab memory quarantine`` hold it. A second writer is refused at once with one
line naming the holder::

    memory folder data/mem_knowledge is in use by pid 1234 (memlab paper --sample GOOG); stop it first

The kernel drops an ``flock`` when its process dies, however it dies, so a lock left by
a ``kill -9`` is simply taken by the next writer; the pid and command in the file are
only there for that message. Readers (the monitor, ``verify``, ``status``) take no lock.

Within one process the lock is re-entrant per folder (training called from a session
that already holds it does not lock itself out); it is released when the outermost
holder releases it.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> with writer_lock(folder) as lock:
...     lock.held
True
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from memlab.config import memory_path
from memlab.memory.durable import FILE_MODE, ensure_private_dir
from memlab.memory.errors import MemoryInUseError

LOCK_FILE = ".writer.lock"

_held: dict[str, tuple[int, int, int]] = {}  # folder -> (pid, fd, depth), this process only
_guard = threading.Lock()


def _key(root: Path) -> str:
    return str(Path(root).resolve())


def current_command() -> str:
    """This process's command line as a person typed it (``memlab paper --sample GOOG``)."""
    argv = list(sys.argv) or ["python"]
    first = Path(argv[0]).name
    if first in ("cli.py", "__main__.py") and "memlab" in argv[0]:
        first = "memlab"
    elif first in ("-c", "-m", ""):
        first = f"python {first}".strip()
    text = " ".join([first, *argv[1:]]).replace("\n", " ")
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a folder's writer lock, as written in the lock file."""

    pid: int | None
    command: str
    since: str

    @classmethod
    def read(cls, path: Path) -> Holder:
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            return cls(int(info["pid"]), str(info["cmd"]), str(info.get("since", "")))
        except (OSError, ValueError, KeyError, TypeError):
            # The holder has the lock but has not written its name yet (or wrote garbage).
            return cls(None, "", "")

    def describe(self) -> str:
        if self.pid is None:
            return "another process"
        return f"pid {self.pid} ({self.command})" if self.command else f"pid {self.pid}"


class WriterLock:
    """The exclusive writer lock of one memory folder; use as a context manager.

    ``acquire()`` never waits: it raises :class:`MemoryInUseError` when another process
    holds the lock.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = memory_path(root)  # None: $MEM_MEMORY_PATH or data/mem_knowledge/, as MemoryStores
        self.path = self.root / LOCK_FILE
        self._mine = False

    def __repr__(self) -> str:
        return f"WriterLock({str(self.root)!r}, held={self.held})"

    @property
    def held(self) -> bool:
        return self._mine

    def acquire(self) -> WriterLock:
        if self._mine:
            return self
        ensure_private_dir(self.root)
        key = _key(self.root)
        with _guard:
            entry = _held.get(key)
            if entry is not None and entry[0] == os.getpid():
                _held[key] = (entry[0], entry[1], entry[2] + 1)
                self._mine = True
                return self
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = Holder.read(self.path)
                raise MemoryInUseError(
                    f"memory folder {self.root} is in use by {holder.describe()}; stop it first",
                    holder_pid=holder.pid,
                    holder_command=holder.command,
                ) from None
            except BaseException:
                os.close(fd)
                raise
            # Ours now (a holder killed earlier left only its name behind): say who we are.
            info = {"pid": os.getpid(), "cmd": current_command(),
                    "since": datetime.now(UTC).isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
            _held[key] = (os.getpid(), fd, 1)
            self._mine = True
        return self

    def release(self) -> None:
        if not self._mine:
            return
        self._mine = False
        key = _key(self.root)
        with _guard:
            entry = _held.get(key)
            if entry is None or entry[0] != os.getpid():
                return
            pid, fd, depth = entry
            if depth > 1:
                _held[key] = (pid, fd, depth - 1)
                return
            del _held[key]
            # The name stays in the file: it is overwritten by the next holder.
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def writer_lock(root: str | os.PathLike[str] | None = None) -> Iterator[WriterLock]:
    """Hold the writer lock of ``root`` for the block (see :class:`WriterLock`)."""
    lock = WriterLock(root).acquire()
    try:
        yield lock
    finally:
        lock.release()


def holder(root: str | os.PathLike[str]) -> Holder | None:
    """Who holds ``root``'s writer lock now, or None when nobody does (read-only check)."""
    path = Path(root) / LOCK_FILE
    if not path.exists():
        return None
    entry = _held.get(_key(Path(root)))
    if entry is not None and entry[0] == os.getpid():
        return Holder(os.getpid(), current_command(), "")
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return Holder.read(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
