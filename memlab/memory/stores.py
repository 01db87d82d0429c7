"""One handle on every memory store under a memory path."""

from __future__ import annotations

import os
from pathlib import Path

from memlab.config import memory_path
from memlab.memory.audit import AuditTrail
from memlab.memory.crypto import MemoryCipher
from memlab.memory.decisions import DecisionStore
from memlab.memory.durable import ensure_private_dir
from memlab.memory.journal import MemoryJournal
from memlab.memory.parameters import ParameterStore
from memlab.memory.strategy_modules import StrategyModuleStore


class MemoryStores:
    """The journal, parameters, strategy modules, decisions and audit trail of one agent.

    The folder is ``path``, else ``$MEM_MEMORY_PATH``, else ``data/mem_knowledge/``;
    encryption is on when ``$MEM_ENCRYPTION_KEY`` is set (or ``cipher`` is given).

    >>> import tempfile
    >>> mem = MemoryStores(tempfile.mkdtemp())
    >>> _ = mem.journal.append({"Learned": "Support at 64500 is strong"})
    >>> sorted(p.name for p in mem.path.iterdir() if not p.name.startswith("."))
    ['audit_log.jsonl', 'core_memory_updates.txt', 'decisions.sqlite', 'decisions.sqlite-shm', 'decisions.sqlite-wal']
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, cipher: MemoryCipher | None = None
    ) -> None:
        self.path: Path = ensure_private_dir(memory_path(path))
        self.cipher = cipher if cipher is not None else MemoryCipher.from_env()
        self.audit = AuditTrail(self.path, cipher=self.cipher)
        self.journal = MemoryJournal(self.path, cipher=self.cipher, audit=self.audit)
        self.parameters = ParameterStore(self.path, cipher=self.cipher, audit=self.audit)
        self.strategies = StrategyModuleStore(self.path, audit=self.audit)
        self.decisions = DecisionStore(self.path, audit=self.audit)

    def __repr__(self) -> str:
        return f"MemoryStores({str(self.path)!r}, encrypted={self.cipher is not None})"

    def close(self) -> None:
        self.decisions.close()

    def __enter__(self) -> MemoryStores:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
