"""The live monitor: read-only snapshots of the trader's stores, shown as an ipywidgets app::

    from memlab.dashboard import read_snapshot, build_app, serve
    snap = read_snapshot("data/mem_knowledge")              # positions, orders, decisions, memory...
    build_app("data/mem_knowledge")                         # the widget (in a notebook)
    serve("data/mem_knowledge", port=5001)                  # what `memlab dashboard` runs: one server, any number of viewers
"""

from __future__ import annotations

from typing import Any

from memlab.dashboard.snapshot import Snapshot, read_snapshot

__all__ = ["Snapshot", "build_app", "read_snapshot", "serve"]


def build_app(memory_path: object = None, *, view: str = "dashboard", interval: float = 1.0) -> object:
    """The monitor widget for ``memory_path`` (lazy import: ipywidgets only when used)."""
    from memlab.dashboard.app import MonitorApp

    return MonitorApp(memory_path, view=view, interval=interval).widget


def serve(memory_path: Any = None, *, port: int = 5001, ip: str = "127.0.0.1", open_browser: bool = False) -> None:
    """Serve the monitor at ``http://ip:port/`` until interrupted (lazy import: Solara only when used);
    see :mod:`memlab.dashboard.server`."""
    from memlab.dashboard.server import serve as _serve

    _serve(memory_path, port=port, ip=ip, open_browser=open_browser)
