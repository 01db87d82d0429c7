"""One writer per memory folder: a second trader, a restore or training under a running
trader are refused in one line naming it; a lock left by ``kill -9`` is taken over."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from memlab.memory import MemoryStores
from memlab.memory.backup import backup_memory
from memlab.memory.errors import MemoryInUseError
from memlab.memory.lock import LOCK_FILE, WriterLock, holder, writer_lock
from memlab.memory.verify import verify_memory

ROOT = Path(__file__).resolve().parents[1]
SESSION = ["paper", "--synthetic", "4000", "--seed", "4", "--sizing", "full",
           "--param", "fast=10", "--param", "slow=30", "--json"]


def _env(memory: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MEM_ENCRYPTION_KEY"}
    return {**env, "TRADING_MODE": "paper", "SYMBOL": "BTC/USDT", "STRATEGY": "sma_cross",
            "MEM_MEMORY_PATH": str(memory)}


def _paper(memory: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "memlab.cli", *SESSION, *extra], cwd=ROOT, env=_env(memory),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _memlab(memory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memlab.cli", *args], cwd=ROOT, env=_env(memory),
                          capture_output=True, text=True, timeout=300)


def _fills(memory: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{memory / 'paper_broker.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            return int(db.execute("SELECT count(*) FROM fills").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def _wait_for_fills(proc: subprocess.Popen[str], memory: Path, n: int) -> None:
    deadline = time.monotonic() + 120
    while _fills(memory) < n:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the session made no progress"
        time.sleep(0.02)


def book(memory: Path) -> dict[str, Any]:
    """What a session leaves behind, in a form two sessions can be compared by."""
    db = sqlite3.connect(memory / "paper_broker.sqlite")
    fills = db.execute("SELECT f.bar_time, o.side, round(f.price, 9), round(f.amount, 9), o.client_id "
                       "FROM fills f JOIN orders o ON o.id = f.order_id ORDER BY f.id").fetchall()
    balances = dict(db.execute("SELECT asset, round(total, 6) FROM balances").fetchall())
    db.close()
    with MemoryStores(memory) as mem:
        frame = mem.decisions.frame(agent_id="trader_001")
        decisions = [(t.isoformat(), r.action, round(r.confidence, 9), None if r.pnl != r.pnl else round(r.pnl, 6))
                     for t, r in frame.iterrows()]
    return {"fills": fills, "balances": balances, "decisions": decisions}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The book of the same session run once, alone and uninterrupted."""
    memory = tmp_path_factory.mktemp("reference") / "mem"
    proc = _paper(memory)
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
    first = _paper(memory, "--speed", "12000")
    try:
        _wait_for_fills(first, memory, 3)
        first.send_signal(signal.SIGSTOP)  # paused mid-session, lock held: it cannot finish while we knock
        archive = backup_memory(memory, tmp_path / "backups")

        second = _paper(memory)
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
    finish = _paper(memory)  # the same command resumes and finishes the session
    out, err = finish.communicate(timeout=300)
    assert finish.returncode == 0, err[-2000:]
    assert book(memory) == reference
    report = verify_memory(memory)
    assert report.ok, str(report)


def test_after_kill_9_of_the_holder_a_new_writer_takes_the_lock(tmp_path: Path, reference: dict[str, Any]) -> None:
    memory = tmp_path / "mem"
    first = _paper(memory, "--speed", "12000")
    _wait_for_fills(first, memory, 3)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    assert json.loads((memory / LOCK_FILE).read_text())["pid"] == first.pid  # its name is still there
    assert holder(memory) is None  # but the kernel dropped its lock with it
    proc = _paper(memory)
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
