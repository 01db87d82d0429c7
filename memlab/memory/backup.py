"""Backups of the memory folder to timestamped archives, and restores that overwrite nothing."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from memlab.errors import InvalidInputError
from memlab.memory.crypto import MemoryCipher
from memlab.memory.durable import FILE_MODE, ensure_private_dir, fsync_dir
from memlab.memory.verify import file_digest

MANIFEST = "MANIFEST.json"
_SKIP_SUFFIXES = ("-wal", "-shm", "-journal", ".lock", ".tmp")


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(16) == b"SQLite format 3\x00"


def backup_memory(root: Path, dest_dir: Path | None = None) -> Path:
    """Write ``mem_knowledge-YYYYmmddTHHMMSSZ.tar.gz`` (mode 600) and return its path.

    SQLite files are copied with SQLite's online backup, so a store being written to
    is captured consistently. A ``MANIFEST.json`` inside lists each file's SHA-256.
    """
    root = Path(root)
    if not root.is_dir():
        raise InvalidInputError(f"{root}: no memory folder to back up")
    dest = ensure_private_dir(Path(dest_dir) if dest_dir else root.parent / "backups")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = dest / f"{root.name}-{stamp}.tar.gz"
    manifest: dict[str, str] = {}
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        staged = Path(tmp)
        for path in sorted(root.iterdir()):
            if (
                not path.is_file()
                or path.name.startswith(".")
                or path.name.endswith(_SKIP_SUFFIXES)
            ):
                continue
            copy = staged / path.name
            if _is_sqlite(path):
                src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                dst = sqlite3.connect(copy)
                with dst:
                    src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")
                src.close()
                dst.close()
            else:
                shutil.copyfile(path, copy)
            manifest[path.name] = file_digest(copy)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for name in manifest:
                tar.add(staged / name, arcname=name)
            body = json.dumps(
                {"created": stamp, "source": str(root), "files": manifest}, indent=2
            ).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(body)
            info.mode = FILE_MODE
            tar.addfile(info, io.BytesIO(body))
            raw.flush()
            os.fsync(raw.fileno())
    fsync_dir(dest)
    return target


def _plain_name(name: object) -> bool:
    """A file name with no folder part: what ``backup_memory`` writes, and nothing else."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not name.startswith(".")
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
        and os.path.basename(name) == name
    )


def _check_members(archive: Path, tar: tarfile.TarFile) -> None:
    """Refuse, before anything is extracted, an archive whose members are not plain files
    with plain names (no ``../``, no absolute paths, no links, folders or devices)."""
    seen: set[str] = set()
    for member in tar.getmembers():
        if not _plain_name(member.name) and member.name != MANIFEST:
            raise InvalidInputError(
                f"{archive}: member {member.name!r} is not a plain file name; refused, nothing was restored"
            )
        if not member.isreg():
            kind = "a link" if member.issym() or member.islnk() else "not a regular file"
            raise InvalidInputError(
                f"{archive}: member {member.name!r} is {kind}; refused, nothing was restored"
            )
        if member.name in seen:
            raise InvalidInputError(
                f"{archive}: member {member.name!r} appears twice; refused, nothing was restored"
            )
        seen.add(member.name)


def _read_manifest(archive: Path, staging: Path) -> dict[str, str]:
    """The manifest's ``{file: sha256}``, every name checked to be a plain file inside ``staging``."""
    manifest_path = staging / MANIFEST
    if not manifest_path.is_file() or manifest_path.is_symlink():
        raise InvalidInputError(f"{archive}: has no {MANIFEST}; not a memlab backup")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (ValueError, KeyError, TypeError):
        raise InvalidInputError(f"{archive}: {MANIFEST} is not a memlab manifest; nothing was restored") from None
    if not isinstance(files, dict) or not all(isinstance(d, str) for d in files.values()):
        raise InvalidInputError(f"{archive}: {MANIFEST} 'files' is not a map of name to digest; nothing was restored")
    inside = staging.resolve()
    for name in files:
        if not _plain_name(name):
            raise InvalidInputError(
                f"{archive}: {MANIFEST} names {name!r}, which is not a plain file name inside the "
                "backup; refused, nothing was read or restored"
            )
        path = staging / name
        if path.is_symlink() or not path.is_file() or path.resolve().parent != inside:
            raise InvalidInputError(
                f"{archive}: {MANIFEST} lists {name!r}, which is not a file in the archive; nothing was restored"
            )
    extra = sorted(p.name for p in staging.iterdir() if p.name != MANIFEST and p.name not in files)
    if extra:
        raise InvalidInputError(
            f"{archive}: {extra[0]!r} is in the archive but not in its {MANIFEST}; nothing was restored"
        )
    return dict(files)


def restore_memory(archive: Path, root: Path, *, cipher: MemoryCipher | None = None) -> Path | None:
    """Restore ``archive`` into ``root``. A non-empty ``root`` is first moved aside to
    ``<root>.before-restore-STAMP`` (returned), never overwritten or deleted.

    The folder's writer lock is held throughout, so a running trader makes the restore
    fail (:class:`MemoryInUseError`) instead of writing into a folder that moves under it.
    Only plain files listed in the archive's manifest, with their recorded digests, are
    restored: a member or manifest entry with a folder part (``../../etc/hostname``), an
    absolute path or a link is refused and nothing is read outside the staging folder. The
    chain head beside the folder is pointed at the restored trail (the old one moves with
    the old folder), so ``memlab memory verify`` checks the restored memory as it was.
    """
    from memlab.memory.audit import AuditTrail, head_path_for
    from memlab.memory.lock import LOCK_FILE, WriterLock

    archive, root = Path(archive), Path(root)
    if not archive.is_file():
        raise InvalidInputError(f"{archive}: no such backup archive")
    ensure_private_dir(root.parent)
    # A folder that does not exist yet has no writer to wait for (and is not created on failure).
    with WriterLock(root) if root.exists() else contextlib.nullcontext():
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.restore-", dir=root.parent))
        try:
            try:
                with tarfile.open(archive, mode="r:gz") as tar:
                    _check_members(archive, tar)
                    tar.extractall(staging, filter="data")
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise InvalidInputError(f"{archive}: not a readable memlab backup ({exc})") from None
            files = _read_manifest(archive, staging)
            for name, digest in files.items():
                if file_digest(staging / name) != digest:
                    raise InvalidInputError(
                        f"{archive}: {name} does not match its manifest digest (damaged archive)"
                    )
            (staging / MANIFEST).unlink()
            for path in staging.iterdir():
                os.chmod(path, FILE_MODE)
            os.chmod(staging, 0o700)
            with WriterLock(staging):  # moves into place locked: no writer slips in before the head is set
                aside = None
                head = head_path_for(root)
                if root.exists() and any(p.name != LOCK_FILE for p in root.iterdir()):
                    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
                    aside = root.with_name(f"{root.name}.before-restore-{stamp}")
                    if head.exists():  # the old chain head goes with the old folder
                        os.replace(head, head_path_for(aside))
                    os.replace(root, aside)
                elif root.exists():
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(root / LOCK_FILE)
                    root.rmdir()
                os.replace(staging, root)
                fsync_dir(root.parent)
                AuditTrail(root, cipher=cipher).reset_head()
            return aside
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
