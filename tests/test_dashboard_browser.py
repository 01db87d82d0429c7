"""In a real headless Chromium: the page Voilà serves shows the positions, trades and decisions the stores hold."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from memlab.dashboard.cli import NOTEBOOK, voila_command
from memlab.memory import MemoryStores

ROOT = Path(__file__).resolve().parents[1]
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


def _wait_rows(page, css: str, n: int) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function("([css, n]) => document.querySelectorAll(`.${css} table tbody tr`).length === n",
                           arg=[css, n], timeout=30_000)


def test_browser_shows_a_live_paper_session_as_the_stores_hold_it(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from memlab.connectors import PaperBroker

    root = tmp_path / "mem"
    port = _free_port()
    env = dict(os.environ, MEM_MEMORY_PATH=str(root))
    log = (tmp_path / "voila.log").open("wb")
    proc = subprocess.Popen(voila_command(port), env=env, cwd=NOTEBOOK.parent, stdout=log, stderr=subprocess.STDOUT)
    trader_log = (tmp_path / "trader.log").open("wb")
    trader = None
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_http(url, proc, time.monotonic() + 40)
        # A paper session on replayed bars, paced (~100 bars/s) so the page sees it running.
        trader = subprocess.Popen(
            [sys.executable, "-m", "memlab.cli", "paper", "--symbol", "BTC/USDT", "--strategy", "sma_cross",
             "--synthetic", "2000", "--seed", "1", "--warmup", "200", "--sizing", "full", "--stop-loss", "0.05",
             "--speed", "6000"], env=env, cwd=ROOT, stdout=trader_log, stderr=subprocess.STDOUT)
        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), args=ARGS, headless=True,
                viewport={"width": 1400, "height": 1000})
            try:
                page = browser.new_page()
                page.goto(url, timeout=60_000)
                page.wait_for_function("() => (document.querySelector('.memlab-banner') || {}).innerText"
                                       "?.includes('Trader running (pid')", timeout=60_000)
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
                                         f"voila log tail {(tmp_path / 'voila.log').read_bytes()[-2000:]!r}") from exc
                # The session is over, so the stores are final: wait until the page has caught
                # up with them (a refresh may still be on its way on a loaded machine).
                final = PaperBroker(root)
                with MemoryStores(root) as mem:
                    counts = {"decisions": len(mem.decisions.recent(50)), "open": len(final.fetch_open_orders()),
                              "fills": len(final.fills())}
                final.close()
                _wait_rows(page, "memlab-decisions", counts["decisions"])
                positions = _rows(page, "memlab-positions")
                decisions = _rows(page, "memlab-decisions")
                shot = tmp_path / "live_monitor.png"
                page.screenshot(path=str(shot), full_page=True)
                print(f"screenshot: {shot}")
                page.goto(url + "?view=trades", timeout=60_000)
                page.wait_for_selector(".memlab-open-orders table tbody tr td", timeout=60_000)
                _wait_rows(page, "memlab-open-orders", counts["open"])
                open_orders = _rows(page, "memlab-open-orders")
                closed = _rows(page, "memlab-orders")
                page.screenshot(path=str(tmp_path / "live_monitor_trades.png"), full_page=True)
                page.goto(url + "?view=metrics", timeout=60_000)
                page.wait_for_selector(".memlab-performance .memlab-card", timeout=60_000)
                page.wait_for_selector(".js-plotly-plot", timeout=30_000)
                page.wait_for_function("n => ((document.querySelector('.js-plotly-plot').data || [{}])[0].y || [])"
                                       ".length === n", arg=counts["fills"], timeout=30_000)
                plotted = page.eval_on_selector(".js-plotly-plot", "el => (el.data || [{}])[0].y || []")
                page.screenshot(path=str(tmp_path / "live_monitor_metrics.png"), full_page=True)
            finally:
                browser.close()
    finally:
        if trader is not None and trader.poll() is None:
            trader.kill()
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
        trader_log.close()

    assert "trader pid" in live_health and "process memory" in live_health
    assert "paper" in live_health and "up" in live_health  # the connection's state and latency, live
    broker = PaperBroker(root)
    [pos] = broker.fetch_positions()
    assert [(r["symbol"], float(r["quantity"]), float(r["entry_price"])) for r in positions] == [
        (pos["symbol"], pytest.approx(pos["contracts"]), pytest.approx(pos["entryPrice"], rel=1e-5))]
    with MemoryStores(root) as mem:
        stored = mem.decisions.recent(50)
    assert len(decisions) == len(stored) > 10
    assert [r["reason"] for r in decisions] == stored["reason"].tolist()[::-1]
    assert [r["action"] for r in decisions] == stored["action"].tolist()[::-1]
    assert [r["id"] for r in open_orders] == [o["id"] for o in broker.fetch_open_orders()] != []
    closed_book = [o for o in broker._db.execute("SELECT id FROM orders WHERE status != 'open' ORDER BY id DESC LIMIT 200")]
    assert sorted(r["id"] for r in closed) == sorted(str(i) for (i,) in closed_book)
    assert len(plotted) == len(broker.fills())  # the equity curve has one point per fill
    broker.close()
