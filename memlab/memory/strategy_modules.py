"""``strategy_modules.py``: learned strategies saved as importable, versioned Python.

Saving ``LearnedHighVolatility`` twice leaves both ``LearnedHighVolatility_v1`` and
``LearnedHighVolatility_v2`` in the file, and the plain name ``LearnedHighVolatility``
pointing at the newest. Older versions are never overwritten, so a past result can be
reproduced with the exact thresholds it used.

Each version records the strategy it was trained on, its ``base``: where the code lives
(``package.module:function``, or ``/path/to/file.py:function`` for a strategy file of the
user's) and ``base_sha256``, the hash of that code (see
:func:`memlab.strategies.plugins.strategy_base`). Loading a version whose base is gone or
changed raises :class:`StaleBaseError`, naming the base and what changed.
"""

from __future__ import annotations

import ast
import hashlib
import json
import keyword
import math
import re
import threading
import types
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memlab.errors import InvalidInputError, MemlabError
from memlab.memory.audit import AuditTrail, sha256_hex
from memlab.memory.crypto import MemoryCipher
from memlab.memory.durable import atomic_write_bytes, ensure_private_dir, file_lock, lock_path_for
from memlab.memory.errors import CorruptMemoryError
from memlab.memory.learned import LearnedStrategy

STRATEGY_FILE = "strategy_modules.py"
_VERSIONED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)_v(?P<version>\d+)$")

HEADER = '''"""Learned strategies, written by memlab (memlab.memory.strategy_modules).

Each class is one learned version; the plain name points at the newest version. Save a
new version with StrategyModuleStore.save() rather than editing by hand:
`memlab memory verify` detects edits made outside memlab.
"""

from memlab.memory.learned import LearnedStrategy
'''


class StaleBaseError(MemlabError):
    """A learned strategy's base (the strategy it was trained on) is gone or its code changed."""

    def __init__(self, message: str, base: str) -> None:
        super().__init__(message)
        self.base = base


def _literal(name: str, value: Any) -> str:
    """A Python literal for ``value`` that reads back equal (JSON-shaped values only)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"{name}: only numbers, text, booleans, None, lists and dicts can be saved"
        ) from None
    text = repr(value)
    if ast.literal_eval(text) != value:  # pragma: no cover - guarded by the JSON check
        raise InvalidInputError(f"{name}: value does not round-trip as a Python literal")
    return text


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(f"{value!r} is not a finite number")
    return value


class StrategyModuleStore:
    """Versioned learned strategies in one importable file.

    >>> import tempfile
    >>> store = StrategyModuleStore(Path(tempfile.mkdtemp()))
    >>> store.save("LearnedHighVolatility", {"rsi_threshold": 35},
    ...            base="memlab.features:rsi", reason="backtest 2025")
    1
    >>> store.load("LearnedHighVolatility")().rsi_threshold
    35
    """

    def __init__(self, root: Path, *, audit: AuditTrail | None = None) -> None:
        self.root = ensure_private_dir(Path(root))
        self.path = self.root / STRATEGY_FILE
        # Never without a trail: a file nobody recorded is never imported.
        self._audit = audit if audit is not None else AuditTrail(self.root, cipher=MemoryCipher.from_env())
        self._lock = threading.Lock()

    # -- reading -----------------------------------------------------------------
    def _source(self) -> str:
        if not self.path.exists():
            return ""
        return self.path.read_text(encoding="utf-8")

    def _tree(self, source: str) -> ast.Module:
        try:
            return ast.parse(source, filename=str(self.path))
        except SyntaxError as exc:
            raise CorruptMemoryError(
                self.path, f"not valid Python ({exc.msg})", exc.lineno
            ) from None

    def versions(self, name: str) -> list[int]:
        """The saved versions of ``name``, oldest first."""
        return sorted(v for n, v in self._catalogue() if n == name)

    def names(self) -> list[str]:
        """Every learned strategy name in the file."""
        return sorted({n for n, _ in self._catalogue()})

    def _catalogue(self, source: str | None = None) -> list[tuple[str, int]]:
        out = []
        for node in self._tree(self._source() if source is None else source).body:
            if isinstance(node, ast.ClassDef) and (m := _VERSIONED.match(node.name)):
                out.append((m.group("name"), int(m.group("version"))))
        return out

    def load(self, name: str, version: int | None = None, *, check_base: bool = True) -> type[LearnedStrategy]:
        """Import the file and return the class of ``name`` (newest, or ``version``).

        With ``check_base`` (the default), the strategy it was trained on must still be there
        with the same code: otherwise :class:`StaleBaseError` names the base and what changed
        (``check_base=False`` reads the parameters of such a version anyway).

        The file is run only when the audit trail holds a record of memlab writing exactly
        these bytes, and the trail itself is intact (its chain, and the head kept beside
        the folder). Otherwise :class:`TamperedMemoryError` is raised and nothing in the file
        runs: not after an edit, not after ``audit_log.jsonl`` was deleted or cut short.
        The bytes that were checked are the bytes that run (read once).
        """
        data = self.path.read_bytes() if self.path.exists() else b""
        source = data.decode("utf-8", errors="replace")
        versions = sorted(v for n, v in self._catalogue(source) if n == name)
        if not versions:
            known = ", ".join(sorted({n for n, _ in self._catalogue(source)})) or "none"
            raise KeyError(f"no learned strategy {name!r} in {self.path} (known: {known})")
        chosen = versions[-1] if version is None else version
        if chosen not in versions:
            raise KeyError(f"{name} has versions {versions}, not {version}")
        self._audit.require_record(STRATEGY_FILE, sha256_hex(data))
        module_name = f"memlab_learned_{hashlib.sha256(data).hexdigest()[:16]}"
        module = types.ModuleType(module_name)
        module.__file__ = str(self.path)
        exec(compile(data, str(self.path), "exec"), module.__dict__)  # only the bytes the trail vouched for
        learned = getattr(module, f"{name}_v{chosen}")
        if check_base:
            from memlab.strategies.plugins import base_problem

            problem = base_problem(learned.base, getattr(learned, "base_sha256", ""))
            if problem is not None:
                raise StaleBaseError(f"learned strategy {name}_v{chosen} in {self.path}: its base {learned.base} "
                                     f"{problem}; retrain it, or load it with check_base=False to read its "
                                     "parameters", learned.base)
        return learned

    # -- writing -----------------------------------------------------------------
    def save(
        self,
        name: str,
        params: Mapping[str, Any],
        *,
        base: str,
        reason: str,
        metrics: Mapping[str, Any] | None = None,
        learned_at: datetime | None = None,
        base_sha256: str = "",
    ) -> int:
        """Append a new version of ``name`` and point the plain name at it; returns the version.

        ``base`` is ``package.module:function`` or ``/path/to/file.py:function``;
        ``base_sha256`` the hash of its code, checked on :meth:`load` (see
        :func:`memlab.strategies.plugins.strategy_base`)."""
        if not name.isidentifier() or keyword.iskeyword(name) or _VERSIONED.match(name):
            raise InvalidInputError(
                f"{name!r} is not usable as a strategy name (a Python identifier not ending in _vN)"
            )
        if ":" not in base:
            raise InvalidInputError(f"base {base!r} must look like 'package.module:function'")
        if base_sha256 and not re.fullmatch(r"[0-9a-f]{64}", base_sha256):
            raise InvalidInputError(f"base_sha256 {base_sha256!r} is not a sha256 in hex")
        for key in params:
            if not str(key).isidentifier() or keyword.iskeyword(str(key)):
                raise InvalidInputError(f"parameter name {key!r} must be a Python identifier")
        params_plain = _plain(dict(params))
        metrics_plain = _plain(dict(metrics or {}))
        when = (learned_at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
        with self._lock, file_lock(lock_path_for(self.path)):
            self._audit.check_writable()
            source = self._source()
            tree = self._tree(source)
            existing = [
                int(m.group("version"))
                for node in tree.body
                if isinstance(node, ast.ClassDef)
                and (m := _VERSIONED.match(node.name))
                and m.group("name") == name
            ]
            version = max(existing, default=0) + 1
            # Drop the old alias line (`Name = Name_vK`); every class stays.
            lines = source.splitlines(keepends=True) if source else [HEADER]
            for node in reversed(tree.body):
                if (
                    isinstance(node, ast.Assign)
                    and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                    and node.targets[0].id == name
                ):
                    del lines[node.lineno - 1 : node.end_lineno]
            summary = " ".join(str(reason).split())
            block = (
                f"\n\nclass {name}_v{version}(LearnedStrategy):\n"
                f"    {_literal('docstring', f'Learned {when}. {summary}')}\n\n"
                f"    name = {name!r}\n"
                f"    version = {version}\n"
                f"    learned_at = {when!r}\n"
                f"    base = {_literal('base', base)}\n"
                f"    base_sha256 = {_literal('base_sha256', base_sha256)}\n"
                f"    reason = {_literal('reason', str(reason))}\n"
                f"    params = {_literal('params', params_plain)}\n"
                f"    metrics = {_literal('metrics', metrics_plain)}\n"
                f"\n\n{name} = {name}_v{version}\n"
            )
            kept = re.sub(r"\n{4,}", "\n\n\n", "".join(lines).rstrip("\n"))
            new_source = kept + "\n" + block
            ast.parse(new_source)  # never write a file that does not import
            data = new_source.encode()
            atomic_write_bytes(self.path, data)
            self._audit.record(
                STRATEGY_FILE, "write", digest=sha256_hex(data), name=name, version=version
            )
        return version
