"""Protections in a paper session: a cooldown per symbol, a stop-loss guard and a drawdown
halt block entries for the bars they say, are journalled with their reason, and survive a
restart that lost their last saved state."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from memlab.connectors import PaperBroker
from memlab.data import synthetic_ohlcv
from memlab.errors import InvalidInputError
from memlab.memory import MemoryStores
from memlab.trader import TraderConfig, UnifiedMemGPTTrader
from memlab.trader.protections import ProtectionRules
from tests.support.paper_session import fill_count, wait_for_fills

ROOT = Path(__file__).resolve().parents[1]
BARS = synthetic_ohlcv(1500, freq="1min", seed=3)


def session(root: Path, protections: ProtectionRules | None = None, **kw: object) -> TraderConfig:
    return TraderConfig(symbols=("BTC/USDT",), strategy="sma_cross", params={"fast": 5, "slow": 20},
                        memory_path=root, sizing="full", feed={"data": BARS, "warmup": 200},
                        protections=protections or ProtectionRules(), **kw)  # type: ignore[arg-type]


def run(config: TraderConfig) -> dict[str, object]:
    return asyncio.run(UnifiedMemGPTTrader(config).run())


def fills(root: Path) -> pd.DataFrame:
    broker = PaperBroker(root)
    try:
        frame = pd.DataFrame(broker.fills("BTC/USDT"))
    finally:
        broker.close()
    frame["bar"] = BARS.index.get_indexer(pd.to_datetime(frame["bar_time"], unit="s", utc=True))
    return frame


def journal(root: Path) -> list[tuple[pd.Timestamp, dict[str, str], str]]:
    with MemoryStores(root) as stores:
        return [(pd.Timestamp(e.time), e.fields, " ".join(e.notes)) for e in stores.journal.tail(100_000)]


def gaps_after_exits(frame: pd.DataFrame) -> list[int]:
    """Bars from each exit's fill to the next entry's fill."""
    sides, bars = frame["side"].tolist(), frame["bar"].tolist()
    return [bars[i + 1] - bars[i] for i in range(len(sides) - 1) if sides[i] == "sell" and sides[i + 1] == "buy"]


def test_a_cooldown_holds_each_new_entry_back_for_its_bars(tmp_path: Path) -> None:
    free = run(session(tmp_path / "free"))
    assert min(gaps_after_exits(fills(tmp_path / "free"))) < 6  # without it, entries follow exits closely
    report = run(session(tmp_path / "cool", ProtectionRules(cooldown=5)))
    gaps = gaps_after_exits(fills(tmp_path / "cool"))
    # An entry may be sent 5 bars after the exit's fill bar, and fills at the next open.
    assert gaps and min(gaps) >= 6
    assert report["skip_reasons"].get("blocked by the cooldown", 0) > 0
    assert report["orders"] < free["orders"]  # type: ignore[operator]
    skips = [note for _, f, note in journal(tmp_path / "cool") if f.get("Decision") == "SKIP" and "cooldown" in note]
    assert skips and "closed a position" in skips[0] and "(waits 5)" in skips[0]


def test_a_stop_loss_guard_pauses_every_entry_after_k_stop_losses(tmp_path: Path) -> None:
    rules = ProtectionRules(max_stop_losses=2, stop_loss_window=40, pause=30)
    events: list[dict[str, object]] = []
    trader = UnifiedMemGPTTrader(session(tmp_path, rules, stop_loss=0.002))
    trader.manager.events.subscribe(lambda kind, payload: events.append(payload) if kind == "protection" else None)
    asyncio.run(trader.run())
    lines = [(t, f, n) for t, f, n in journal(tmp_path) if f.get("Protection") == "stop-loss guard"]
    assert lines and all(f["Decision"] == "PAUSE" and f["Bars"] == "30" for _, f, _ in lines)
    assert "2 stop-losses within 40 bars: no entries for 30 bars" in lines[0][2]
    assert len(events) == len(lines) and events[0]["protection"] == "stop-loss guard"
    frame = fills(tmp_path)
    buys = frame.loc[frame["side"] == "buy", "bar"].to_numpy()
    for when, _, _ in lines:
        start = BARS.index.get_indexer([when])[0]
        assert start >= 0
        # Entries sent from `pause` bars after the trigger on fill one bar later.
        assert not ((buys > start) & (buys <= start + 30)).any(), (start, buys)


def test_a_drawdown_halt_stops_entries_and_measures_afresh_after_it(tmp_path: Path) -> None:
    rules = ProtectionRules(max_drawdown=0.004, pause=25)
    run(session(tmp_path, rules))
    lines = [(t, n) for t, f, n in journal(tmp_path) if f.get("Protection") == "drawdown halt"]
    assert len(lines) >= 2 and "below its peak" in lines[0][1] and "(limit 0.4%)" in lines[0][1]
    buys = fills(tmp_path).query("side == 'buy'")["bar"].to_numpy()
    for when, _ in lines:
        start = BARS.index.get_indexer([when])[0]
        assert not ((buys > start) & (buys <= start + 25)).any()


PROTECTED = ["--max-stop-losses", "2", "--stop-loss-window", "40", "--pause", "30", "--cooldown", "4",
             "--max-drawdown", "0.004", "--stop-loss", "0.002"]


def paper(root: Path, *extra: str, crash_at: tuple[str, int] | None = None) -> subprocess.Popen[bytes]:
    """A ``memlab paper`` session with every protection; ``crash_at=(point, N)`` kills it
    (SIGKILL) at that crash point of tests/faults/crash_points.py (``exit``: as its
    protections take its N-th exit; ``halt``/``halt-said``: as its N-th drawdown halt starts)."""
    session_args = ["--symbol", "BTC/USDT", "--strategy", "sma_cross", "--param", "fast=5", "--param", "slow=20",
                    "--synthetic", "1500", "--seed", "3", "--warmup", "200", "--sizing", "full",
                    "--memory-path", str(root), *PROTECTED, *extra]
    if crash_at is None:
        args = [sys.executable, "-m", "memlab.cli", "paper", *session_args]
    else:
        point, nth = crash_at
        args = [sys.executable, "-m", "tests.faults.crash_points", point, str(nth), "--", *session_args]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("protections") / "whole"
    proc = paper(root)
    assert proc.wait(120) == 0, proc.communicate()[1][-2000:]
    paused = [f.get("Protection") for _, f, _ in journal(root) if f.get("Decision") == "PAUSE"]
    assert {"stop-loss guard", "drawdown halt"} <= set(paused)  # both pauses are part of the run
    return root


def same_session(root: Path, reference: Path) -> None:
    """The same fills, and the same protections started at the same bars."""
    cols = ["side", "bar", "price", "amount"]
    pd.testing.assert_frame_equal(fills(root)[cols], fills(reference)[cols])
    pauses = [[(t, f, n) for t, f, n in journal(r) if f.get("Decision") == "PAUSE"] for r in (root, reference)]
    assert pauses[0] == pauses[1]


def test_kill_9_at_random_moments_loses_no_protection(tmp_path: Path, uninterrupted: Path) -> None:
    root = tmp_path / "killed"
    for at in (9, 23, 37):  # fills in the book when the process is killed
        proc = paper(root, "--speed", "6000")
        wait_for_fills(proc, root, at)  # type: ignore[arg-type]
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    last = paper(root)
    assert last.wait(120) == 0, last.communicate()[1][-2000:]
    same_session(root, uninterrupted)


def test_kill_9_as_an_exit_starts_the_stop_loss_guard_loses_nothing(tmp_path: Path, uninterrupted: Path) -> None:
    # The exit whose stop-loss started the guard: the book holds its fill when the process
    # dies, the protections' state of that bar is not written yet. The restart must still
    # pause (else it enters during the pause, and the fills differ).
    [first, *_] = [t for t, f, _ in journal(uninterrupted) if f.get("Protection") == "stop-loss guard"]
    exits = fills(uninterrupted).query("side == 'sell'")
    nth = int((exits["bar"] <= BARS.index.get_indexer([first])[0]).sum())
    root = tmp_path / "killed"
    proc = paper(root, crash_at=("exit", nth))
    assert proc.wait(120) == -signal.SIGKILL, proc.communicate()[1][-2000:]
    assert fill_count(root) > 0 and not [f for _, f, _ in journal(root) if f.get("Protection") == "stop-loss guard"]
    last = paper(root)
    assert last.wait(120) == 0, last.communicate()[1][-2000:]
    same_session(root, uninterrupted)


@pytest.mark.parametrize("point", ["halt", "halt-said"])
def test_kill_9_as_a_drawdown_halt_starts_loses_nothing(tmp_path: Path, uninterrupted: Path, point: str) -> None:
    # Killed as the third drawdown halt starts: its state is written but not its journal
    # line ("halt"), or both but not the bar's group commit ("halt-said"). The restart must
    # journal the halt once, keep its pause, and measure the next drawdown from the peak
    # the halt reset, not the one before it (else it halts where the whole run did not).
    root = tmp_path / "killed"
    proc = paper(root, crash_at=("halt" if point == "halt" else "halt-said", 3))
    assert proc.wait(120) == -signal.SIGKILL, proc.communicate()[1][-2000:]
    halts = [t for t, f, _ in journal(root) if f.get("Protection") == "drawdown halt"]
    assert len(halts) == (2 if point == "halt" else 3)
    last = paper(root)
    assert last.wait(120) == 0, last.communicate()[1][-2000:]
    same_session(root, uninterrupted)


def test_bad_protection_settings_are_refused_naming_the_value() -> None:
    with pytest.raises(InvalidInputError, match=r"cooldown must be a whole number of bars >= 1, got 0"):
        ProtectionRules(cooldown=0)
    with pytest.raises(InvalidInputError, match=r"max_drawdown must be a fraction of equity in \(0, 1\), got 1.5"):
        ProtectionRules(max_drawdown=1.5)
