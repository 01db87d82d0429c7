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
