"""``memlab memory …``: verify, back up, restore, quarantine and key the memory folder."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from memlab.config import ENCRYPTION_KEY_ENV, memory_path

_MEMORY_PATH_HELP = "memory folder (default: $MEM_MEMORY_PATH or data/mem_knowledge/)"


def _accept_memory_path(action: argparse.ArgumentParser) -> None:
    """``--memory-path`` after the action too (``memlab memory verify --memory-path X``).

    SUPPRESS keeps an action that was not given the option from hiding the value given
    before the action.
    """
    action.add_argument("--memory-path", default=argparse.SUPPRESS, help=_MEMORY_PATH_HELP)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("memory", help="look after the memory folder", description=__doc__)
    parser.add_argument("--memory-path", default=None, help=_MEMORY_PATH_HELP)
    msub = parser.add_subparsers(dest="memory_command", metavar="ACTION", required=True)

    p = msub.add_parser("verify", help="check every file against the hash-chained audit trail")
    p.set_defaults(func=_verify)

    p = msub.add_parser("backup", help="write a timestamped .tar.gz of the memory folder")
    p.add_argument(
        "--to",
        default=None,
        help="folder for the archive (default: backups/ beside the memory folder)",
    )
    p.set_defaults(func=_backup)

    p = msub.add_parser(
        "restore", help="restore an archive; the current folder is moved aside, not overwritten"
    )
    p.add_argument("archive", help="a .tar.gz written by `memlab memory backup`")
    p.set_defaults(func=_restore)

    p = msub.add_parser(
        "quarantine", help="move a damaged memory file aside so its store starts afresh"
    )
    p.add_argument("file", help="file name inside the memory folder, or its path")
    p.set_defaults(func=_quarantine)

    p = msub.add_parser(
        "keygen", help=f"create {ENCRYPTION_KEY_ENV} in a .env file (the key is not printed)"
    )
    p.add_argument("--env-file", default=".env")
    p.set_defaults(func=_keygen)

    p = msub.add_parser("status", help="what the memory folder holds")
    p.set_defaults(func=_status)

    for action in msub.choices.values():
        _accept_memory_path(action)


def _root(args: argparse.Namespace) -> Path:
    return memory_path(args.memory_path)


def _cipher():  # type: ignore[no-untyped-def]
    from memlab.memory.crypto import MemoryCipher

    return MemoryCipher.from_env()


def _verify(args: argparse.Namespace) -> int:
    from memlab.memory.verify import verify_memory

    report = verify_memory(_root(args), cipher=_cipher())
    print(report)
    return 0 if report.ok else 1


def _backup(args: argparse.Namespace) -> int:
    from memlab.memory.backup import backup_memory

    root = _root(args)
    target = backup_memory(root, Path(args.to) if args.to else None)
    print(f"backup of {root} written to {target}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from memlab.memory.backup import restore_memory

    root = _root(args)
    aside = restore_memory(Path(args.archive), root, cipher=_cipher())
    print(f"restored {args.archive} into {root}")
    if aside is not None:
        print(f"the memory that was there was moved to {aside}")
    return 0


def _quarantine(args: argparse.Namespace) -> int:
    from memlab.errors import InvalidInputError
    from memlab.memory.audit import AuditTrail
    from memlab.memory.durable import quarantine
    from memlab.memory.lock import writer_lock

    root = _root(args)
    path = Path(args.file)
    if not path.is_absolute() and not path.exists():
        path = root / path
    if path.resolve().parent != root.resolve():
        raise InvalidInputError(f"{args.file}: not a file of the memory folder {root}")
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file to quarantine")
    with writer_lock(root):  # never under a running trader's feet
        moved = quarantine(path)
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.replace(side, moved.with_name(moved.name + suffix))
        AuditTrail(root, cipher=_cipher()).record(path.name, "quarantine", moved_to=moved.name)
    print(f"moved {path} to {moved}; its store starts afresh on the next write")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from cryptography.fernet import Fernet
    from dotenv import dotenv_values

    env_file = Path(args.env_file)
    if env_file.exists() and dotenv_values(env_file).get(ENCRYPTION_KEY_ENV):
        print(
            f"{env_file} already has {ENCRYPTION_KEY_ENV}; not replaced (the old key still decrypts your memory)"
        )
        return 1
    fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(f"\n{ENCRYPTION_KEY_ENV}={Fernet.generate_key().decode()}\n")
    os.chmod(env_file, 0o600)
    print(
        f"wrote a new {ENCRYPTION_KEY_ENV} to {env_file} (mode 600). Keep a copy somewhere safe: "
        "without it encrypted memory cannot be read."
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    from memlab.memory.stores import MemoryStores

    root = _root(args)
    if not root.exists():
        print(f"memory folder: {root} does not exist yet (it is created on the first write)")
        return 0
    with MemoryStores(root) as mem:
        print(f"memory folder: {root.resolve()} (encrypted: {mem.cipher is not None})")
        print(f"  journal lines:      {len(mem.journal)}")
        print(f"  parameters:         {len(mem.parameters.current())}")
        print(f"  learned strategies: {', '.join(mem.strategies.names()) or 'none'}")
        print(f"  decisions:          {mem.decisions.count()}")
    return 0
