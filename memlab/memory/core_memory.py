"""Core memory: small, named, size-limited text blocks the agent always has in view.

After Letta/MemGPT: each block has a ``label``, a ``value`` and a character ``limit``;
the only edits are :meth:`CoreMemory.append` (``core_memory_append``) and
:meth:`CoreMemory.replace` (``core_memory_replace``: exact text in, new text out; empty
new text deletes). An edit that would overflow a block is refused with a message that
says how full it is. Blocks live in ``core_memory.json`` (atomic writes, mode 600,
encrypted with ``MEM_ENCRYPTION_KEY`` when set) and every edit is a journal line::

    [2025-10-16 14:45:00] Core Memory: append - Block: market_notes - Text: Support at 64500 is strong
"""

from __future__ import annotations

import errno
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from memlab.errors import InvalidInputError
from memlab.memory.audit import AuditTrail, sha256_hex
from memlab.memory.crypto import MemoryCipher, is_token, require_cipher
from memlab.memory.durable import atomic_write_bytes, ensure_private_dir, file_lock, lock_path_for
from memlab.memory.errors import CorruptMemoryError
from memlab.memory.journal import MemoryJournal

CORE_MEMORY_FILE = "core_memory.json"

#: Letta's default block size (characters).
DEFAULT_BLOCK_LIMIT = 2000

#: The blocks a new agent starts with: label -> (description, initial text).
DEFAULT_BLOCKS: dict[str, tuple[str, str]] = {
    "persona": (
        "who the agent is and how it decides",
        "I am a trading agent. I score strategy signals by what happened in similar past "
        "situations and I cite that evidence.",
    ),
    "strategy_view": ("the current view of each strategy's edge", ""),
    "market_notes": ("notes on the market: levels, regimes, events", ""),
}


class CoreMemoryLimitError(InvalidInputError):
    """An edit would make a block longer than its limit."""


@dataclass(frozen=True)
class Block:
    """One core-memory block: its text and how long it may grow."""

    label: str
    value: str
    limit: int = DEFAULT_BLOCK_LIMIT
    description: str = ""

    @property
    def free(self) -> int:
        return self.limit - len(self.value)


class CoreMemory:
    """The agent's core-memory blocks, persisted and journalled.

    >>> import tempfile
    >>> from memlab.memory import MemoryStores
    >>> mem = MemoryStores(tempfile.mkdtemp())
    >>> core = CoreMemory(mem.path, journal=mem.journal, audit=mem.audit)
    >>> core.append("market_notes", "Support at 64500 is strong").value
    'Support at 64500 is strong'
    >>> core.replace("market_notes", "64500", "64000").value
    'Support at 64000 is strong'
    >>> mem.journal.tail(1)[0].fields["Core Memory"]
    'replace'
    """

    def __init__(
        self,
        root: Path,
        *,
        journal: MemoryJournal,
        audit: AuditTrail | None = None,
        cipher: MemoryCipher | None = None,
        limits: Mapping[str, int] | None = None,
    ) -> None:
        self.root = ensure_private_dir(Path(root))
        self.path = self.root / CORE_MEMORY_FILE
        self._journal = journal
        self._audit = audit
        self._cipher = cipher
        self._lock = threading.Lock()
        if not self.path.exists():
            blocks = {
                label: Block(label, text, (limits or {}).get(label, DEFAULT_BLOCK_LIMIT), desc)
                for label, (desc, text) in DEFAULT_BLOCKS.items()
            }
            with file_lock(lock_path_for(self.path)):
                if not self.path.exists():
                    self._write(blocks)

    # -- reading -----------------------------------------------------------------
    def blocks(self) -> dict[str, Block]:
        """Every block by label, as stored."""
        try:
            return read_core_memory(self.root, cipher=self._cipher)
        except FileNotFoundError:
            return {}

    def get(self, label: str) -> Block:
        blocks = self.blocks()
        if label not in blocks:
            raise InvalidInputError(f"no core-memory block {label!r} (blocks: {sorted(blocks)})")
        return blocks[label]

    def render(self) -> str:
        """The blocks as the text an LLM sees in its context, one section per block."""
        parts = []
        for b in self.blocks().values():
            parts.append(f'<{b.label} characters="{len(b.value)}/{b.limit}">\n{b.value}\n</{b.label}>')
        return "\n".join(parts)

    # -- editing -----------------------------------------------------------------
    def append(self, label: str, text: str) -> Block:
        """Add ``text`` to the end of block ``label`` (on a new line); refused past the limit."""
        text = _text("text", text)
        with self._lock, file_lock(lock_path_for(self.path)):
            blocks = self.blocks()
            block = self._block(blocks, label)
            value = f"{block.value}\n{text}" if block.value else text
            self._check(block, value)
            blocks[label] = Block(label, value, block.limit, block.description)
            self._write(blocks)
        self._journal.append({"Core Memory": "append", "Block": label, "Text": text})
        return blocks[label]

    def replace(self, label: str, old: str, new: str) -> Block:
        """Replace the exact text ``old`` in block ``label`` with ``new`` (``""`` deletes it)."""
        old = _text("old", old)
        if not isinstance(new, str):
            raise InvalidInputError(f"new must be text, got {type(new).__name__}")
        with self._lock, file_lock(lock_path_for(self.path)):
            blocks = self.blocks()
            block = self._block(blocks, label)
            if old not in block.value:
                raise InvalidInputError(
                    f"block {label!r} does not contain {old!r}; replace needs the exact current text"
                )
            value = block.value.replace(old, new, 1).strip("\n")
            self._check(block, value)
            blocks[label] = Block(label, value, block.limit, block.description)
            self._write(blocks)
        self._journal.append({"Core Memory": "replace", "Block": label, "Old": old, "New": new or "(deleted)"})
        return blocks[label]

    # -- internals ---------------------------------------------------------------
    @staticmethod
    def _block(blocks: dict[str, Block], label: str) -> Block:
        if label not in blocks:
            raise InvalidInputError(f"no core-memory block {label!r} (blocks: {sorted(blocks)})")
        return blocks[label]

    @staticmethod
    def _check(block: Block, value: str) -> None:
        if len(value) > block.limit:
            raise CoreMemoryLimitError(
                f"block {block.label!r} would hold {len(value)} characters, over its limit of "
                f"{block.limit} ({len(block.value)} used); shorten it with replace first, or put "
                "long text in archival memory"
            )

    def _write(self, blocks: Mapping[str, Block]) -> None:
        doc = {
            "blocks": {
                b.label: {"value": b.value, "limit": b.limit, "description": b.description}
                for b in blocks.values()
            }
        }
        data = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()
        if self._cipher is not None:
            data = self._cipher.encrypt(data) + b"\n"
        atomic_write_bytes(self.path, data)
        if self._audit is not None:
            self._audit.record(CORE_MEMORY_FILE, "write", digest=sha256_hex(data))


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{name} must be non-empty text, got {value!r}")
    return value.strip()


def read_core_memory(root: str | Path, *, cipher: MemoryCipher | None = None) -> dict[str, Block]:
    """Every core-memory block by label, read from ``core_memory.json`` under ``root``
    without taking any lock or changing anything (the monitor's read; :class:`CoreMemory`
    reads the same way).

    A missing file raises :class:`FileNotFoundError`; one that is not a core-memory document
    :class:`~memlab.memory.errors.CorruptMemoryError`; an encrypted one without its key
    (``cipher``) :class:`~memlab.memory.errors.EncryptionKeyError`.

    >>> import tempfile
    >>> from memlab.memory import MemoryStores
    >>> mem = MemoryStores(tempfile.mkdtemp())
    >>> _ = CoreMemory(mem.path, journal=mem.journal, audit=mem.audit).append("market_notes", "Support at 64500")
    >>> read_core_memory(mem.path)["market_notes"].value
    'Support at 64500'
    """
    path = Path(root) / CORE_MEMORY_FILE
    try:
        raw = path.read_bytes().strip()
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no core memory yet", str(path)) from None
    if is_token(raw):
        raw = require_cipher(cipher, where=str(path)).decrypt(raw, where=str(path))
    try:
        doc = json.loads(raw.decode("utf-8"))
        return {
            label: Block(label, str(b["value"]), int(b["limit"]), str(b.get("description", "")))
            for label, b in doc["blocks"].items()
        }
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CorruptMemoryError(path, f"not a core-memory document ({exc})") from None
