"""Tamper evidence fails closed: a deleted, truncated or replaced audit trail is caught.

The attacks are the ones observed: delete ``audit_log.jsonl`` then edit the past, delete it
then plant code in ``strategy_modules.py``, truncate it. The chain head kept beside the
folder (``.<folder>.audit-head``) is what a deletion inside the folder cannot erase.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from memlab.memory import (
    Decision,
    MemoryCipher,
    MemoryStores,
    StrategyModuleStore,
    TamperedMemoryError,
)
from memlab.memory.audit import head_path_for
from memlab.memory.verify import verify_memory
from tests.support.paper_session import folder_contents

FEATURES = {"ret_5": 1.0, "volatility": 2.0}


def fill(mem: MemoryStores) -> None:
    mem.journal.append({"Strategy": "momentum", "Decision": "BUY", "Confidence": 0.85})
    mem.journal.append({"Strategy": "momentum", "Decision": "SELL", "Confidence": 0.6})
    mem.parameters.set("position_size", 0.1, reason="initial")
    mem.strategies.save("Learned", {"x": 1}, base="memlab.features:rsi", reason="r")
    i = mem.decisions.record(Decision("BTCUSDT", "momentum", "BUY", 0.8, "breakout", features=FEATURES))
    mem.decisions.close_outcome(i, pnl=5.0)


def verify_cli(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memlab.cli", "memory", "verify", "--memory-path", str(root)],
                          capture_output=True, text=True, timeout=120)


def test_deleting_the_trail_then_editing_a_past_journal_line_fails_verify(memory_dir: Path) -> None:
    with MemoryStores(memory_dir) as mem:
        fill(mem)
    assert verify_memory(memory_dir).ok
    (memory_dir / "audit_log.jsonl").unlink()
    journal = memory_dir / "core_memory_updates.txt"
    journal.write_text(journal.read_text().replace("Decision: BUY", "Decision: SELL", 1))

    report = verify_memory(memory_dir)
    assert not report.ok
    assert any("audit_log.jsonl" in p and "core_memory_updates.txt" in p for p in report.problems), str(report)
    assert any("records were written" in p for p in report.problems), str(report)  # the head outside saw them
    done = verify_cli(memory_dir)
    assert done.returncode == 1 and "PROBLEMS FOUND" in done.stdout and "missing" in done.stdout


def test_a_writer_refuses_to_write_over_a_deleted_trail_and_writes_nothing(memory_dir: Path) -> None:
    with MemoryStores(memory_dir) as mem:
        fill(mem)
    (memory_dir / "audit_log.jsonl").unlink()
    before = folder_contents(memory_dir)
    with MemoryStores(memory_dir) as mem:
        with pytest.raises(TamperedMemoryError, match="audit_log.jsonl is missing"):
            mem.journal.append({"Decision": "BUY"})
        with pytest.raises(TamperedMemoryError):
            mem.parameters.set("position_size", 0.2, reason="launder the edit")
        with pytest.raises(TamperedMemoryError):
            mem.strategies.save("Learned", {"x": 3}, base="memlab.features:rsi", reason="launder")
        with pytest.raises(TamperedMemoryError):
            mem.decisions.record(Decision("BTCUSDT", "momentum", "BUY", 0.5, "x", features=FEATURES))
    assert folder_contents(memory_dir) == before
    assert not (memory_dir / "audit_log.jsonl").exists()


def test_deleting_the_trail_then_planting_code_in_strategy_modules_does_not_run_it(
    memory_dir: Path, tmp_path: Path
) -> None:
    with MemoryStores(memory_dir) as mem:
        fill(mem)
        assert mem.strategies.load("Learned")().x == 1
    marker = tmp_path / "planted-code-ran"
    (memory_dir / "audit_log.jsonl").unlink()
    path = memory_dir / "strategy_modules.py"
    path.write_text(path.read_text() + f"\nopen({str(marker)!r}, 'w').write('pwned')\n")

    with MemoryStores(memory_dir) as mem, pytest.raises(TamperedMemoryError, match="not imported"):
        mem.strategies.load("Learned")
    with pytest.raises(TamperedMemoryError, match="not imported"):
        StrategyModuleStore(memory_dir).load("Learned")  # a store built on its own is no way round
    assert not marker.exists()
    assert not verify_memory(memory_dir).ok


def test_a_trail_that_never_recorded_the_strategy_file_is_no_licence_to_run_it(memory_dir: Path, tmp_path: Path) -> None:
    with MemoryStores(memory_dir) as mem:
        mem.journal.append({"Decision": "BUY"})
    marker = tmp_path / "ran"
    (memory_dir / "strategy_modules.py").write_text(
        "from memlab.memory.learned import LearnedStrategy\n"
        f"open({str(marker)!r}, 'w').write('x')\n"
        "class S_v1(LearnedStrategy):\n    params = {}\n"
    )
    with MemoryStores(memory_dir) as mem, pytest.raises(TamperedMemoryError, match="no audit record"):
        mem.strategies.load("S")
    assert not marker.exists()
    report = verify_memory(memory_dir)
    assert any("strategy_modules.py: holds memory but the audit trail has no record" in p for p in report.problems), str(report)


@pytest.mark.parametrize("keep", [0, 3])
def test_a_truncated_trail_fails_verify_and_writers_refuse(memory_dir: Path, keep: int) -> None:
    with MemoryStores(memory_dir) as mem:
        fill(mem)
    trail = memory_dir / "audit_log.jsonl"
    lines = trail.read_text().splitlines(keepends=True)
    assert len(lines) > keep + 1
    trail.write_text("".join(lines[:keep]))  # a shorter chain is still a valid chain

    report = verify_memory(memory_dir)
    assert not report.ok
    assert any("truncated" in p or "deleted" in p for p in report.problems), str(report)
    assert verify_cli(memory_dir).returncode == 1
    before = folder_contents(memory_dir)
    with MemoryStores(memory_dir) as mem, pytest.raises(TamperedMemoryError):
        mem.journal.append({"Decision": "BUY"})
    assert folder_contents(memory_dir) == before


def test_a_trail_replaced_by_another_valid_chain_fails_verify(memory_dir: Path, tmp_path: Path) -> None:
    with MemoryStores(memory_dir) as mem:
        fill(mem)
    other = tmp_path / "other"
    with MemoryStores(other) as mem:
        fill(mem)
        for i in range(5):
            mem.journal.append({"Filler": i})
    (memory_dir / "audit_log.jsonl").write_bytes((other / "audit_log.jsonl").read_bytes())
    report = verify_memory(memory_dir)
    assert any("not the one sealed in the chain head" in p for p in report.problems), str(report)


def test_an_edited_head_is_caught(memory_dir: Path) -> None:
    with MemoryStores(memory_dir) as mem:
        fill(mem)
    head = head_path_for(memory_dir)
    data = bytearray(head.read_bytes())
    for offset in (0, 512):
        slot = json.loads(bytes(data[offset : offset + 512]).strip(b" \n\x00") or b"null")
        if slot is not None:
            slot["seq"] = 2
            raw = json.dumps(slot).encode().ljust(511) + b"\n"
            data[offset : offset + 512] = raw
    head.write_bytes(bytes(data))
    report = verify_memory(memory_dir)
    assert any("head was edited" in p for p in report.problems), str(report)


def test_a_head_one_record_behind_after_a_crash_is_not_a_false_alarm(memory_dir: Path) -> None:
    with MemoryStores(memory_dir) as mem:
        fill(mem)
        head = head_path_for(memory_dir)
        old = head.read_bytes()
        mem.journal.append({"Decision": "HOLD"})
        assert head.read_bytes() != old
    head.write_bytes(old)  # as if killed between the record and the head update
    report = verify_memory(memory_dir)
    assert report.ok and not report.warnings, str(report)
    with MemoryStores(memory_dir) as mem:
        mem.journal.append({"Resumed": "yes"})  # and writing carries on
    assert verify_memory(memory_dir).ok


def test_a_memory_file_the_trail_never_covered_fails_verify(memory_dir: Path) -> None:
    with MemoryStores(memory_dir) as mem:
        mem.journal.append({"Decision": "BUY"})
    (memory_dir / "parameter_updates.json").write_text(json.dumps({"2025-01-01": {"position_size": 1.0}}))
    report = verify_memory(memory_dir)
    assert any(p.startswith("parameter_updates.json: holds memory") for p in report.problems), str(report)


def test_with_a_key_the_head_is_an_hmac_and_truncation_is_still_caught(memory_dir: Path) -> None:
    cipher = MemoryCipher(Fernet.generate_key())
    with MemoryStores(memory_dir, cipher=cipher) as mem:
        fill(mem)
    head = json.loads(head_path_for(memory_dir).read_bytes()[:512].strip(b" \n\x00") or b"{}") or json.loads(
        head_path_for(memory_dir).read_bytes()[512:].strip(b" \n\x00"))
    assert head["mac"] == "hmac-sha256"
    assert verify_memory(memory_dir, cipher=cipher).ok
    trail = memory_dir / "audit_log.jsonl"
    trail.write_text("".join(trail.read_text().splitlines(keepends=True)[:-2]))
    assert not verify_memory(memory_dir, cipher=cipher).ok


def test_deleting_everything_is_a_fresh_start_not_a_hidden_edit(memory_dir: Path) -> None:
    with MemoryStores(memory_dir) as mem:
        fill(mem)
    head = head_path_for(memory_dir)
    for path in memory_dir.iterdir():
        path.unlink()
    assert not verify_memory(memory_dir).ok  # before anything new: the trail is gone, the head says so
    with MemoryStores(memory_dir) as mem:
        mem.journal.append({"Fresh": "start"})
    assert verify_memory(memory_dir).ok
    assert list(head.parent.glob(f"{head.name}.replaced-*"))  # the old head is kept, not dropped


# -- restore reads only inside its staging folder -------------------------------------------

_opened: list[str] | None = None


def _record_opens(event: str, args: tuple[object, ...]) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], (str, bytes, Path)):
        _opened.append(str(args[0]))


sys.addaudithook(_record_opens)


def _hostile_archive(path: Path, files: dict[str, bytes], manifest: dict[str, str],
                     links: dict[str, str] | None = None) -> Path:
    import hashlib
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
        body = json.dumps({"created": "x", "source": "x", "files": {
            n: (d if d else hashlib.sha256(files.get(n, b"")).hexdigest()) for n, d in manifest.items()}}).encode()
        info = tarfile.TarInfo("MANIFEST.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return path


def _hostile_cases(tmp_path: Path, secret: Path) -> dict[str, Path]:
    journal = b"[2025-10-16 14:30:15] Decision: BUY\n"
    return {
        "manifest ../../etc/hostname": _hostile_archive(
            tmp_path / "a.tar.gz", {"core_memory_updates.txt": journal},
            {"core_memory_updates.txt": "", "../../etc/hostname": "0" * 64}),
        "manifest ../ beside the folder": _hostile_archive(
            tmp_path / "b.tar.gz", {"core_memory_updates.txt": journal},
            {"core_memory_updates.txt": "", f"../{secret.name}": "0" * 64}),
        "manifest absolute path": _hostile_archive(
            tmp_path / "c.tar.gz", {"core_memory_updates.txt": journal},
            {"core_memory_updates.txt": "", str(secret): "0" * 64}),
        "symlink member": _hostile_archive(
            tmp_path / "d.tar.gz", {}, {"core_memory_updates.txt": "0" * 64},
            links={"core_memory_updates.txt": str(secret)}),
        "member ../escape": _hostile_archive(
            tmp_path / "e.tar.gz", {"../escape.txt": journal}, {"core_memory_updates.txt": ""}),
    }


@pytest.mark.parametrize("case", ["manifest ../../etc/hostname", "manifest ../ beside the folder",
                                  "manifest absolute path", "symlink member", "member ../escape"])
def test_restore_refuses_an_archive_that_points_outside_and_reads_nothing_there(
    memory_dir: Path, tmp_path: Path, case: str
) -> None:
    global _opened
    from memlab.errors import InvalidInputError
    from memlab.memory.backup import restore_memory

    with MemoryStores(memory_dir) as mem:
        fill(mem)
    secret = memory_dir.parent / "outside-secret.txt"
    secret.write_text("not for restore")
    (tmp_path / "archives").mkdir()
    archive = _hostile_cases(tmp_path / "archives", secret)[case]
    before = folder_contents(memory_dir)
    siblings = sorted(p.name for p in memory_dir.parent.iterdir())

    _opened = []
    try:
        with pytest.raises(InvalidInputError) as err:
            restore_memory(archive, memory_dir)
        opened = list(_opened)
    finally:
        _opened = None
    message = str(err.value)
    assert "\n" not in message and "nothing" in message, message
    assert not any(Path(p).name in ("hostname", secret.name, "escape.txt") for p in opened), opened
    assert folder_contents(memory_dir) == before  # nothing restored, nothing moved aside
    assert sorted(p.name for p in memory_dir.parent.iterdir()) == siblings  # no staging left behind


def test_the_restore_command_refuses_a_hostile_archive_in_one_line(memory_dir: Path, tmp_path: Path) -> None:
    with MemoryStores(memory_dir) as mem:
        fill(mem)
    secret = memory_dir.parent / "outside-secret.txt"
    secret.write_text("not for restore")
    (tmp_path / "archives").mkdir()
    archive = _hostile_cases(tmp_path / "archives", secret)["manifest ../../etc/hostname"]
    done = subprocess.run([sys.executable, "-m", "memlab.cli", "memory", "restore", str(archive),
                           "--memory-path", str(memory_dir)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "../../etc/hostname" in lines[0], done.stderr
    assert verify_memory(memory_dir).ok
