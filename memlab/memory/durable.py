"""Durable file primitives: private files, atomic replace, fsync'd appends, quarantine.

Everything the memory stores write goes through here, so that a crash (even
``kill -9`` or a power cut after fsync) never leaves half a file and every file is
readable only by its owner (mode 600, folders 700).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if missing; a folder memlab creates is mode 700."""
    path = Path(path)
    if not path.exists():
        path.mkdir(parents=True, mode=DIR_MODE, exist_ok=True)
        os.chmod(path, DIR_MODE)
    return path


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_private(path: Path) -> None:
    """Create ``path`` empty with mode 600 if it does not exist (never truncates)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` all at once: temp file, fsync, rename, fsync folder.

    A reader sees the old content or the new, never a mix; a crash at any point leaves
    one of the two complete files. ``sync=False`` skips both fsyncs: the new file then
    survives a killed process (the kernel has it), not a power cut, until a synced write.
    """
    path = Path(path)
    ensure_private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync:
        fsync_dir(path.parent)


def open_store_db(path: Path, schema: str, *, pragmas: tuple[str, ...] = (),
                  check: Callable[[sqlite3.Connection], None] | None = None) -> sqlite3.Connection:
    """A store's SQLite database at ``path``, ready to write: created mode 600 when missing
    (its WAL files inherit the mode), WAL with ``synchronous=FULL``, then ``pragmas``,
    ``schema`` and ``check(conn)`` (a schema-version check, say).

    A folder that cannot be written raises
    :class:`~memlab.memory.errors.ReadOnlyMemoryError` (the file is fine, so no advice to
    quarantine it); a file SQLite cannot read raises
    :class:`~memlab.memory.errors.CorruptMemoryError`.
    """
    from memlab.memory.errors import CorruptMemoryError, storage_error

    try:
        if not path.exists():
            create_private(path)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    except (OSError, sqlite3.Error) as exc:
        raise storage_error(path, exc) or exc from None
    try:
        for pragma in ("journal_mode=WAL", "synchronous=FULL", *pragmas):
            conn.execute(f"PRAGMA {pragma}")
        conn.executescript(schema)
        if check is not None:
            check(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise storage_error(path, exc) or CorruptMemoryError(path, f"not a readable SQLite database ({exc})") from None
    except BaseException:
        conn.close()
        raise
    return conn


def open_store_readonly(path: Path, *, timeout: float = 10.0, name: str = "store") -> sqlite3.Connection:
    """A store's SQLite database at ``path``, opened to read only: the one way readers open it.

    The file is never created and never written (``mode=ro``, ``query_only``); a WAL reader
    reads a consistent snapshot and never blocks the writer. In a folder nobody may write,
    where SQLite cannot make the WAL index beside the file (and so nobody can be writing),
    the file is opened as immutable instead.

    A missing file raises :class:`FileNotFoundError` naming the store (``name``); a file
    SQLite cannot read raises :class:`~memlab.memory.errors.CorruptMemoryError`.
    """
    from memlab.memory.errors import CorruptMemoryError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, f"no {name} yet", str(path))
    uri = path.resolve().as_uri()
    conn = None
    try:
        try:
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout, check_same_thread=False)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:
            if conn is not None:
                conn.close()
            if os.access(path.parent, os.W_OK) or not any(w in str(exc) for w in ("readonly", "unable to open")):
                raise
            conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=timeout, check_same_thread=False)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        conn.execute("PRAGMA query_only=1")
    except sqlite3.OperationalError:
        if conn is not None:
            conn.close()
        raise  # locked, or not ours to open: worth retrying or fixing, not damage
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        raise CorruptMemoryError(path, f"the {name} is not a readable SQLite database ({exc})") from None
    return conn


@contextlib.contextmanager
def read_store_db(path: Path, *, timeout: float = 10.0, name: str = "store") -> Iterator[sqlite3.Connection]:
    """Read a store's SQLite file for the length of a ``with`` block (see :func:`open_store_readonly`).

    Damage found while reading (a malformed page, a table the store should have but the
    file lacks) raises :class:`~memlab.memory.errors.CorruptMemoryError` naming the store;
    a file whose writer has created it but not yet its tables raises
    :class:`FileNotFoundError`, as a missing one does (there is nothing to read yet).
    """
    from memlab.memory.errors import CorruptMemoryError

    conn = open_store_readonly(path, timeout=timeout, name=name)
    try:
        yield conn
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if not text.startswith(("no such table", "no such column")):
            raise
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
            raise FileNotFoundError(errno.ENOENT, f"no {name} yet (its writer is creating it)", str(path)) from None
        raise CorruptMemoryError(path, f"the {name} lacks what memlab stores in it ({text}): another program's "
                                 "file, or one of another memlab version") from None
    except sqlite3.DatabaseError as exc:
        raise CorruptMemoryError(path, f"the {name} cannot be read ({exc})") from None
    finally:
        conn.close()


_group = threading.local()


@contextlib.contextmanager
def group_commit() -> Iterator[None]:
    """Group commit for hot loops (a replay writing memory on many bars a second).

    Appends inside the block are written at once, so a killed process loses nothing (the
    kernel has the bytes), and fsynced once when the block ends, with the write-ahead logs
    of the SQLite stores that took part: a power cut can lose at most the block. Nested
    blocks join the outer one. Outside any block every append is fsynced on its own.
    """
    if getattr(_group, "pending", None) is not None:
        yield
        return
    _group.pending = {}
    try:
        yield
    finally:
        pending, _group.pending = _group.pending, None
        for finish in pending.values():
            finish()


def begin_group() -> None:
    """Start a group commit without a ``with`` block (for loops that end groups as they go)."""
    if getattr(_group, "pending", None) is None:
        _group.pending = {}


def end_group() -> None:
    """End the current group commit: fsync what it wrote (see :func:`group_commit`)."""
    pending = getattr(_group, "pending", None)
    _group.pending = None
    for finish in (pending or {}).values():
        finish()


def group_has_writes() -> bool:
    return bool(getattr(_group, "pending", None))


class TickCommit:
    """Group commit across the writers of one event-loop tick.

    A writer (e.g. a webhook alert's handler) calls :func:`begin_group`, writes, then
    ``await tick.durable()``: every writer that wrote in the same tick waits for one fsync
    of each file touched, then all resume. Under load, many alerts share an fsync; idle,
    each alert gets its own at once. Nothing is acknowledged before it is on disk.
    """

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    async def durable(self) -> None:
        loop = asyncio.get_running_loop()
        if self._future is None:
            self._future = loop.create_future()
            loop.call_soon(self._finish)
        await asyncio.shield(self._future)

    def _finish(self) -> None:
        future, self._future = self._future, None
        try:
            end_group()
            begin_group()
        except BaseException as exc:  # the waiters learn the write failed
            if future is not None:
                future.set_exception(exc)
            return
        if future is not None:
            future.set_result(None)


def in_group_commit() -> bool:
    return getattr(_group, "pending", None) is not None


def fsync_path(path: Path) -> None:
    """fsync ``path`` through a new descriptor (Linux syncs the file, whoever wrote it)."""
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _defer(key: object, finish: Callable[[], None]) -> None:
    _group.pending.setdefault(key, finish)


def at_group_end(key: object, finish: Callable[[], None]) -> bool:
    """Inside :func:`group_commit`: run ``finish`` once when the group ends (the first
    ``finish`` given for ``key`` wins) and return True; outside a group: False, nothing done."""
    if not in_group_commit():
        return False
    _defer(key, finish)
    return True


def relax_sqlite(conn: sqlite3.Connection, db_path: Path, lock: contextlib.AbstractContextManager[object] | None = None) -> None:
    """Inside :func:`group_commit`: let ``conn``'s commits skip their fsync (WAL with
    ``synchronous=NORMAL`` survives a killed process) and fsync its WAL when the group
    ends, back to ``synchronous=FULL``. Outside a group: nothing. Call before BEGIN."""
    if not in_group_commit() or ("sqlite", id(conn)) in _group.pending:
        return
    conn.execute("PRAGMA synchronous=NORMAL")

    def finish() -> None:
        with lock if lock is not None else contextlib.nullcontext():  # not inside another thread's transaction
            fsync_path(Path(f"{db_path}-wal"))
            with contextlib.suppress(sqlite3.ProgrammingError):  # closed meanwhile: nothing to restore
                conn.execute("PRAGMA synchronous=FULL")

    _defer(("sqlite", id(conn)), finish)


def append_durable(path: Path, data: bytes) -> tuple[int, int]:
    """Append ``data`` in one write and fsync; returns the (start, end) byte offsets.

    The file is opened with O_APPEND so concurrent appenders never interleave inside
    one write; callers serialise with a lock when they need the offsets to be exact.
    """
    path = Path(path)
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    try:
        start = os.fstat(fd).st_size
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if in_group_commit():
            _defer(("file", str(path)), lambda p=path: fsync_path(p))
        else:
            os.fsync(fd)
        end = start + len(data)
    finally:
        os.close(fd)
    if new:
        fsync_dir(path.parent)
    return start, end


def quarantine(path: Path) -> Path:
    """Move a damaged file aside as ``NAME.corrupt-YYYYmmddTHHMMSSZ``; returns the new path.

    Nothing is deleted: the damaged file keeps its bytes for inspection, and the store
    starts afresh on its next write.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file to quarantine")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    os.replace(path, target)
    fsync_dir(path.parent)
    return target


@contextlib.contextmanager
def file_lock(path: Path):  # type: ignore[no-untyped-def]
    """Hold an exclusive advisory lock on ``path`` (a sidecar lock file) across processes."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def lock_path_for(path: Path) -> Path:
    """The sidecar lock file that guards writes to ``path``."""
    return path.with_name(f".{path.name}.lock")


def set_aside_torn_tail(path: Path) -> Path | None:
    """If a crash cut the last line of an append-only file short, move that torn tail
    into ``NAME.torn-STAMP`` and truncate the file to its last complete line.

    Returns where the torn bytes went, or None when the file ends cleanly. The torn
    bytes were never acknowledged to a writer (their fsync never returned), but they
    are kept, not dropped.
    """
    path = Path(path)
    if not path.exists():
        return None
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return None
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return None
        # Find the end of the last complete line.
        block = 65536
        pos = size
        cut = 0
        while pos > 0:
            start = max(0, pos - block)
            handle.seek(start)
            chunk = handle.read(pos - start)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                cut = start + idx + 1
                break
            pos = start
        handle.seek(cut)
        torn = handle.read()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        aside = path.with_name(f"{path.name}.torn-{stamp}")
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            out.write(torn)
            out.flush()
            os.fsync(out.fileno())
        handle.truncate(cut)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(path.parent)
    return aside
