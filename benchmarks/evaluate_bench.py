"""Evaluation benchmark: ``memlab evaluate`` on the three shipped markets, as a user runs it.

    python benchmarks/evaluate_bench.py [--runs 2] [--markets GOOG EURUSD BTCUSD]

Target (issue 11, item 4, 2-core machine): ``memlab evaluate`` on GOOG, EURUSD and
BTCUSD in <= 2 minutes, in a fresh process (imports and numba compilation included).
In the same run, a warm process gives the split: the walk-forward alone (what training
does anyway, the peer) against the whole evaluation (walk-forward, the agent scoring and
learning every signal, both books, the bootstrap). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 120.0


def cold_cli_seconds(markets: list[str], out: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "memlab.cli", "evaluate", "--markets", *markets, "--quiet",
                           "--out", str(out)], capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"memlab evaluate failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return took, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="cold CLI runs (default 2)")
    parser.add_argument("--markets", nargs="+", default=["GOOG", "EURUSD", "BTCUSD"])
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="memlab-evaluate-bench-") as tmp:
        times = []
        for run in range(args.runs):
            took, printed = cold_cli_seconds(args.markets, Path(tmp) / f"run{run}")
            times.append(took)
            print(f"memlab evaluate --markets {' '.join(args.markets)} (fresh process): {took:.1f} s "
                  f"(target <= {TARGET_SECONDS:.0f} s: {'met' if took <= TARGET_SECONDS else 'NOT met'})")
        print("\n" + printed)

    # Warm process: the split between the walk-forward (the peer) and the rest.
    from memlab.evaluation import EvaluationConfig, evaluate_memory, load_market
    from memlab.evaluation.memory_edge import MarketTooShortError, _grid
    from memlab.training.walkforward import walk_forward

    cfg = EvaluationConfig(markets=tuple(args.markets))
    evaluate_memory(["synthetic:1:1200"], draws=200, progress=False)  # compile numba kernels; not counted
    start = time.perf_counter()
    for name in args.markets:
        bars = load_market(name)
        train, test = cfg.windows(len(bars))
        if len(bars) < train + test:
            continue
        walk_forward(bars, cfg.strategy, _grid(cfg), train_bars=train, test_bars=test, fees=cfg.fees)
    peer = time.perf_counter() - start
    start = time.perf_counter()
    try:
        report = evaluate_memory(args.markets, progress=False)
    except MarketTooShortError:
        raise SystemExit("no market long enough for one fold") from None
    whole = time.perf_counter() - start
    signals = len(report.signals)
    print(f"warm process: walk-forward alone (peer) {peer:.2f} s; whole evaluation {whole:.2f} s "
          f"({whole / max(peer, 1e-9):.1f}x the walk-forward; {signals} signals scored, "
          f"{(whole - peer) / max(signals, 1) * 1000:.1f} ms per signal for the agent, books and bootstrap)")
    print(f"cold runs: {', '.join(f'{t:.1f} s' for t in times)}; load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
