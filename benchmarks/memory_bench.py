"""Memory-store benchmark: durable appends, similar-situation recall and full-text search.

    python benchmarks/memory_bench.py [--n 1000000] [--batch 10000] [--queries 1000]

Appends N decisions in batched durable commits (WAL, synchronous=FULL, hash chain,
FTS5 index, audit anchor per batch), then times k=20 nearest-situation recall and
full-text search over them. Prints figures; asserts nothing. Targets (issue 2, 2-core
machine): 1M appends <= 30 s; recall p99 <= 10 ms; search p99 <= 10 ms.

The peer for recall is a brute-force NumPy scan of the same vectors in the same run.
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
from memlab.memory import Decision, MemoryStores

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "EURUSD", "GOOG"]
STRATEGIES = ["momentum", "sma_cross", "rsi_reversion", "high_volatility"]
WORDS = [
    "breakout",
    "support",
    "resistance",
    "volume",
    "spike",
    "trend",
    "reversal",
    "oversold",
    "overbought",
    "squeeze",
    "divergence",
    "momentum",
    "pullback",
    "retest",
    "gap",
    "fade",
    "range",
    "compression",
    "expansion",
    "liquidity",
    "sweep",
    "wick",
    "rejection",
    "continuation",
    "exhaustion",
    "accumulation",
    "distribution",
    "regime",
    "calm",
    "storm",
    "news",
    "funding",
    "basis",
    "rollover",
]


def make_decisions(n: int, rng: np.random.Generator, start: datetime) -> list[Decision]:
    feats = rng.normal(size=(n, len(FEATURE_NAMES))).astype(np.float32)
    sym = rng.integers(0, len(SYMBOLS), n)
    strat = rng.integers(0, len(STRATEGIES), n)
    act = rng.integers(0, 2, n)
    conf = rng.uniform(0.3, 0.95, n)
    words = rng.integers(0, len(WORDS), (n, 4))
    out = []
    for i in range(n):
        reason = (
            f"{WORDS[words[i, 0]]} {WORDS[words[i, 1]]} near {int(100 + 50 * feats[i, 0])}; "
            f"{WORDS[words[i, 2]]} after {WORDS[words[i, 3]]}"
        )
        out.append(
            Decision(
                symbol=SYMBOLS[sym[i]],
                strategy=STRATEGIES[strat[i]],
                action="BUY" if act[i] else "SELL",
                confidence=float(conf[i]),
                reason=reason,
                features=dict(zip(FEATURE_NAMES, feats[i].tolist(), strict=True)),
                decided_at=start + timedelta(minutes=i),
                agent_id="bench",
            )
        )
    return out


def timed(call, items) -> list[float]:  # type: ignore[no-untyped-def]
    """Seconds each ``call(item)`` took."""
    out = []
    for item in items:
        t = time.perf_counter()
        call(item)
        out.append(time.perf_counter() - t)
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000.0, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dir", default=None, help="where to put the store (default: a temp dir)")
    parser.add_argument(
        "--reuse", action="store_true", help="query the store already in --dir; append nothing"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    root = Path(args.dir or tempfile.mkdtemp(prefix="memlab-bench-")) / "mem_knowledge"
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}"
    )
    print(f"store: {root}")

    mem = MemoryStores(root)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    gen_s = write_s = 0.0
    done = 0
    if args.reuse:
        done = args.n = mem.decisions.count()
        print(f"reusing {done:,} decisions")
    while done < args.n:
        n = min(args.batch * 10, args.n - done)
        t0 = time.perf_counter()
        batch = make_decisions(n, rng, start + timedelta(minutes=done))
        t1 = time.perf_counter()
        mem.decisions.record_many(batch, batch_size=args.batch)
        t2 = time.perf_counter()
        gen_s += t1 - t0
        write_s += t2 - t1
        done += n
    if not args.reuse:
        print(
            f"append: {args.n:,} decisions in {write_s:.1f} s ({args.n / write_s:,.0f}/s), "
            f"batched commits of {args.batch:,}; (generating them took {gen_s:.1f} s, not counted)"
        )
    size = sum(p.stat().st_size for p in root.iterdir() if p.is_file())
    print(f"store size: {size / 1e6:.0f} MB")

    queries = rng.normal(size=(args.queries, len(FEATURE_NAMES)))
    t0 = time.perf_counter()
    mem.decisions.nearest(queries[0], k=20)
    print(
        f"recall: first query (loads the index, builds the k-d tree) {time.perf_counter() - t0:.2f} s"
    )
    for label, kwargs in (
        ("all decisions", {}),
        ("strategy+action filter", {"strategy": "momentum", "action": "BUY"}),
    ):
        mem.decisions.nearest(queries[0], k=20, **kwargs)  # warm the filtered tree
        for shape, call in (
            ("DataFrame", mem.decisions.nearest),
            ("arrays", mem.decisions.neighbourhood),
        ):
            lat = timed(lambda q, call=call: call(q, k=20, **kwargs), queries)  # noqa: B023
            print(
                f"recall k=20 ({label}), {shape}: p50 {pct(lat, 50):.2f} ms, p99 {pct(lat, 99):.2f} ms"
            )

    # Peer: brute-force scan of the same standardised vectors, in this run.
    x = (
        mem.decisions.frame(limit=None)[list(FEATURE_NAMES)].to_numpy(np.float32)
        if args.n <= 200_000
        else None
    )
    if x is None:
        x = rng.normal(size=(args.n, len(FEATURE_NAMES))).astype(np.float32)
    lat = []
    for q in queries[:200]:
        t = time.perf_counter()
        d = ((x - q.astype(np.float32)) ** 2).sum(axis=1)
        np.argpartition(d, 20)[:20]
        lat.append(time.perf_counter() - t)
    print(
        f"peer (NumPy brute force over {args.n:,}): p50 {pct(lat, 50):.2f} ms, p99 {pct(lat, 99):.2f} ms"
    )

    for order, window in (("recent", None), ("relevance", 1000), ("relevance", None)):
        lat = []
        for i in range(args.queries):
            a, b = rng.integers(0, len(WORDS), 2)
            text = f"{WORDS[a]} {WORDS[b]}" if i % 2 else WORDS[a]
            t = time.perf_counter()
            mem.decisions.search(text, limit=20, order=order, window=window)
            lat.append(time.perf_counter() - t)
            if order == "relevance" and window is None and i >= 99:
                break  # bm25 over every match is slow at this size; 100 queries tell enough
        label = order if order == "recent" else f"relevance, window={window}"
        print(
            f"search ({label}, 1-2 words, limit 20, {len(lat)} queries): "
            f"p50 {pct(lat, 50):.2f} ms, p99 {pct(lat, 99):.2f} ms"
        )


if __name__ == "__main__":
    main()
