"""Point-in-time recall benchmark: similar-situation queries ``as_of`` a time, at 1M decisions.

    python benchmarks/recall_as_of_bench.py [--n 1000000] [--queries 1000]

Fills a store with N decisions, each with an outcome known a random 1-500 minutes after
it was made, then times the agent's query (k=30 nearest closed decisions of one strategy
and action) in three patterns:

- live: ``as_of`` after every decision (what live trading asks);
- replay: ``as_of`` walking forward through the last tenth of the store's history (a
  replay meeting a memory that already holds its own future: the case point-in-time
  recall exists for);
- random: ``as_of`` anywhere in the history (a tree per point in time; the worst case).

The peer in the same run is the same query without ``as_of`` (what recall cost before it
was point in time). Target (issue 11, 2-core machine): p99 <= 5 ms at 1M decisions.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from memlab.features import FEATURE_NAMES
from memlab.memory import Decision, DecisionStore, Outcome

STRATEGIES = ["momentum", "sma_cross", "rsi_reversion", "high_volatility"]


def fill(store: DecisionStore, n: int, rng: np.random.Generator, start: datetime) -> float:
    t0 = time.perf_counter()
    done = 0
    while done < n:
        m = min(100_000, n - done)
        x = rng.normal(size=(m, len(FEATURE_NAMES)))
        strat = rng.integers(0, len(STRATEGIES), m)
        act = rng.integers(0, 2, m)
        hold = rng.integers(1, 500, m)
        pnl = rng.normal(size=m)
        store.record_many(
            (Decision("BTCUSDT", STRATEGIES[strat[i]], "BUY" if act[i] else "SELL", 0.5,
                      features=dict(zip(FEATURE_NAMES, x[i].tolist(), strict=True)), agent_id="bench",
                      decided_at=start + timedelta(minutes=done + i),
                      outcome=Outcome(pnl=float(pnl[i]), return_pct=float(pnl[i]),
                                      closed_at=start + timedelta(minutes=done + i + int(hold[i]))))
             for i in range(m)),
            batch_size=10_000,
        )
        done += m
    return time.perf_counter() - t0


def percentiles(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    return f"p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms, max {ms.max():.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dir", default=None, help="where to put the store (default: a temp dir)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}")
    rng = np.random.default_rng(11)
    root = Path(args.dir or tempfile.mkdtemp(prefix="memlab-asof-")) / "mem"
    store = DecisionStore(root)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    if store.count() < args.n:
        print(f"filled {args.n:,} decisions with outcomes in {fill(store, args.n, rng, start):.1f} s")
    span = args.n * 60.0
    t0 = start.timestamp()
    queries = rng.normal(size=(args.queries, len(FEATURE_NAMES)))

    def run(label: str, as_of: list[float | None]) -> None:
        lat = []
        for q, when in zip(queries[: len(as_of)], as_of, strict=True):
            t = time.perf_counter()
            store.neighbourhood(q, 30, strategy="momentum", action="BUY", closed_only=True, as_of=when)
            lat.append(time.perf_counter() - t)
        print(f"{label:<52} {percentiles(lat)}")

    t = time.perf_counter()
    store.neighbourhood(queries[0], 30, strategy="momentum", action="BUY", closed_only=True)
    print(f"first query (loads the index, builds the tree): {time.perf_counter() - t:.2f} s")
    run("peer: no as_of (everything the store holds)", [None] * args.queries)
    run("live: as_of after every decision", [t0 + span + 3600.0] * args.queries)
    walk = np.linspace(t0 + 0.9 * span, t0 + span, args.queries)
    store.neighbourhood(queries[0], 30, strategy="momentum", action="BUY", closed_only=True, as_of=walk[0])
    run("replay: as_of walking through the last tenth", walk.tolist())
    few = max(args.queries // 10, 20)
    rand = (t0 + rng.uniform(0, span, args.queries)).tolist()
    run(f"random as_of anywhere ({few} queries)", rand[:few])


if __name__ == "__main__":
    main()
