"""In a real headless Chromium, against the real dashboard server (one process for every viewer):
each seed URL shows what the stores of a live paper session hold, the page scrolls as a
whole, and closed tabs give back what they used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from memlab.memory import MemoryStores
from tests.support.dashboard import get, serve_dashboard, server_info, wait_until

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1440, "height": 900}
#: How far above its idle level the server's RSS may stay once 10 closed tabs are freed.
RSS_TOLERANCE_MB = 40
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed at /usr/bin/chromium "
                                                              "(make test installs it with apt)")
PAPER = ["--symbol", "BTC/USDT", "--strategy", "sma_cross", "--synthetic", "2000", "--seed", "1", "--warmup", "200",
         "--sizing", "full", "--stop-loss", "0.05"]


def _paper(root: Path, *extra: str, log: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "MEM_ENCRYPTION_KEY"} | {"MEM_MEMORY_PATH": str(root)}
    return subprocess.Popen([sys.executable, "-m", "memlab.cli", "paper", *PAPER, *extra], env=env, cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), args=ARGS, headless=True,
            viewport=VIEWPORT)
        try:
            yield context
        finally:
            context.close()


def _rows(page: Any, css: str) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        f".{css} table tbody tr",
        "trs => trs.map(tr => Object.fromEntries([...tr.querySelectorAll('td[data-col]')]"
        ".map(td => [td.dataset.col, td.textContent])))")


def _wait_rows(page: Any, css: str, n: int) -> None:
    page.wait_for_function("([css, n]) => document.querySelectorAll(`.${css} table tbody tr`).length === n",
                           arg=[css, n], timeout=30_000)


def _open(context: Any, url: str) -> Any:
    """A new tab on ``url``, once the monitor (its banner) is on it."""
    return _shown(_go(context, url))


def _go(context: Any, url: str) -> Any:
    """A new tab navigating to ``url`` (the monitor may not be on it yet)."""
    page = context.new_page()
    page.goto(url, timeout=60_000, wait_until="commit")
    return page


def _shown(page: Any) -> Any:
    page.wait_for_selector(".memlab-banner div", state="attached", timeout=90_000)
    # The server-rendered first paint gives way to the live monitor as soon as it shows.
    page.wait_for_selector("#memlab-first", state="detached", timeout=30_000)
    return page


def _selected_view(page: Any) -> str:
    return page.evaluate("() => [...document.querySelectorAll('.lm-TabBar-tab.lm-mod-current, "
                         ".p-TabBar-tab.p-mod-current')].map(e => e.innerText.trim()).join(',')")


def _inner_scrollers(page: Any) -> list[str]:
    """Elements that scroll vertically inside the page (a full-page screenshot would cut them)."""
    return page.evaluate(
        "() => [...document.querySelectorAll('body *')].filter(e => { const s = getComputedStyle(e);"
        " return ['auto', 'scroll'].includes(s.overflowY) && e.scrollHeight > e.clientHeight + 2; })"
        ".map(e => `${e.tagName}.${e.className} ${e.scrollHeight}/${e.clientHeight}`)")


def test_each_seed_url_shows_a_live_paper_session_as_the_stores_hold_it(tmp_path: Path, browser: Any) -> None:
    from memlab.connectors import PaperBroker
    from memlab.memory.core_memory import read_core_memory

    root = tmp_path / "mem"
    trader_log = (tmp_path / "trader.log").open("wb")
    trader = None
    with serve_dashboard(root, tmp_path) as base:
        try:
            # A paper session on replayed bars, paced (~100 bars/s) so the page sees it running.
            trader = _paper(root, "--speed", "6000", log=trader_log)
            page = _open(browser, base)
            # The banner and the health panel are two widgets, updated by one refresh but sent
            # to the browser one after the other: wait for both.
            page.wait_for_function("() => document.querySelector('.memlab-banner').innerText"
                                   ".includes('Trader running (pid') && ['trader pid', 'process memory', 'paper', "
                                   "'up'].every(w => document.querySelector('.memlab-health').innerText.includes(w))",
                                   timeout=60_000)
            live_health = page.inner_text(".memlab-health")
            page.screenshot(path=str(tmp_path / "live_monitor_running.png"), full_page=True)
            assert trader.wait(120) == 0
            try:
                page.wait_for_function("() => document.querySelector('.memlab-banner').innerText"
                                       ".includes('Trader not running (finished)')", timeout=30_000)
            except Exception as exc:  # say what the page and the stores showed instead
                status = (root / "trader_status.json").read_text() if (root / "trader_status.json").exists() else None
                raise AssertionError(f"the page missed the end of the session: banner "
                                     f"{page.inner_text('.memlab-banner')!r}; trader_status.json {status!r}; "
                                     f"server log tail {(tmp_path / 'dashboard.log').read_bytes()[-2000:]!r}") from exc
            # The session is over, so the stores are final.
            broker = PaperBroker(root)
            with MemoryStores(root) as mem:
                stored = mem.decisions.recent(50)
            positions = [(p["symbol"], p["contracts"], p["entryPrice"]) for p in broker.fetch_positions()]
            open_ids = [str(o["id"]) for o in broker.fetch_open_orders()]
            closed_ids = sorted(str(i) for (i,) in broker._db.execute(
                "SELECT id FROM orders WHERE status != 'open' ORDER BY id DESC LIMIT 200"))
            fills = len(broker.fills())
            broker.close()
            blocks = sorted(read_core_memory(root))

            # The first screen, at 1440×900: every part of the page in one full-page shot.
            _wait_rows(page, "memlab-positions", len(positions))
            assert _inner_scrollers(page) == []
            shot = tmp_path / "live_monitor.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")
            page.close()

            shown: dict[str, Any] = {}
            for path, view in [("", "dashboard"), ("dashboard", "dashboard"), ("metrics", "metrics"),
                               ("trades", "trades"), ("memory", "memory"), ("?view=trades", "trades")]:
                page = _open(browser, base + path)
                assert _selected_view(page) == view, path
                if view == "dashboard":
                    assert page.is_visible(".memlab-positions")
                    _wait_rows(page, "memlab-positions", len(positions))
                    shown[path] = {"positions": _rows(page, "memlab-positions")}
                    # The figures follow the tables (built once the page has shown them).
                    page.wait_for_selector(".memlab-price-chart .js-plotly-plot", timeout=30_000)
                elif view == "trades":
                    assert page.is_visible(".memlab-decisions") and page.is_visible(".memlab-open-orders")
                    _wait_rows(page, "memlab-decisions", len(stored))
                    _wait_rows(page, "memlab-open-orders", len(open_ids))
                    shown[path] = {"decisions": _rows(page, "memlab-decisions"),
                                   "open": _rows(page, "memlab-open-orders"), "closed": _rows(page, "memlab-orders")}
                    # No view here has a figure: none is built until one that has is selected.
                    assert page.query_selector(".js-plotly-plot") is None
                elif view == "metrics":
                    assert page.is_visible(".memlab-performance")
                    page.wait_for_function("n => ((document.querySelector('.js-plotly-plot') || {}).data || [{}])[0]"
                                           "?.y?.length === n", arg=fills, timeout=30_000)
                    shown[path] = {"plotted": page.eval_on_selector(".js-plotly-plot", "el => el.data[0].y.length")}
                else:
                    assert page.is_visible(".memlab-core-memory") and page.is_visible(".memlab-journal")
                    _wait_rows(page, "memlab-core-memory", len(blocks))
                    shown[path] = {"blocks": _rows(page, "memlab-core-memory")}
                assert _inner_scrollers(page) == [], path
                page.screenshot(path=str(tmp_path / f"live_monitor_{path.strip('?').replace('=', '_') or 'root'}.png"),
                                full_page=True)
                if path == "trades":  # selecting a view with figures builds them
                    page.click(".lm-TabBar-tab >> text=dashboard")
                    page.wait_for_selector(".memlab-price-chart .js-plotly-plot", timeout=30_000)
                page.close()

            status, body = get(base + "api/snapshot.json")
            snap = json.loads(body)
        finally:
            if trader is not None and trader.poll() is None:
                trader.kill()
            trader_log.close()

    assert "trader pid" in live_health and "process memory" in live_health
    assert "paper" in live_health and "up" in live_health  # the connection's state and latency, live
    assert len(positions) == 1
    for path in ("", "dashboard"):
        assert [(r["symbol"], float(r["quantity"]), float(r["entry_price"])) for r in shown[path]["positions"]] == [
            (s, pytest.approx(q), pytest.approx(e, rel=1e-5)) for s, q, e in positions]
    assert len(stored) > 10
    for path in ("trades", "?view=trades"):
        assert [r["reason"] for r in shown[path]["decisions"]] == stored["reason"].tolist()[::-1]
        assert [r["action"] for r in shown[path]["decisions"]] == stored["action"].tolist()[::-1]
        assert [r["id"] for r in shown[path]["open"]] == open_ids != []
        assert sorted(r["id"] for r in shown[path]["closed"]) == closed_ids
    assert shown["metrics"]["plotted"] == fills  # the equity figure's realised curve: one point per fill
    assert sorted(r["block"] for r in shown["memory"]["blocks"]) == blocks != []
    # /api/snapshot.json over plain HTTP: the same stores.
    assert status == 200
    assert [d["reason"] for d in snap["decisions"]] == stored["reason"].tolist()[::-1]
    assert [str(o["id"]) for o in snap["open_orders"]] == open_ids
    assert [(p["symbol"], p["quantity"]) for p in snap["positions"]] == [(s, pytest.approx(q)) for s, q, _ in positions]
    assert snap["trader"]["state"] == "finished"


def test_the_first_paint_shows_the_stores_before_the_live_monitor_loads(tmp_path: Path, browser: Any) -> None:
    """With Solara's scripts held back (a slow network, a busy browser), a page still shows its
    view as the stores hold it, rendered by the server and labelled as a snapshot."""
    root = tmp_path / "mem"
    assert _paper(root).wait(300) == 0
    with MemoryStores(root) as mem:
        stored = mem.decisions.recent(50)
    with serve_dashboard(root, tmp_path) as base:
        page = browser.new_page()
        page.route("**/solara-vuetify-app*.js", lambda route: route.abort())
        page.goto(base + "trades", timeout=60_000)
        shown = _rows(page, "memlab-first-decisions")
        assert [r["reason"] for r in shown] == stored["reason"].tolist()[::-1] != []
        assert page.is_visible(".memlab-first-decisions") and "A snapshot of the stores read at" in page.inner_text("body")
        assert page.query_selector(".memlab-decisions") is None  # the live monitor never came
        page.screenshot(path=str(tmp_path / "first_paint_trades.png"), full_page=True)
        page.close()


def test_ten_tabs_share_one_process_and_closing_them_frees_it(tmp_path: Path, browser: Any) -> None:
    root = tmp_path / "mem"
    assert _paper(root).wait(300) == 0  # a finished session to show
    urls = ["", "dashboard", "metrics", "trades", "memory"] * 2
    with serve_dashboard(root, tmp_path) as base:
        server = psutil.Process(server_info(base)["pid"])

        def rss_mb() -> float:
            return server.memory_info().rss / 2**20

        def ten_tabs() -> tuple[float, float]:
            """Open 10 tabs, then close them: (RSS with them open, when they were closed)."""
            pages = [_shown(p) for p in [_go(browser, base + u) for u in urls]]  # loading side by side
            wait_until(lambda: server_info(base)["viewers"] == 10, 30, "10 viewers")
            assert server.children(recursive=True) == []  # no kernel process per page
            total = rss_mb()
            for page in pages:
                page.close()
            closed = time.monotonic()
            wait_until(lambda: server_info(base)["viewers"] == 0, 60, "every closed tab to be freed")
            return total, closed

        # The first round pays what a process pays once (imports, caches, the allocator's high
        # water mark); idle is the level after it.
        first, _ = ten_tabs()
        idle = rss_mb()
        with_ten, closed = ten_tabs()
        back = wait_until(lambda: (lambda r: r if r <= idle + RSS_TOLERANCE_MB else None)(rss_mb()),
                          max(0.0, 60 - (time.monotonic() - closed)), "RSS back to its idle level", every=0.5)
        freed_in = time.monotonic() - closed
    print(f"server RSS: 10 tabs (first round) {first:.0f} MB, idle {idle:.0f} MB, 10 tabs {with_ten:.0f} MB, "
          f"{freed_in:.1f} s after closing them {back:.0f} MB")
    assert with_ten <= 1536 and first <= 1536
