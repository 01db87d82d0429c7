"""Selection-statistics benchmark: what DSR, PBO and SPA add to a 10,000-set sweep.

    python benchmarks/selection_bench.py [--sets 10000] [--bars 525600] [--repeat 1]

Target (issue 11, item 5; 2-core machine): a 10,000-set ``sma_cross`` sweep over
one-minute bars with its selection statistics takes at most 10 % longer than without.
Both runs are in this process, on the same bars, alternating when ``--repeat`` > 1;
wall time and process CPU time (all threads) are both printed, since on a shared
machine the wall clock mostly measures the neighbours. The statistics' own parts are
timed apart too. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np

from memlab import backtest
from memlab.backtest.selection import pbo_cscv, spa_test
from memlab.backtest.sweep import subperiod_edges
from memlab.data import synthetic_ohlcv


def grid_for(n_sets: int) -> dict[str, list[int]]:
    side = int(np.ceil(np.sqrt(n_sets)))
    return {"fast": list(range(2, 2 + side)), "slow": list(range(2 + side, 2 + 2 * side))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", type=int, default=10_000)
    parser.add_argument("--bars", type=int, default=525_600)
    parser.add_argument("--repeat", type=int, default=1, help="timed pairs (with, without), alternating")
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    bars = synthetic_ohlcv(args.bars, freq="1min", seed=42)
    grid = grid_for(args.sets)
    # Warm-up: numba compiles (or loads from cache) the kernels on first use; not counted.
    backtest.sweep(bars.iloc[:5000], "sma_cross", {"fast": [5, 6], "slow": [20]}, progress=False)
    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    table = None
    for _ in range(args.repeat):
        for selection in (False, True):
            wall, cpu = time.perf_counter(), time.process_time()
            table = backtest.sweep(bars, "sma_cross", grid, progress=False, selection=selection)
            runs[selection].append((time.perf_counter() - wall, time.process_time() - cpu))
    assert table is not None
    report = table.attrs["selection"]
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    for label, selection in (("without", False), ("with", True)):
        wall, cpu = min(r[0] for r in runs[selection]), min(r[1] for r in runs[selection])
        every = ", ".join(f"{w:.1f}/{c:.1f}" for w, c in runs[selection])
        print(f"sweep {label} selection statistics: {len(table):,} sets x {len(bars):,} bars: wall {wall:.1f} s, "
              f"CPU {cpu:.1f} s (best of wall/CPU runs: {every})")
    for i, name in enumerate(("wall", "CPU")):
        base, full = min(r[i] for r in runs[False]), min(r[i] for r in runs[True])
        print(f"overhead ratio with / without ({name}): {full / base:.3f} ({(full / base - 1) * 100:+.1f} %; "
              "target <= +10 %)")
    print(f"peak memory {peak_gb:.1f} GB")

    # The statistics' own parts, on sub-period returns of the same shape as the sweep's.
    n_sub = len(subperiod_edges(len(bars))) - 1
    rng = np.random.default_rng(0)
    sub = rng.normal(0.0, 0.01, (n_sub, len(table)))
    t = time.perf_counter()
    pbo_cscv(sub)
    pbo_s = time.perf_counter() - t
    t = time.perf_counter()
    spa_test(sub)
    spa_s = time.perf_counter() - t
    print(f"parts on {n_sub} sub-periods x {len(table):,} sets: PBO (12,870 CSCV splits) {pbo_s:.2f} s, "
          f"SPA + Reality Check (1,000 draws) {spa_s:.2f} s")
    print(f"report: chosen {report.chosen}, Sharpe {report.chosen_sharpe:.3f}, DSR {report.dsr:.3g}, "
          f"PBO {report.pbo:.3g}, SPA p {report.spa_pvalue:.3g}, Reality Check p {report.reality_check_pvalue:.3g}")


if __name__ == "__main__":
    main()
