"""``memlab memory verify``: check every memory file against the audit trail.

Problems are edits to past memory (or damage) and fail the check; warnings are things a
person should know but that are not tampering, such as writes after the last audit
record that a crash interrupted.
"""

from __future__ import annotations

import ast
import hashlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memlab.memory.archival import ARCHIVAL_FILE, ArchivalReader
from memlab.memory.audit import AUDIT_FILE, AuditTrail, memory_files_with_data, sha256_hex
from memlab.memory.crypto import MemoryCipher
from memlab.memory.decisions import DECISIONS_FILE, DecisionReader
from memlab.memory.errors import CorruptMemoryError, MemoryStoreError
from memlab.memory.journal import MemoryJournal
from memlab.memory.parameters import ParameterStore
from memlab.memory.strategy_modules import STRATEGY_FILE


@dataclass
class VerifyReport:
    """What :func:`verify_memory` found: ``problems`` fail the check, ``warnings`` do not."""

    root: Path
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [f"memory at {self.root}: {'OK' if self.ok else 'PROBLEMS FOUND'}"]
        lines += [f"  checked  {c}" for c in self.checked]
        lines += [f"  PROBLEM  {p}" for p in self.problems]
        lines += [f"  warning  {w}" for w in self.warnings]
        return "\n".join(lines)


def _since_reset(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records after the file's last quarantine (a quarantined file starts afresh)."""
    for i in range(len(records) - 1, -1, -1):
        if records[i].get("op") == "quarantine":
            return records[i + 1 :]
    return records


def _check_appends(report: VerifyReport, path: Path, records: list[dict[str, Any]]) -> None:
    data = path.read_bytes() if path.exists() else b""
    expected_start = 0
    before = len(report.problems)
    for rec in records:
        start, end = int(rec.get("start", -1)), int(rec.get("end", -1))
        if start != expected_start:
            report.problems.append(
                f"{path.name}: audit record {rec.get('seq')} starts at byte {start}, expected {expected_start}"
            )
        if end > len(data):
            report.problems.append(
                f"{path.name}: is {len(data)} bytes but the audit trail says {end} were written (truncated or edited)"
            )
            return
        if sha256_hex(data[start:end]) != rec.get("digest"):
            line = data[:start].count(b"\n") + 1
            report.problems.append(
                f"{path.name}: bytes {start}-{end} (from line {line}) differ from what was written (edited)"
            )
        if rec.get("late"):
            first, last = data[:start].count(b"\n") + 1, data[:end].count(b"\n")
            report.warnings.append(
                f"{path.name}: lines {first}-{last} were recorded late, at audit record {rec.get('seq')} "
                "(a crash between the write and its record, or an outside append)"
            )
        expected_start = end
    if len(data) > expected_start and len(report.problems) == before:
        first = data[:expected_start].count(b"\n") + 1
        report.warnings.append(
            f"{path.name}: lines from {first} on were written after the last audit record "
            "(a crash between the write and its record, or an outside append)"
        )


def _check_whole_file(report: VerifyReport, path: Path, records: list[dict[str, Any]]) -> None:
    writes = [r for r in records if r.get("op") == "write"]
    if not path.exists():
        if writes:
            report.problems.append(f"{path.name}: was written by memlab but is missing (deleted)")
        return
    if not writes:
        report.problems.append(f"{path.name}: exists but no write of it is in the audit trail")
        return
    if writes[-1].get("digest") != sha256_hex(path.read_bytes()):
        report.problems.append(
            f"{path.name}: changed outside memlab since its last recorded write (edited)"
        )


def _read_store(report: VerifyReport, path: Path, records: list[dict[str, Any]], read: Callable[[], Any]) -> Any:
    """What ``read()`` (a store's own reader) returns, or None with the problem noted."""
    try:
        return read()
    except FileNotFoundError:
        if records:
            gone = "holds no tables (emptied)" if path.exists() else "is missing (deleted)"
            report.problems.append(f"{path.name}: was written by memlab but {gone}")
    except CorruptMemoryError as exc:
        report.problems.append(f"{path.name}: {exc.detail}")
    except sqlite3.Error as exc:
        report.problems.append(f"{path.name}: cannot be read ({exc})")
    return None


def _check_decisions(report: VerifyReport, path: Path, records: list[dict[str, Any]]) -> None:
    chain = _read_store(report, path, records, DecisionReader(path.parent).chain)
    if chain is None:
        return
    if chain.integrity != "ok":
        report.problems.append(f"{path.name}: SQLite integrity check failed: {chain.integrity}")
        return
    heads, oheads = chain.decision_heads, chain.outcome_heads
    last_id, last_seq = max(heads, default=0), max(oheads, default=0)
    if chain.first_break:
        report.problems.append(f"{path.name}: {chain.first_break}")
    anchored_id = anchored_seq = 0
    for rec in records:
        if rec.get("op") != "commit":
            continue
        did, dhead = int(rec.get("decisions_id", 0)), rec.get("decisions_head")
        oseq, ohead = int(rec.get("outcomes_seq", 0)), rec.get("outcomes_head")
        if did and heads.get(did, b"").hex() != dhead:
            report.problems.append(
                f"{path.name}: decisions up to id {did} no longer match the audit trail (edited or removed)"
            )
            break
        if oseq and oheads.get(oseq, b"").hex() != ohead:
            report.problems.append(
                f"{path.name}: outcomes up to {oseq} no longer match the audit trail (edited or removed)"
            )
            break
        anchored_id, anchored_seq = max(anchored_id, did), max(anchored_seq, oseq)
    if last_id > anchored_id or last_seq > anchored_seq:
        report.warnings.append(
            f"{path.name}: {last_id - anchored_id} decisions and {last_seq - anchored_seq} outcomes "
            "were committed after the last audit record (a crash between commit and record?)"
        )


def _check_rows(report: VerifyReport, path: Path, records: list[dict[str, Any]]) -> None:
    """Archival lessons, audited row by row: ``op="insert"`` records carry the row id and a
    digest of its text."""
    rows = _read_store(report, path, records, ArchivalReader(path.parent).texts)
    if rows is None:
        return
    audited = set()
    for rec in records:
        if rec.get("op") != "insert":
            continue
        rid = rec.get("id")
        audited.add(rid)
        if rid not in rows:
            report.problems.append(f"{path.name}: row {rid} was written by memlab but is gone (deleted)")
        elif sha256_hex(str(rows[rid]).encode()) != rec.get("digest"):
            report.problems.append(f"{path.name}: row {rid} differs from what was written (edited)")
    extra = sorted(set(rows) - audited)
    if extra:
        report.warnings.append(f"{path.name}: {len(extra)} rows have no audit record (first id {extra[0]})")


def verify_memory(root: Path, *, cipher: MemoryCipher | None = None) -> VerifyReport:
    """Check the audit chain and its head, then each file it covers; never changes anything.

    Fails closed: memory files with no trail to cover them, a trail shorter than the
    head kept beside the folder says was written, or a trail that is not the one the head
    sealed, are problems, not "nothing written yet".
    """
    root = Path(root)
    report = VerifyReport(root)
    if not root.is_dir():
        report.warnings.append("no memory folder yet (nothing has been written through memlab)")
        return report
    trail = AuditTrail(root, cipher=cipher)
    try:
        records = trail.entries()
    except MemoryStoreError as exc:
        report.problems.append(str(exc))
        return report
    held = memory_files_with_data(root)
    head_problems = trail.head_problems(records)
    if not records:
        if held:
            report.problems.append(
                f"{AUDIT_FILE}: missing or empty, but {', '.join(held)} hold memory: the trail was "
                "deleted, or these files were written outside memlab (nothing in them can be trusted; "
                "restore a backup)"
            )
        report.problems.extend(head_problems)
        if not report.problems:
            report.warnings.append("no audit trail yet (nothing has been written through memlab)")
        return report
    for problem in trail.chain_problems(records):
        report.problems.append(f"{AUDIT_FILE}:{problem.line}: {problem.detail}")
    report.problems.extend(head_problems)
    if trail.head() is None:
        report.warnings.append(
            f"no chain head at {trail.head_path} (memory written before heads were kept, or the "
            "folder was moved): a truncated trail cannot be detected until the next write keeps one"
        )
    report.checked.append(f"{AUDIT_FILE} ({len(records)} records)")
    by_file: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        by_file.setdefault(str(rec.get("file")), []).append(rec)
    for name in held:
        covering = [r for r in _since_reset(by_file.get(name, [])) if r.get("op") != "quarantine"]
        if not covering:
            report.problems.append(
                f"{name}: holds memory but the audit trail has no record of memlab writing it "
                "(written outside memlab, or its records were removed)"
            )
    for name, recs in sorted(by_file.items()):
        recs = _since_reset(recs)
        path = root / name
        ops = {r.get("op") for r in recs}
        if name == DECISIONS_FILE:
            _check_decisions(report, path, recs)
        elif name == ARCHIVAL_FILE:
            _check_rows(report, path, recs)
        elif "append" in ops:
            _check_appends(report, path, recs)
        elif "write" in ops:
            _check_whole_file(report, path, recs)
        report.checked.append(name)
    # Content checks: each file must also still read as what it is.
    for reader in (
        lambda: MemoryJournal(root, cipher=cipher).entries(),
        lambda: ParameterStore(root, cipher=cipher).document(),
    ):
        try:
            reader()
        except MemoryStoreError as exc:
            report.problems.append(str(exc))
    strategy = root / STRATEGY_FILE
    if strategy.exists():
        try:
            ast.parse(strategy.read_text(encoding="utf-8"))
        except SyntaxError as exc:
            report.problems.append(f"{STRATEGY_FILE}:{exc.lineno}: not valid Python ({exc.msg})")
    return report


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
