"""Dashboard figures: refresh with 100,000 trades in history (target ≤ 0.5 s), and the server
(`memlab dashboard`) in a real headless Chromium: first load to data (target ≤ 2 s) and its
memory with 10 tabs (target ≤ 1.5 GB in all, back to idle within 60 s of closing them).

Part 1 fills a paper_broker.sqlite with 100,000 round-trip orders/fills (200,000 fills)
through the broker's own schema, then times: the first refresh (reads every fill), a
steady refresh (nothing new), and a refresh after 100 new fills, against a peer in the
same run: reading the whole book through PaperBroker.fills().

Part 2 runs a real paper session (2,000 synthetic bars), starts the server on it as a
subprocess on a free loopback port and drives /usr/bin/chromium with Playwright: the time
from navigation until the decisions table shows rows, in the server-rendered first paint and
in the live monitor (a new browser profile, then with the browser's cache warm), the first
screen (/) until its positions show (first paint, live) and until its price chart is drawn
(the figures follow the tables), and the server's RSS (psutil): idle,
with 10 tabs open, and each second after closing them, for 60 s. Prints figures, asserts nothing.
Run: .venv/bin/python benchmarks/dashboard_bench.py [--skip-refresh] [--skip-browser] [--skip-tabs]
(--skip-tabs: first loads only, not the 10 tabs' memory)
"""

from __future__ import annotations

import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
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


def refresh_bench() -> None:
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
    print(f"refresh after 100 new fills:     p50 {statistics.median(grow):.3f} s, max {max(grow):.3f} s  (target ≤ 0.5 s)")
    peer = timed(broker.fills, 3)
    print(f"peer: PaperBroker.fills() of the whole book: p50 {statistics.median(peer):.3f} s")


ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_info(base: str) -> dict:  # type: ignore[type-arg]
    import json

    with urllib.request.urlopen(base + "api/server.json", timeout=5) as r:  # noqa: S310 - loopback
        return json.loads(r.read())


def _until(condition, timeout: float, every: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not met")


def browser_bench() -> None:
    import psutil
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp())
    root = work / "mem"
    env = {k: v for k, v in os.environ.items() if k != "MEM_ENCRYPTION_KEY"} | {"MEM_MEMORY_PATH": str(root)}
    subprocess.run([sys.executable, "-m", "memlab.cli", "paper", "--symbol", "BTC/USDT", "--strategy", "sma_cross",
                    "--synthetic", "2000", "--seed", "1", "--warmup", "200", "--sizing", "full", "--stop-loss", "0.05"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    port = _free_port()
    base = f"http://127.0.0.1:{port}/"
    t = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "memlab.cli", "dashboard", "--port", str(port), "--memory-path",
                               str(root), "--no-browser"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up() -> bool:
            try:
                return bool(_server_info(base))
            except OSError:
                return False

        _until(up, 120)
        print(f"server start (imports, warm-up) to first answer: {time.perf_counter() - t:.1f} s")
        proc = psutil.Process(server.pid)

        def rss() -> float:
            return proc.memory_info().rss / 2**20

        print(f"server RSS idle (fresh): {rss():.0f} MB")
        rows = ".memlab-decisions table tbody tr"  # the live monitor's (its widgets)
        first_rows = ".memlab-first-decisions table tbody tr"  # the server-rendered first paint's
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])

            def first_load(context, path: str) -> tuple[float, float]:  # type: ignore[no-untyped-def]
                """Until the first paint shows the decisions, and until the live monitor does."""
                page = context.new_page()
                t = time.perf_counter()
                page.goto(base + path, wait_until="commit")
                page.wait_for_selector(f"{first_rows}, {rows}", timeout=120_000)
                first = time.perf_counter() - t
                page.wait_for_selector(rows, timeout=120_000)
                live = time.perf_counter() - t
                page.close()
                return first, live

            def first_screen(context) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
                """The dashboard view: until its positions show (first paint, then live), and until
                its price chart is drawn."""
                page = context.new_page()
                t = time.perf_counter()
                page.goto(base, wait_until="commit")
                page.wait_for_selector(".memlab-first-positions table tbody tr, .memlab-positions table tbody tr",
                                       timeout=120_000)
                first = time.perf_counter() - t
                page.wait_for_selector(".memlab-positions table tbody tr", timeout=120_000)
                live = time.perf_counter() - t
                page.wait_for_selector(".memlab-price-chart .js-plotly-plot", timeout=120_000)
                drawn = time.perf_counter() - t
                page.close()
                return first, live, drawn

            def p50(values: list[float]) -> str:
                return f"p50 {statistics.median(values):.2f} s ({', '.join(f'{v:.2f}' for v in values)})"

            cold = []
            for _ in range(5):  # a new profile each time: nothing cached
                context = browser.new_context(viewport={"width": 1440, "height": 900})
                cold.append(first_load(context, "trades"))
                context.close()
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            first_load(context, "trades")
            warm = [first_load(context, "trades") for _ in range(5)]
            context.close()
            print("first load to data (/trades until the decisions table shows rows; target ≤ 2 s):")
            print(f"  new profile: first paint (server-rendered) {p50([f for f, _ in cold])}; "
                  f"live monitor {p50([v for _, v in cold])}")
            print(f"  cache warm:  first paint (server-rendered) {p50([f for f, _ in warm])}; "
                  f"live monitor {p50([v for _, v in warm])}")
            screens = []
            for _ in range(3):
                fresh = browser.new_context(viewport={"width": 1440, "height": 900})
                screens.append(first_screen(fresh))
                fresh.close()
            print(f"first screen (/, new profile): positions in the first paint {p50([f for f, _, _ in screens])}; "
                  f"live {p50([v for _, v, _ in screens])}; price chart drawn {p50([d for _, _, d in screens])}")
            _until(lambda: _server_info(base)["viewers"] == 0, 60)
            for rnd in () if "--skip-tabs" in sys.argv else ("first", "second"):
                idle = rss()
                pages = []
                t = time.perf_counter()
                for v in ["", "dashboard", "metrics", "trades", "memory"] * 2:
                    page = context.new_page()
                    page.goto(base + v, wait_until="commit")
                    pages.append(page)
                for page in pages:
                    page.wait_for_selector(".memlab-banner div", state="attached", timeout=120_000)
                opened = time.perf_counter() - t
                _until(lambda: _server_info(base)["viewers"] == 10, 120)
                open_rss = rss()
                cpu = proc.cpu_percent(interval=None)
                time.sleep(5)
                cpu = proc.cpu_percent(interval=None)
                for page in pages:
                    page.close()
                closed = time.perf_counter()
                _until(lambda: _server_info(base)["viewers"] == 0, 60)
                freed = time.perf_counter() - closed
                trace = []
                back_at = None
                while time.perf_counter() - closed < 60:
                    r = rss()
                    trace.append(r)
                    if back_at is None and r <= idle + 40:
                        back_at = time.perf_counter() - closed
                    time.sleep(1)
                print(f"10 tabs, {rnd} round: all shown in {opened:.1f} s; server RSS idle {idle:.0f} MB, with 10 tabs "
                      f"{open_rss:.0f} MB (target ≤ 1536 MB in all), server CPU with 10 tabs {cpu:.0f} % of one core; "
                      f"pages freed {freed:.1f} s after closing; RSS 60 s after closing {trace[-1]:.0f} MB "
                      f"(min {min(trace):.0f}); within 40 MB of idle after "
                      f"{'never' if back_at is None else f'{back_at:.1f} s'}")
            context.close()
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    if "--skip-refresh" not in sys.argv:
        refresh_bench()
    if "--skip-browser" not in sys.argv:
        browser_bench()


if __name__ == "__main__":
    main()
