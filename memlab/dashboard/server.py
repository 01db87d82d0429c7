"""Serve the live monitor to any number of browsers from one process (Solara + Starlette + uvicorn).

``memlab dashboard`` runs :func:`serve`: one Python process holds every viewer's widgets.
Each browser page gets a Solara *virtual kernel* (not a Jupyter kernel process): its own
:class:`~memlab.dashboard.app.MonitorApp` (ipywidgets + plotly), refreshed by a thread
of this process.

A page's first load is kept short: the request for the page starts reading the stores
while the browser loads Solara's scripts, and that read serves every page that opens
while the stores do not change (:class:`_FirstRead`); the page gets its tables and
numbers first and its figures once it says it has shown them, and only on a view that has
figures (``MonitorApp(defer_figures=True)``: plotly's 5 MB bundle, which the browser must
load before it handles any message to a figure, no longer holds the tables back); and
that bundle is compressed once per process and cached by the browser for good. A page that is closed frees what it used: the browser's close beacon
closes its virtual kernel at once; a page that vanished without one (a killed browser,
a lost network) is culled :data:`CULL_TIMEOUT` after its websocket dropped. Closing stops
the page's refresher and closes its widgets.

Routes::

    /  /dashboard  /metrics  /trades  /memory     the monitor on that view (/?view=trades works too)
    /api/snapshot.json                           what the stores hold, as JSON (read-only; 404 + {"error"}
                                                 when the memory folder does not exist)
    /api/server.json                             this server: open pages (viewers) and resident memory

The page's assets come from the installed ``solara-assets`` package (no CDN at run time)
and Solara's telemetry is switched off.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import gzip
import html
import json
import logging
import math
import os
import socket
import sys
import threading
import time
import warnings
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from memlab.dashboard.app import MonitorApp

log = logging.getLogger(__name__)

VIEWS = ("dashboard", "metrics", "trades", "memory")
#: How long a page whose websocket dropped (without the close beacon) keeps its virtual kernel.
CULL_TIMEOUT = "20s"
#: Seconds between refreshes of each page.
INTERVAL = 1.0
#: The env var that carries the memory folder to the Solara app (it is imported by Solara).
MEMORY_ENV = "MEM_MEMORY_PATH"

#: Full-page layout: the document scrolls, never an inner container, so a browser's
#: full-page screenshot captures everything.
PAGE_CSS = """
html, body, #app, .v-application, .v-application--wrap, .v-main, .v-main__wrap, .v-content, .v-content__wrap,
.solara-autorouter-content, .jupyter-widgets, .widget-box, .widget-tab, .widget-tab-contents {
    height: auto !important; max-height: none !important; overflow: visible !important;
}
.v-application--wrap { min-height: 0 !important; }
.memlab-page { padding: 8px 16px; max-width: 100%; }
.memlab-page .widget-tab > .p-TabBar, .memlab-page .widget-tab > .lm-TabBar { overflow: visible; }
"""


class ServeError(Exception):
    """The address cannot be served: ``code`` 2 for a usage mistake (an --ip that is not
    this machine's), 1 for the machine's state (port in use, permission denied)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# -- what each page runs ---------------------------------------------------------------------
_viewers: dict[int, _Viewer] = {}
_viewers_lock = threading.Lock()


class _Viewer:
    """One page's monitor: the app, the thread that refreshes it, and how to free both."""

    def __init__(self, app: MonitorApp, context: Any, interval: float) -> None:
        self.app, self.context, self.interval = app, context, interval
        self._stop = threading.Event()
        self._wake = threading.Event()  # refresh now: deferred figures became due, or closing
        app.on_figures_due = self._wake.set
        self._thread = threading.Thread(target=self._run, name=f"memlab-refresh-{id(self):x}", daemon=True)

    def start(self) -> None:
        with _viewers_lock:
            _viewers[id(self)] = self
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                data = self.app.read()
                if self._stop.is_set():
                    return
                before = _walk(self.app.widget)
                with self.context:  # widgets made by show() (a new figure) belong to this page
                    self.app.show(*data)
                    # A widget show() replaced (a figure redrawn as a new one) would stay
                    # registered, and in memory, until the page closes: close it now.
                    shown = {id(w) for w in _walk(self.app.widget)}
                    for w in before:
                        if id(w) not in shown:
                            w.close()
            except Exception as exc:  # noqa: BLE001 - keep refreshing; say what failed on the page
                if self._stop.is_set():
                    return
                log.warning("refresh failed: %r", exc)
                try:
                    with self.context:
                        self.app.banner.value = (f'<div class="memlab-banner-stale">refresh failed: '
                                                 f"{html.escape(repr(exc))}</div>")
                except Exception:  # noqa: BLE001 - the page is closing
                    log.debug("page closed during a refresh")

    def close(self) -> None:
        """Stop refreshing and close every widget of the page (the page is gone)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self.app.stop()
        with self.context:
            for w in _walk(self.app.widget):
                w.close()
        with _viewers_lock:
            _viewers.pop(id(self), None)
        gc.collect()
        _trim_heap()


def _walk(widget: Any) -> list[Any]:
    """``widget`` and every widget under it (children of boxes and tabs, and the layout and
    style widgets each of them has), each once."""
    import ipywidgets

    out, seen, todo = [], set(), [widget]
    while todo:
        w = todo.pop()
        if id(w) in seen or not isinstance(w, ipywidgets.Widget):
            continue
        seen.add(id(w))
        out.append(w)
        todo.extend(getattr(w, "children", ()) or ())
        todo.extend(getattr(w, name, None) for name in ("layout", "style"))
    return out


def _trim_heap() -> None:
    """Give freed memory back to the OS (glibc keeps it otherwise), so RSS shows what is in use."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


class _FirstRead:
    """What a new page shows first (every store read from the start), shared by the pages
    that open while it is fresh: read again only when a file of the memory folder changed
    (its size or mtime) and the last read is older than :data:`INTERVAL`, or that read is
    older than :data:`FIRST_READ_MAX_AGE`. A page is thus built without reading the stores
    when another page read them recently; what changed since, its first refresh reads (the
    refresh reads only what is newer than what the page shows). Pages asked for at once share
    one read: the others wait for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reading: Any = None
        self._key: tuple[Any, ...] | None = None
        self._at = -math.inf

    def get(self, root: Path) -> Any:
        """:func:`~memlab.dashboard.app.read_stores` of ``root`` from the start (shared; read-only)."""
        from memlab.dashboard.app import read_stores

        with self._lock:
            key, age = _files_key(root), time.monotonic() - self._at
            if self._reading is None or age > FIRST_READ_MAX_AGE or (key != self._key and age > INTERVAL):
                # The key from before the read: a write during it changes the key, so the next page reads again.
                self._key, self._at = key, time.monotonic()
                self._reading = read_stores(root)
            return self._reading

    def read_ahead(self, root: Path) -> None:
        """Start the read in the background (a page was requested: its websocket, which asks
        for the monitor, comes once the browser has loaded the page's scripts)."""
        threading.Thread(target=self._read_quietly, args=(root,), name="memlab-read-ahead", daemon=True).start()

    def _read_quietly(self, root: Path) -> None:
        try:
            self.get(root)
        except Exception as exc:  # noqa: BLE001 - the page reads again and shows what failed
            log.warning("read-ahead failed: %r", exc)


class _FirstPaint:
    """The static first paint of each view (:mod:`memlab.dashboard.prerender`) for the shared
    first read: built once per read and view (a monitor in a throw-away virtual kernel),
    shared by every page that opens meanwhile."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: dict[str, str] = {}
        self._of: Any = None

    def get(self, root: Path, view: str) -> str:
        from solara.server import kernel_context

        from memlab.dashboard.app import MonitorApp
        from memlab.dashboard.prerender import page_html

        reading = _first_read.get(root)
        with self._lock:
            if self._of is not reading:
                self._of, self._made = reading, {}
            if view not in self._made:
                context = kernel_context.create_dummy_context()
                try:
                    with context:
                        app = MonitorApp(root, view=view, interval=INTERVAL, defer_figures=True, first_read=reading)
                        self._made[view] = page_html(app, reading[0].read_at)
                        for w in _walk(app.widget):
                            w.close()
                finally:
                    context.close()
            return self._made[view]


def _files_key(root: Path) -> tuple[Any, ...]:
    """The files of the memory folder with their size and mtime: changes when a store is written."""
    try:
        return tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(root)
                            if e.is_file()))
    except OSError:
        return ()


#: Seconds a shared first read serves new pages while the stores do not change (the heartbeat
#: of a running trader changes them every second; a stopped one's state is read again after this).
FIRST_READ_MAX_AGE = 30.0
_first_read = _FirstRead()
_first_paint = _FirstPaint()


def viewers() -> int:
    """How many pages are open (each with its MonitorApp and refresher)."""
    with _viewers_lock:
        return len(_viewers)


def view_of(path: str, search: str | None) -> str:
    """The view a URL asks for: ``/trades`` → trades, ``/?view=metrics`` → metrics, else dashboard."""
    from urllib.parse import parse_qs

    part = path.strip("/").split("/")[0]
    if part in VIEWS:
        return part
    view = parse_qs(search or "").get("view", ["dashboard"])[0]
    return view if view in VIEWS else "dashboard"


def _memory_root() -> Path:
    from memlab.config import memory_path

    return Path(memory_path(os.environ.get(MEMORY_ENV) or None))


# -- the Solara app (imported by Solara as SOLARA_APP) ----------------------------------------
def _solara_app() -> tuple[Any, list[Any]]:
    import solara
    import solara.server.kernel_context as kernel_context

    @solara.component
    def Monitor() -> None:
        router = solara.use_router()
        view = view_of(router.path, router.search)

        def open_app() -> _Viewer:
            from memlab.dashboard.app import MonitorApp

            started = time.perf_counter()
            # Figures wait until the page has shown its tables (see MonitorApp's defer_figures),
            # and the stores are read once for the pages that open together (_FirstRead).
            root = _memory_root()
            app = MonitorApp(root, view=view, interval=INTERVAL, defer_figures=True, first_read=_first_read.get(root))
            log.info("page %s: monitor built in %.2f s", view, time.perf_counter() - started)
            return _Viewer(app, kernel_context.get_current_context(), INTERVAL)

        viewer = solara.use_memo(open_app, dependencies=[view])

        def lifecycle() -> Callable[[], None]:
            viewer.start()
            return viewer.close

        solara.use_effect(lifecycle, dependencies=[viewer])
        with solara.Column(classes=["memlab-page"]):
            solara.Title(f"memlab monitor · {view}")
            solara.Style(PAGE_CSS)
            solara.display(viewer.app.widget)

    @solara.component
    def Layout(children: list[Any] = []) -> Any:  # noqa: B006 - Solara's layout signature
        return solara.Column(children=children, style={"padding": "0"})

    # The root route's layout wraps every sibling route (Solara's AppLayout otherwise: a
    # toolbar of routes and an inner scrolling container).
    routes = [solara.Route(path="/", component=Monitor, layout=Layout)]
    routes += [solara.Route(path=v, component=Monitor) for v in VIEWS]
    return Layout, routes


_app_parts: tuple[Any, list[Any]] | None = None


def __getattr__(name: str) -> Any:
    """``routes`` and ``Layout``, which Solara reads from this module, built on first use
    (so importing the module does not import Solara)."""
    global _app_parts
    if name in ("routes", "Layout"):
        if _app_parts is None:
            _app_parts = _solara_app()
        return _app_parts[1] if name == "routes" else _app_parts[0]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- JSON for scripts ------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    """Plain JSON: timestamps as ISO UTC, NaN/NaT as null, frames as lists of records."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, pd.DataFrame):
        frame = value.reset_index() if not isinstance(value.index, pd.RangeIndex) else value
        return [_jsonable(r) for r in frame.to_dict(orient="records")]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else (value.tz_localize("UTC") if value.tzinfo is None
                                            else value.tz_convert("UTC")).isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, int | str | bool):
        return value
    if value is pd.NaT or (not isinstance(value, list | dict) and _isna(value)):
        return None
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _isna(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


_WALL_CLOCK = ("heartbeat_at", "started_at", "since", "last_success", "last_error_at")


def _wall_times(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """Epoch seconds (heartbeats, connection health) as ISO UTC."""
    if record is None:
        return None
    out = dict(record)
    for key in _WALL_CLOCK:
        v = out.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[key] = pd.Timestamp(float(v), unit="s", tz="UTC").isoformat()
    return out


def _json_or_text(value: Any) -> Any:
    """A decision's evidence: the JSON object it holds, else its text."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def snapshot_json(root: str | os.PathLike[str]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for ``/api/snapshot.json``: balances, positions, open orders,
    recent decisions, trader status, health and errors of the memory folder ``root``.
    Only what the monitor shows; no secret is read (no keys, no webhook secrets)."""
    from memlab.dashboard.snapshot import read_snapshot

    root = Path(root)
    if not root.is_dir():
        return 404, {"error": f"memory folder {str(root)!r} does not exist", "memory_path": str(root)}
    snap = read_snapshot(root, fills=False, equity=False)
    orders = snap.orders
    open_orders = None if orders is None else orders[orders["status"] == "open"]
    connections = (snap.connections or {}).get("connections")
    decisions = snap.decisions
    if decisions is not None and "evidence" in decisions:
        decisions = decisions.assign(evidence=[_json_or_text(v) for v in decisions["evidence"]])
    body = {
        "memory_path": str(snap.memory_path),
        "read_at": snap.read_at, "last_write": snap.last_write, "trader_live": snap.trader_live,
        "trader": _wall_times(snap.trader),
        "balances": snap.balances,
        "positions": snap.positions,
        "open_orders": open_orders,
        "decisions": decisions,
        "health": {"connections": None if connections is None else
                   {name: _wall_times(c) for name, c in connections.items()},
                   "alert_deliveries": snap.deliveries},
        "errors": snap.errors,
    }
    return 200, _jsonable(body)


# -- the server ------------------------------------------------------------------------------
def _configure_solara() -> None:
    """Solara reads its settings from the environment when first imported."""
    os.environ["SOLARA_APP"] = __name__
    os.environ.setdefault("SOLARA_KERNEL_CULL_TIMEOUT", CULL_TIMEOUT)
    os.environ.setdefault("SOLARA_TELEMETRY_MIXPANEL_ENABLE", "False")
    os.environ.setdefault("SOLARA_THEME_SHOW_BANNER", "False")
    os.environ.setdefault("SOLARA_MODE", "production")


def create_app(memory_path: str | os.PathLike[str] | None = None) -> Starlette:
    """The ASGI app: Solara's routes (the monitor's pages) plus the JSON API."""
    from memlab.config import memory_path as _memory_path

    os.environ[MEMORY_ENV] = str(Path(_memory_path(memory_path)).resolve())
    _configure_solara()
    import solara.server.starlette as solara_starlette

    _load_plotly_js_by_url()
    _warm_up(_memory_root())
    plotly_gz = _plotly_js_gzip()
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    def plotly_js(request: Request) -> Response:
        # The URL carries plotly's version, so its content never changes: cached for good.
        headers = {"Cache-Control": "public, max-age=31536000, immutable", "Vary": "Accept-Encoding"}
        if "gzip" not in request.headers.get("accept-encoding", ""):
            return FileResponse(_plotly_js_path(), media_type="text/javascript", headers=headers)
        # Compressed once, at start-up: the GZip middleware would compress its 5 MB on the
        # event loop for every browser that has not cached it (~1 s, every page stalled meanwhile).
        return Response(plotly_gz, media_type="text/javascript", headers=headers | {"Content-Encoding": "gzip"})

    def snapshot(request: Request) -> JSONResponse:
        status, body = snapshot_json(_memory_root())
        return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})

    def server(request: Request) -> JSONResponse:
        from memlab.trader.status import rss_mb

        return JSONResponse({"viewers": viewers(), "pid": os.getpid(), "rss_mb": round(rss_mb(), 1),
                             "memory_path": str(_memory_root())}, headers={"Cache-Control": "no-store"})

    routes = [Route("/api/snapshot.json", snapshot), Route("/api/server.json", server), Route(PLOTLY_JS, plotly_js),
              *solara_starlette.routes]
    return Starlette(routes=routes, lifespan=solara_starlette.lifespan,
                     middleware=[Middleware(_ReadAhead), *solara_starlette.middleware, Middleware(_WithFirstPaint)])


class _ReadAhead:
    """ASGI middleware: a GET of a page (``/``, ``/trades``...) starts reading the stores for
    it (:meth:`_FirstRead.read_ahead`) while the browser loads the page's scripts."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("method") == "GET" and \
                scope.get("path", "").strip("/") in ("", *VIEWS):
            _first_read.read_ahead(_memory_root())
        await self.app(scope, receive, send)


class _WithFirstPaint:
    """ASGI middleware (inside Solara's, so it sees the page uncompressed): a page's HTML gets
    :data:`~memlab.dashboard.prerender.BOOT` before Solara's ``#app``, which shows the
    server-rendered first paint until the live monitor is on screen."""

    MARK = b'<div id="app"'

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not (scope["type"] == "http" and scope.get("method") == "GET"
                and scope.get("path", "").strip("/") in ("", *VIEWS)):
            await self.app(scope, receive, send)
            return
        from starlette.concurrency import run_in_threadpool

        from memlab.dashboard.prerender import boot

        start: dict[str, Any] | None = None
        body: list[bytes] = []

        async def sending(message: dict[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return
            page = b"".join(body)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            html_page = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers)
            if html_page and start.get("status") == 200 and self.MARK in page:
                view = view_of(scope.get("path", ""), scope.get("query_string", b"").decode("latin-1"))
                try:
                    first = await run_in_threadpool(_first_paint.get, _memory_root(), view)
                except Exception as exc:  # noqa: BLE001 - the live page shows the same problem, with context
                    log.warning("first paint failed: %r", exc)
                else:
                    page = page.replace(self.MARK, boot(first).encode() + self.MARK, 1)
            await send({**start, "headers": [*headers, (b"content-length", str(len(page)).encode())]})
            await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, sending)


PLOTLY_JS = "/_memlab/plotly-widget.js"


def _plotly_js_path() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "widgetbundle.js"


def _plotly_js_gzip() -> bytes:
    """plotly's widget bundle, gzipped (once per process: 5 MB in, 1.5 MB out)."""
    return gzip.compress(_plotly_js_path().read_bytes(), compresslevel=6, mtime=0)


def _load_plotly_js_by_url() -> None:
    """Make every plotly FigureWidget load plotly's widget bundle (5 MB) from this server by
    URL, instead of carrying it in its own state: a page loads and evaluates it once (and the
    browser caches it), where each figure used to send and evaluate it again over the websocket.
    The stub is an ES module that anywidget evaluates; ``location.origin`` is the page's."""
    import anywidget
    import plotly
    from plotly.basewidget import BaseFigureWidget

    if not issubclass(BaseFigureWidget, anywidget.AnyWidget):  # plotly < 6: not an anywidget
        return
    url = f"{PLOTLY_JS}?v={plotly.__version__}"
    BaseFigureWidget._esm = (f"const m = await import(location.origin + {url!r});\n"  # type: ignore[assignment]
                             "export default m.default;\n")


def _warm_up(root: Path) -> None:
    """Build (and close) one monitor before the first viewer comes: importing the app and
    plotly's first figure take seconds once per process, which the first page load would pay."""
    from solara.server import kernel_context

    context = kernel_context.create_dummy_context()  # widgets need a (virtual) kernel to belong to
    try:
        with context:
            from memlab.dashboard.app import MonitorApp

            app = MonitorApp(root, interval=INTERVAL, first_read=_first_read.get(root))
            for w in _walk(app.widget):
                w.close()
    except Exception as exc:  # noqa: BLE001 - a page will show the same problem, with context
        log.warning("warm-up failed: %r", exc)
    finally:
        context.close()


def bind(port: int, ip: str = "127.0.0.1") -> socket.socket:
    """A listening socket on ``ip:port``; :class:`ServeError` (one line) when it cannot be had."""
    try:
        infos = socket.getaddrinfo(ip, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ServeError(f"cannot listen on --ip {ip!r}: not an address of this machine ({exc})", 2) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(f"port {port} is already in use on {ip} (another server? try --port)") from None
        if exc.errno == errno.EACCES:
            raise ServeError(f"port {port} on {ip}: permission denied (ports below 1024 need root)") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ServeError(f"cannot listen on --ip {ip!r}: not an address of this machine", 2) from None
        raise ServeError(f"cannot listen on --ip {ip!r} port {port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def serve(memory_path: str | os.PathLike[str] | None = None, *, port: int = 5001, ip: str = "127.0.0.1",
          open_browser: bool = False, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the monitor on ``ip:port`` until interrupted (one process, any number of viewers).
    Raises :class:`ServeError` when the address cannot be bound."""
    import uvicorn

    sock = bind(port, ip)
    for name in ("solara", "reacton", "uvicorn"):  # their INFO lines are per page and per render
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="Cookies with samesite=none require https")
    app = create_app(memory_path)
    host = f"[{ip}]" if ":" in ip else ip
    url = f"http://{'localhost' if ip in ('127.0.0.1', '0.0.0.0') else host}:{port}/"  # noqa: S104
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)

    if on_ready is not None or open_browser:
        def announce() -> None:
            while not server.started and not server.should_exit:
                threading.Event().wait(0.05)
            if server.started:
                if on_ready is not None:
                    on_ready(url)
                if open_browser:
                    webbrowser.open(url)
        threading.Thread(target=announce, daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
