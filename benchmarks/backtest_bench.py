"""Sweep benchmark: fused sweeps of every strategy over a year of one-minute bars, against
vectorbt's ``from_signals`` on the same signals, in one run.

    python benchmarks/backtest_bench.py [--bars 525600] [--sets 10000] [--per-strategy 200]
                                        [--vbt-sets 4] [--stop-loss 0.01] [--peer-bars N]

Targets (issue 14, 2-core machine): per parameter set, the fused sweep at least 10x faster
than vectorbt's from_signals for every built-in strategy and a user strategy; 10,000
``sma_cross`` sets over 525,600 bars in <= 30 s with and without a stop-loss; peak memory
of the process <= 2.5 GB. Issue 3's: the sweep's per-set speed >= 100x backtesting.py's
on the same data and strategy. Prints figures; asserts nothing.

vectorbt is timed on the signals the strategy function gives (computed beforehand, not
timed), ``--vbt-sets`` evenly spaced sets of each strategy's grid, two sets per
``simulate`` call, with the statistics the sweep reads (equity, closed trades). The fused
figure is a whole sweep of ``--per-strategy`` sets: indicators, rules, kernel, statistics
(selection statistics off, as they are an add-on to either engine).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memlab import backtest
from memlab.backtest.engine import simulate
from memlab.backtest.sweep import expand_grid
from memlab.data import synthetic_ohlcv
from memlab.strategies import BATCH, check_params, get, register, signal_frame
from memlab.strategies.signal_frame import crossed_above, crossed_below


def ema_cross(ohlcv: pd.DataFrame, fast: int = 12, slow: int = 26) -> pd.DataFrame:
    """A user's strategy: EMA crossover."""
    close = ohlcv["Close"]
    f, s = close.ewm(span=fast, adjust=False).mean(), close.ewm(span=slow, adjust=False).mean()
    return signal_frame(ohlcv.index, entry=crossed_above(f, s), exit=crossed_below(f, s))


def ema_cross_batch(ind: Any, fast: int = 12, slow: int = 26) -> Any:
    """Its batch function: each EMA computed once per sweep."""
    f = ind.line(("ema", fast), lambda: ind.ohlcv["Close"].ewm(span=fast, adjust=False).mean())
    s = ind.line(("ema", slow), lambda: ind.ohlcv["Close"].ewm(span=slow, adjust=False).mean())
    return ind.signals(entry=f.crossed_above(s), exit=f.crossed_below(s))


register("bench_ema_cross", ema_cross)
BATCH["bench_ema_cross"] = ema_cross_batch
register("bench_ema_cross_plain", ema_cross)  # the same strategy without a batch function


def grids(per_strategy: int) -> dict[str, dict[str, list[Any]]]:
    """About ``per_strategy`` sets of each strategy, in ranges that trade on minute bars."""
    k = max(1, int(round(np.sqrt(per_strategy))))
    k3 = max(1, int(round(per_strategy ** (1 / 3))))
    return {
        "momentum": {"lookback": [int(x) for x in np.linspace(10, 400, k)],
                     "threshold": [round(float(x), 4) for x in np.linspace(0.002, 0.03, k)]},
        "sma_cross": {"fast": [int(x) for x in np.linspace(5, 60, k)], "slow": [int(x) for x in np.linspace(80, 400, k)]},
        "rsi_reversion": {"period": [int(x) for x in np.linspace(7, 60, k3)],
                          "lower": [float(x) for x in np.linspace(20, 40, k3)],
                          "upper": [float(x) for x in np.linspace(60, 80, k3)]},
        "high_volatility": {"volatility_threshold": [round(float(x), 3) for x in np.linspace(0.3, 1.5, k3)],
                            "rsi_threshold": [float(x) for x in np.linspace(25, 45, k3)],
                            "exit_rsi": [float(x) for x in np.linspace(50, 70, k3)]},
        "bench_ema_cross": {"fast": [int(x) for x in np.linspace(5, 60, k)],
                            "slow": [int(x) for x in np.linspace(80, 400, k)]},
    }


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def vectorbt_seconds_per_set(bars: pd.DataFrame, strategy: str, combos: list[dict[str, Any]]) -> float:
    """vectorbt's from_signals on the strategy's own signals, two sets per call, with the
    statistics a sweep reads; signal generation not timed."""
    plain = bars[["Open", "High", "Low", "Close", "Volume"]].reset_index(drop=True)
    fn = get(strategy)
    took = 0.0
    for lo in range(0, len(combos), 2):
        chunk = combos[lo : lo + 2]
        frames = [fn(bars, **check_params(strategy, c)) for c in chunk]
        orders = {}
        for arg, col in (("entries", "entry"), ("exits", "exit"), ("short_entries", "short_entry"),
                         ("short_exits", "short_exit")):
            m = np.zeros((len(bars), len(chunk)), dtype=bool)
            for j, f in enumerate(frames):
                m[1:, j] = f[col].to_numpy(dtype=bool)[:-1]  # filled at the next open
            orders[arg] = m
        t = time.perf_counter()
        pf = simulate(plain, orders)
        pf.value().to_numpy()
        pf.trades.closed.count()
        took += time.perf_counter() - t
    return took / len(combos)


def peer_seconds(bars: pd.DataFrame, fast: int, slow: int) -> float:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' independent engines
    from tests.support.peers import backtesting_py_sma_cross

    t = time.perf_counter()
    backtesting_py_sma_cross(bars, fast, slow)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bars", type=int, default=525_600)
    parser.add_argument("--sets", type=int, default=10_000, help="sma_cross sets of the big sweep")
    parser.add_argument("--per-strategy", type=int, default=200, help="sets per strategy in the comparison")
    parser.add_argument("--vbt-sets", type=int, default=4, help="sets per strategy timed through vectorbt")
    parser.add_argument("--stop-loss", type=float, default=0.01)
    parser.add_argument("--peer-bars", type=int, default=None, help="bars for the backtesting.py peer (default: all)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}; "
          f"{time.strftime('%Y-%m-%d %H:%M')}; load average {os.getloadavg()[0]:.2f}")
    bars = synthetic_ohlcv(args.bars, freq="1min", seed=42)
    print(f"bars: {len(bars):,} synthetic one-minute bars, seed 42")
    # Warm-up: numba compiles (or loads) the kernels, vectorbt's too; not counted.
    for strategy in grids(1):
        backtest.sweep(bars.iloc[:5000], strategy, {k: v[:1] for k, v in grids(1)[strategy].items()}, progress=False)
    vectorbt_seconds_per_set(bars.iloc[:5000], "sma_cross", [{"fast": 5, "slow": 20}])

    side = int(np.ceil(np.sqrt(args.sets)))
    big = {"fast": list(range(2, 2 + side)), "slow": list(range(2 + side, 2 + 2 * side))}
    big_per_set = []
    for stop in (None, args.stop_loss):
        t = time.perf_counter()
        table = backtest.sweep(bars, "sma_cross", big, stop_loss=stop, progress=False)
        took = time.perf_counter() - t
        big_per_set.append(took / len(table))
        print(f"sma_cross, {len(table):,} sets, stop_loss={stop}: {took:.1f} s ({took / len(table) * 1e3:.2f} ms per set, "
              f"selection statistics included), peak memory so far {peak_gb():.2f} GB")
    fused_per_set = {}
    for strategy, grid in {**grids(args.per_strategy),
                           "bench_ema_cross_plain": grids(args.per_strategy // 4)["bench_ema_cross"]}.items():
        t = time.perf_counter()
        swept = backtest.sweep(bars, strategy, grid, progress=False, selection=False)
        fused_per_set[strategy] = ((time.perf_counter() - t) / len(swept), len(swept))
    print(f"peak memory after every fused sweep: {peak_gb():.2f} GB")

    print(f"\n{'strategy':34} {'fused ms/set':>14} {'vectorbt ms/set':>16} {'ratio':>7}")
    for strategy, (per_set, n) in fused_per_set.items():
        grid = grids(args.per_strategy)["bench_ema_cross" if strategy == "bench_ema_cross_plain" else strategy]
        combos = expand_grid(grid)
        picks = [combos[int(i)] for i in np.linspace(0, len(combos) - 1, args.vbt_sets)]
        vbt = vectorbt_seconds_per_set(bars, strategy, picks)
        label = {"bench_ema_cross": "user EMA cross (batch function)",
                 "bench_ema_cross_plain": "user EMA cross (no batch function)"}.get(strategy, strategy)
        print(f"{label:34} {per_set * 1e3:>9.2f} ({n:>3}) {vbt * 1e3:>11.1f} ({len(picks)}) {vbt / per_set:>6.1f}x",
              flush=True)
    print(f"peak memory of the process: {peak_gb():.2f} GB")

    peer_bars = bars.iloc[: args.peer_bars] if args.peer_bars else bars
    peer = peer_seconds(peer_bars, 10, 30) * len(bars) / len(peer_bars)
    print(f"\nbacktesting.py: one sma_cross set over {len(bars):,} bars: {peer:.1f} s"
          + (f" (scaled from {len(peer_bars):,} bars)" if args.peer_bars else "")
          + f"; per-set speed ratio of the {len(table):,}-set sweep / backtesting.py: {peer / big_per_set[0]:,.0f}x",
          flush=True)


if __name__ == "__main__":
    main()
