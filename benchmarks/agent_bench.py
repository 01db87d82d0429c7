"""Benchmark: ``analyze_signal`` latency with 1,000,000 decisions in memory (target p99 <= 5 ms).

Fills a fresh memory folder with ``--decisions`` closed decisions (random situations,
three strategies, both actions), then scores ``--signals`` new signals and prints the
p50/p99 latency of ``MemoryAgent.analyze_signal`` next to its peer in the same run, the
bare ``DecisionStore.neighbourhood`` query it is built on.

    .venv/bin/python benchmarks/agent_bench.py            # 1M decisions, ~1 min
    .venv/bin/python benchmarks/agent_bench.py --decisions 100000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from memlab.agent import MemoryAgent
from memlab.features import FEATURE_NAMES
from memlab.memory import Decision, Outcome

STRATEGIES = ("momentum", "mean_reversion", "breakout")


def fill(agent: MemoryAgent, n: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    x = rng.normal(size=(n, len(FEATURE_NAMES)))
    won = rng.random(n) < 0.5 + 0.1 * np.tanh(x[:, -1])
    ret = np.where(won, 1.0, -0.8) * rng.uniform(0.1, 2.0, n)
    started = time.perf_counter()

    def gen():
        for i in range(n):
            yield Decision(
                "BTCUSDT", STRATEGIES[i % 3], "BUY" if i % 2 else "SELL", 0.5,
                features=dict(zip(FEATURE_NAMES, x[i].tolist(), strict=True)),
                agent_id="bench", decided_at=t0 + timedelta(minutes=5 * i),
                outcome=Outcome(pnl=float(ret[i] * 10), return_pct=float(ret[i]),
                                closed_at=t0 + timedelta(minutes=5 * i + 30)),
            )

    chunk = 100_000
    it = gen()
    for _ in range(0, n, chunk):
        batch = [d for _, d in zip(range(chunk), it, strict=False)]
        agent.stores.decisions.record_many(batch, batch_size=10_000)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--signals", type=int, default=2000)
    parser.add_argument("--memory-path", default=None, help="reuse a filled folder (default: a fresh temp one)")
    args = parser.parse_args()
    if args.memory_path:
        run(args, Path(args.memory_path))
    else:
        with tempfile.TemporaryDirectory(prefix="agent_bench_") as tmp:
            run(args, Path(tmp))


def run(args: argparse.Namespace, path: Path) -> None:
    agent = MemoryAgent(path, agent_id="bench")
    have = agent.stores.decisions.count()
    if have < args.decisions:
        secs = fill(agent, args.decisions - have)
        print(f"filled {args.decisions - have:,} decisions in {secs:.1f} s ({path})")
    n = agent.stores.decisions.count()
    rng = np.random.default_rng(1)
    signals = [
        {"symbol": "BTCUSDT", "strategy": STRATEGIES[i % 3], "action": "BUY" if i % 2 else "SELL",
         "features": dict(zip(FEATURE_NAMES, rng.normal(size=len(FEATURE_NAMES)).tolist(), strict=True))}
        for i in range(args.signals)
    ]
    started = time.perf_counter()
    agent.analyze_signal(signals[0])  # builds the index (once per process)
    for s in signals[:50]:
        agent.analyze_signal(s)  # warm each filter's tree
    print(f"first call (index build over {n:,} decisions): {time.perf_counter() - started:.2f} s")

    def timed(fn) -> np.ndarray:
        out = np.empty(len(signals))
        for i, s in enumerate(signals):
            t = time.perf_counter()
            fn(s)
            out[i] = time.perf_counter() - t
        return out * 1000.0

    store = agent.stores.decisions
    peer = timed(lambda s: store.neighbourhood(s["features"], 30, strategy=s["strategy"], action=s["action"], closed_only=True))
    full = timed(agent.analyze_signal)
    print(f"cores: {os.cpu_count()} (shared with other work while this ran)")
    print(f"{'':<34}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for label, ms in (("DecisionStore.neighbourhood (peer)", peer), ("MemoryAgent.analyze_signal", full)):
        print(f"{label:<34}{np.percentile(ms, 50):>9.3f}{np.percentile(ms, 99):>9.3f}{ms.max():>9.3f}")
    p99 = float(np.percentile(full, 99))
    print(f"analyze_signal / neighbourhood at p50: {np.percentile(full, 50) / np.percentile(peer, 50):.2f}x")
    print(f"target p99 <= 5 ms with {n:,} decisions: {'MET' if p99 <= 5.0 else 'MISSED'} ({p99:.3f} ms)")
    agent.close()


if __name__ == "__main__":
    main()
