"""Executed notebooks read well after the run: their figures show in nbconvert's HTML (in a
real headless browser, offline) and no third-party warning or loader block is in an output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
NOISE = ("Warning", "WARNING", "BokehJS", "bokeh", "Traceback")


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import papermill as pm

    out = tmp_path_factory.mktemp("notebook") / "backtest.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "backtest.ipynb"), str(out), kernel_name="python3",
                        progress_bar=False, cwd=str(ROOT),
                        parameters={"symbol": "EURUSD", "grid": {"fast": [5, 10], "slow": [30, 50]}})
    return out


def test_no_output_carries_third_party_noise(executed: Path) -> None:
    cells = json.loads(executed.read_text())["cells"]
    noisy = []
    for n, cell in enumerate(cells):
        for out in cell.get("outputs", []):
            text = out.get("text") or "".join(str(v) for k, v in out.get("data", {}).items()
                                             if k in ("text/plain", "text/html") and "plotly" not in str(v)[:4000])
            text = "".join(text) if isinstance(text, list) else text
            if out.get("output_type") == "stream" and out.get("name") == "stderr" or any(w in text for w in NOISE):
                noisy.append((n, text[:200]))
    assert noisy == []


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed at /usr/bin/chromium")
def test_figures_show_in_the_exported_html_offline(executed: Path, tmp_path: Path) -> None:
    from nbconvert import HTMLExporter
    from playwright.sync_api import sync_playwright

    cells = json.loads(executed.read_text())["cells"]
    figures = sum("application/vnd.plotly.v1+json" in out.get("data", {})
                  for cell in cells for out in cell.get("outputs", []))
    assert figures >= 2  # the equity curve and the sweep heatmap
    body, _ = HTMLExporter().from_filename(str(executed))
    page_file = tmp_path / "backtest.html"
    page_file.write_text(body)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                       else route.abort())  # offline: nothing may come from a CDN
            page.goto(page_file.as_uri())
            page.wait_for_function("n => document.querySelectorAll('.js-plotly-plot .main-svg').length >= n",
                                   arg=figures, timeout=30_000)
            drawn = page.eval_on_selector_all(".js-plotly-plot", "els => els.map(e => (e.data || []).length)")
        finally:
            browser.close()
    assert len(drawn) == figures and all(traces > 0 for traces in drawn)
