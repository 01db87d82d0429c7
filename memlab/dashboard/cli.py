"""``memlab dashboard``: serve the live monitor to every viewer from one process at http://localhost:5001."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from memlab.cli import port


def _run(args: argparse.Namespace) -> int:
    from memlab.config import memory_path
    from memlab.dashboard.server import ServeError, serve

    root = Path(memory_path(args.memory_path)).resolve()

    def ready(url: str) -> None:
        print(f"memlab dashboard: {url}  (views: / /dashboard /metrics /trades /memory; JSON: {url}api/snapshot.json; "
              f"memory {root})", flush=True)

    try:
        serve(root, port=args.port, ip=args.ip, open_browser=not args.no_browser, on_ready=ready)
    except ServeError as exc:
        print(f"memlab dashboard: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 0
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``memlab dashboard [--port 5001] [--ip 127.0.0.1] [--memory-path DIR] [--no-browser]``."""
    p = subparsers.add_parser("dashboard", help="serve the live monitor at http://localhost:5001 (one process, any number of viewers)")
    p.add_argument("--port", type=port, default=5001, help="port to serve on (default 5001)")
    p.add_argument("--ip", default="127.0.0.1", help="address to listen on (default loopback only)")
    p.add_argument("--memory-path", default=None, help="memory folder (default $MEM_MEMORY_PATH or data/mem_knowledge/)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    p.set_defaults(func=_run)
