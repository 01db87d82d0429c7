"""Dashboard refresh with 100,000 trades in history (target ≤ 1 s); prints figures.

Fills a paper_broker.sqlite with 100,000 round-trip orders/fills (200,000 fills) through
the broker's own schema, then times: the first refresh (reads every fill), a steady
refresh (nothing new), and a refresh after 100 new fills, against a peer in the same run:
reading the whole book through PaperBroker.fills().
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from memlab.connectors import PaperBroker
from memlab.dashboard.app import MonitorApp

N = 100_000


def fill_book(root: Path, n: int) -> PaperBroker:
    broker = PaperBroker(root, balances={"USD": 1e9})
    broker.add_market("SYN/USD")
    db = sqlite3.connect(root / "paper_broker.sqlite")
    rng = np.random.default_rng(7)
    t0 = 1.6e9
    orders, fills = [], []
    for i in range(n):
        t = t0 + i * 3600.0
        for k, side in enumerate(("buy", "sell")):
            oid = 2 * i + k + 1
            price = 100 + rng.normal()
            orders.append((oid, f"c{oid}", "SYN/USD", "market", side, 1.0, "closed", 1.0, price, 0.1, t, t))
            fills.append((oid, oid, t + k * 60, price, 1.0, 0.1, None if side == "buy" else float(rng.normal())))
    with db:
        db.executemany("INSERT INTO orders (id, client_id, symbol, type, side, amount, status, filled, average, fee, "
                       "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", orders)
        db.executemany("INSERT INTO fills (id, order_id, bar_time, price, amount, fee, pnl) VALUES (?,?,?,?,?,?,?)", fills)
    db.close()
    return broker


def timed(fn, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    root = Path(tempfile.mkdtemp()) / "mem"
    t = time.perf_counter()
    broker = fill_book(root, N)
    print(f"book: {N:,} round trips ({2 * N:,} orders and fills) in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    app = MonitorApp(root)
    print(f"first refresh (widgets built, every fill read):  {time.perf_counter() - t:.3f} s")
    steady = timed(app.refresh, 20)
    print(f"steady refresh (no new fills):   p50 {statistics.median(steady):.3f} s, max {max(steady):.3f} s")
    db = sqlite3.connect(root / "paper_broker.sqlite")
    base = 2 * N

    def add_and_refresh() -> None:
        nonlocal base
        with db:
            db.executemany("INSERT INTO fills (id, order_id, bar_time, price, amount, fee, pnl) VALUES (?,?,?,?,?,?,?)",
                           [(base + j + 1, 1, 2e9 + base + j, 100.0, 1.0, 0.1, 0.5) for j in range(100)])
        base += 100
        app.refresh()

    grow = timed(add_and_refresh, 10)
    print(f"refresh after 100 new fills:     p50 {statistics.median(grow):.3f} s, max {max(grow):.3f} s  (target ≤ 1 s)")
    peer = timed(broker.fills, 3)
    print(f"peer: PaperBroker.fills() of the whole book: p50 {statistics.median(peer):.3f} s")


if __name__ == "__main__":
    main()
