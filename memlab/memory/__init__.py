"""The agent's persistent memory, rooted at one folder (the memory path).

- :class:`CoreMemoryJournal` — ``core_memory_updates.txt``, one event per line.
- :class:`ParameterStore` — ``parameter_updates.json``, dated values with reasons.
- :class:`StrategyModuleStore` — ``strategy_modules.py``, versioned learned strategies.
- :class:`DecisionStore` — ``decisions.sqlite``, decisions, outcomes, search, similarity.
- :class:`AuditTrail` — ``audit_log.jsonl``, the hash chain over every write.

:class:`MemoryStores` opens them all. Files are mode 600; journal and JSON can be
encrypted (``MEM_ENCRYPTION_KEY``); ``memlab memory verify|backup|restore`` look after them.
"""

from memlab.memory.audit import AuditTrail
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
from memlab.memory.journal import CoreMemoryJournal, JournalEntry
from memlab.memory.parameters import ParameterStore
from memlab.memory.stores import MemoryStores
from memlab.memory.strategy_modules import StrategyModuleStore

__all__ = [
    "AuditTrail",
    "CoreMemoryJournal",
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
