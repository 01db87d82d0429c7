"""The equity log: marked to market every bar at market times, equal to the broker's own books, and
the same after kill -9 and restart as in an uninterrupted session."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memlab.connectors import PaperBroker
from memlab.data import sample, synthetic_ohlcv
from memlab.trader import TraderConfig, UnifiedMemGPTTrader
from memlab.trader.equity import EquityLog, read_equity
from tests.support.paper_session import start_paper, wait_for_fills

ROOT = Path(__file__).resolve().parents[1]
GOOG_BALANCE = 100_000.0


def goog_session(memory: Path, **changes: object) -> pd.DataFrame:
    """A paper session replaying GOOG's shipped daily history (2005-2013), like a backtest; returns the bars replayed."""
    bars = sample("GOOG")
    config = TraderConfig(symbols=("GOOG",), strategy="sma_cross", params={"fast": 10, "slow": 30}, memory_path=memory,
                          sizing="full", fees=0.0005, balance=GOOG_BALANCE, feed={"data": bars, "warmup": 200})
    asyncio.run(UnifiedMemGPTTrader(config.with_(**changes)).run())
    return bars.iloc[200:]


def books_from_fills(memory: Path, bars: pd.DataFrame, balance: float) -> pd.DataFrame:
    """Cash, position and equity at every bar, rebuilt from the broker's fills and the bars alone."""
    broker = PaperBroker(memory)
    fills = pd.DataFrame(broker.fills())
    broker.close()
    signed = np.where(fills["side"] == "buy", 1.0, -1.0)
    cash_flow = -signed * fills["amount"] * fills["price"] - fills["fee"]
    at = pd.to_datetime(fills["bar_time"], unit="s", utc=True)
    cash = balance + pd.Series(cash_flow.to_numpy(), index=at).groupby(level=0).sum().reindex(bars.index, fill_value=0).cumsum()
    held = pd.Series((signed * fills["amount"]).to_numpy(), index=at).groupby(level=0).sum().reindex(
        bars.index, fill_value=0).cumsum()
    held = held.where(held.abs() > 1e-9, 0.0)
    return pd.DataFrame({"cash": cash, "held": held, "equity": cash + held * bars["Close"]})


def test_a_replayed_session_logs_equity_marked_to_market_at_every_bar(tmp_path: Path) -> None:
    bars = goog_session(tmp_path)
    log = read_equity(tmp_path)
    assert log is not None
    # One row per bar, at the bar's market time (a replay of 2005-2013 reads as 2005-2013, not as today).
    assert log.index.equals(bars.index) and str(log.index.tz) == "UTC"
    assert log.index[0].year == 2005 and log.index[-1].year == 2013
    assert log["close:GOOG"].tolist() == bars["Close"].tolist()
    # Equity is cash + position x close at every bar, as the broker's fills say.
    expected = books_from_fills(tmp_path, bars, GOOG_BALANCE)
    assert log["held:GOOG"].to_numpy() == pytest.approx(expected["held"].to_numpy(), rel=1e-9, abs=1e-9)
    assert log["cash"].to_numpy() == pytest.approx(expected["cash"].to_numpy(), rel=1e-9, abs=1e-6)
    assert log["equity"].to_numpy() == pytest.approx(expected["equity"].to_numpy(), rel=1e-9)
    assert (log["equity"] == log["cash"] + log["position_value"]).all()
    # It moves between fills (marked to market), not only when a trade closes.
    holding = log["held:GOOG"] > 0
    assert log.loc[holding, "equity"].diff().dropna().ne(0).mean() > 0.9
    # Buy and hold of the same market from the starting balance.
    assert log["benchmark"].to_numpy() == pytest.approx(GOOG_BALANCE * bars["Close"] / bars["Close"].iloc[0], rel=1e-12)
    # The last row is the account the broker holds at the end.
    broker = PaperBroker(tmp_path)
    assert log["equity"].iloc[-1] == pytest.approx(broker.equity("USD"), rel=1e-12)
    broker.close()
    # And it equals the backtest of the same bars (the paper session reconciles with it).
    from memlab import backtest
    from memlab.strategies import compute_signals

    signals = compute_signals("sma_cross", sample("GOOG"), {"fast": 10, "slow": 30}).iloc[200:]
    value = backtest.simulate(bars, signals, fees=0.0005, init_cash=GOOG_BALANCE).value()
    assert log["equity"].to_numpy() == pytest.approx(value.to_numpy(), rel=1e-9)


def test_the_log_is_read_only_for_readers_and_incremental_by_market_time(tmp_path: Path) -> None:
    goog_session(tmp_path, max_bars=300)
    before = (tmp_path / "equity.sqlite").read_bytes()
    whole = read_equity(tmp_path)
    tail = read_equity(tmp_path, since=whole.index[-5])
    assert tail.index.equals(whole.index[-5:]) and tail.equals(whole.iloc[-5:])
    assert (tmp_path / "equity.sqlite").read_bytes() == before
    assert read_equity(tmp_path / "nowhere") is None  # a folder from before the log: said, not invented


def test_bars_marked_but_never_written_are_rebuilt_on_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that dies with marked bars still in memory: the restart stores them, from the
    last stored holdings and the replayed closes, exactly as an uninterrupted run did."""
    reference = tmp_path / "reference"
    bars = goog_session(reference)
    whole = read_equity(reference)
    # Stop in the middle of the longest stretch without fills: a fill's bar is written at
    # once, so what a kill can lose is the bars marked since the last fill.
    fills = pd.Index(pd.to_datetime([f["bar_time"] for f in PaperBroker(reference).fills()], unit="s", utc=True))
    at = bars.index.get_indexer(fills.unique())
    gaps = np.diff(at)
    k = int(np.argmax(gaps))
    stop = int(at[k] + gaps[k] // 2)
    assert gaps[k] > 20
    crashed = tmp_path / "crashed"
    goog_session(crashed, max_bars=stop + 1)
    db = sqlite3.connect(crashed / "equity.sqlite")
    last_fill = bars.index[at[k]].timestamp()
    lost = [i for (i,) in db.execute("SELECT id FROM blocks WHERE first_time > ?", (last_fill,))]
    with db:  # as if killed with them marked, not yet written
        db.execute(f"DELETE FROM blocks WHERE id IN ({','.join('?' * len(lost))})", lost)
    db.close()
    stored = read_equity(crashed)
    assert lost and stored.index[-1] == bars.index[at[k]] and len(stored) < stop
    goog_session(crashed)
    again = read_equity(crashed)
    assert again.index.equals(whole.index) and again.index.is_unique
    pd.testing.assert_frame_equal(again, whole, check_exact=True)


def test_a_fill_lost_with_the_log_is_left_out_not_rebuilt_wrongly(tmp_path: Path) -> None:
    """If a power cut took rows across a fill the broker kept, those bars are not invented."""
    goog_session(tmp_path, max_bars=400)
    whole = read_equity(tmp_path)
    fills = pd.to_datetime([f["bar_time"] for f in PaperBroker(tmp_path).fills()], unit="s", utc=True)
    fill = fills[(fills > whole.index[50]) & (fills < whole.index[-1])][-1]
    db = sqlite3.connect(tmp_path / "equity.sqlite")
    with db:
        db.execute("DELETE FROM blocks WHERE last_time >= ?", (whole.index[whole.index < fill][-2].timestamp(),))
    db.close()
    stored = read_equity(tmp_path)
    goog_session(tmp_path)
    again = read_equity(tmp_path)
    restarted_at = whole.index[-1]  # the restart re-runs the last bar the broker processed
    rebuilt = whole[(whole.index > stored.index[-1]) & (whole.index < fill)]
    missing = whole.index[(whole.index >= fill) & (whole.index < restarted_at)]
    assert len(rebuilt) and len(missing)
    pd.testing.assert_frame_equal(again.loc[rebuilt.index], rebuilt)  # before the fill: holdings known, rebuilt
    assert not again.index.isin(missing).any()  # from the fill on: left out
    assert again.index.is_unique and again.index.is_monotonic_increasing
    assert again.index[-1].year == 2013


def test_writer_rows_are_keyed_by_bar_time(tmp_path: Path) -> None:
    log = EquityLog(tmp_path, ["A/USD", "B/USD"])
    log.hold(1_000.0, [0.0, 0.0])
    log.mark(60.0, [10.0, math.nan])   # A's first bar; B not seen yet: its share stays cash
    log.mark(60.0, [10.0, 20.0])       # B's bar at the same time completes the row
    log.hold(500.0, [50.0, 0.0])
    log.mark(120.0, [11.0, 22.0])
    log.close()
    frame = read_equity(tmp_path)
    assert frame.index.tolist() == [pd.Timestamp(60, unit="s", tz="UTC"), pd.Timestamp(120, unit="s", tz="UTC")]
    assert frame["equity"].tolist() == [1_000.0, 500.0 + 50 * 11.0]
    assert frame["benchmark"].tolist() == [1_000.0, 500.0 * 11 / 10 + 500.0 * 22 / 20]
    assert list(frame.columns) == ["equity", "cash", "position_value", "benchmark", "close:A/USD", "close:B/USD",
                                   "held:A/USD", "held:B/USD"]
    reopened = EquityLog(tmp_path, ["A/USD", "B/USD"])
    reopened.mark(60.0, [99.0, 99.0])  # a restart re-running a stored bar stores nothing new
    reopened.close()
    assert read_equity(tmp_path)["equity"].tolist() == [1_000.0, 1_050.0]


# -- kill -9 ----------------------------------------------------------------------------------

def test_kill_9_mid_session_then_restart_gives_the_uninterrupted_equity_series(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    proc = start_paper(reference, 8000)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert json.loads(out.strip().splitlines()[-1])["fills"] > 60

    crashed = tmp_path / "crashed"
    for kill_at in (15, 50):
        proc = start_paper(crashed, 8000)
        wait_for_fills(proc, crashed, kill_at)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        partial = read_equity(crashed)
        assert partial is not None and partial.index.is_unique
    proc = start_paper(crashed, 8000)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]

    whole, again = read_equity(reference), read_equity(crashed)
    bars = synthetic_ohlcv(8000, freq="1min", seed=4).iloc[200:]
    assert whole.index.equals(bars.index)  # one row per bar, no bar missing
    assert again.index.equals(whole.index)  # none missing or twice after the kills either
    pd.testing.assert_frame_equal(again, whole, check_exact=False, rtol=1e-12)
