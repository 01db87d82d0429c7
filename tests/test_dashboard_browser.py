"""In a real headless Chromium: the page Voilà serves shows the positions, trades and decisions the stores hold."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from test_dashboard import seed_session  # tests/ is on sys.path (rootdir-less test modules)

from memlab.dashboard.cli import NOTEBOOK, voila_command
from memlab.memory import MemoryStores

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed at /usr/bin/chromium "
                                                              "(make test installs it with apt)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"voila exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url.rstrip("/") + "/voila/static/voila.js", timeout=2)  # noqa: S310 - loopback
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"voila did not answer on {url}")


def _rows(page, css: str) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    return page.eval_on_selector_all(
        f".{css} table tbody tr",
        "trs => trs.map(tr => Object.fromEntries([...tr.querySelectorAll('td[data-col]')]"
        ".map(td => [td.dataset.col, td.textContent])))",
    )


def test_browser_shows_what_the_stores_hold(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    root = tmp_path / "mem"
    broker = seed_session(root)
    port = _free_port()
    env = dict(os.environ, MEM_MEMORY_PATH=str(root))
    log = (tmp_path / "voila.log").open("wb")
    proc = subprocess.Popen(voila_command(port), env=env, cwd=NOTEBOOK.parent, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_http(url, proc, time.monotonic() + 40)
        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), args=ARGS, headless=True,
                viewport={"width": 1400, "height": 1000})
            try:
                page = browser.new_page()
                page.goto(url, timeout=60_000)
                page.wait_for_selector(".memlab-positions table tbody tr td", timeout=60_000)
                positions = _rows(page, "memlab-positions")
                decisions = _rows(page, "memlab-decisions")
                banner = page.inner_text(".memlab-banner")
                shot = tmp_path / "live_monitor.png"
                page.screenshot(path=str(shot), full_page=True)
                print(f"screenshot: {shot}")
                page.goto(url + "?view=trades", timeout=60_000)
                page.wait_for_selector(".memlab-open-orders table tbody tr td", timeout=60_000)
                open_orders = _rows(page, "memlab-open-orders")
                closed = _rows(page, "memlab-orders")
                page.screenshot(path=str(tmp_path / "live_monitor_trades.png"), full_page=True)
                page.goto(url + "?view=metrics", timeout=60_000)
                page.wait_for_selector(".memlab-performance .memlab-card", timeout=60_000)
                page.wait_for_selector(".js-plotly-plot", timeout=30_000)
                plotted = page.eval_on_selector(".js-plotly-plot", "el => (el.data || [{}])[0].y || []")
                page.screenshot(path=str(tmp_path / "live_monitor_metrics.png"), full_page=True)
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()

    [pos] = broker.fetch_positions()
    assert [(r["symbol"], float(r["quantity"]), float(r["entry_price"])) for r in positions] == [
        (pos["symbol"], pytest.approx(pos["contracts"]), pytest.approx(pos["entryPrice"], rel=1e-5))]
    with MemoryStores(root) as mem:
        stored = mem.decisions.recent(50)
    assert [r["reason"] for r in decisions] == stored["reason"].tolist()[::-1]
    assert [r["action"] for r in decisions] == stored["action"].tolist()[::-1]
    assert [r["id"] for r in open_orders] == [o["id"] for o in broker.fetch_open_orders()]
    assert sorted(r["id"] for r in closed) == sorted(
        str(i) for i in range(1, 4))  # the three market orders, all filled
    fills = broker.fills()
    assert len(plotted) == len(fills)  # the equity curve has one point per fill
    assert "Trader not running" in banner or "Trader running" in banner
    broker.close()
