"""Backups of the memory folder to timestamped archives, and restores that overwrite nothing."""

from __future__ import annotations

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


def restore_memory(archive: Path, root: Path) -> Path | None:
    """Restore ``archive`` into ``root``. A non-empty ``root`` is first moved aside to
    ``<root>.before-restore-STAMP`` (returned), never overwritten or deleted."""
    archive, root = Path(archive), Path(root)
    if not archive.is_file():
        raise InvalidInputError(f"{archive}: no such backup archive")
    ensure_private_dir(root.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.restore-", dir=root.parent))
    try:
        try:
            with tarfile.open(archive, mode="r:gz") as tar:
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InvalidInputError(f"{archive}: not a readable memlab backup ({exc})") from None
        manifest_path = staging / MANIFEST
        if not manifest_path.exists():
            raise InvalidInputError(f"{archive}: has no {MANIFEST}; not a memlab backup")
        manifest = json.loads(manifest_path.read_text())
        for name, digest in manifest["files"].items():
            if file_digest(staging / name) != digest:
                raise InvalidInputError(
                    f"{archive}: {name} does not match its manifest digest (damaged archive)"
                )
        manifest_path.unlink()
        for path in staging.iterdir():
            os.chmod(path, FILE_MODE)
        os.chmod(staging, 0o700)
        aside = None
        if root.exists() and any(root.iterdir()):
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            aside = root.with_name(f"{root.name}.before-restore-{stamp}")
            os.replace(root, aside)
        elif root.exists():
            root.rmdir()
        os.replace(staging, root)
        fsync_dir(root.parent)
        return aside
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
