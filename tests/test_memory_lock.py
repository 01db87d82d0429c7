"""One writer per memory folder: a second trader, a restore or training under a running
trader are refused in one line naming it; a lock left by ``kill -9`` is taken over."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from memlab.memory.backup import backup_memory
from memlab.memory.errors import MemoryInUseError
from memlab.memory.lock import LOCK_FILE, WriterLock, holder, writer_lock
from memlab.memory.verify import verify_memory
from tests.support.paper_session import ROOT, book, paper_env, start_paper, wait_for_fills

BARS = 4000


def _memlab(memory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memlab.cli", *args], cwd=ROOT, env=paper_env(memory),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The book of the same session run once, alone and uninterrupted."""
    memory = tmp_path_factory.mktemp("reference") / "mem"
    proc = start_paper(memory, BARS)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert json.loads(out.strip().splitlines()[-1])["fills"] > 50
    return book(memory)


def _one_refusal(stderr: str, pid: int) -> str:
    assert "Traceback" not in stderr, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if "in use by" in line]
    assert len(lines) == 1, stderr[-2000:]
    assert f"in use by pid {pid} (memlab paper" in lines[0] and "stop it first" in lines[0], lines[0]
    return lines[0]


def test_a_second_trader_restore_or_quarantine_is_refused_and_the_book_is_intact(
    tmp_path: Path, reference: dict[str, Any]
) -> None:
    memory = tmp_path / "mem"
    first = start_paper(memory, BARS, "--speed", "12000")
    try:
        wait_for_fills(first, memory, 3)
        first.send_signal(signal.SIGSTOP)  # paused mid-session, lock held: it cannot finish while we knock
        archive = backup_memory(memory, tmp_path / "backups")

        second = start_paper(memory, BARS)
        out, err = second.communicate(timeout=300)
        assert second.returncode != 0
        _one_refusal(err, first.pid)

        restore = _memlab(memory, "memory", "restore", str(archive), "--memory-path", str(memory))
        assert restore.returncode != 0
        _one_refusal(restore.stderr, first.pid)
        assert not list(tmp_path.glob("mem.before-restore-*"))  # the folder was not moved under the trader

        quarantine = _memlab(memory, "memory", "--memory-path", str(memory), "quarantine", "core_memory_updates.txt")
        assert quarantine.returncode != 0
        _one_refusal(quarantine.stderr, first.pid)

        held = holder(memory)
        assert held is not None and held.pid == first.pid
    finally:
        first.send_signal(signal.SIGCONT)
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err[-2000:]  # undisturbed: it stops cleanly when asked
    assert holder(memory) is None  # released on the way out
    finish = start_paper(memory, BARS)  # the same command resumes and finishes the session
    out, err = finish.communicate(timeout=300)
    assert finish.returncode == 0, err[-2000:]
    assert book(memory) == reference
    report = verify_memory(memory)
    assert report.ok, str(report)


def test_after_kill_9_of_the_holder_a_new_writer_takes_the_lock(tmp_path: Path, reference: dict[str, Any]) -> None:
    memory = tmp_path / "mem"
    first = start_paper(memory, BARS, "--speed", "12000")
    wait_for_fills(first, memory, 3)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    assert json.loads((memory / LOCK_FILE).read_text())["pid"] == first.pid  # its name is still there
    assert holder(memory) is None  # but the kernel dropped its lock with it
    proc = start_paper(memory, BARS)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert json.loads((memory / LOCK_FILE).read_text())["pid"] == proc.pid
    assert book(memory) == reference
    assert verify_memory(memory).ok


HOLDER = textwrap.dedent(
    """
    import sys
    from memlab.memory.lock import WriterLock
    lock = WriterLock(sys.argv[1]).acquire()
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    """
)


@pytest.fixture
def held_elsewhere(memory_dir: Path):  # type: ignore[no-untyped-def]
    """Another process holding ``memory_dir``'s writer lock."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(memory_dir)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(60) == 0


def test_training_is_refused_while_another_process_writes_and_writes_nothing(
    memory_dir: Path, tmp_path: Path, held_elsewhere: subprocess.Popen[str]
) -> None:
    from memlab.training import TrainingConfig, train

    cfg = TrainingConfig(symbols=["synthetic:3:800"], grid={"fast": [5], "slow": [20]},
                         memory_path=memory_dir, params_dir=tmp_path / "params", progress=False, force=True)
    with pytest.raises(MemoryInUseError, match=f"in use by pid {held_elsewhere.pid} "):
        train(cfg)
    assert sorted(p.name for p in memory_dir.iterdir()) == [LOCK_FILE]
    assert not (tmp_path / "params" / "trained.json").exists()


def test_the_lock_is_one_per_folder_and_reentrant_in_one_process(memory_dir: Path, tmp_path: Path) -> None:
    with writer_lock(memory_dir) as outer:
        with WriterLock(memory_dir) as inner:  # the same process: training inside a session
            assert inner.held
        assert holder(memory_dir) is not None  # the outer holder still has it
        with writer_lock(tmp_path / "other"):  # another folder is another lock
            pass
        assert outer.held
    assert holder(memory_dir) is None


def test_readers_need_no_lock(memory_dir: Path, held_elsewhere: subprocess.Popen[str]) -> None:
    for action in ("verify", "status"):
        done = _memlab(memory_dir, "memory", action, "--memory-path", str(memory_dir))
        assert done.returncode == 0, done.stderr
    with pytest.raises(MemoryInUseError):
        WriterLock(memory_dir).acquire()
