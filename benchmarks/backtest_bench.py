"""Sweep benchmark: many sma_cross parameter sets over a year of one-minute bars.

    python benchmarks/backtest_bench.py [--sets 10000] [--bars 525600] [--chunk 100] [--peer-bars 525600]

Target (issue 3, 2-core machine): 10,000 parameter sets over 525,600 bars in <= 60 s
without running out of memory; per-set speed >= 100x backtesting.py's on the same data
and strategy, measured in this same run. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

from memlab import backtest
from memlab.data import synthetic_ohlcv


def grid_for(n_sets: int) -> dict[str, list[int]]:
    side = int(np.ceil(np.sqrt(n_sets)))
    return {"fast": list(range(2, 2 + side)), "slow": list(range(2 + side, 2 + 2 * side))}


def peer_seconds(bars, fast: int, slow: int) -> float:  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' independent engines
    from tests.support.peers import backtesting_py_sma_cross

    t = time.perf_counter()
    backtesting_py_sma_cross(bars, fast, slow)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", type=int, default=10_000)
    parser.add_argument("--bars", type=int, default=525_600)
    parser.add_argument("--chunk", type=int, default=None, help="sets per vectorbt call (default: fit a 2 GB budget)")
    parser.add_argument("--engine", default="auto", choices=["auto", "vectorbt"],
                        help="auto: the fused sma_cross kernel; vectorbt: vectorbt's from_signals")
    parser.add_argument("--peer-bars", type=int, default=None, help="bars for the backtesting.py peer (default: all)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}")
    bars = synthetic_ohlcv(args.bars, freq="1min", seed=42)
    grid = grid_for(args.sets)
    # Warm-up: numba compiles vectorbt's kernels on first use; not counted.
    backtest.sweep(bars.iloc[:5000], "sma_cross", {"fast": [5], "slow": [20]}, progress=False, engine=args.engine)
    n_sets = len(grid["fast"]) * len(grid["slow"])
    t = time.perf_counter()
    table = backtest.sweep(bars, "sma_cross", grid, chunk_size=args.chunk, progress=True, engine=args.engine)
    took = time.perf_counter() - t
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    per_set = took / len(table)
    print(f"memlab sweep (engine={args.engine}): {len(table):,} parameter sets (of {n_sets:,} in the grid) x {len(bars):,} bars in {took:.1f} s "
          f"({per_set * 1000:.2f} ms per set), peak memory {peak_gb:.1f} GB")
    peer_bars = bars.iloc[: args.peer_bars] if args.peer_bars else bars
    peer = peer_seconds(peer_bars, 10, 30)
    peer_per_full = peer * len(bars) / len(peer_bars)
    print(f"backtesting.py: one parameter set over {len(peer_bars):,} bars in {peer:.1f} s"
          + (f" (scaled to {len(bars):,} bars: {peer_per_full:.1f} s)" if args.peer_bars else ""))
    print(f"per-set speed ratio memlab / backtesting.py: {peer_per_full / per_set:,.0f}x")


if __name__ == "__main__":
    main()
