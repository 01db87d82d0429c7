"""The paper trader on a perpetual swap: long and short, leverage, funding, restarts, and
reconciliation with a backtest of the same bars (vectorbt's ``direction="both"`` at
leverage 1, :mod:`memlab.backtest.perp` with leverage and funding); on spot, short
signals are refused once."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from memlab import backtest
from memlab.backtest.engine import trades_frame
from memlab.backtest.perp import simulate_perp
from memlab.connectors import PaperBroker
from memlab.data import synthetic_ohlcv
from memlab.data.funding import load_funding
from memlab.errors import InvalidInputError
from memlab.memory import MemoryStores
from memlab.strategies import compute_signals
from memlab.trader import TraderConfig, UnifiedMemGPTTrader, reconcile_with_backtest
from memlab.trader.protections import ProtectionRules

FEES, SLIP = 0.001, 0.0005
SWAP, SPOT = "BTC/USDT:USDT", "BTC/USDT"
PARAMS = {"fast": 5, "slow": 20}  # sma_cross: short_entry on the cross down, so every cross reverses


def continuous(n: int, seed: int) -> pd.DataFrame:
    """1-minute bars whose every open is the previous close (a 24/7 market's bars)."""
    bars = synthetic_ohlcv(n, freq="1min", seed=seed).copy()
    opens = np.r_[bars["Open"].iloc[0], bars["Close"].to_numpy()[:-1]]
    bars["Open"] = opens
    bars["High"] = np.maximum(bars["High"], opens)
    bars["Low"] = np.minimum(bars["Low"], opens)
    return bars


def swap_config(root: Path, bars: pd.DataFrame, **kw: Any) -> TraderConfig:
    return TraderConfig(symbols=(SWAP,), strategy="sma_cross", params=PARAMS, memory_path=root, sizing="full",
                        fees=FEES, slippage=SLIP, feed={"data": bars, "warmup": 200}, **kw)


def run(config: TraderConfig) -> dict[str, Any]:
    return asyncio.run(UnifiedMemGPTTrader(config).run())


def book_rows(root: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(root / "paper_broker.sqlite")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def paper(root: Path, what: str, *args: Any) -> Any:
    """One read of the session's paper book (opened and closed again)."""
    broker = PaperBroker(root)
    try:
        return getattr(broker, what)(*args)
    finally:
        broker.close()


def decisions(root: Path) -> pd.DataFrame:
    with MemoryStores(root) as stores:
        return stores.decisions.frame(symbol=SWAP)


@pytest.fixture(scope="module")
def smooth() -> pd.DataFrame:
    return continuous(1500, 3)


# -- leverage 1: vectorbt's direction="both" ----------------------------------------------
def test_a_swap_session_trades_long_and_short_and_reconciles_with_vectorbt_both(tmp_path: Path,
                                                                                 smooth: pd.DataFrame) -> None:
    config = swap_config(tmp_path, smooth)
    report = run(config)
    check = reconcile_with_backtest(config)
    assert check["direction"] == "both"
    assert abs(check["difference"]) < 1e-9, check
    assert check["paper_fills"] == check["backtest_trades"] > 60  # one fill per entry: reversals are one order
    # Shorts were traded: SELL decisions (short entries), each closed with the P&L of its closing fill.
    made = decisions(tmp_path)
    shorts, longs = made[made["action"] == "SELL"], made[made["action"] == "BUY"]
    assert len(shorts) > 30 and len(longs) > 30 and report["decisions"] == len(made)
    closing = [f for f in paper(tmp_path, "fills", SWAP) if f["pnl"] is not None]
    assert made["pnl"].notna().sum() == len(closing) == report["outcomes"]
    assert made["pnl"].sum() == pytest.approx(sum(f["pnl"] for f in closing), abs=1e-9)
    # ...and mattered: the long-only backtest of the same signals is another one.
    signals = compute_signals("sma_cross", smooth, PARAMS).iloc[200:]
    longonly = backtest.simulate(smooth.iloc[200:], signals, fees=FEES, slippage=SLIP, init_cash=config.balance)
    assert abs(float(longonly.total_return()) - check["backtest_return"]) > 1e-3
    # The journal has the seed's lines for a short entry: Decision SELL, then its entry price.
    with MemoryStores(tmp_path) as stores:
        lines = [e.fields for e in stores.journal.tail(400)]
    sells = [i for i, f in enumerate(lines) if f.get("Decision") == "SELL" and "Order" not in f]
    assert sells and all("Entry Price" in lines[i + 1] for i in sells if i + 1 < len(lines))


@pytest.mark.parametrize("exits", [
    {"stop_loss": 0.003, "take_profit": 0.004},
    {"trailing_stop": 0.003, "exit_after": 7},
], ids=["stop_loss+take_profit", "trailing+exit_after"])
def test_stops_on_shorts_sit_above_and_below_and_the_session_reconciles(tmp_path: Path, smooth: pd.DataFrame,
                                                                        exits: dict[str, float]) -> None:
    config = swap_config(tmp_path, smooth, **exits)
    run(config)
    check = reconcile_with_backtest(config)
    assert abs(check["difference"]) < 1e-9, check
    # A short entry's (a sell's) children are buys: the stop above its reference, the target below.
    rows = book_rows(tmp_path, "SELECT c.type, c.side, c.price, c.status, p.average, c.trail_extreme FROM orders c "
                               "JOIN orders p ON p.id = c.parent_id WHERE p.side = 'sell'")
    assert len(rows) > 20 and all(side == "buy" for _, side, *_ in rows)
    for type_, _, price, _, entry, lowest in rows:
        if type_ == "stop_loss":
            assert price > entry * (1 + 0.002)
        elif type_ == "trailing_stop":  # 0.3 % above the lowest price seen, which starts at the reference
            assert price == pytest.approx(lowest * 1.003, rel=1e-12) and lowest < entry * 1.002
        else:
            assert price < entry * (1 - 0.003)
    stopped = {t for t, _, _, status, _, _ in rows if status == "closed"}
    assert stopped >= ({"stop_loss", "take_profit"} if "stop_loss" in exits else {"trailing_stop"})
    # The exits changed the result.
    signals = compute_signals("sma_cross", smooth, PARAMS).iloc[200:]
    plain = backtest.simulate(smooth.iloc[200:], signals, fees=FEES, slippage=SLIP, init_cash=config.balance,
                              direction="both")
    assert abs(float(plain.total_return()) - check["backtest_return"]) > 1e-4


def test_a_session_restarted_mid_short_ends_where_an_uninterrupted_run_ends(tmp_path: Path,
                                                                           smooth: pd.DataFrame) -> None:
    whole = swap_config(tmp_path / "whole", smooth, exit_after=9)
    run(whole)
    config = swap_config(tmp_path / "split", smooth, exit_after=9)
    signals = compute_signals("sma_cross", smooth, PARAMS).iloc[200:]
    pf = backtest.simulate(smooth.iloc[200:], signals, fees=FEES, slippage=SLIP, init_cash=config.balance,
                           direction="both", exit_after=9)
    trades = trades_frame(pf)
    short_fills = smooth.iloc[200:].index.get_indexer(pd.DatetimeIndex(trades.loc[trades["direction"] == "Short",
                                                                                  "entry_time"]))[:4]
    # Stop at a short's signal bar (its order placed, not filled), and three bars into one.
    stops = [int(short_fills[0]), int(short_fills[1]) + 4, int(short_fills[2]), int(short_fills[3]) + 4]
    assert stops == sorted(set(stops))
    done, sides = 0, []
    for stop_at in stops:
        run(config.with_(max_bars=stop_at - done))
        done = stop_at
        sides.append([p["side"] for p in paper(config.memory_path, "fetch_positions")])
    assert sides[1] == ["short"] and sides[3] == ["short"]  # stopped holding a short: resumed from the book
    run(config)
    check = reconcile_with_backtest(config)
    assert abs(check["difference"]) < 1e-9, check
    assert paper(config.memory_path, "equity", "USDT") == pytest.approx(paper(whole.memory_path, "equity", "USDT"),
                                                                         abs=1e-9)
    a, b = decisions(whole.memory_path), decisions(config.memory_path)
    assert len(a) == len(b) and a["pnl"].notna().sum() == b["pnl"].notna().sum()
    np.testing.assert_allclose(a["pnl"].fillna(0).to_numpy(), b["pnl"].fillna(0).to_numpy(), rtol=0, atol=1e-9)
    assert a["action"].tolist() == b["action"].tolist()


# -- leverage and funding: memlab.backtest.perp -------------------------------------------
def funded(root: Path) -> int:
    """The session's book with the (synthetic) sample funding rates, 8-hourly from 2024-01-01:
    the bars' own times."""
    broker = PaperBroker(root)
    try:
        broker.add_market(SWAP)
        return broker.set_funding_rates(SWAP, load_funding("sample"))
    finally:
        broker.close()


@pytest.mark.parametrize(("leverage", "exit_after", "liquidated"), [(5.0, None, False), (20.0, 6, True)])
def test_a_leveraged_funded_session_reconciles_with_the_perp_backtest(tmp_path: Path, leverage: float,
                                                                      exit_after: int | None,
                                                                      liquidated: bool) -> None:
    bars = synthetic_ohlcv(1500, freq="15min", seed=3)  # 15 days: 47 funding times, opens that gap
    assert funded(tmp_path) == 270
    config = swap_config(tmp_path, bars, leverage=leverage, exit_after=exit_after)
    run(config)
    check = reconcile_with_backtest(config)
    assert check["backtest"] == "perp"
    assert abs(check["difference"]) < 1e-9, check
    assert check["paper_fills"] == check["backtest_fills"] > 20
    broker = PaperBroker(tmp_path)
    try:
        paid = [f["amount"] for f in broker.fetch_funding_history(SWAP) if f["amount"]]
        assert len(paid) >= 3 and sum(paid) == pytest.approx(check["backtest_funding"], abs=1e-9)
        assert broker.fetch_leverage(SWAP)["longLeverage"] == leverage
        liquidations = book_rows(tmp_path, "SELECT count(*) FROM orders WHERE type='liquidation'")[0][0]
    finally:
        broker.close()
    assert liquidations == check["backtest_liquidations"] and (liquidations > 0) == liquidated
    # Funding and leverage both mattered.
    signals = compute_signals("sma_cross", bars, PARAMS).iloc[200:]
    kw = {"init_cash": config.balance, "fees": FEES, "slippage": SLIP, "exit_after": exit_after}
    ours = simulate_perp(bars.iloc[200:], signals, leverage=leverage, funding=load_funding("sample"), **kw)
    assert ours.total_return == check["backtest_return"]
    no_funding = simulate_perp(bars.iloc[200:], signals, leverage=leverage, **kw)
    assert (no_funding.equity - ours.equity).abs().max() > 1.0
    unlevered = simulate_perp(bars.iloc[200:], signals, leverage=1.0, funding=load_funding("sample"), **kw)
    assert (unlevered.equity - ours.equity).abs().max() > 100.0


def test_the_perp_backtest_is_vectorbt_at_leverage_1_without_funding(smooth: pd.DataFrame) -> None:
    signals = compute_signals("sma_cross", smooth, PARAMS).iloc[200:]
    ours = simulate_perp(smooth.iloc[200:], signals, init_cash=10_000.0, fees=FEES, slippage=SLIP)
    theirs = backtest.simulate(smooth.iloc[200:], signals, fees=FEES, slippage=SLIP, init_cash=10_000.0,
                               direction="both")
    assert len(ours.fills) == len(trades_frame(theirs)) > 60
    assert ours.total_return == pytest.approx(float(theirs.total_return()), abs=1e-9)


# -- spot: shorts are refused, once --------------------------------------------------------
def test_a_spot_session_ignores_short_signals_and_says_so_once(tmp_path: Path, smooth: pd.DataFrame,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    config = TraderConfig(symbols=(SPOT,), strategy="sma_cross", params=PARAMS, memory_path=tmp_path, sizing="full",
                          fees=FEES, slippage=SLIP, feed={"data": smooth, "warmup": 200})
    with caplog.at_level(logging.WARNING, logger="memlab.trader.loop"):
        report = run(config)
    said = "BTC/USDT is a spot market: short signals are not traded; trade BTC/USDT:USDT"
    shorts = int(compute_signals("sma_cross", smooth, PARAMS)["short_entry"].iloc[200:].sum())
    assert report["short_signals_ignored"] == {SPOT: shorts} and shorts > 30
    assert [r.getMessage() for r in caplog.records if "spot market" in r.getMessage()] == [said]
    with MemoryStores(tmp_path) as stores:
        notes = [e for e in stores.journal.tail(1000) if said in " ".join(e.notes)]
        assert len(notes) == 1 and notes[0].fields["Shorts"] == "IGNORED"
        assert set(stores.decisions.frame()["action"]) == {"BUY"}
    assert abs(reconcile_with_backtest(config)["difference"]) < 1e-9  # the long-only backtest


# -- bad input ----------------------------------------------------------------------------
def test_leverage_above_the_markets_maximum_is_refused_with_the_brokers_maximum(tmp_path: Path,
                                                                              smooth: pd.DataFrame) -> None:
    with pytest.raises(InvalidInputError, match=re.escape("the maximum leverage is 100x")):
        run(swap_config(tmp_path, smooth, leverage=150))
    with pytest.raises(InvalidInputError, match=re.escape("leverage is a number >= 1 (1 = no leverage), got 0.5")):
        swap_config(tmp_path, smooth, leverage=0.5)
    with pytest.raises(InvalidInputError, match=re.escape("BTC/USDT is a spot market (trade e.g. BTC/USDT:USDT)")):
        TraderConfig(symbols=(SPOT,), memory_path=tmp_path, leverage=3)


@pytest.mark.parametrize(("value", "code"), [("abc", 2), ("0.5", 2), ("nan", 2)])
def test_the_leverage_flag_refuses_a_non_number_in_one_line(tmp_path: Path, value: str, code: int,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from memlab import log_redaction
    from memlab.cli import main

    monkeypatch.setenv("MEM_MEMORY_PATH", str(tmp_path))
    try:
        got = main(["paper", "--symbol", SWAP, "--strategy", "sma_cross", "--synthetic", "600", "--leverage", value])
    except SystemExit as exc:
        got = int(exc.code or 0)
    finally:
        log_redaction.uninstall()
    err = [line for line in capsys.readouterr().err.strip().splitlines() if " INFO " not in line]
    assert got == code and len(err) == 1, err
    assert f"argument --leverage: a leverage is a number >= 1 (3 = 3x), got '{value}'" in err[0]


# -- protections on shorts ------------------------------------------------------------------
def test_a_cooldown_blocks_short_entries_and_a_blocked_reversal_only_closes(tmp_path: Path,
                                                                          smooth: pd.DataFrame) -> None:
    config = swap_config(tmp_path, smooth, protections=ProtectionRules(cooldown=30))
    report = run(config)
    assert report["skip_reasons"].get("blocked by the cooldown", 0) > 10
    # A reversal the cooldown blocks closes the position (a reduce-only exit) and opens none.
    exits = book_rows(tmp_path, "SELECT side FROM orders WHERE type='market' AND reduce_only=1 AND status='closed'")
    assert {"buy", "sell"} <= {side for (side,) in exits}
    with MemoryStores(tmp_path) as stores:
        covers = [e for e in stores.journal.tail(2000) if e.fields.get("Decision") == "BUY" and "Order" in e.fields]
        assert covers and all(f"exit {SWAP} short" in " ".join(e.notes) for e in covers)
    # Every position opened from flat (not by a reversal) waited 30 bars after the last close.
    times = smooth.index.as_unit("ns").asi8 / 1e9
    row = {t: i for i, t in enumerate(times)}
    held, last_close, waited = 0.0, None, 0
    for f in paper(tmp_path, "fills", SWAP):
        sign = 1.0 if f["side"] == "buy" else -1.0
        opening, reversal = f["amount"], False
        if held * sign < 0:  # closes the position (the session closes whole positions)
            closing = min(f["amount"], abs(held))
            held, opening, reversal = round(held + sign * closing, 9), f["amount"] - closing, True
            if abs(held) < 1e-9:
                held, last_close = 0.0, row[f["bar_time"]]
        if opening > 1e-9:
            if not reversal and last_close is not None:
                assert row[f["bar_time"]] - last_close > 30
                waited += 1
            held += sign * opening
    assert waited > 5


def test_a_stop_that_filled_while_the_trader_was_down_becomes_its_short_decisions_outcome(
        tmp_path: Path, smooth: pd.DataFrame) -> None:
    from memlab.connectors import Bar

    stops = {"stop_loss": 0.003, "take_profit": 0.004}
    whole = swap_config(tmp_path / "whole", smooth, **stops)
    run(whole)
    [(stopped_at,)] = book_rows(whole.memory_path, "SELECT f.bar_time FROM fills f JOIN orders o ON o.id = f.order_id "
                                                  "JOIN orders p ON p.id = o.parent_id WHERE o.type = 'stop_loss' "
                                                  "AND p.side = 'sell' ORDER BY f.id LIMIT 1")
    j = int(np.searchsorted(smooth.index.as_unit("ns").asi8 / 1e9, stopped_at))
    config = swap_config(tmp_path / "split", smooth, **stops)
    run(config.with_(max_bars=j - 200))  # up to the bar before the short's stop-loss fills
    # The book fills the stop (the trader killed after the book's commit, before memory's).
    broker = PaperBroker(config.memory_path, fees=FEES, slippage=SLIP)
    try:
        row = smooth.iloc[j]
        [fill] = broker.on_bar(SWAP, Bar(stopped_at, row.Open, row.High, row.Low, row.Close))
    finally:
        broker.close()
    assert fill["side"] == "buy" and fill["pnl"] < 0
    run(config)  # resumes: the outcome of the short is the stop's P&L
    a, b = decisions(whole.memory_path), decisions(config.memory_path)
    assert a["action"].tolist() == b["action"].tolist()
    np.testing.assert_array_equal(a["pnl"].to_numpy(), b["pnl"].to_numpy())
    np.testing.assert_allclose(a["return_pct"].to_numpy(dtype=float), b["return_pct"].to_numpy(dtype=float),
                               rtol=1e-12)
    assert b.loc[b["closed_at"] == pd.Timestamp(stopped_at, unit="s", tz="UTC"), "pnl"].tolist() == [fill["pnl"]]
    assert abs(reconcile_with_backtest(config)["difference"]) < 1e-9


def test_an_entry_the_venue_refuses_for_its_minimum_is_skipped_not_the_session(tmp_path: Path) -> None:
    # 3 USDT of cash cannot open the 5 USDT minimum notional of BTC/USDT:USDT: each entry is
    # a skip naming the broker's reason, and the session runs to its end.
    report = run(swap_config(tmp_path, continuous(400, 2), balance=3.0))
    assert report["state"] == "finished" and report["orders"] == 0
    assert report["skip_reasons"].get("the broker refused it", 0) > 0
    with MemoryStores(tmp_path) as stores:
        notes = [" ".join(e.notes) for e in stores.journal.tail(1000) if e.fields.get("Decision") == "SKIP"]
    assert any("below the minimum cost 5 USDT" in n for n in notes)
