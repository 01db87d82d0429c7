"""Backtests: right numbers by hand, agreement with backtesting.py, sweeps, costs, figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from memlab import backtest
from memlab.data import sample, validate_ohlcv
from memlab.errors import InvalidInputError
from memlab.strategies import compute_signals, register, signal_frame


def scripted(ohlcv: pd.DataFrame, entry_bar: int = 1, exit_bar: int = 4, short_bar: int = -1) -> pd.DataFrame:
    """Signals at fixed bars, for hand-checkable trades."""
    n = len(ohlcv)
    entry, exit_ = np.zeros(n, bool), np.zeros(n, bool)
    entry[entry_bar], exit_[exit_bar] = True, True
    short = np.zeros(n, bool)
    if short_bar >= 0:
        short[short_bar] = True
    return signal_frame(ohlcv.index, entry, exit_ | short, short_entry=short, short_exit=entry)


register("scripted", scripted)


@pytest.fixture
def tiny() -> pd.DataFrame:
    idx = pd.date_range("2024-01-01", periods=8, freq="D", tz="UTC")
    opens = np.array([10.0, 11, 12, 13, 14, 15, 16, 17])
    return validate_ohlcv(pd.DataFrame({"Open": opens, "High": opens + 1, "Low": opens - 1, "Close": opens + 0.5, "Volume": 1.0}, index=idx))


def test_hand_computed_trade_fills_at_next_open(tiny: pd.DataFrame) -> None:
    fee = 0.01
    result = backtest.run(tiny, "scripted", fees=fee, init_cash=1200.0)
    # Signal at bar 1 -> buy at bar 2's open (12); exit signal at bar 4 -> sell at bar 5's open (15).
    size = 1200.0 / (12.0 * (1 + fee))
    final = size * 15.0 * (1 - fee)
    [trade] = result.trades.itertuples()
    assert trade.entry_time == tiny.index[2] and trade.exit_time == tiny.index[5]
    assert (trade.entry_price, trade.exit_price) == (12.0, 15.0)
    assert trade.size == pytest.approx(size)
    assert trade.pnl == pytest.approx(final - 1200.0)
    assert result.stats["total_return"] == pytest.approx(final / 1200.0 - 1)
    assert result.stats["n_trades"] == 1 and result.stats["win_rate"] == 1.0


def test_fill_at_close_uses_the_signal_bar(tiny: pd.DataFrame) -> None:
    [trade] = backtest.run(tiny, "scripted", fill="close", init_cash=1000.0).trades.itertuples()
    assert (trade.entry_time, trade.entry_price, trade.exit_price) == (tiny.index[1], 11.5, 14.5)


def test_slippage_worsens_both_fills(tiny: pd.DataFrame) -> None:
    [trade] = backtest.run(tiny, "scripted", slippage=0.01, init_cash=1000.0).trades.itertuples()
    assert trade.entry_price == pytest.approx(12 * 1.01) and trade.exit_price == pytest.approx(15 * 0.99)


def test_long_short_reverses_on_a_short_signal(tiny: pd.DataFrame) -> None:
    result = backtest.run(tiny, "scripted", {"exit_bar": 3, "short_bar": 3}, direction="both", init_cash=1000.0)
    assert list(result.trades["direction"]) == ["Long", "Short"]
    assert result.trades["entry_time"].iloc[1] == tiny.index[4]


def test_sma_cross_agrees_with_backtesting_py() -> None:
    """The same rules in an independent engine: same trade count, return within 0.1 pp."""
    from tests.support.peers import backtesting_py_sma_cross

    for name in ("GOOG", "EURUSD"):
        data = sample(name)
        peer = backtesting_py_sma_cross(data, 10, 30)
        mine = backtest.run(data, "sma_cross", {"fast": 10, "slow": 30}, fees=0.0, init_cash=1e9)  # the peer has no commission
        assert mine.stats["n_trades"] == peer["# Trades"], name
        assert abs(mine.stats["total_return"] * 100 - peer["Return [%]"]) < 0.1, name


def test_sweep_matches_single_runs_and_skips_invalid_combinations() -> None:
    data = sample("GOOG")
    table = backtest.sweep(data, "sma_cross", {"fast": [5, 10, 40], "slow": [20, 30]}, fees=0.001, progress=False)
    assert sorted(zip(table["fast"], table["slow"], strict=True)) == [(5, 20), (5, 30), (10, 20), (10, 30)]
    for row in table.itertuples():
        single = backtest.run(data, "sma_cross", {"fast": row.fast, "slow": row.slow}, fees=0.001)
        assert row.total_return == pytest.approx(single.stats["total_return"])
        assert row.n_trades == single.stats["n_trades"]
        assert row.sharpe == pytest.approx(single.stats["sharpe"])
        assert row.max_drawdown == pytest.approx(single.stats["max_drawdown"])
    with pytest.raises(InvalidInputError, match="no valid"):
        backtest.sweep(data, "sma_cross", {"fast": [50], "slow": [20]}, progress=False)


def test_figures() -> None:
    data = sample("GOOG")
    result = backtest.run(data, "sma_cross")
    fig = result.figure()
    assert len(fig.data) == 2 and fig.data[1].y.min() == pytest.approx(-result.stats["max_drawdown"] * 100)
    table = backtest.sweep(data, "sma_cross", {"fast": [5, 10], "slow": [20, 30]}, progress=False)
    heat = backtest.sweep_heatmap(table, "fast", "slow", "sharpe")
    assert heat.data[0].z.shape == (2, 2)


@pytest.mark.parametrize(
    ("strategy", "params"),
    [
        ("momentum", {"threshold": 0.005}),  # FX moves are small: 0.5 % over 20 hours
        ("sma_cross", {}),
        ("rsi_reversion", {}),
        ("high_volatility", {"volatility_threshold": 0.1}),
    ],
)
def test_every_strategy_decides_without_looking_ahead(strategy: str, params: dict[str, float]) -> None:
    data = sample("EURUSD")
    full = compute_signals(strategy, data, params)
    cut = compute_signals(strategy, data.iloc[:3000], params)
    pd.testing.assert_frame_equal(full.iloc[:3000], cut)  # later bars never change earlier signals
    assert full[["entry", "exit"]].any().all()


def test_high_volatility_is_the_seed_rule() -> None:
    from memlab.features import market_features

    data = sample("BTCUSD")
    signals = compute_signals("high_volatility", data, {"volatility_threshold": 2.0, "rsi_threshold": 35})
    feats = market_features(data)
    expected = (feats["volatility"] > 2.0) & (feats["rsi"] < 35)
    assert (signals["entry"] == expected).all()
    assert (signals.loc[signals["entry"], "confidence"] == 0.8).all()


@pytest.mark.parametrize(("kwargs", "message"), [({"fees": 1.5}, "fees"), ({"fill": "tomorrow"}, "fill"), ({"direction": "sideways"}, "direction")])
def test_bad_settings_are_refused(tiny: pd.DataFrame, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        backtest.run(tiny, "scripted", **kwargs)  # type: ignore[arg-type]


def test_unknown_strategy_and_parameter_names() -> None:
    with pytest.raises(InvalidInputError, match="unknown strategy"):
        backtest.run(sample("GOOG"), "moonshot")
    with pytest.raises(InvalidInputError, match="no parameter"):
        backtest.run(sample("GOOG"), "sma_cross", {"fastest": 3})


def test_sweep_results_do_not_depend_on_chunking() -> None:
    data = sample("EURUSD")
    grid = {"fast": [5, 8, 13], "slow": [21, 34]}
    whole = backtest.sweep(data, "sma_cross", grid, progress=False)
    one_by_one = backtest.sweep(data, "sma_cross", grid, chunk_size=1, progress=False)
    pd.testing.assert_frame_equal(whole, one_by_one)


@pytest.mark.parametrize(("fill", "fees", "slippage"), [("next_open", 0.0, 0.0), ("next_open", 0.001, 0.0005), ("close", 0.002, 0.0)])
def test_fused_sweep_kernel_reproduces_vectorbt(fill: str, fees: float, slippage: float) -> None:
    """The fast sma_cross sweep path gives vectorbt's numbers, set by set."""
    data = sample("GOOG")
    grid = {"fast": [3, 5, 10, 20], "slow": [15, 30, 60]}
    fast = backtest.sweep(data, "sma_cross", grid, fill=fill, fees=fees, slippage=slippage, progress=False)  # type: ignore[arg-type]
    slow = backtest.sweep(data, "sma_cross", grid, fill=fill, fees=fees, slippage=slippage, progress=False, engine="vectorbt")  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(fast, slow, check_exact=False, rtol=1e-9, atol=1e-12)


def test_sweep_fans_out_on_a_dask_local_cluster() -> None:
    data = sample("EURUSD")
    grid = {"fast": [5, 8, 13], "slow": [21, 34]}
    here = backtest.sweep(data, "sma_cross", grid, progress=False, engine="vectorbt")
    spread = backtest.sweep(data, "sma_cross", grid, progress=False, engine="vectorbt", scheduler="local", parts=3)
    pd.testing.assert_frame_equal(here, spread)
