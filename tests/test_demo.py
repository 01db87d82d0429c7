"""`make run`'s demo runs the whole flow offline and says where its outputs are."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from memlab.trader.equity import read_equity

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "memlab.cli", "demo", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((out / "demo_summary.json").read_text())
    assert list(summary) == ["backtest", "nightly training", "memory", "agent", "paper session", "monitor"]
    for step in summary.values():
        for path in step.values():
            assert Path(path).exists(), path
    assert f"Everything is under {out.resolve()}" in done.stdout
    # Every report is named with its full path, the nightly run's single HTML report among them.
    listed = done.stdout.split("Reports to open in a browser")[1].split("\n\nEverything")[0].splitlines()[1:]
    reports = [Path(line.split("| ", 1)[1].split()[-1]) for line in listed if "|" in line]
    assert any(r.name == "nightly_training.html" for r in reports) and all(r.is_file() for r in reports)
    assert {r.name for r in reports} >= {"backtest_equity.html", "sweep_heatmap.html"}
    session = json.loads((out / "paper_session.json").read_text())
    check = session["reconciliation"]
    assert abs(check["paper_return"] - check["backtest_return"]) < 1e-9  # paper reconciles with backtest
    portfolio = json.loads((out / "portfolio_session.json").read_text())["reconciliation"]
    assert portfolio["symbols"] == ["BTC/USDT", "ETH/USDT", "SOL/USDT"] and portfolio["paper_fills"] > 0
    assert abs(portfolio["difference"]) < 1e-9  # three markets on shared cash reconcile too
    assert session["report"]["state"] == "finished" and session["report"]["decisions"] > 0
    # The monitor's equity, marked to market every replayed bar, ends where the session ended.
    curve = read_equity(out / "mem_knowledge")
    assert curve is not None and len(curve) == session["report"]["bars"]
    assert abs(curve["equity"].iloc[-1] - session["report"]["equity"]) < 1e-6 * session["report"]["equity"]
    assert "equity marked to market at" in done.stdout and "buy-and-hold" in done.stdout
    verify = subprocess.run([sys.executable, "-m", "memlab.cli", "memory", "--memory-path", str(out / "mem_knowledge"), "verify"],
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout
