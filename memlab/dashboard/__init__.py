"""The live monitor: read-only snapshots of the trader's stores, shown as an ipywidgets app in Voilà::

    from memlab.dashboard import read_snapshot, build_app
    snap = read_snapshot("data/mem_knowledge")              # positions, orders, decisions, memory...
    build_app("data/mem_knowledge")                         # the widget (in a notebook)
"""

from memlab.dashboard.snapshot import Snapshot, read_snapshot

__all__ = ["Snapshot", "build_app", "read_snapshot"]


def build_app(memory_path: object = None, *, view: str = "dashboard", interval: float = 1.0) -> object:
    """The monitor widget for ``memory_path`` (lazy import: ipywidgets only when used)."""
    from memlab.dashboard.app import MonitorApp

    return MonitorApp(memory_path, view=view, interval=interval).widget
