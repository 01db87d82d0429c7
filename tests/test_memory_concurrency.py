"""Several processes writing the same memory at once lose nothing and corrupt nothing."""

from __future__ import annotations

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
    from memlab.memory import MemoryStores, Decision
    root, who = Path(sys.argv[1]), sys.argv[2]
    mem = MemoryStores(root)
    for i in range(60):
        mem.journal.append({"Writer": who, "N": i})
        mem.parameters.set(f"{who}.count", i + 1, reason=f"{who} step {i}")
        mem.decisions.record(Decision("BTCUSDT", "momentum", "BUY", 0.5, f"{who} {i}",
                                      features={"x": float(i)}, key=f"{who}:{i}"))
    """
)


def test_concurrent_writers_lose_nothing(memory_dir: Path) -> None:
    MemoryStores(memory_dir).close()
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(memory_dir), who])
        for who in ("alpha", "beta", "gamma")
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    with MemoryStores(memory_dir) as mem:
        entries = mem.journal.entries()
        assert len(entries) == 180
        for who in ("alpha", "beta", "gamma"):
            mine = [int(e.fields["N"]) for e in entries if e.fields["Writer"] == who]
            assert mine == list(range(60))  # every line whole, in each writer's order
            assert mem.parameters.get(f"{who}.count") == 60  # no lost read-modify-write
            assert len(mem.parameters.history(f"{who}.count")) == 60
        assert mem.decisions.count() == 180
        assert mem.decisions.frame()["id"].tolist() == list(range(1, 181))
    report = verify_memory(memory_dir)
    assert report.ok and not report.warnings, str(report)
