"""Protection: private files, encryption at rest, tamper detection, backups, quarantine."""

from __future__ import annotations

import json
import os
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
from tests.support.paper_session import folder_contents

FEATURES = {"ret_5": 1.0, "volatility": 2.0}


def fill(mem: MemoryStores, *, parameters: bool = True) -> None:
    mem.journal.append({"Strategy": "momentum", "Decision": "BUY", "Confidence": 0.85})
    if parameters:
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
    from memlab.memory.archival import ArchivalMemory

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


def _core(mem: MemoryStores):  # type: ignore[no-untyped-def]
    from memlab.memory.core_memory import CoreMemory

    return CoreMemory(mem.path, journal=mem.journal, audit=mem.audit, cipher=mem.cipher)


def _batch(mem: MemoryStores) -> None:
    with mem.journal.batch():
        mem.journal.append({"N": 1})
        mem.journal.append({"N": 2})


WRITE_PATHS = {
    "journal append": lambda mem: mem.journal.append({"Decision": "BUY"}),
    "journal batch": _batch,
    "parameters": lambda mem: mem.parameters.set("position_size", 0.3, reason="new"),
    "first parameter write": lambda mem: mem.parameters.set("position_size", 0.3, reason="new"),
    "strategy modules": lambda mem: mem.strategies.save("Learned", {"x": 2}, base="memlab.features:rsi", reason="r"),
    "decision": lambda mem: mem.decisions.record(Decision("ETHUSDT", "momentum", "BUY", 0.5, "x", features=FEATURES)),
    "outcome": lambda mem: mem.decisions.close_outcome(2, pnl=1.0),
    "core memory append": lambda mem: _core(mem).append("market_notes", "support at 64000"),
    "core memory replace": lambda mem: _core(mem).replace("persona", "trading agent", "gambler"),
}


@pytest.mark.parametrize("key_state", ["wrong key", "no key"])
@pytest.mark.parametrize("path", list(WRITE_PATHS))
def test_a_wrong_or_missing_key_refuses_every_write_and_writes_nothing(
    memory_dir: Path, monkeypatch: pytest.MonkeyPatch, path: str, key_state: str
) -> None:
    key = Fernet.generate_key()
    right = MemoryCipher(key)
    first_parameters = path == "first parameter write"  # no encrypted file of its own to fail on
    with MemoryStores(memory_dir, cipher=right) as mem:
        fill(mem, parameters=not first_parameters)
        mem.decisions.record(Decision("ETHUSDT", "momentum", "SELL", 0.5, "open", features=FEATURES))
        _core(mem)  # core_memory.json, encrypted
    before = folder_contents(memory_dir)
    if key_state == "wrong key":
        monkeypatch.setenv("MEM_ENCRYPTION_KEY", Fernet.generate_key().decode())
    else:
        monkeypatch.delenv("MEM_ENCRYPTION_KEY", raising=False)
    # The Python API, key from the environment.
    with MemoryStores(memory_dir) as mem, pytest.raises(EncryptionKeyError, match="MEM_ENCRYPTION_KEY") as err:
        WRITE_PATHS[path](mem)
    assert key.decode() not in str(err.value)
    assert folder_contents(memory_dir) == before  # nothing written, not even an audit record
    # The right key still reads everything, and the memory verifies.
    with MemoryStores(memory_dir, cipher=right) as mem:
        assert mem.journal.entries()[0].fields["Decision"] == "BUY"
        assert mem.parameters.current() == ({} if first_parameters else {"position_size": 0.1})
        assert _core(mem).get("persona").value.startswith("I am a trading agent")
        assert mem.strategies.load("Learned")().x == 1
    assert verify_memory(memory_dir, cipher=right).ok


@pytest.mark.parametrize("action", ["verify", "status", "backup", "restore", "quarantine", "keygen"])
@pytest.mark.parametrize("where", ["before the action", "after the action"])
def test_memory_path_is_accepted_before_and_after_every_action(
    memory_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], action: str, where: str
) -> None:
    from memlab.cli import main

    with MemoryStores(memory_dir) as mem:
        fill(mem)
    extra = {
        "verify": [],
        "status": [],
        "backup": ["--to", str(tmp_path / "backups")],
        "restore": [str(backup_memory(memory_dir, tmp_path / "archive"))],
        "quarantine": ["strategy_modules.py"],
        "keygen": ["--env-file", str(tmp_path / ".env")],
    }[action]
    option = ["--memory-path", str(memory_dir)]
    argv = ["memory", *option, action, *extra] if where == "before the action" else ["memory", action, *extra, *option]
    assert main(argv) == 0
    out = capsys.readouterr().out
    if action != "keygen":
        assert str(memory_dir) in out  # it acted on the folder given, wherever the option was
    if action == "quarantine":
        assert list(memory_dir.glob("strategy_modules.py.corrupt-*"))


def _as_another_user() -> tuple[list[str], int | None, int | None]:
    """A command prefix that runs as ``nobody`` when we are root (root ignores file
    permissions), with that user's uid and gid; nothing to add otherwise."""
    if os.geteuid() != 0:
        return [], None, None
    import pwd
    import shutil

    setpriv = shutil.which("setpriv")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        nobody = None
    if setpriv is None or nobody is None:
        pytest.skip("running as root without setpriv or a 'nobody' user to drop to")
    prefix = [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    reach = subprocess.run([*prefix, sys.executable, "-c", "import memlab"], capture_output=True, text=True,
                           timeout=120, cwd="/")
    if reach.returncode != 0:  # a checkout in a private folder (mode 700, as mktemp -d makes)
        pytest.skip(f"'nobody' cannot import memlab from {Path(__file__).resolve().parents[1]}: "
                    f"{(reach.stderr.strip().splitlines() or ['?'])[-1]}")
    return prefix, nobody.pw_uid, nobody.pw_gid


def test_a_read_only_folder_is_named_as_such_not_called_damaged() -> None:
    import shutil
    import tempfile

    from memlab.memory.archival import ArchivalMemory

    run_as, uid, gid = _as_another_user()
    base = Path(tempfile.mkdtemp(prefix="memlab-readonly-"))  # outside pytest's private tmp, so nobody can reach it
    try:
        os.chmod(base, 0o755)
        memory = base / "mem"
        with MemoryStores(memory) as mem:
            fill(mem)
            archival = ArchivalMemory(memory, audit=mem.audit)
            archival.insert("Learned: support holds")
            archival.close()
        for path in memory.iterdir():  # a read-only folder, as a read-only mount or `chmod -R a-w` leaves it
            os.chmod(path, 0o400)
            if uid is not None:
                os.chown(path, uid, gid)  # type: ignore[arg-type]
        if uid is not None:  # the folder and its chain head belong to the user who reads them
            os.chown(memory, uid, gid)  # type: ignore[arg-type]
            os.chown(base / ".mem.audit-head", uid, gid)  # type: ignore[arg-type]
        os.chmod(memory, 0o500)
        script = ("import sys\nfrom memlab.memory.archival import ArchivalMemory\n"
                  "try:\n    ArchivalMemory(sys.argv[1])\nexcept Exception as exc:\n"
                  "    print(type(exc).__name__, exc)\n")
        done = subprocess.run([*run_as, sys.executable, "-c", script, str(memory)], capture_output=True,
                              text=True, timeout=120)
        assert "ReadOnlyMemoryError" in done.stdout and "read-only" in done.stdout, done.stdout + done.stderr
        assert "quarantine" not in done.stdout and "archival.sqlite" in done.stdout
        cache = base / "numba-cache"  # the other user cannot write the repo's __pycache__
        cache.mkdir(mode=0o777)
        os.chmod(cache, 0o777)
        env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
        cli = [*run_as, sys.executable, "-m", "memlab.cli", "memory"]
        status = subprocess.run([*cli, "status", "--memory-path", str(memory)], capture_output=True, text=True,
                                timeout=120, env=env)
        assert status.returncode != 0 and "Traceback" not in status.stderr
        assert "read-only" in status.stderr and "quarantine" not in status.stderr, status.stderr
        verify = subprocess.run([*cli, "verify", "--memory-path", str(memory)], capture_output=True, text=True,
                                timeout=120, env=env)
        assert verify.returncode == 0, verify.stdout + verify.stderr  # reading needs no write access
    finally:
        if (base / "mem").exists():
            os.chmod(base / "mem", 0o700)
        shutil.rmtree(base, ignore_errors=True)
