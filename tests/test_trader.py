"""The trader loop: reconciles with the backtest, replays deterministically, survives kill -9 and signals."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from memlab import backtest
from memlab.data import sample, synthetic_ohlcv
from memlab.errors import ConfigurationError
from memlab.memory import MemoryStores
from memlab.strategies import compute_signals
from memlab.trader import TraderConfig, UnifiedMemGPTTrader, read_status
from tests.support.paper_session import book as session_book
from tests.support.paper_session import start_paper, wait_for_fills

ROOT = Path(__file__).resolve().parents[1]


def run(config: TraderConfig) -> dict[str, Any]:
    return asyncio.run(UnifiedMemGPTTrader(config).run())


def book(memory: Path) -> dict[str, Any]:
    """The session's book (:func:`tests.support.paper_session.book`) and how many journal lines of each kind."""
    with MemoryStores(memory) as mem:
        lines = [str(e).split("] ", 1)[1] for e in mem.journal.entries()]
    kinds = {k: sum(k in line for line in lines) for k in ("Decision: BUY", "Decision: SELL", "P&L:")}
    return {**session_book(memory), "journal": kinds}


def test_paper_fills_reconcile_with_the_backtest_of_the_same_bars(tmp_path: Path) -> None:
    bars = sample("GOOG")
    report = run(TraderConfig(symbols=("GOOG",), strategy="sma_cross", params={"fast": 10, "slow": 30},
                              memory_path=tmp_path, sizing="full", fees=0.0005, balance=100_000.0,
                              feed={"data": bars, "warmup": 200}))
    signals = compute_signals("sma_cross", bars, {"fast": 10, "slow": 30}).iloc[200:]
    pf = backtest.simulate(bars.iloc[200:], signals, fees=0.0005, init_cash=100_000.0)
    assert report["return"] == pytest.approx(float(pf.total_return()), abs=1e-9)
    trades = backtest.engine.trades_frame(pf)
    assert report["outcomes"] == int((trades["status"] == "Closed").sum()) if "status" in trades else report["outcomes"] > 0
    # every entry became a decision with the agent's verdict; every closed one has its outcome
    with MemoryStores(tmp_path) as mem:
        decided = mem.decisions.frame(agent_id="trader_001")
    assert len(decided) == report["decisions"] and decided["reason"].str.len().min() > 0
    assert decided["pnl"].notna().sum() == report["outcomes"]


def test_same_bars_and_memory_snapshot_give_the_same_decisions(tmp_path: Path) -> None:
    bars = synthetic_ohlcv(3000, freq="1min", seed=11)
    seed = tmp_path / "seed"
    run(TraderConfig(symbols=("BTC/USDT",), strategy="sma_cross", params={"fast": 10, "slow": 40},
                     memory_path=seed, sizing="full", agent_id="teacher", feed={"data": bars.iloc[:1500], "warmup": 200}))
    results = []
    for name in ("a", "b"):
        shutil.copytree(seed, tmp_path / name)
        (tmp_path / name / "paper_broker.sqlite").unlink()  # a fresh account, the same memory
        for extra in ("paper_broker.sqlite-wal", "paper_broker.sqlite-shm"):
            (tmp_path / name / extra).unlink(missing_ok=True)
        run(TraderConfig(symbols=("BTC/USDT",), strategy="sma_cross", params={"fast": 10, "slow": 40},
                         memory_path=tmp_path / name, sizing="full", feed={"data": bars.iloc[1300:], "warmup": 200}))
        results.append(book(tmp_path / name))
    assert results[0] == results[1]
    confidences = {d[2] for d in results[0]["decisions"]}
    assert len(results[0]["decisions"]) > 10 and len(confidences) > 3  # memory, not a constant, scored them


def test_agent_sizing_spends_the_agents_position_size_and_skips_what_it_sizes_at_zero(tmp_path: Path) -> None:
    bars = synthetic_ohlcv(1500, freq="1min", seed=5)
    trader = UnifiedMemGPTTrader(TraderConfig(symbols=("BTC/USDT",), strategy="sma_cross",
                                              params={"fast": 5, "slow": 20}, memory_path=tmp_path, sizing="agent",
                                              feed={"data": bars, "warmup": 200}))
    report = asyncio.run(trader.run())
    # A new memory has no evidence: the cold start trades at the base size, and says so.
    assert report["orders"] > 0 and report["decisions"] > 0
    with MemoryStores(tmp_path) as mem:
        first = mem.decisions.frame(agent_id="trader_001").iloc[0]
        skips = mem.journal.entries(where={"Decision": "SKIP"})
    assert first["reason"].startswith("no similar past decisions: prior only")
    db = sqlite3.connect(tmp_path / "paper_broker.sqlite")
    first_cost = db.execute("SELECT cost FROM orders WHERE side='buy' ORDER BY id LIMIT 1").fetchone()[0]
    db.close()
    assert first_cost == pytest.approx(0.1 * 10_000, rel=0.01)  # base size x starting equity
    # What the agent sized at zero was skipped, each with its reason in the report and the journal.
    assert report["skipped"] == sum(report["skip_reasons"].values()) == len(skips)
    assert all("sized 0 by the agent" in str(e) or "below min_confidence" in str(e) for e in skips)


def test_stop_loss_is_attached_and_risk_caps_the_entry(tmp_path: Path) -> None:
    from memlab.memory.durable import group_commit  # noqa: F401  (the trader's own path)

    bars = synthetic_ohlcv(800, freq="1min", seed=3)
    config = TraderConfig(symbols=("BTC/USDT",), strategy="sma_cross", params={"fast": 5, "slow": 20},
                          memory_path=tmp_path, sizing="full", stop_loss=0.01, take_profit=0.02,
                          feed={"data": bars, "warmup": 200}, max_bars=120)
    run(config)
    db = sqlite3.connect(tmp_path / "paper_broker.sqlite")
    kinds = {r[0] for r in db.execute("SELECT type FROM orders")}
    assert {"stop_loss", "take_profit"} <= kinds
    entry, sl = db.execute("SELECT o.average, c.price FROM orders o JOIN orders c ON c.parent_id = o.id "
                           "WHERE c.type='stop_loss' ORDER BY o.id LIMIT 1").fetchone()
    assert sl < entry


def test_live_mode_refuses_to_start_without_explicit_confirmation(tmp_path: Path) -> None:
    env = {"TRADING_MODE": "live", "SYMBOL": "BTC/USDT", "STRATEGY": "momentum", "MEM_MEMORY_PATH": str(tmp_path)}
    config = TraderConfig.from_env(env)
    assert config.mode == "live" and config.broker == "binance" and config.memory_path == tmp_path
    with pytest.raises(ConfigurationError, match="--confirm-live"):
        UnifiedMemGPTTrader(config)
    assert TraderConfig.from_env({**env, "MEMLAB_CONFIRM_LIVE": "yes"}).confirm_live
    with pytest.raises(ConfigurationError, match="STRATEGY"):
        TraderConfig.from_env({"STRATEGY": "moonshot"})
    with pytest.raises(ConfigurationError, match="TRADING_MODE"):
        TraderConfig.from_env({"TRADING_MODE": "yolo"})


def test_kill_9_mid_session_then_restart_ends_like_an_uninterrupted_session(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    proc = start_paper(reference, 12000)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    whole = json.loads(out.strip().splitlines()[-1])
    assert whole["state"] == "finished" and whole["fills"] > 100

    crashed = tmp_path / "crashed"
    for kill_at in (40, 160):  # killed twice, at different points
        proc = start_paper(crashed, 12000)
        wait_for_fills(proc, crashed, kill_at)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert read_status(crashed)["alive"] is False  # the monitor sees no live trader
    proc = start_paper(crashed, 12000)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert book(crashed) == book(reference)


def test_sigterm_stops_gracefully_and_the_next_run_resumes(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    proc = start_paper(reference, 12000)
    assert proc.wait(300) == 0
    memory = tmp_path / "session"
    proc = start_paper(memory, 12000, "--speed", "120000")  # paced, so it is still running when the signal comes
    wait_for_fills(proc, memory, 20)
    status = read_status(memory)
    assert status is not None and status["alive"] and status["pid"] == proc.pid and status["rss_mb"] > 0
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert json.loads(out.strip().splitlines()[-1])["state"] == "stopped"
    assert read_status(memory)["state"] == "stopped"
    proc = start_paper(memory, 12000)
    assert proc.wait(300) == 0
    assert book(memory) == book(reference)


def test_the_paper_trading_notebook_runs_a_session_and_reconciles(tmp_path: Path) -> None:
    import papermill as pm

    out = tmp_path / "paper_trading.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "paper_trading.ipynb"), str(out), kernel_name="python3",
                        progress_bar=False, cwd=str(ROOT),
                        parameters={"memory_path": str(tmp_path / "mem"), "max_bars": None, "after": "2008-01-01"})
    executed = json.loads(out.read_text())
    text = "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    assert "paper-trading GOOG only after 2008-01-01" in text  # the hold-out is said, not silent
    assert "paper +" in text and "difference" in text
    difference = float(text.split("(difference ")[1].split(")")[0])
    assert abs(difference) < 1e-9
    with MemoryStores(tmp_path / "mem") as mem:
        assert mem.decisions.count() > 10
