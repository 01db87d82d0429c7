"""Nothing acknowledged is lost when the writing process is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from memlab.memory import MemoryStores
from memlab.memory.verify import verify_memory

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from memlab.memory import MemoryStores, Decision, Outcome
    from memlab.features import FEATURE_NAMES

    mem = MemoryStores(Path(sys.argv[1]))
    n = 0
    while True:
        batch = [
            Decision("BTCUSDT", "momentum", "BUY", 0.6, f"decision {n + i}",
                     features={f: float(n + i) for f in FEATURE_NAMES}, key=f"k{n + i}",
                     outcome=Outcome(pnl=1.0) if (n + i) % 2 else None)
            for i in range(25)
        ]
        ids = mem.decisions.record_many(batch)
        mem.journal.append({"Decision": "BUY", "Batch": n // 25})
        n += 25
        print(f"ACK {ids[-1]} {n // 25}", flush=True)
    """
)


def test_sigkill_mid_write_loses_no_acknowledged_decision(memory_dir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(memory_dir)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    acked_id = acked_batches = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            _, last_id, batches = line.split()
            acked_id, acked_batches = int(last_id), int(batches)
            if acked_batches >= 40:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert acked_id >= 1000

    conn = sqlite3.connect(memory_dir / "decisions.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with MemoryStores(memory_dir) as mem:
        count = mem.decisions.count()
        assert count >= acked_id
        ids = mem.decisions.frame()["id"].tolist()
        assert ids == list(range(1, count + 1))  # nothing missing, nothing duplicated
        assert mem.decisions.get(acked_id).reason == f"decision {acked_id - 1}"
        assert len(mem.journal.entries(key="Batch")) >= acked_batches
        # The store carries on after the crash.
        mem.journal.append({"Resumed": "yes"})
    report = verify_memory(memory_dir)
    assert report.ok, str(report)


DIES_BEFORE_RECORDING = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from memlab.memory import MemoryStores
    from memlab.memory.audit import AuditTrail

    mem = MemoryStores(Path(sys.argv[1]))
    mem.journal.append({"Decision": "BUY", "Line": 1})
    record = AuditTrail.record

    def dying(self, file, op, **fields):  # the journal's lines are on disk, their record never will be
        if file == "core_memory_updates.txt":
            os.kill(os.getpid(), signal.SIGKILL)
        return record(self, file, op, **fields)

    AuditTrail.record = dying
    mem.journal.append_many([{"Decision": "SELL", "Line": 2}, {"Decision": "BUY", "Line": 3}])
    """
)


def test_a_kill_between_a_journal_append_and_its_record_leaves_verifiable_memory(memory_dir: Path) -> None:
    """The window a random kill -9 once hit in CI: lines durable, record not written. The next
    append records them first (late), so verify passes and names them, and they stay sealed."""
    proc = subprocess.run([sys.executable, "-c", DIES_BEFORE_RECORDING, str(memory_dir)], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    before = verify_memory(memory_dir)
    assert before.ok and any("written after the last audit record" in w for w in before.warnings), str(before)

    with MemoryStores(memory_dir) as mem:  # a restart writes on
        mem.journal.append({"Resumed": "yes"})
        assert [e.fields.get("Line", "resumed") for e in mem.journal.entries()] == ["1", "2", "3", "resumed"]
    report = verify_memory(memory_dir)
    assert report.ok, str(report)
    assert any("lines 2-3 were recorded late" in w for w in report.warnings), str(report)

    journal = memory_dir / "core_memory_updates.txt"  # sealed from then on: an edit of them is caught
    journal.write_bytes(journal.read_bytes().replace(b"SELL", b"HOLD"))
    assert any("differ from what was written" in p for p in verify_memory(memory_dir).problems)
