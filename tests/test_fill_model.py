"""Fills that look like the venue's (memlab.fills): a spread from the last bar's range,
order latency, a cap on each bar's volume with partial fills, maker and taker fees; the
same rules in the paper broker and the backtest, and a paper session that reconciles."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import ccxt
import numpy as np
import pandas as pd
import pytest

from memlab import backtest
from memlab.backtest.engine import trades_frame
from memlab.connectors import Bar, PaperBroker
from memlab.data import synthetic_ohlcv
from memlab.errors import InvalidInputError
from memlab.fills import FillModel, slippage_per_bar
from memlab.strategies import compute_signals, signal_frame
from memlab.trader import TraderConfig, UnifiedMemGPTTrader, reconcile_with_backtest

FEES, SLIP, MAKER = 0.001, 0.0005, 0.0002
SYMBOL = "BTC/USDT"


def paper(tmp_path: Path, model: FillModel, **kw: Any) -> PaperBroker:
    b = PaperBroker(tmp_path, balances={"USDT": 100_000.0}, fees=FEES, slippage=SLIP, fill_model=model, **kw)
    b.add_market(SYMBOL)
    b.on_bar(SYMBOL, Bar(0, 100, 101, 99, 100), volume=1_000)
    return b


def bars_of(frame: pd.DataFrame) -> list[Bar]:
    t = frame.index.as_unit("ns").asi8 // 10**9
    return [Bar(float(t[i]), *map(float, frame.iloc[i][["Open", "High", "Low", "Close"]])) for i in range(len(frame))]


# -- volume cap: partial fills -----------------------------------------------------------
def test_partial_fills_add_up_to_the_order_and_take_at_most_the_cap_of_each_bar(tmp_path: Path) -> None:
    b = paper(tmp_path, FillModel(volume_cap=0.1))
    volumes = [40.0, 0.0, 25.0, 100.0, 100.0]
    order = b.create_order(SYMBOL, "market", "buy", 12, params={"stopLoss": 50, "takeProfit": 500})
    shapes, fills = [], []
    for k, volume in enumerate(volumes, start=1):
        got = b.on_bar(SYMBOL, Bar(60 * k, 100 + k, 102 + k, 99 + k, 100 + k), volume=volume)
        assert sum(f["amount"] for f in got) <= 0.1 * volume + 1e-12  # the cap, bar by bar
        fills += got
        o = b.fetch_order(order["id"])
        children = [c for c in b.fetch_open_orders(SYMBOL) if c["parentId"] == order["id"]]
        shapes.append((o["status"], o["filled"], o["remaining"]))
        # The stop-loss and take-profit cover what has filled, no more.
        assert all(c["amount"] == pytest.approx(o["filled"], abs=1e-12) for c in children)
    assert [f["amount"] for f in fills] == pytest.approx([4.0, 2.5, 5.5])  # nothing in the bar without volume
    assert shapes[:3] == [("open", 4.0, 8.0), ("open", 4.0, 8.0), ("open", 6.5, 5.5)]
    assert shapes[3][0] == "closed" and shapes[3][1] == pytest.approx(12) and shapes[3][2] == pytest.approx(0, abs=1e-12)
    o = b.fetch_order(order["id"])
    assert o["average"] == pytest.approx(sum(f["price"] * f["amount"] for f in fills) / 12)
    assert o["fee"]["cost"] == pytest.approx(sum(f["fee"] for f in fills))
    assert b.fetch_balance()["total"]["BTC"] == pytest.approx(12)


def test_a_buy_for_a_cost_spends_exactly_the_cost_over_its_partial_fills(tmp_path: Path) -> None:
    b = paper(tmp_path, FillModel(volume_cap=0.05))
    order = b.create_order(SYMBOL, "market", "buy", None, params={"cost": 5_000})
    k = 0
    while b.fetch_order(order["id"])["status"] == "open":
        k += 1
        b.on_bar(SYMBOL, Bar(60 * k, 100, 101, 99, 100), volume=200)  # at most 10 BTC a bar
    fills = b.fills(SYMBOL)
    assert len(fills) == k == 5 and max(f["amount"] for f in fills) <= 10 + 1e-12
    spent = sum(f["amount"] * f["price"] + f["fee"] for f in fills)
    assert spent == pytest.approx(5_000, rel=1e-12)
    assert b.fetch_balance()["total"]["USDT"] == pytest.approx(95_000, rel=1e-12)


def test_a_stop_that_fills_cancels_what_is_left_of_its_partially_filled_entry(tmp_path: Path) -> None:
    b = paper(tmp_path, FillModel(volume_cap=0.1))
    order = b.create_order(SYMBOL, "market", "buy", 10, params={"stopLoss": 95})
    b.on_bar(SYMBOL, Bar(60, 100, 101, 99, 100), volume=30)  # 3 of 10 fill
    [stop] = b.on_bar(SYMBOL, Bar(120, 99, 99, 90, 92), volume=30)  # the stop fills whole: 3
    assert stop["amount"] == pytest.approx(3) and stop["price"] == pytest.approx(95 * (1 - SLIP))
    entry = b.fetch_order(order["id"])
    assert entry["status"] == "canceled" and entry["filled"] == pytest.approx(3)
    assert b.on_bar(SYMBOL, Bar(180, 92, 93, 91, 92), volume=30) == [] and b.fetch_open_orders() == []
    assert b.fetch_balance()["total"].get("BTC", 0) == pytest.approx(0, abs=1e-12)


def test_a_sell_and_a_swap_order_fill_partially_too(tmp_path: Path) -> None:
    b = paper(tmp_path, FillModel(volume_cap=0.5))
    b.create_order(SYMBOL, "market", "buy", 4)
    b.on_bar(SYMBOL, Bar(60, 100, 101, 99, 100), volume=100)
    sell = b.create_order(SYMBOL, "market", "sell", 4)
    sold = [f["amount"] for k in (2, 3, 4) for f in b.on_bar(SYMBOL, Bar(60 * k, 100, 101, 99, 100), volume=3)]
    assert sold == pytest.approx([1.5, 1.5, 1.0]) and b.fetch_order(sell["id"])["status"] == "closed"
    swap = "BTC/USDT:USDT"
    b.add_market(swap)
    b.on_bar(swap, Bar(0, 100, 101, 99, 100), volume=10)
    short = b.create_order(swap, "market", "sell", 2.5)
    amounts = [f["amount"] for k in (1, 2, 3) for f in b.on_bar(swap, Bar(60 * k, 100, 101, 99, 100), volume=2)]
    assert amounts == pytest.approx([1.0, 1.0, 0.5]) and b.fetch_order(short["id"])["status"] == "closed"
    [pos] = [p for p in b.fetch_positions() if p["symbol"] == swap]
    assert pos["side"] == "short" and pos["contracts"] == pytest.approx(2.5)


def test_a_volume_cap_without_the_bars_volume_is_refused_naming_what_to_pass(tmp_path: Path) -> None:
    b = paper(tmp_path, FillModel(volume_cap=0.1))
    b.create_order(SYMBOL, "market", "buy", 1)
    with pytest.raises(ccxt.BadRequest, match=re.escape("volume_cap=0.1 needs each bar's volume; pass on_bar(")):
        b.on_bar(SYMBOL, Bar(60, 100, 101, 99, 100))


# -- latency -------------------------------------------------------------------------------
@pytest.mark.parametrize("latency", [0, 1, 3])
def test_latency_fills_an_order_exactly_n_bars_later_in_the_paper_broker(tmp_path: Path, latency: int) -> None:
    b = paper(tmp_path, FillModel(latency=latency))
    opens = [100 + k for k in range(1, 7)]
    b.create_order(SYMBOL, "market", "buy", 1)  # sent at the close of bar 0
    filled_at = [k for k, o in enumerate(opens, start=1) if b.on_bar(SYMBOL, Bar(60 * k, o, o + 1, o - 1, o))]
    assert filled_at == [1 + latency]
    [fill] = b.fills(SYMBOL)
    assert fill["price"] == pytest.approx(opens[latency] * (1 + SLIP))


@pytest.mark.parametrize("latency", [1, 2, 4])
def test_latency_delays_every_backtest_trade_by_exactly_n_bars(latency: int) -> None:
    bars = synthetic_ohlcv(600, freq="1min", seed=11)
    entry, exit_ = np.zeros(len(bars), bool), np.zeros(len(bars), bool)
    entry[20::60], exit_[45::60] = True, True  # far apart: no signal meets an order on its way
    signals = signal_frame(bars.index, entry, exit_)
    now = trades_frame(backtest.simulate(bars, signals, fees=FEES, slippage=SLIP))
    later = trades_frame(backtest.simulate(bars, signals, fees=FEES, slippage=SLIP,
                                           fill_model=FillModel(latency=latency)))
    pos = bars.index.get_indexer
    assert len(now) == len(later) == 10
    np.testing.assert_array_equal(pos(later["entry_time"]), pos(now["entry_time"]) + latency)
    np.testing.assert_array_equal(pos(later["exit_time"]), pos(now["exit_time"]) + latency)
    opens = bars["Open"].to_numpy()
    np.testing.assert_allclose(later["entry_price"], opens[pos(now["entry_time"]) + latency] * (1 + SLIP), rtol=1e-12)


# -- maker and taker fees --------------------------------------------------------------------
def test_take_profit_and_limit_orders_pay_the_maker_fee_the_others_the_taker_fee(tmp_path: Path) -> None:
    b = paper(tmp_path, FillModel(maker_fees=MAKER))
    assert (b.market(SYMBOL)["taker"], b.market(SYMBOL)["maker"]) == (FEES, MAKER)

    def rate(fill: dict[str, Any]) -> float:
        return fill["fee"] / (fill["amount"] * fill["price"])

    b.create_order(SYMBOL, "market", "buy", 10, params={"stopLoss": 90, "takeProfit": 110})
    [market] = b.on_bar(SYMBOL, Bar(60, 100, 101, 99, 100))
    [take_profit] = b.on_bar(SYMBOL, Bar(120, 105, 112, 104, 111))
    b.create_order(SYMBOL, "limit", "buy", 5, 100, params={"stopLoss": 95})
    [limit] = b.on_bar(SYMBOL, Bar(180, 102, 103, 99, 101))
    [stop] = b.on_bar(SYMBOL, Bar(240, 97, 97, 93, 94))
    assert [rate(f) for f in (market, take_profit, limit, stop)] == pytest.approx([FEES, MAKER, MAKER, FEES], rel=1e-12)
    assert b.fetch_order(str(take_profit["order_id"]))["type"] == "take_profit"


def test_a_backtest_take_profit_pays_the_maker_fee_and_its_entries_the_taker_fee() -> None:
    bars = synthetic_ohlcv(1500, freq="1min", seed=3)
    signals = compute_signals("sma_cross", bars, {"fast": 5, "slow": 20})
    pf = backtest.simulate(bars, signals, fees=FEES, slippage=SLIP, stop_loss=0.003, take_profit=0.004,
                           fill_model=FillModel(maker_fees=MAKER))
    orders = pf.orders.records_readable
    rates = (orders["Fees"] / (orders["Size"] * orders["Price"])).to_numpy()
    tp_exit = np.isclose(rates, MAKER, rtol=1e-9)
    assert tp_exit.sum() >= 5 and np.isclose(rates[~tp_exit], FEES, rtol=1e-9).all()
    assert (orders["Side"][tp_exit] == "Sell").all()
    # Those are the take-profit exits: at or above the bar's open (a limit sells no lower), no slippage.
    bar = bars.index.get_indexer(pd.DatetimeIndex(orders["Timestamp"][tp_exit]))
    assert (orders["Price"][tp_exit].to_numpy() >= bars["Open"].to_numpy()[bar] - 1e-9).all()


# -- the spread from the last bar's range -------------------------------------------------------
def test_the_range_spread_uses_only_bars_before_the_fill(tmp_path: Path) -> None:
    k = 0.5
    model = FillModel(range_spread=k)
    last = Bar(60, 100, 104, 96, 100)  # range 8 % of the close
    fill_prices = []
    for n, fill_bar in enumerate([Bar(120, 101, 102, 100, 101), Bar(120, 101, 180, 60, 101)]):  # calm, wild
        b = paper(tmp_path / str(n), model)
        b.on_bar(SYMBOL, last)
        b.create_order(SYMBOL, "market", "buy", 1)
        [fill] = b.on_bar(SYMBOL, fill_bar)
        fill_prices.append(fill["price"])
    # The fill bar's own range changes nothing; the last completed bar's sets the spread.
    assert fill_prices[0] == fill_prices[1] == pytest.approx(101 * (1 + SLIP + 0.5 * k * 0.08), rel=1e-12)
    # The backtest's per-bar slippage: changing bar t's range moves t + 1's slippage only.
    bars = synthetic_ohlcv(50, freq="1min", seed=2)
    wild = bars.copy()
    wild.iloc[20, wild.columns.get_loc("High")] *= 1.5
    a, w = slippage_per_bar(bars, SLIP, model), slippage_per_bar(wild, SLIP, model)
    assert (a[:21] == w[:21]).all() and w[21] > a[21] and (a[22:] == w[22:]).all()
    rng = ((bars["High"] - bars["Low"]) / bars["Close"]).to_numpy()
    np.testing.assert_allclose(a[1:], SLIP + 0.5 * k * rng[:-1], rtol=1e-15)


def test_a_backtest_entry_pays_half_the_spread_of_the_bar_before_it() -> None:
    bars = synthetic_ohlcv(300, freq="1min", seed=4)
    entry, exit_ = np.zeros(len(bars), bool), np.zeros(len(bars), bool)
    entry[[30, 130]], exit_[[80, 200]] = True, True
    trades = trades_frame(backtest.simulate(bars, signal_frame(bars.index, entry, exit_), fees=FEES, slippage=SLIP,
                                            fill_model=FillModel(range_spread=0.3)))
    rng = ((bars["High"] - bars["Low"]) / bars["Close"]).to_numpy()
    opens = bars["Open"].to_numpy()
    np.testing.assert_allclose(trades["entry_price"], opens[[31, 131]] * (1 + SLIP + 0.15 * rng[[30, 130]]), rtol=1e-12)
    np.testing.assert_allclose(trades["exit_price"], opens[[81, 201]] * (1 - SLIP - 0.15 * rng[[80, 200]]), rtol=1e-12)


# -- a paper session with the fill model reconciles with its backtest ------------------------------
@pytest.mark.parametrize(("model", "settings"), [
    (FillModel(range_spread=0.3, latency=1, maker_fees=MAKER), {"stop_loss": 0.003, "take_profit": 0.004}),
    (FillModel(range_spread=0.2, latency=2, maker_fees=0.0), {"exit_after": 3, "take_profit": 0.002}),
    (FillModel(latency=1), {"trailing_stop": 0.002, "exit_after": 2, "size": 0.7}),
], ids=["spread+latency+maker+stops", "latency+exit_after+maker", "latency+trailing+size"])
def test_a_paper_session_with_the_fill_model_reconciles_with_its_backtest(
        tmp_path: Path, model: FillModel, settings: dict[str, Any]) -> None:
    bars = synthetic_ohlcv(700, freq="1min", seed=5)
    config = TraderConfig(symbols=(SYMBOL,), strategy="sma_cross", params={"fast": 2, "slow": 4}, memory_path=tmp_path,
                          sizing="full", fees=FEES, slippage=SLIP, feed={"data": bars, "warmup": 100},
                          fill_model=model, **settings)
    logging.getLogger("memlab.trader.loop").setLevel(logging.ERROR)  # "spot: no shorts", said once
    report = asyncio.run(UnifiedMemGPTTrader(config).run())
    check = reconcile_with_backtest(config)
    assert abs(check["difference"]) < 1e-9, check
    assert report["fills"] == check["paper_fills"] > 40
    # Each rule mattered: without it the backtest is another one.
    signals = compute_signals("sma_cross", bars, {"fast": 2, "slow": 4}).iloc[100:]
    for off in ({"range_spread": 0.0}, {"latency": 0}, {"maker_fees": None}):
        other = FillModel(**{**model.__dict__, **off})
        if other == model:
            continue
        pf = backtest.simulate(bars.iloc[100:], signals, fees=FEES, slippage=SLIP, init_cash=config.balance,
                               fill_model=other, **config.exits.backtest_kwargs())
        assert abs(float(pf.total_return()) - check["backtest_return"]) > 1e-4, off


def test_latency_resolves_signals_against_the_position_held_when_they_were_sent(tmp_path: Path) -> None:
    """A busy strategy with 3 bars of latency: exits meet entries still on their way. The
    paper trader sends no exit for a position it does not hold yet (and no entry while its
    exit is on its way); the backtest does the same, where merely delaying the signals
    would not."""
    bars = synthetic_ohlcv(700, freq="1min", seed=5)
    config = TraderConfig(symbols=(SYMBOL,), strategy="sma_cross", params={"fast": 2, "slow": 4}, memory_path=tmp_path,
                          sizing="full", fees=FEES, slippage=SLIP, feed={"data": bars, "warmup": 100},
                          fill_model=FillModel(latency=3))
    logging.getLogger("memlab.trader.loop").setLevel(logging.ERROR)
    asyncio.run(UnifiedMemGPTTrader(config).run())
    check = reconcile_with_backtest(config)
    assert abs(check["difference"]) < 1e-9, check
    signals = compute_signals("sma_cross", bars, {"fast": 2, "slow": 4}).iloc[100:]
    delayed = signals.copy()
    delayed[["entry", "exit"]] = signals[["entry", "exit"]].shift(3, fill_value=False)
    naive = backtest.simulate(bars.iloc[100:], delayed, fees=FEES, slippage=SLIP, init_cash=config.balance)
    assert abs(float(naive.total_return()) - check["backtest_return"]) > 1e-3


def test_a_swap_session_pays_the_maker_fee_on_take_profits_and_reconciles(tmp_path: Path) -> None:
    bars = synthetic_ohlcv(700, freq="1min", seed=5)
    bars["Open"] = np.r_[bars["Open"].iloc[0], bars["Close"].to_numpy()[:-1]]  # 24/7: each bar opens at the last close
    bars["High"], bars["Low"] = bars[["High", "Open"]].max(axis=1), bars[["Low", "Open"]].min(axis=1)
    config = TraderConfig(symbols=("BTC/USDT:USDT",), strategy="sma_cross", params={"fast": 2, "slow": 4},
                          memory_path=tmp_path, sizing="full", fees=FEES, slippage=SLIP,
                          feed={"data": bars, "warmup": 100}, fill_model=FillModel(maker_fees=MAKER),
                          take_profit=0.002, stop_loss=0.003)
    asyncio.run(UnifiedMemGPTTrader(config).run())
    check = reconcile_with_backtest(config)
    assert abs(check["difference"]) < 1e-9, check
    b = PaperBroker(tmp_path)
    rates = {f["order_id"]: f["fee"] / (f["amount"] * f["price"]) for f in b.fills("BTC/USDT:USDT")}
    kinds = {i: b.fetch_order(i)["type"] for i in map(str, rates)}
    b.close()
    maker = [r for i, r in rates.items() if kinds[str(i)] == "take_profit"]
    assert len(maker) >= 10 and maker == pytest.approx([MAKER] * len(maker), rel=1e-12)
    assert [r for i, r in rates.items() if kinds[str(i)] != "take_profit"] == pytest.approx(
        [FEES] * (len(rates) - len(maker)), rel=1e-12)


def test_a_session_restarted_with_orders_on_their_way_ends_where_an_uninterrupted_one_does(tmp_path: Path) -> None:
    bars = synthetic_ohlcv(500, freq="1min", seed=5)
    config = TraderConfig(symbols=(SYMBOL,), strategy="sma_cross", params={"fast": 2, "slow": 4}, memory_path=tmp_path,
                          sizing="full", fees=FEES, slippage=SLIP, feed={"data": bars, "warmup": 100},
                          fill_model=FillModel(range_spread=0.3, latency=2, maker_fees=MAKER), take_profit=0.002)
    logging.getLogger("memlab.trader.loop").setLevel(logging.ERROR)
    in_flight = 0
    for _ in range(10):  # stop every 37 bars: some stops find an order sent, not yet filled
        asyncio.run(UnifiedMemGPTTrader(config.with_(max_bars=37)).run())
        b = PaperBroker(tmp_path)
        in_flight += any(o["parentId"] is None for o in b.fetch_open_orders(SYMBOL))
        b.close()
    asyncio.run(UnifiedMemGPTTrader(config).run())
    assert in_flight >= 2
    check = reconcile_with_backtest(config)
    assert abs(check["difference"]) < 1e-9, check


# -- defaults and bad input -----------------------------------------------------------------------
def test_the_fill_model_off_is_todays_fills_exactly(tmp_path: Path) -> None:
    bars = synthetic_ohlcv(800, freq="1min", seed=3)
    signals = compute_signals("sma_cross", bars, {"fast": 5, "slow": 20})
    for exits in ({}, {"stop_loss": 0.003, "take_profit": 0.004}, {"trailing_stop": 0.003, "exit_after": 9}):
        today = backtest.simulate(bars, signals, fees=FEES, slippage=SLIP, **exits)
        off = backtest.simulate(bars, signals, fees=FEES, slippage=SLIP, fill_model=FillModel(), **exits)
        pd.testing.assert_series_equal(today.value(), off.value(), check_exact=True)
    fills = []
    for n, model in enumerate([None, FillModel()]):
        b = PaperBroker(tmp_path / str(n), balances={"USDT": 10_000.0}, fees=FEES, slippage=SLIP,
                        **({} if model is None else {"fill_model": model}))
        b.add_market(SYMBOL)
        for k, bar in enumerate(bars_of(bars.iloc[:200])):
            held = b.fetch_balance()["total"].get("BTC", 0.0)
            if k % 10 == 3 and held < 1e-12:
                b.create_order(SYMBOL, "market", "buy", 1, params={"stopLoss": bar.close * 0.999,
                                                                   "takeProfit": bar.close * 1.001})
            elif k % 10 == 8 and held > 1e-12:
                for order in b.fetch_open_orders(SYMBOL):
                    b.cancel_order(order["id"])
                b.create_order(SYMBOL, "market", "sell", held)
            b.on_bar(SYMBOL, bar)
        fills.append([(f["price"], f["amount"], f["fee"]) for f in b.fills(SYMBOL)])
    assert fills[0] == fills[1] and len(fills[0]) >= 20, len(fills[0])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"volume_cap": 0}, "volume_cap is a share of a bar's volume in (0, 1], got 0"),
    ({"volume_cap": 1.5}, "volume_cap is a share of a bar's volume in (0, 1], got 1.5"),
    ({"volume_cap": float("nan")}, "volume_cap is a share of a bar's volume in (0, 1], got nan"),
    ({"latency": -1}, "latency is a whole number of bars >= 0, got -1"),
    ({"latency": 1.5}, "latency is a whole number of bars >= 0, got 1.5"),
    ({"latency": True}, "latency is a whole number of bars >= 0, got True"),
    ({"maker_fees": 1.0}, "maker_fees is a fraction of traded value in [0, 1), got 1.0"),
    ({"maker_fees": -0.001}, "maker_fees is a fraction of traded value in [0, 1), got -0.001"),
    ({"range_spread": -0.5}, "range_spread is a multiple of the last bar's range >= 0, got -0.5"),
])
def test_bad_fill_model_input_is_refused_naming_the_value_and_the_range(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(message)) as err:
        FillModel(**kwargs)
    assert "\n" not in str(err.value)


def test_what_the_backtest_and_the_trader_do_not_simulate_is_refused_naming_why(tmp_path: Path) -> None:
    bars = synthetic_ohlcv(100, freq="1min", seed=1)
    signals = compute_signals("sma_cross", bars, {"fast": 5, "slow": 20})
    with pytest.raises(InvalidInputError, match=re.escape("volume_cap=0.1 is simulated by the paper broker only")):
        backtest.simulate(bars, signals, fill_model=FillModel(volume_cap=0.1))
    with pytest.raises(InvalidInputError, match=re.escape("latency=2 is simulated for direction='longonly' backtests only")):
        backtest.simulate(bars, signals, direction="both", fill_model=FillModel(latency=2))
    with pytest.raises(InvalidInputError, match=re.escape("volume_cap=0.2 is not simulated in trading sessions")):
        TraderConfig(memory_path=tmp_path, fill_model=FillModel(volume_cap=0.2))
    with pytest.raises(InvalidInputError, match=re.escape("fill_model simulates a venue's fills in paper mode")):
        TraderConfig(memory_path=tmp_path, mode="live", broker="binance", fill_model=FillModel(latency=1))
    with pytest.raises(InvalidInputError, match=re.escape("fill_model is a memlab.fills.FillModel, got 0.1")):
        backtest.simulate(bars, signals, fill_model=0.1)  # type: ignore[arg-type]


def test_the_paper_command_takes_the_fill_model_as_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from memlab.cli import build_parser, main
    from memlab.trader.cli import config_from_args

    monkeypatch.setenv("MEM_MEMORY_PATH", str(tmp_path))
    args = build_parser().parse_args(["paper", "--symbol", SYMBOL, "--strategy", "sma_cross", "--synthetic", "600",
                                      "--maker-fees", "0.0002", "--range-spread", "0.3", "--latency", "2"])
    assert config_from_args(args).fill_model == FillModel(range_spread=0.3, latency=2, maker_fees=0.0002)
    plain = build_parser().parse_args(["paper", "--symbol", SYMBOL, "--strategy", "sma_cross", "--synthetic", "600"])
    assert not config_from_args(plain).fill_model.active
    with pytest.raises(SystemExit) as exc:
        main(["paper", "--symbol", SYMBOL, "--strategy", "sma_cross", "--synthetic", "600", "--latency", "-1"])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if " INFO " not in line]
    assert exc.value.code == 2 and len(err) == 1 and "argument --latency" in err[0] and "-1" in err[0], err
