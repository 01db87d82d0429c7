"""Helpers for tests that run `memlab paper` as a real subprocess on a memory folder,
watch its paper book from outside (read-only, as the monitor does), and compare what
sessions and writers leave behind."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from memlab.memory import MemoryStores

ROOT = Path(__file__).resolve().parents[1]


def paper_env(memory: Path) -> dict[str, str]:
    """The environment of a synthetic BTC/USDT ``sma_cross`` session on ``memory`` (no encryption key)."""
    env = {k: v for k, v in os.environ.items() if k != "MEM_ENCRYPTION_KEY"}
    return {**env, "TRADING_MODE": "paper", "SYMBOL": "BTC/USDT", "STRATEGY": "sma_cross",
            "MEM_MEMORY_PATH": str(memory)}


def start_paper(memory: Path, bars: int, *extra: str) -> subprocess.Popen[str]:
    """``memlab paper`` on ``bars`` synthetic bars (seed 4, fast=10, slow=30, full sizing, JSON report)."""
    args = ["paper", "--synthetic", str(bars), "--seed", "4", "--sizing", "full",
            "--param", "fast=10", "--param", "slow=30", "--json", *extra]
    return subprocess.Popen([sys.executable, "-m", "memlab.cli", *args], cwd=ROOT, env=paper_env(memory),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def fill_count(memory: Path) -> int:
    """Fills in the folder's paper book so far (0 before the book exists)."""
    try:
        db = sqlite3.connect(f"file:{memory / 'paper_broker.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            return int(db.execute("SELECT count(*) FROM fills").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def wait_for_fills(proc: subprocess.Popen[str], memory: Path, n: int, timeout: float = 120) -> None:
    """Until the session has ``n`` fills; fails if it exits or makes no progress in ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while fill_count(memory) < n:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the session made no progress"
        time.sleep(0.02)


def book(memory: Path) -> dict[str, Any]:
    """What a session leaves behind, in a form two sessions can be compared by: fills,
    balances and the trader's decisions with their outcomes."""
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


def folder_contents(root: Path) -> dict[str, object]:
    """What a memory folder holds: bytes of each file, SQLite stores by content (a WAL
    checkpoint moves bytes without changing what is stored). Locks and WAL files are left out."""
    out: dict[str, object] = {}
    for path in sorted(root.iterdir()):
        if not path.is_file() or path.name.endswith((".lock", "-wal", "-shm")):
            continue
        if path.suffix == ".sqlite":
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            out[path.name] = list(conn.iterdump())
            conn.close()
        else:
            out[path.name] = path.read_bytes()
    return out
