"""The agent's persistent memory, rooted at one folder (the memory path).

- :class:`MemoryJournal` — ``core_memory_updates.txt``, one event per line (what the agent
  did and why: decisions, skips, exits, adaptations, lessons). Not to be confused with
  :class:`CoreMemory`, the agent's editable text blocks (``core_memory.json``).
- :class:`CoreMemory` — core-memory blocks with limits (append/replace).
- :class:`ArchivalMemory` — ``archival.sqlite``, searchable lessons.
- :class:`ParameterStore` — ``parameter_updates.json``, dated values with reasons.
- :class:`StrategyModuleStore` — ``strategy_modules.py``, versioned learned strategies.
- :class:`DecisionStore` — ``decisions.sqlite``, decisions, outcomes, search, similarity.
- :class:`AuditTrail` — ``audit_log.jsonl``, the hash chain over every write.

:class:`MemoryStores` opens them all. Files are mode 600; journal and JSON can be
encrypted (``MEM_ENCRYPTION_KEY``); ``memlab memory verify|backup|restore`` look after them.
"""

from memlab.memory.archival import ArchivalMemory
from memlab.memory.audit import AuditTrail
from memlab.memory.core_memory import Block, CoreMemory, CoreMemoryLimitError
from memlab.memory.crypto import MemoryCipher
from memlab.memory.decisions import (
    Decision,
    DecisionStore,
    Neighbourhood,
    Outcome,
    StoredDecision,
)
from memlab.memory.errors import (
    CorruptMemoryError,
    EncryptionKeyError,
    MemoryStoreError,
    TamperedMemoryError,
)
from memlab.memory.journal import JournalEntry, MemoryJournal
from memlab.memory.parameters import ParameterStore
from memlab.memory.stores import MemoryStores
from memlab.memory.strategy_modules import StrategyModuleStore

__all__ = [
    "ArchivalMemory",
    "AuditTrail",
    "Block",
    "CoreMemory",
    "CoreMemoryLimitError",
    "MemoryJournal",
    "CorruptMemoryError",
    "Decision",
    "DecisionStore",
    "EncryptionKeyError",
    "JournalEntry",
    "MemoryCipher",
    "MemoryStoreError",
    "MemoryStores",
    "Neighbourhood",
    "Outcome",
    "ParameterStore",
    "StoredDecision",
    "StrategyModuleStore",
    "TamperedMemoryError",
]
