"""Protection: private files, encryption at rest, tamper detection, backups, quarantine."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from memlab.memory import (
    Decision,
    EncryptionKeyError,
    MemoryCipher,
    MemoryStores,
    Outcome,
)
from memlab.memory.backup import backup_memory, restore_memory
from memlab.memory.verify import verify_memory

FEATURES = {"ret_5": 1.0, "volatility": 2.0}


def fill(mem: MemoryStores) -> None:
    mem.journal.append({"Strategy": "momentum", "Decision": "BUY", "Confidence": 0.85})
    mem.parameters.set("position_size", 0.1, reason="initial")
    mem.strategies.save("Learned", {"x": 1}, base="memlab.features:rsi", reason="r")
    i = mem.decisions.record(
        Decision("BTCUSDT", "momentum", "BUY", 0.8, "breakout", features=FEATURES)
    )
    mem.decisions.close_outcome(i, pnl=5.0)


def test_files_are_private(memory_dir: Path) -> None:
    with MemoryStores(memory_dir) as mem:
        fill(mem)
        archive = backup_memory(memory_dir)
    assert stat.S_IMODE(memory_dir.stat().st_mode) == 0o700
    files = [p for p in memory_dir.iterdir() if p.is_file()]
    assert {p.name for p in files} >= {
        "core_memory_updates.txt",
        "parameter_updates.json",
        "strategy_modules.py",
        "decisions.sqlite",
        "audit_log.jsonl",
    }
    for path in [*files, archive]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_encryption_round_trip_and_nothing_readable_on_disk(memory_dir: Path) -> None:
    cipher = MemoryCipher(Fernet.generate_key())
    with MemoryStores(memory_dir, cipher=cipher) as mem:
        mem.journal.append({"Learned": "Support at 64500 is strong"})
        mem.parameters.set("position_size", 0.1, reason="Increased volatility observed")
    for name in ("core_memory_updates.txt", "parameter_updates.json"):
        raw = (memory_dir / name).read_bytes()
        assert b"64500" not in raw and b"volatility" not in raw and b"position_size" not in raw
    with MemoryStores(memory_dir, cipher=cipher) as mem:
        assert mem.journal.entries()[0].fields["Learned"] == "Support at 64500 is strong"
        assert mem.parameters.get("position_size") == 0.1
    assert verify_memory(memory_dir, cipher=cipher).ok


def test_wrong_or_missing_key_is_a_clear_error(
    memory_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = Fernet.generate_key()
    with MemoryStores(memory_dir, cipher=MemoryCipher(key)) as mem:
        mem.journal.append({"Decision": "BUY"})
        mem.parameters.set("position_size", 0.1, reason="r")
    wrong = MemoryStores(memory_dir, cipher=MemoryCipher(Fernet.generate_key()))
    with pytest.raises(EncryptionKeyError, match="wrong key") as err:
        wrong.journal.entries()
    assert "core_memory_updates.txt:1" in str(err.value)
    with pytest.raises(EncryptionKeyError, match="wrong key"):
        wrong.parameters.current()
    monkeypatch.delenv("MEM_ENCRYPTION_KEY", raising=False)
    with pytest.raises(EncryptionKeyError, match="MEM_ENCRYPTION_KEY"):
        MemoryStores(memory_dir).journal.entries()
    monkeypatch.setenv("MEM_ENCRYPTION_KEY", "not-a-key")
    with pytest.raises(EncryptionKeyError) as bad:
        MemoryStores(memory_dir)
    assert "not-a-key" not in str(bad.value)
    monkeypatch.setenv("MEM_ENCRYPTION_KEY", key.decode())
    assert MemoryStores(memory_dir).parameters.get("position_size") == 0.1
    assert key.decode() not in repr(MemoryCipher(key))
    with pytest.raises(TypeError):
        __import__("pickle").dumps(MemoryCipher(key))


def tamper_journal(root: Path) -> None:
    path = root / "core_memory_updates.txt"
    path.write_text(path.read_text().replace("BUY", "SELL"))


def tamper_parameters(root: Path) -> None:
    path = root / "parameter_updates.json"
    doc = json.loads(path.read_text())
    next(iter(doc.values()))["position_size"] = 0.5
    path.write_text(json.dumps(doc))


def tamper_decision(root: Path) -> None:
    with sqlite3.connect(root / "decisions.sqlite") as conn:
        conn.execute("UPDATE decisions SET confidence = 0.99")


def tamper_outcome(root: Path) -> None:
    with sqlite3.connect(root / "decisions.sqlite") as conn:
        conn.execute("UPDATE outcomes SET pnl = 500")


def tamper_delete_decision(root: Path) -> None:
    with sqlite3.connect(root / "decisions.sqlite") as conn:
        conn.execute("DELETE FROM decisions")


def tamper_audit(root: Path) -> None:
    path = root / "audit_log.jsonl"
    lines = path.read_text().splitlines()
    record = json.loads(lines[0])
    record["digest"] = "0" * 64
    lines[0] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")


def tamper_strategy(root: Path) -> None:
    path = root / "strategy_modules.py"
    path.write_text(path.read_text().replace("'x': 1", "'x': 2"))


@pytest.mark.parametrize(
    "tamper",
    [
        tamper_journal,
        tamper_parameters,
        tamper_decision,
        tamper_outcome,
        tamper_delete_decision,
        tamper_audit,
        tamper_strategy,
    ],
)
def test_verify_detects_edits_to_past_memory(memory_dir: Path, tamper) -> None:  # type: ignore[no-untyped-def]
    with MemoryStores(memory_dir) as mem:
        fill(mem)
    assert verify_memory(memory_dir).ok
    tamper(memory_dir)
    report = verify_memory(memory_dir)
    assert not report.ok, str(report)


def test_verify_command_exit_codes(memory_dir: Path) -> None:
    with MemoryStores(memory_dir) as mem:
        fill(mem)
    cmd = [sys.executable, "-m", "memlab.cli", "memory", "--memory-path", str(memory_dir), "verify"]
    assert subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
    tamper_decision(memory_dir)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "decision 1 differs" in done.stdout


def test_backup_and_restore_round_trip_without_overwriting(
    memory_dir: Path, tmp_path: Path
) -> None:
    with MemoryStores(memory_dir) as mem:
        fill(mem)
        archive = backup_memory(memory_dir, tmp_path / "backups")
        mem.journal.append({"After": "backup"})
        mem.decisions.record(
            Decision("ETHUSDT", "momentum", "SELL", 0.5, "after backup", features=FEATURES)
        )
    aside = restore_memory(archive, memory_dir)
    assert aside is not None and (aside / "decisions.sqlite").exists()  # the old memory kept
    with MemoryStores(memory_dir) as mem:
        assert mem.decisions.count() == 1 and len(mem.journal) == 1
        assert mem.decisions.get(1).outcome == Outcome(
            pnl=5.0, return_pct=None, closed_at=mem.decisions.get(1).outcome.closed_at, notes=""
        )  # type: ignore[union-attr]
    assert verify_memory(memory_dir).ok
    with MemoryStores(aside) as old:
        assert old.decisions.count() == 2


def test_damaged_archive_is_refused(memory_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not an archive")
    with pytest.raises(Exception, match="not a readable memlab backup"):
        restore_memory(bad, memory_dir)
    assert not memory_dir.exists()


def test_quarantine_moves_a_damaged_file_aside_and_the_store_starts_afresh(
    memory_dir: Path,
) -> None:
    with MemoryStores(memory_dir) as mem:
        fill(mem)
    path = memory_dir / "parameter_updates.json"
    path.write_text("{ broken")
    cmd = [sys.executable, "-m", "memlab.cli", "memory", "--memory-path", str(memory_dir)]
    done = subprocess.run(
        [*cmd, "quarantine", "parameter_updates.json"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    [kept] = memory_dir.glob("parameter_updates.json.corrupt-*")
    assert kept.read_text() == "{ broken"
    with MemoryStores(memory_dir) as mem:
        mem.parameters.set("position_size", 0.2, reason="fresh start")
    assert verify_memory(memory_dir).ok


def test_verify_detects_edits_to_archival_lessons(memory_dir: Path) -> None:
    from memlab.agent.archival import ArchivalMemory

    with MemoryStores(memory_dir) as mem:
        fill(mem)
        archive = ArchivalMemory(memory_dir, audit=mem.audit)
        archive.insert("Learned: support at 64500 is strong")
        archive.close()
    assert verify_memory(memory_dir).ok
    with sqlite3.connect(memory_dir / "archival.sqlite") as conn:
        conn.execute("UPDATE passages SET text = 'Learned: always buy'")
    report = verify_memory(memory_dir)
    assert not report.ok and "archival.sqlite: row 1 differs" in str(report)
