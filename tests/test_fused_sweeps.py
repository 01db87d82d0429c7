"""Fused sweeps: every strategy's sweep gives vectorbt's numbers, set by set, in bounded memory.

Each sweep row is compared with vectorbt's ``from_signals`` run through
:func:`memlab.backtest.engine.simulate` on the strategy's own signal frame (not on the
batch function's rules), so the rules, the kernel's fills and exits and its statistics
are all held to the reference: n_trades exactly, the rest to 1e-9.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from memlab import backtest
from memlab.backtest.engine import periods_per_year, portfolio_stats, simulate
from memlab.data import sample, synthetic_ohlcv, validate_ohlcv
from memlab.errors import InvalidInputError
from memlab.strategies import BATCH, check_params, get, register, signal_frame
from memlab.strategies.signal_frame import crossed_above, crossed_below

ROOT = Path(__file__).resolve().parents[1]
STATS = ("total_return", "win_rate", "sharpe", "max_drawdown")

GRIDS: dict[str, dict[str, list[Any]]] = {
    "sma_cross": {"fast": [3, 5, 10, 20], "slow": [15, 30, 60]},
    "momentum": {"lookback": [5, 20, 60], "threshold": [0.002, 0.01, 0.03]},
    "rsi_reversion": {"period": [7, 14], "lower": [25, 35], "upper": [65, 75]},
    "high_volatility": {"volatility_threshold": [0.05, 0.1, 1.0], "rsi_threshold": [30, 40], "exit_rsi": [55, 60]},
}


# --------------------------------------------------------------------------- user strategies


def user_ema_cross(ohlcv: pd.DataFrame, fast: int = 12, slow: int = 26) -> pd.DataFrame:
    """A user's EMA crossover, written as any strategy is."""
    if fast >= slow:
        raise InvalidInputError(f"fast ({fast}) must be shorter than slow ({slow})")
    close = ohlcv["Close"]
    f, s = close.ewm(span=fast, adjust=False).mean(), close.ewm(span=slow, adjust=False).mean()
    return signal_frame(ohlcv.index, entry=crossed_above(f, s), exit=crossed_below(f, s))


def user_ema_cross_batch(ind: Any, fast: int = 12, slow: int = 26) -> Any:
    """Its batch function: the same signals as rules on cached EMAs."""
    if fast >= slow:
        raise InvalidInputError(f"fast ({fast}) must be shorter than slow ({slow})")
    f = ind.line(("ema", fast), lambda: ind.ohlcv["Close"].ewm(span=fast, adjust=False).mean())
    s = ind.line(("ema", slow), lambda: ind.ohlcv["Close"].ewm(span=slow, adjust=False).mean())
    return ind.signals(entry=f.crossed_above(s), exit=f.crossed_below(s))


def user_band_breakout(ohlcv: pd.DataFrame, window: int = 20, level: float = 0.5) -> pd.DataFrame:
    """Rules that need every kind of term: ORs, ANDs, a negation, crossings of a number,
    >= and <=, a price line."""
    close = ohlcv["Close"]
    mid = close.rolling(window).mean()
    pos = (close - close.rolling(window).min()) / (close.rolling(window).max() - close.rolling(window).min())
    entry = (crossed_above(pos, level) & (close >= mid)) | (pos <= 0.05)
    exit_ = ~(close > mid) | crossed_below(pos, 1.0 - level)
    return signal_frame(ohlcv.index, entry=entry, exit=exit_)


def user_band_breakout_batch(ind: Any, window: int = 20, level: float = 0.5) -> Any:
    close = ind.ohlcv["Close"]
    price = ind.price("Close")
    mid = ind.line(("mean", window), lambda: close.rolling(window).mean())
    lo, hi = close.rolling(window).min, close.rolling(window).max
    pos = ind.line(("pos", window), lambda: (close - lo()) / (hi() - lo()))
    entry = (pos.crossed_above(level) & (price >= mid)) | (pos <= 0.05)
    exit_ = ~(price > mid) | pos.crossed_below(1.0 - level)
    return ind.signals(entry=entry, exit=exit_)


def user_conflict(ohlcv: pd.DataFrame, window: int = 20, band: float = 0.01) -> pd.DataFrame:
    """An entry and an exit that can hold at the same bar (vectorbt then ignores both)."""
    close = ohlcv["Close"]
    mid = close.rolling(window).mean()
    return signal_frame(ohlcv.index, entry=close > mid, exit=(close > mid * (1 + band)) | (close < mid * (1 - band)))


def user_conflict_batch(ind: Any, window: int = 20, band: float = 0.01) -> Any:
    close = ind.ohlcv["Close"]
    price = ind.price("Close")
    mid = ind.line(("mean", window), lambda: close.rolling(window).mean())
    upper = ind.line(("upper", window, band), lambda: close.rolling(window).mean() * (1 + band))
    lower = ind.line(("lower", window, band), lambda: close.rolling(window).mean() * (1 - band))
    return ind.signals(entry=price > mid, exit=(price > upper) | (price < lower))


def user_no_batch(ohlcv: pd.DataFrame, window: int = 10) -> pd.DataFrame:
    """A strategy with no batch function: fused from its own signal frames."""
    close = ohlcv["Close"]
    high = close.rolling(window).max().shift(1)
    return signal_frame(ohlcv.index, entry=close > high, exit=close < close.rolling(window).mean())


register("user_ema_cross", user_ema_cross)
BATCH["user_ema_cross"] = user_ema_cross_batch
register("user_band_breakout", user_band_breakout)
BATCH["user_band_breakout"] = user_band_breakout_batch
register("user_no_batch", user_no_batch)
register("user_conflict", user_conflict)
BATCH["user_conflict"] = user_conflict_batch

USER_GRIDS: dict[str, dict[str, list[Any]]] = {
    "user_ema_cross": {"fast": [3, 8, 12], "slow": [20, 40]},
    "user_band_breakout": {"window": [10, 30], "level": [0.3, 0.6]},
    "user_no_batch": {"window": [5, 10, 30]},
    "user_conflict": {"window": [10, 40], "band": [0.002, 0.005]},
}


# --------------------------------------------------------------------------- the reference


def vectorbt_stats(bars: pd.DataFrame, strategy: str, params: dict[str, Any], **settings: Any) -> dict[str, float]:
    """vectorbt's numbers for one set: the strategy's own signals through engine.simulate."""
    signals = get(strategy)(bars, **check_params(strategy, params))
    return portfolio_stats(simulate(bars, signals, **settings), periods_per_year(bars.index))


def assert_matches_vectorbt(table: pd.DataFrame, bars: pd.DataFrame, strategy: str, names: list[str],
                            **settings: Any) -> list[dict[str, float]]:
    """Every row of ``table`` equals vectorbt for its set; returns vectorbt's rows."""
    expected_rows = []
    for row in table.to_dict("records"):
        params = {k: row[k] for k in names}
        expected = vectorbt_stats(bars, strategy, params, **settings)
        where = f"{strategy} {params} {settings}"
        assert row["n_trades"] == expected["n_trades"], where
        for stat in STATS:
            got, want = row[stat], expected[stat]
            assert (math.isnan(got) and math.isnan(want)) or math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12), (
                f"{where}: {stat} {got!r} != vectorbt's {want!r}")
        expected_rows.append(expected)
    return expected_rows


# --------------------------------------------------------------------------- built-in strategies


@pytest.mark.parametrize("strategy", sorted(GRIDS))
@pytest.mark.parametrize("market", ["GOOG", "EURUSD", "BTCUSD"])
@pytest.mark.parametrize("settings", [{}, {"fill": "close", "fees": 0.002}, {"slippage": 0.001, "fees": 0.0005}],
                         ids=["next_open", "close", "slippage"])
def test_every_builtin_strategy_sweeps_to_vectorbts_numbers(strategy: str, market: str, settings: dict[str, Any]) -> None:
    bars = sample(market)
    table = backtest.sweep(bars, strategy, GRIDS[strategy], progress=False, selection=False, **settings)
    assert BATCH[strategy] is not None and len(table) > 1
    expected = assert_matches_vectorbt(table, bars, strategy, list(GRIDS[strategy]), **settings)
    if market != "BTCUSD":  # 156 monthly bars: some strategies rightly never trade there
        assert sum(e["n_trades"] for e in expected) > 0


@pytest.mark.parametrize("strategy", sorted(USER_GRIDS))
@pytest.mark.parametrize("fill", ["next_open", "close"])
def test_user_strategies_sweep_to_vectorbts_numbers(strategy: str, fill: str) -> None:
    bars = sample("EURUSD")
    table = backtest.sweep(bars, strategy, USER_GRIDS[strategy], fill=fill, progress=False, selection=False)  # type: ignore[arg-type]
    expected = assert_matches_vectorbt(table, bars, strategy, list(USER_GRIDS[strategy]), fill=fill)
    assert min(e["n_trades"] for e in expected) > 0


def test_the_fused_path_is_the_default_for_long_only_sweeps() -> None:
    """Same table from the fused kernel and from vectorbt's own sweep path."""
    bars = sample("GOOG")
    for strategy in ("rsi_reversion", "user_no_batch"):
        grid = GRIDS.get(strategy) or USER_GRIDS[strategy]
        fused = backtest.sweep(bars, strategy, grid, progress=False, selection=False)
        slow = backtest.sweep(bars, strategy, grid, progress=False, selection=False, engine="vectorbt")
        pd.testing.assert_frame_equal(fused, slow, check_exact=False, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------- exits


EXITS = [
    {"stop_loss": 0.03},
    {"take_profit": 0.04},
    {"trailing_stop": 0.03},
    {"exit_after": 5},
    {"size": 0.4},
    {"stop_loss": 0.02, "take_profit": 0.05, "exit_after": 12, "size": 0.5, "slippage": 0.001},
    {"trailing_stop": 0.02, "take_profit": 0.06, "slippage": 0.0005},
]


@pytest.mark.parametrize("exits", EXITS, ids=lambda e: "+".join(e))
@pytest.mark.parametrize("fill", ["next_open", "close"])
@pytest.mark.parametrize("strategy", ["sma_cross", "rsi_reversion", "user_ema_cross"])
def test_exits_sweep_to_vectorbts_numbers(strategy: str, fill: str, exits: dict[str, Any]) -> None:
    """Stops against vectorbt's sl_stop / sl_trail / tp_stop, the time exit and the sizing
    against engine.simulate's callbacks, on daily bars with gaps (a stop gapped through
    fills at the open)."""
    bars = sample("GOOG")
    grid = (GRIDS.get(strategy) or USER_GRIDS[strategy])
    settings = {"fill": fill, **exits}
    table = backtest.sweep(bars, strategy, grid, progress=False, selection=False, **settings)
    assert_matches_vectorbt(table, bars, strategy, list(grid), **settings)
    plain = backtest.sweep(bars, strategy, grid, fill=fill, progress=False, selection=False)  # type: ignore[arg-type]
    assert not np.allclose(table["total_return"], plain["total_return"])  # the exits did something


def _bars(opens: list[float], highs: list[float], lows: list[float], closes: list[float]) -> pd.DataFrame:
    idx = pd.date_range("2024-01-01", periods=len(opens), freq="D", tz="UTC")
    return validate_ohlcv(pd.DataFrame({"Open": opens, "High": highs, "Low": lows, "Close": closes, "Volume": 1.0},
                                       index=idx))


def scripted_entry(ohlcv: pd.DataFrame, at: int = 1) -> pd.DataFrame:
    entry = np.zeros(len(ohlcv), dtype=bool)
    entry[at] = True
    return signal_frame(ohlcv.index, entry=entry, exit=np.zeros(len(ohlcv), dtype=bool))


register("scripted_entry", scripted_entry)


def test_a_stop_fills_at_its_level_or_at_the_open_of_a_gap_by_hand() -> None:
    """Entry decided at bar 1's close (100), filled at bar 2's open (101): a 5 % stop sits at
    95. Bar 3 touches 96 only; bar 4 opens at 90, below the stop: it fills at the open.
    Without the gap (bar 4 opens at 97, trades down to 94) it fills at 95."""
    gap = _bars([99, 99.5, 101, 98, 90], [100, 100.5, 102, 99, 91], [98, 99, 100, 96, 89], [99.5, 100, 101, 97, 90])
    touch = _bars([99, 99.5, 101, 98, 97], [100, 100.5, 102, 99, 98], [98, 99, 100, 96, 94], [99.5, 100, 101, 97, 95])
    for bars, fill_price in ((gap, 90.0), (touch, 95.0)):
        table = backtest.sweep(bars, "scripted_entry", {"at": [1]}, stop_loss=0.05, fees=0.0, init_cash=101.0,
                               progress=False, selection=False)
        [row] = table.to_dict("records")
        assert row["n_trades"] == 1
        assert row["total_return"] == pytest.approx(fill_price / 101.0 - 1.0, rel=1e-12)
        assert_matches_vectorbt(table, bars, "scripted_entry", ["at"], stop_loss=0.05, fees=0.0, init_cash=101.0)


# --------------------------------------------------------------------------- batch functions are checked


def test_a_batch_function_that_disagrees_with_its_strategy_is_refused() -> None:
    def wrong_batch(ind: Any, fast: int = 12, slow: int = 26) -> Any:
        close = ind.ohlcv["Close"]
        f = ind.line(("sma", fast), lambda: close.rolling(fast).mean())  # SMAs, not EMAs
        s = ind.line(("sma", slow), lambda: close.rolling(slow).mean())
        return ind.signals(entry=f.crossed_above(s), exit=f.crossed_below(s))

    def lax_batch(ind: Any, fast: int = 12, slow: int = 26) -> Any:  # accepts fast >= slow
        return user_ema_cross_batch(ind, fast=fast, slow=max(slow, fast + 1))

    register("user_ema_cross_checked", user_ema_cross)
    try:
        BATCH["user_ema_cross_checked"] = wrong_batch
        with pytest.raises(InvalidInputError, match="disagrees with user_ema_cross_checked on entry"):
            backtest.sweep(sample("EURUSD"), "user_ema_cross_checked", {"fast": [5], "slow": [20]}, progress=False)
        BATCH["user_ema_cross_checked"] = lax_batch
        with pytest.raises(InvalidInputError, match="accepts .* which user_ema_cross_checked refuses"):
            backtest.sweep(sample("EURUSD"), "user_ema_cross_checked", {"fast": [5, 30], "slow": [20]}, progress=False)
    finally:
        BATCH.pop("user_ema_cross_checked", None)


def test_rules_refuse_a_truth_value_and_bad_operands() -> None:
    from memlab.backtest.rules import Indicators

    ind = Indicators(sample("GOOG"))
    close = ind.price("Close")
    with pytest.raises(TypeError, match="combine conditions with &"):
        bool(close > 3)
    with pytest.raises(InvalidInputError, match="another line or a number"):
        close > "3"  # noqa: B015
    with pytest.raises(InvalidInputError, match="one value per bar"):
        ind.values(ind.line("short", lambda: np.zeros(3)).key)


# --------------------------------------------------------------------------- chunks, memory, selection


def test_results_do_not_depend_on_how_lines_and_sets_are_chunked() -> None:
    """A budget of a few lines forces lines out and back in; one set per kernel call too."""
    bars = sample("EURUSD")
    grid = {"fast": [3, 5, 8, 13], "slow": [21, 34, 55]}
    whole = backtest.sweep(bars, "sma_cross", grid, progress=False, stop_loss=0.01)
    three_lines = backtest.sweep(bars, "sma_cross", grid, progress=False, stop_loss=0.01,
                                 memory_budget_gb=3 * len(bars) * 8 / 1e9)
    one_by_one = backtest.sweep(bars, "sma_cross", grid, progress=False, stop_loss=0.01, chunk_size=1)
    pd.testing.assert_frame_equal(whole, three_lines)
    pd.testing.assert_frame_equal(whole, one_by_one)


MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource
    import numpy as np
    from memlab import backtest
    from memlab.data import synthetic_ohlcv

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    bars = synthetic_ohlcv(100_000, freq="1min", seed=3)
    grid = {"lookback": list(range(5, 85)), "threshold": [round(x, 4) for x in np.linspace(0.001, 0.02, 50)]}
    backtest.sweep(bars.iloc[:5000], "momentum", {"lookback": [5, 6], "threshold": [0.01]}, progress=False)
    peaks = [peak_mb()]
    for _ in range(2):
        table = backtest.sweep(bars, "momentum", grid, progress=False, memory_budget_gb=0.05)
        peaks.append(peak_mb())
    print(json.dumps({"peaks": peaks, "sets": len(table)}))
""")


def test_memory_stays_bounded_whatever_the_number_of_sets_or_sweeps() -> None:
    """Two sweeps of 4,000 sets over 100,000 bars in a fresh process.

    Bars by sets would be 3.2 GB as floats, 400 MB even as one-byte flags. The fused path
    may hold its memory budget of lines (50 MB, here less than the sweep's 80 distinct
    lines, so lines are evicted and recomputed), the equity marks (4,000 x 257 floats, 8 MB)
    and per-set rules and results (a few MB); the selection statistics and the allocator
    get 100 MB more: the first sweep may add at most 200 MB to the peak. A second sweep must
    not climb (at most 25 MB more): nothing of the first is kept."""
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True, cwd=ROOT,
                         timeout=600, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    warm, first, second = result["peaks"]
    assert result["sets"] == 4000
    assert first - warm < 200, result
    assert second - first < 25, result


def test_selection_statistics_come_from_the_fused_kernels_marks() -> None:
    """The selection report of a fused sweep equals the one from vectorbt's path, and each
    set's marks compound to its total return."""
    from memlab.backtest.sweep import _run_sets, subperiod_edges

    bars = sample("EURUSD")
    grid = {"period": [7, 14], "lower": [25, 35], "upper": [65, 75]}
    fused = backtest.sweep(bars, "rsi_reversion", grid, progress=False, stop_loss=0.01).attrs["selection"]
    slow = backtest.sweep(bars, "rsi_reversion", grid, progress=False, stop_loss=0.01, engine="vectorbt").attrs["selection"]
    assert fused.applicable and fused.n_trials == 8
    assert (fused.chosen, fused.pbo, fused.spa_pvalue, fused.reality_check_pvalue) == (
        slow.chosen, slow.pbo, slow.spa_pvalue, slow.reality_check_pvalue)
    assert fused.dsr == pytest.approx(slow.dsr, rel=1e-9)
    combos = [check_params("rsi_reversion", {"period": 7, "lower": 25, "upper": 65})]
    options = {"fees": 0.001, "slippage": 0.0, "fill": "next_open", "direction": "longonly", "init_cash": 1e5,
               "chunk_size": None, "memory_budget_gb": 1.0, "progress": False, "take_profit": 0.02}
    table, marks = _run_sets(bars, "rsi_reversion", combos, engine="auto", marks_at=subperiod_edges(len(bars)),
                             **options)  # type: ignore[arg-type]
    compounded = np.prod(marks[:, 1:] / marks[:, :-1], axis=1) - 1
    np.testing.assert_allclose(compounded, table["total_return"], rtol=1e-9)


def test_minute_bars_with_a_stop_sweep_to_vectorbts_numbers() -> None:
    """A sweep per strategy over synthetic minute bars runs and agrees with vectorbt on a
    sample of its sets (the full-size figures are benchmarks/backtest_bench.py's)."""
    bars = synthetic_ohlcv(20_000, freq="1min", seed=11)
    for strategy, grid in {"momentum": {"lookback": [30, 120], "threshold": [0.002, 0.005]},
                           "rsi_reversion": {"period": [14, 50], "lower": [30], "upper": [70]},
                           "sma_cross": {"fast": [10, 50], "slow": [100, 300]}}.items():
        table = backtest.sweep(bars, strategy, grid, progress=False, selection=False, stop_loss=0.01)
        assert_matches_vectorbt(table.iloc[:2], bars, strategy, list(grid), stop_loss=0.01)
