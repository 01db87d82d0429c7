"""The agent's `make run` step writes what it says, and re-running it on the same memory is safe."""

from __future__ import annotations

import json
from pathlib import Path

from memlab.agent.demo import run_agent_demo
from memlab.memory import MemoryStores


def test_demo_scores_trades_adapts_and_reports(tmp_path: Path, memory_dir: Path):
    paths = run_agent_demo(tmp_path / "out", memory_dir)
    assert all(p.exists() for p in paths.values()), paths
    summary = json.loads(paths["scored signals"].read_text())
    by_regime = summary["mean_confidence_by_regime"]
    assert by_regime["calm_up"] > by_regime["storm_down"]
    assert summary["adaptations"] and summary["lessons"]
    params = json.loads(paths["parameters"].read_text())
    assert any(a["reason"] for day in params.values() for a in day["adjustments"])
    with MemoryStores(memory_dir) as mem:
        stored = mem.decisions.count()
    run_agent_demo(tmp_path / "out2", memory_dir)  # same memory again: nothing stored twice
    with MemoryStores(memory_dir) as mem:
        assert mem.decisions.count() == stored
