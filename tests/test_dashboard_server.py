"""The dashboard server over plain HTTP (no browser): its routes, /api/snapshot.json against
the stores of a real paper session, and the one-line errors of ``memlab dashboard``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from memlab.connectors import PaperBroker
from memlab.dashboard.server import VIEWS, view_of
from memlab.memory import MemoryStores
from tests.support.cli import one_line
from tests.support.dashboard import free_port, get, get_json, serve_dashboard, server_info

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-webhook-value-7f1c"  # in the server's environment; must never be served


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished paper session (real `memlab paper` on synthetic bars) in a memory folder."""
    root = tmp_path_factory.mktemp("session") / "mem"
    env = {k: v for k, v in os.environ.items() if k != "MEM_ENCRYPTION_KEY"} | {"MEM_MEMORY_PATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-m", "memlab.cli", "paper", "--symbol", "BTC/USDT", "--strategy", "sma_cross",
         "--synthetic", "2000", "--seed", "1", "--warmup", "200", "--sizing", "full", "--stop-loss", "0.05"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def base(session: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    os.environ["ALERTS_WEBHOOK_SECRET"] = SECRET
    try:
        with serve_dashboard(session, tmp_path_factory.mktemp("server")) as url:
            yield url
    finally:
        os.environ.pop("ALERTS_WEBHOOK_SECRET", None)


def test_the_url_names_the_view() -> None:
    assert [view_of(p, None) for p in ("/", "/dashboard", "/metrics", "/trades", "/memory")] == [
        "dashboard", "dashboard", "metrics", "trades", "memory"]
    assert [view_of("/", f"view={v}") for v in VIEWS] == list(VIEWS)
    assert view_of("/", "view=bogus") == view_of("/", "") == "dashboard"
    assert view_of("/trades", "view=memory") == "trades"  # the path wins


@pytest.mark.parametrize("path", ["", "dashboard", "metrics", "trades", "memory", "?view=trades", "?view=memory"])
def test_each_seed_url_serves_the_page(base: str, path: str) -> None:
    status, body = get(base + path)
    assert status == 200, body[:500]
    assert b"<html" in body.lower() and b"solara" in body.lower()


def _first_paint(body: bytes, css: str) -> list[dict[str, str]]:
    """The rows of the table with widget class ``css`` in a page's server-rendered first paint."""
    import html as html_mod
    import re

    page = body.decode()
    start = page.index('<div id="memlab-first">')
    part = page[start:page.index('<div id="app"', start)]
    table = part[part.index(f"memlab-first-{css.removeprefix('memlab-')}"):]
    table = table[:table.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", table[table.index("<tbody>"):], re.S) if "<tbody>" in table else []
    return [{c: html_mod.unescape(v) for c, v in re.findall(r'<td data-col="([^"]+)"[^>]*>(.*?)</td>', r, re.S)}
            for r in rows]


def test_a_page_carries_its_view_rendered_from_the_stores(base: str, session: Path) -> None:
    """Before Solara's scripts have loaded, a page already shows its view's tables, read from the
    stores and labelled as a snapshot; the live monitor's classes are not used by it."""
    with MemoryStores(session) as mem:
        stored = mem.decisions.recent(50)
    broker = PaperBroker(session)
    try:
        [pos] = broker.fetch_positions()
        open_ids = [str(o["id"]) for o in broker.fetch_open_orders()]
    finally:
        broker.close()
    for path in ("trades", "?view=trades"):
        status, body = get(base + path)
        assert status == 200 and b"A snapshot of the stores read at" in body
        decisions = _first_paint(body, "memlab-decisions")
        assert [r["reason"] for r in decisions] == stored["reason"].tolist()[::-1] != []
        assert [r["id"] for r in _first_paint(body, "memlab-open-orders")] == open_ids != []
        first = body[body.index(b'<div id="memlab-first">'):body.index(b'<div id="app"')]
        assert b'class="widget-html memlab-table memlab-decisions"' not in first  # only the live page has it
    status, body = get(base)
    [row] = _first_paint(body, "memlab-positions")
    assert (row["symbol"], float(row["quantity"])) == (pos["symbol"], pytest.approx(pos["contracts"], rel=1e-4))
    assert SECRET.encode() not in body


def test_an_unknown_url_is_not_found(base: str) -> None:
    assert get(base + "no-such-view")[0] == 404


def test_plotly_bundle_is_served_once_by_url(base: str) -> None:
    """Figures load plotly's widget bundle from here (cached by the browser), not from their state."""
    status, body = get(base + "_memlab/plotly-widget.js?v=1")
    assert status == 200 and len(body) > 1_000_000 and b"export" in body


def test_plotly_bundle_is_sent_compressed_and_cached_for_good(base: str) -> None:
    """What a browser gets: the bundle gzipped (compressed once by the server, not per request),
    kept by the browser for good (the URL carries plotly's version)."""
    import gzip
    import urllib.request

    import plotly

    bundle = (Path(plotly.__file__).parent / "package_data" / "widgetbundle.js").read_bytes()
    request = urllib.request.Request(base + f"_memlab/plotly-widget.js?v={plotly.__version__}",
                                     headers={"Accept-Encoding": "gzip, deflate, br"})
    for _ in range(2):
        with urllib.request.urlopen(request, timeout=30) as r:  # noqa: S310 - loopback only
            headers, body = r.headers, r.read()
        assert headers["Content-Encoding"] == "gzip" and len(body) < len(bundle) / 2
        assert gzip.decompress(body) == bundle
        assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert headers["Content-Type"].startswith("text/javascript")


def test_snapshot_json_is_what_the_stores_hold(base: str, session: Path) -> None:
    status, body = get(base + "api/snapshot.json")
    assert status == 200
    snap = json.loads(body, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))  # NaN → null
    assert SECRET.encode() not in body
    broker = PaperBroker(session)
    try:
        assert snap["balances"] == pytest.approx(broker.fetch_balance()["total"])
        [pos] = broker.fetch_positions()
        [shown] = snap["positions"]
        assert (shown["symbol"], shown["quantity"], shown["entry_price"]) == (
            pos["symbol"], pytest.approx(pos["contracts"]), pytest.approx(pos["entryPrice"], rel=1e-6))
        assert [o["id"] for o in snap["open_orders"]] == [int(o["id"]) for o in broker.fetch_open_orders()] != []
    finally:
        broker.close()
    with MemoryStores(session) as mem:
        stored = mem.decisions.recent(50)
    assert len(snap["decisions"]) == len(stored) > 5
    assert [d["reason"] for d in snap["decisions"]] == stored["reason"].tolist()[::-1]
    assert all(d["time"].endswith("+00:00") for d in snap["decisions"])  # market time, ISO UTC
    assert snap["trader"]["state"] == "finished" and snap["trader"]["alive"] is False
    assert snap["trader"]["heartbeat_at"].endswith("+00:00")
    assert snap["trader_live"] is False and snap["errors"] == []
    assert set(snap["health"]["connections"]) >= {"paper"}
    assert snap["memory_path"] == str(session.resolve())


def test_a_damaged_store_is_named_in_errors(tmp_path: Path) -> None:
    from memlab.dashboard.server import snapshot_json

    root = tmp_path / "mem"
    root.mkdir()
    (root / "paper_broker.sqlite").write_bytes(b"not a database" * 100)
    status, snap = snapshot_json(root)
    assert status == 200
    assert any(e.startswith(("positions", "orders", "balances")) for e in snap["errors"]), snap["errors"]


def test_a_missing_memory_folder_is_a_json_404(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with serve_dashboard(missing, tmp_path) as url:
        status, body = get_json(url + "api/snapshot.json")
        assert status == 404 and "does not exist" in body["error"] and body["memory_path"] == str(missing)
        status, page = get(url + "trades")  # the page still serves, and says nothing is there
        assert status == 200 and b"does not exist" in page[page.index(b'<div id="memlab-first">'):]
        assert server_info(url)["viewers"] == 0
    assert not missing.exists()  # read-only: nothing was created


def _dashboard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memlab.cli", "dashboard", "--no-browser", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_a_port_in_use_is_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _dashboard("--port", str(port))
    assert done.returncode == 1
    line = one_line(done)
    assert f"port {port}" in line and "in use" in line


@pytest.mark.parametrize("ip", ["10.255.255.254", "no-such-host.invalid"])
def test_an_ip_that_cannot_be_bound_is_one_line(ip: str) -> None:
    done = _dashboard("--port", str(free_port()), "--ip", ip)
    assert done.returncode == 2
    assert repr(ip) in one_line(done)
