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

Then the busiest SMA cross again with the fill model on (memlab.fills: a
spread from the last bar's range, one bar of latency, a maker fee for take-profits, and a
stop-loss / take-profit on each entry so the maker fee has orders to apply to): what the
fill rules cost a session in throughput. Then shorts and funding (a perpetual at 3x), and a
portfolio of 10 markets on one cash balance (target: 5,000 portfolio-bars/s, a portfolio-bar
being one market time across all 10).
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
from memlab.fills import NO_FILL_MODEL, FillModel
from memlab.trader import TraderConfig, UnifiedMemGPTTrader


def peer_engine() -> Any:
    """backtesting.py's SMA cross, from the tests' independent engines (tests/support/peers.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.support.peers import backtesting_py_sma_cross

    return backtesting_py_sma_cross


FILLS = FillModel(range_spread=0.3, latency=1, maker_fees=0.0002)
STOPS = {"stop_loss": 0.01, "take_profit": 0.01}

CONFIGS: list[tuple[str, dict[str, Any], float, FillModel, dict[str, float]]] = [
    ("sma_cross", {"fast": 50, "slow": 200}, 0.0, NO_FILL_MODEL, {}),
    ("momentum", {}, 0.0, NO_FILL_MODEL, {}),
    ("rsi_reversion", {}, 0.0, NO_FILL_MODEL, {}),
    ("sma_cross", {"fast": 10, "slow": 30}, 0.0, NO_FILL_MODEL, {}),
    ("sma_cross", {"fast": 10, "slow": 30}, 0.25, NO_FILL_MODEL, {}),
    ("sma_cross", {"fast": 10, "slow": 30}, 0.0, NO_FILL_MODEL, STOPS),
    ("sma_cross", {"fast": 10, "slow": 30}, 0.0, FILLS, STOPS),
]


def session(bars: Any, strategy: str, params: dict[str, Any], sync_interval: float,
            fill_model: FillModel = NO_FILL_MODEL, exits: dict[str, float] | None = None,
            symbols: tuple[str, ...] = ("BTC/USDT",), **settings: Any) -> dict[str, Any]:
    memory = Path(tempfile.mkdtemp(prefix="memlab-paper-bench-"))
    config = TraderConfig(symbols=symbols, strategy=strategy, params=params, memory_path=memory,
                          sizing="full", feed={"data": bars, "warmup": 200}, sync_interval=sync_interval,
                          fill_model=fill_model, **(exits or {}), **settings)
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

    for strategy, params, sync, fill_model, exits in CONFIGS:
        r = session(bars, strategy, params, sync, fill_model, exits)
        rate = r["bars"] / r["wall"]
        label = f"{strategy}({', '.join(f'{k}={v}' for k, v in params.items()) or 'defaults'})"
        label += " +stops" * bool(exits) + " +fill model" * fill_model.active
        group = "per bar" if sync == 0 else f"every {sync:g} s"
        p50, p99 = r["bar_to_order_ms_p50"], r["bar_to_order_ms_p99"]
        print(f"memlab {label:<34} fsync {group:<10}: {rate:>8,.0f} bars/s (x{rate / peer_rate:.2f} the peer) | "
              f"{r['orders'] / r['bars'] * 1000:5.1f} orders/1k bars, {r['decisions']:,} decisions | "
              f"bar->order p50 {p50:.2f} ms, p99 {p99:.2f} ms")

    # Shorts and funding: a linear perpetual at 3x, long and short, paying the funding of the
    # paper broker's shipped sample (data/funding/), on the same bars.
    try:
        r = session(bars, "sma_cross", {"fast": 10, "slow": 30}, 0.0, symbols=("BTC/USDT:USDT",), leverage=3.0)
    except Exception as exc:  # a session that fails is printed, not hidden
        print(f"memlab {'sma_cross(10, 30) BTC/USDT:USDT 3x':<34} FAILED: {type(exc).__name__}: {exc}")
        r = None
    rate = r["bars"] / r["wall"] if r else 0.0
    if r:
        print(f"memlab {'sma_cross(10, 30) BTC/USDT:USDT 3x':<34} fsync per bar   : {rate:>8,.0f} bars/s "
              f"(x{rate / peer_rate:.2f} the peer) | {r['orders'] / r['bars'] * 1000:5.1f} orders/1k bars | "
              f"bar->order p50 {r['bar_to_order_ms_p50']:.2f} ms, p99 {r['bar_to_order_ms_p99']:.2f} ms")

    # A portfolio: 10 markets on one cash balance, each entry spending a tenth of the free cash.
    names = ("BTC", "ETH", "SOL", "XRP", "ADA", "DOGE", "AVAX", "DOT", "LINK", "LTC")
    n = max(args.bars // 10, 1000)
    markets = {f"{b}/USDT": synthetic_ohlcv(n, freq="1min", seed=31 + k) for k, b in enumerate(names)}
    r = session(markets, "sma_cross", {"fast": 10, "slow": 30}, 0.0, symbols=tuple(markets), size=0.1)
    times = r["bars"] / len(markets)
    print(f"memlab portfolio of {len(markets)} markets, sma_cross(10, 30), {n:,} bars each: "
          f"{times / r['wall']:,.0f} portfolio-bars/s (one market time across all {len(markets)}), "
          f"{r['bars'] / r['wall']:,.0f} market-bars/s | {r['orders']:,} orders | "
          f"bar->order p50 {r['bar_to_order_ms_p50']:.2f} ms, p99 {r['bar_to_order_ms_p99']:.2f} ms")


if __name__ == "__main__":
    main()
