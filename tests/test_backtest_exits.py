"""Exits and sizing in backtests: vectorbt's own stops, the paper broker's fill rules,
time exits, a fraction of equity per entry, and a paper session with stops that
reconciles with its backtest."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import vectorbt as vbt

from memlab import backtest
from memlab.backtest.engine import check_exits, trades_frame
from memlab.connectors import Bar, PaperBroker
from memlab.data import sample, synthetic_ohlcv, validate_ohlcv
from memlab.errors import InvalidInputError
from memlab.strategies import compute_signals, signal_frame
from memlab.trader import TraderConfig, UnifiedMemGPTTrader, reconcile_with_backtest

FEES, SLIP = 0.001, 0.0005


@pytest.fixture(scope="module")
def goog() -> pd.DataFrame:
    return sample("GOOG")


def random_entries(bars: pd.DataFrame, rate: float = 0.08, seed: int = 7) -> pd.DataFrame:
    """Entries only: every position is closed by an exit under test (or the end)."""
    entry = np.random.default_rng(seed).random(len(bars)) < rate
    return signal_frame(bars.index, entry, np.zeros(len(bars), bool))


def bar_of(bars: pd.DataFrame, times: pd.Series) -> np.ndarray:
    return bars.index.get_indexer(pd.DatetimeIndex(times))


# -- (a) each exit is vectorbt's own stop ------------------------------------------------
@pytest.fixture(scope="module")
def choppy() -> pd.DataFrame:
    """Daily bars that trend up, down and storm, every open away from the last close."""
    return synthetic_ohlcv(2000, freq="1D", seed=1)


@pytest.mark.parametrize(("exit", "vbt_stop"), [
    ({"stop_loss": 0.005}, {"sl_stop": 0.005, "stop_exit_price": "stopmarket"}),
    ({"take_profit": 0.005}, {"tp_stop": 0.005, "stop_exit_price": "stoplimit"}),
    ({"trailing_stop": 0.005}, {"sl_stop": 0.005, "sl_trail": True, "stop_exit_price": "stopmarket"}),
])
def test_each_exit_agrees_with_vectorbt_from_signals_trade_by_trade(choppy: pd.DataFrame, exit: dict[str, float],
                                                                    vbt_stop: dict[str, Any]) -> None:
    bars = choppy
    signals = random_entries(bars)
    ours = backtest.simulate(bars, signals, fees=FEES, slippage=SLIP, **exit)
    # vectorbt called directly: orders at the next open, stops from the signal bar's close
    # (the previous close: val_price=-inf), the bar's open when a bar gaps through the level.
    direct = vbt.Portfolio.from_signals(
        bars["Close"], signals["entry"].shift(1, fill_value=False), False, price=bars["Open"], open=bars["Open"],
        high=bars["High"], low=bars["Low"], stop_entry_price="valprice", val_price=-np.inf, fees=FEES,
        slippage=SLIP, init_cash=100_000.0, size=np.inf, direction="longonly", freq="1D", **vbt_stop)
    mine, theirs = trades_frame(ours), trades_frame(direct)
    closed = mine[mine["status"] == "Closed"]
    assert len(closed) >= 15  # the exit closed many trades, not one
    for col in ("entry_time", "exit_time", "status"):
        assert mine[col].tolist() == theirs[col].tolist()
    for col in ("entry_price", "exit_price", "size"):
        np.testing.assert_array_equal(mine[col].to_numpy(), theirs[col].to_numpy())
    assert float(ours.total_return()) == pytest.approx(float(direct.total_return()), abs=1e-9)
    # Without the exit the same entries trade differently: the exit did the closing.
    plain = trades_frame(backtest.simulate(bars, signals, fees=FEES, slippage=SLIP))
    assert len(plain) < len(mine)


# -- (b) the paper broker's fill rules, on planted bars ----------------------------------
REF, SL, TP = 100.0, 0.05, 0.08  # signal bar's close; levels 95 and 108


def planted(third: tuple[float, float, float, float]) -> pd.DataFrame:
    """Bar 0 signals an entry at close 100; bar 1 fills it at its open (102, above the
    reference); bar 2 stays between the levels; bar 3 is the case under test."""
    rows = [(100, 101, 99, 100), (102, 103, 101, 102), (101, 102, 96, 97), third, (97, 98, 96, 97)]
    idx = pd.date_range("2024-01-01", periods=len(rows), freq="D", tz="UTC")
    frame = pd.DataFrame(rows, index=idx, columns=["Open", "High", "Low", "Close"], dtype=float)
    return validate_ohlcv(frame.assign(Volume=1.0))


def paper_fills(root: Path, bars: pd.DataFrame, exit_bar: int | None) -> list[dict[str, Any]]:
    """The paper broker on the same bars, driven as the trader drives it: a market buy
    spending all cash with stop-loss / take-profit children priced from the signal bar's
    close; an exit signal cancels the children and sells at market."""
    broker = PaperBroker(root, balances={"USD": 100_000.0}, fees=FEES, slippage=0.002)
    broker.add_market("X/USD")
    try:
        for i, (t, row) in enumerate(bars.iterrows()):
            broker.on_bar("X/USD", Bar(t.timestamp(), row.Open, row.High, row.Low, row.Close))
            if i == 0:
                broker.create_order("X/USD", "market", "buy", None, None, {
                    "cost": 100_000.0, "stopLoss": row.Close * (1 - SL), "takeProfit": row.Close * (1 + TP)})
            if i == exit_bar:
                for order in broker.fetch_open_orders("X/USD"):
                    broker.cancel_order(order["id"])
                [position] = broker.fetch_positions()
                broker.create_order("X/USD", "market", "sell", position["contracts"])
        return broker.fills("X/USD")
    finally:
        broker.close()


@pytest.mark.parametrize(("case", "third", "exit_bar", "expected"), [
    ("stop-loss gapped through: the open", (93, 94, 90, 92), None, 93 * (1 - 0.002)),
    ("stop-loss touched inside: the level", (99, 100, 94, 96), None, REF * (1 - SL) * (1 - 0.002)),
    ("take-profit touched inside: the level, a limit", (104, 109, 103, 107), None, REF * (1 + TP)),
    ("take-profit gapped through: the open", (110, 112, 109, 111), None, 110.0),
    ("both touched: the stop-loss", (100, 109, 94, 100), None, REF * (1 - SL) * (1 - 0.002)),
    ("an exit signal's market order comes first", (99, 100, 94, 96), 2, 99 * (1 - 0.002)),
    ("levels stay at the signal close's, not the fill's", (98, 99, 96.5, 97), None, None),
])
def test_stops_fill_as_the_paper_broker_fills_them(tmp_path: Path, case: str, third: tuple[float, float, float, float],
                                                   exit_bar: int | None, expected: float | None) -> None:
    bars = planted(third)
    n = len(bars)
    exits = np.zeros(n, bool)
    if exit_bar is not None:
        exits[exit_bar] = True
    signals = signal_frame(bars.index, np.arange(n) == 0, exits)
    pf = backtest.simulate(bars, signals, fees=FEES, slippage=0.002, stop_loss=SL, take_profit=TP)
    [trade] = trades_frame(pf).to_dict("records")
    fills = paper_fills(tmp_path, bars, exit_bar)
    assert trade["entry_price"] == fills[0]["price"] == 102 * (1 + 0.002)
    if expected is None:  # 96.5 is below 102.204 x 0.95 but above the level, 95: no exit
        assert trade["status"] == "Open" and len(fills) == 1
        return
    assert trade["status"] == "Closed" and bar_of(bars, pd.Series([trade["exit_time"]]))[0] == 3
    assert trade["exit_price"] == fills[1]["price"] == expected, case
    assert fills[1]["bar_time"] == bars.index[3].timestamp()
    assert float(pf.value().iloc[-1]) == pytest.approx(paper_equity(tmp_path), rel=1e-12)


def paper_equity(root: Path) -> float:
    broker = PaperBroker(root)
    try:
        return broker.equity("USD")
    finally:
        broker.close()


# -- (c) exit_after ----------------------------------------------------------------------
def expected_time_exits(entries: np.ndarray, n_bars: int, fill_delay: int) -> list[tuple[int, int]]:
    """(entry bar, exit bar) of each closed trade, counted by hand: an entry fills
    ``fill_delay`` bars after its signal when flat; the exit fills ``n_bars`` bars later."""
    out, flat_from = [], 0
    for signal_bar in np.flatnonzero(entries):
        entry = signal_bar + fill_delay
        if entry >= flat_from and entry + n_bars < len(entries):
            out.append((entry, entry + n_bars))
            flat_from = entry + n_bars + 1  # the exit bar's own entry signal is not taken
        elif entry >= flat_from:
            break
    return out


@pytest.mark.parametrize("fill", ["next_open", "close"])
def test_exit_after_closes_exactly_n_bars_after_the_entry_fill(goog: pd.DataFrame, fill: str) -> None:
    signals = random_entries(goog, rate=0.05, seed=3)
    pf = backtest.simulate(goog, signals, fees=FEES, slippage=SLIP, exit_after=5, fill=fill)  # type: ignore[arg-type]
    trades = trades_frame(pf)
    closed = trades[trades["status"] == "Closed"]
    pairs = list(zip(bar_of(goog, closed["entry_time"]), bar_of(goog, closed["exit_time"]), strict=True))
    assert pairs == expected_time_exits(signals["entry"].to_numpy(), 5, 1 if fill == "next_open" else 0)
    assert len(pairs) >= 40
    price = goog["Open"] if fill == "next_open" else goog["Close"]
    exits = price.iloc[[b for _, b in pairs]].to_numpy() * (1 - SLIP)  # a market order: slippage
    np.testing.assert_array_equal(closed["exit_price"].to_numpy(), exits)


def test_exit_after_with_a_stop_loss_exits_at_whichever_comes_first(goog: pd.DataFrame) -> None:
    signals = random_entries(goog, rate=0.05, seed=3)
    trades = trades_frame(backtest.simulate(goog, signals, fees=FEES, slippage=SLIP, exit_after=10, stop_loss=0.03))
    closed = trades[trades["status"] == "Closed"]
    held = bar_of(goog, closed["exit_time"]) - bar_of(goog, closed["entry_time"])
    assert held.max() == 10 and (held < 10).sum() >= 5  # some stopped out earlier


# -- (d) size --------------------------------------------------------------------------------
def test_size_half_invests_half_the_equity_at_each_entry(goog: pd.DataFrame) -> None:
    result = backtest.run(goog, "sma_cross", {"fast": 10, "slow": 30}, fees=FEES, size=0.5)
    whole = backtest.run(goog, "sma_cross", {"fast": 10, "slow": 30}, fees=FEES)
    trades, cash = result.trades, result.portfolio.cash()
    assert len(trades) == len(whole.trades) >= 10
    before = cash.iloc[bar_of(goog, trades["entry_time"]) - 1].to_numpy()  # flat then: cash is the equity
    np.testing.assert_allclose(result.equity.iloc[bar_of(goog, trades["entry_time"]) - 1].to_numpy(), before,
                               rtol=0, atol=0)
    spent = trades["size"].to_numpy() * trades["entry_price"].to_numpy() * (1 + FEES)
    np.testing.assert_allclose(spent, 0.5 * before, rtol=1e-12)
    # Half in, half in cash: the first trade makes half the all-in trade's profit.
    assert result.trades["pnl"].iloc[0] == pytest.approx(0.5 * whole.trades["pnl"].iloc[0], rel=1e-12)


# -- (e) a paper session with stops reconciles with its backtest ---------------------------
def test_paper_session_with_stop_loss_and_take_profit_reconciles_with_its_backtest(tmp_path: Path) -> None:
    bars = synthetic_ohlcv(1500, freq="1min", seed=3)
    config = TraderConfig(symbols=("BTC/USDT",), strategy="sma_cross", params={"fast": 5, "slow": 20},
                          memory_path=tmp_path, sizing="full", stop_loss=0.003, take_profit=0.004, fees=FEES,
                          slippage=SLIP, feed={"data": bars, "warmup": 200})
    asyncio.run(UnifiedMemGPTTrader(config).run())
    db = sqlite3.connect(tmp_path / "paper_broker.sqlite")
    filled = dict(db.execute("SELECT type, count(*) FROM orders WHERE status='closed' GROUP BY type").fetchall())
    db.close()
    assert filled.get("stop_loss", 0) >= 5 and filled.get("take_profit", 0) >= 5  # both kinds of stop fired
    check = reconcile_with_backtest(config)
    assert abs(check["difference"]) < 1e-9, check
    assert check["paper_fills"] == 2 * check["backtest_trades"] - int(check["backtest_stats"]["open_trade"])
    # The stops changed the result: without them the backtest is another one.
    signals = compute_signals("sma_cross", bars, {"fast": 5, "slow": 20}).iloc[200:]
    plain = backtest.simulate(bars.iloc[200:], signals, fees=FEES, slippage=SLIP, init_cash=config.balance)
    assert abs(float(plain.total_return()) - check["backtest_return"]) > 1e-3


@pytest.mark.parametrize("exits", [
    {"exit_after": 7},
    {"exit_after": 5, "take_profit": 0.004},
    {"size": 0.5, "stop_loss": 0.003},
    {"trailing_stop": 0.003, "take_profit": 0.006},
    {"trailing_stop": 0.002, "exit_after": 12, "size": 0.7},
], ids=["exit_after", "exit_after+take_profit", "half_size+stop_loss", "trailing+take_profit", "trailing+exit_after+size"])
def test_paper_session_with_each_exit_and_a_share_of_cash_reconciles_with_its_backtest(
        tmp_path: Path, exits: dict[str, Any]) -> None:
    bars = synthetic_ohlcv(1500, freq="1min", seed=3)
    # Entries only (a slow cross that rarely exits on its own): the time exit closes the trades.
    config = TraderConfig(symbols=("BTC/USDT",), strategy="sma_cross", params={"fast": 5, "slow": 20},
                          memory_path=tmp_path, sizing="full", fees=FEES, slippage=SLIP,
                          feed={"data": bars, "warmup": 200}, **exits)
    report = asyncio.run(UnifiedMemGPTTrader(config).run())
    check = reconcile_with_backtest(config)
    assert abs(check["difference"]) < 1e-9, check
    assert check["paper_fills"] == 2 * check["backtest_trades"] - int(check["backtest_stats"]["open_trade"])
    assert report["fills"] == check["paper_fills"] > 20
    trades = check["backtest_trades"]
    signals = compute_signals("sma_cross", bars, {"fast": 5, "slow": 20}).iloc[200:]
    plain = backtest.simulate(bars.iloc[200:], signals, fees=FEES, slippage=SLIP, init_cash=config.balance)
    assert abs(float(plain.total_return()) - check["backtest_return"]) > 1e-4  # the settings mattered
    if "exit_after" in exits:  # every closed trade lasted at most exit_after bars
        pf = backtest.simulate(bars.iloc[200:], signals, fees=FEES, slippage=SLIP, init_cash=config.balance,
                               **config.exits.backtest_kwargs())
        closed = trades_frame(pf).dropna(subset=["exit_time"])
        held = bar_of(bars, closed["exit_time"]) - bar_of(bars, closed["entry_time"])
        assert len(closed) == trades - int(check["backtest_stats"]["open_trade"]) and held.max() <= exits["exit_after"]
        assert (held == exits["exit_after"]).sum() >= (5 if "trailing_stop" not in exits else 0)  # it fired


def test_a_restarted_session_counts_the_time_exit_from_the_entry_it_held(tmp_path: Path) -> None:
    bars = synthetic_ohlcv(1200, freq="1min", seed=3)
    config = TraderConfig(symbols=("BTC/USDT",), strategy="sma_cross", params={"fast": 5, "slow": 20},
                          memory_path=tmp_path, sizing="full", fees=FEES, slippage=SLIP, exit_after=9,
                          feed={"data": bars, "warmup": 200})
    # Stop a few bars into each of the first three positions (from the backtest of the same
    # bars), so each restart must find how long the position it holds has been open.
    signals = compute_signals("sma_cross", bars, {"fast": 5, "slow": 20}).iloc[200:]
    pf = backtest.simulate(bars.iloc[200:], signals, fees=FEES, slippage=SLIP, init_cash=config.balance,
                           **config.exits.backtest_kwargs())
    entries = bar_of(bars.iloc[200:], trades_frame(pf)["entry_time"])[:3]
    done = 0
    for entry in entries:
        stop_at = int(entry) + 4  # bars processed: the entry bar and three after it
        asyncio.run(UnifiedMemGPTTrader(config.with_(max_bars=stop_at - done)).run())
        done = stop_at
    asyncio.run(UnifiedMemGPTTrader(config).run())
    check = reconcile_with_backtest(config)
    assert abs(check["difference"]) < 1e-9, check


def test_paper_session_exit_settings_are_the_backtest_settings(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=re.escape("give one, got stop_loss=0.02 and trailing_stop=0.05")):
        TraderConfig(memory_path=tmp_path, stop_loss=0.02, trailing_stop=0.05)
    with pytest.raises(InvalidInputError, match=re.escape("exit_after must be a whole number of bars >= 1, got 0")):
        TraderConfig(memory_path=tmp_path, exit_after=0)
    with pytest.raises(InvalidInputError, match="with sizing='agent' the agent sizes each entry"):
        TraderConfig(memory_path=tmp_path, size=0.5)


# -- (f) bad input -----------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"stop_loss": 1.5}, "stop_loss must be in (0, 1), got 1.5"),
    ({"take_profit": 0.0}, "take_profit must be in (0, 1), got 0.0"),
    ({"trailing_stop": -0.1}, "trailing_stop must be in (0, 1), got -0.1"),
    ({"stop_loss": float("nan")}, "stop_loss must be in (0, 1), got nan"),
    ({"stop_loss": 0.02, "trailing_stop": 0.05}, "give one, got stop_loss=0.02 and trailing_stop=0.05"),
    ({"exit_after": 0}, "exit_after must be a whole number of bars >= 1, got 0"),
    ({"exit_after": 2.5}, "exit_after must be a whole number of bars >= 1, got 2.5"),
    ({"size": 0}, "size must be in (0, 1], got 0"),
    ({"size": 1.5}, "size must be in (0, 1], got 1.5"),
    ({"size": 0.5, "direction": "both"}, "size below 1 needs direction='longonly'"),
])
def test_bad_exits_are_refused_naming_the_value_and_the_range(goog: pd.DataFrame, kwargs: dict[str, Any],
                                                              message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        backtest.simulate(goog, random_entries(goog), **kwargs)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        backtest.run(goog, "sma_cross", {"fast": 10, "slow": 30}, **kwargs)
    if "direction" not in kwargs:  # the check the sweep shares
        with pytest.raises(InvalidInputError, match=re.escape(message)):
            check_exits(**kwargs)
