"""Paper-trading replay throughput end to end, and bar-to-order latency (issue 5).

    .venv/bin/python benchmarks/paper_bench.py [--bars 200000]

Each run is a whole ``UnifiedMemGPTTrader`` session on replayed one-minute bars: the paper
broker fills, the strategy's signal is scored by the agent from memory, orders go
through ``ConnectionManager.execute_on_broker``, decisions and outcomes are written to the
decision store and the journal (group commit per bar; fsynced). Memory starts empty and
grows through the run. Bar-to-order latency is from the bar's arrival to the broker's
acknowledgement of the order, for bars that place one. How busy a strategy is decides
throughput, so each line says how many orders it placed per 1,000 bars.

The peer, in the same run on the same bars: backtesting.py's event-driven engine running
the SMA-crossover rules bar by bar (in memory, nothing persisted, no agent). Targets:
>= 20,000 bars/s; bar-to-order p99 <= 2 ms. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import scipy.stats  # noqa: F401  (imported once up front, as a long-running trader would have)

from memlab.data import synthetic_ohlcv
from memlab.trader import TraderConfig, UnifiedMemGPTTrader


def peer_engine() -> Any:
    """backtesting.py's SMA cross, from the tests' independent engines (tests/support/peers.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.support.peers import backtesting_py_sma_cross

    return backtesting_py_sma_cross


CONFIGS: list[tuple[str, dict[str, Any], float]] = [
    ("sma_cross", {"fast": 50, "slow": 200}, 0.0),
    ("momentum", {}, 0.0),
    ("rsi_reversion", {}, 0.0),
    ("sma_cross", {"fast": 10, "slow": 30}, 0.0),
    ("sma_cross", {"fast": 10, "slow": 30}, 0.25),
]


def session(bars: Any, strategy: str, params: dict[str, Any], sync_interval: float) -> dict[str, Any]:
    memory = Path(tempfile.mkdtemp(prefix="memlab-paper-bench-"))
    config = TraderConfig(symbols=("BTC/USDT",), strategy=strategy, params=params, memory_path=memory,
                          sizing="full", feed={"data": bars, "warmup": 200}, sync_interval=sync_interval)
    started = time.perf_counter()
    report = asyncio.run(UnifiedMemGPTTrader(config).run())
    report["wall"] = time.perf_counter() - started
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bars", type=int, default=200_000)
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}")
    bars = synthetic_ohlcv(args.bars, freq="1min", seed=21)
    print(f"market: {args.bars:,} synthetic one-minute bars (200 of them indicator warm-up)")

    started = time.perf_counter()
    peer = peer_engine()(bars, 50, 200)
    peer_rate = len(bars) / (time.perf_counter() - started)
    print(f"peer: backtesting.py, sma_cross(50, 200), {int(peer['# Trades'])} trades: {peer_rate:,.0f} bars/s")

    for strategy, params, sync in CONFIGS:
        r = session(bars, strategy, params, sync)
        rate = r["bars"] / r["wall"]
        label = f"{strategy}({', '.join(f'{k}={v}' for k, v in params.items()) or 'defaults'})"
        group = "per bar" if sync == 0 else f"every {sync:g} s"
        p50, p99 = r["bar_to_order_ms_p50"], r["bar_to_order_ms_p99"]
        print(f"memlab {label:<34} fsync {group:<10}: {rate:>8,.0f} bars/s (x{rate / peer_rate:.2f} the peer) | "
              f"{r['orders'] / r['bars'] * 1000:5.1f} orders/1k bars, {r['decisions']:,} decisions | "
              f"bar->order p50 {p50:.2f} ms, p99 {p99:.2f} ms")


if __name__ == "__main__":
    main()
