"""``memlab dashboard``: serve notebooks/live_monitor.ipynb with Voilà at http://localhost:5001."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from memlab.cli import port

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "live_monitor.ipynb"


def voila_command(port: int = 5001, *, ip: str = "127.0.0.1", open_browser: bool = False,
                  notebook: Path = NOTEBOOK) -> list[str]:
    """The Voilà command line that serves the monitor (``?view=trades`` etc. pick a view)."""
    return [sys.executable, "-m", "voila", str(notebook), f"--port={port}", f"--Voila.ip={ip}",
            "--no-browser" if not open_browser else "--Voila.open_browser=True", "--show_tracebacks=True"]


def _run(args: argparse.Namespace) -> int:
    from memlab.config import memory_path

    env = dict(os.environ, MEM_MEMORY_PATH=str(Path(memory_path(args.memory_path)).resolve()))
    cmd = voila_command(args.port, ip=args.ip, open_browser=not args.no_browser)
    print(f"memlab dashboard: http://localhost:{args.port}/  (views: ?view=dashboard|metrics|trades|memory; "
          f"memory {env['MEM_MEMORY_PATH']})", flush=True)
    return subprocess.call(cmd, env=env, cwd=NOTEBOOK.parent)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``memlab dashboard [--port 5001] [--memory-path DIR] [--no-browser]``."""
    p = subparsers.add_parser("dashboard", help="serve the live monitor (Voilà) at http://localhost:5001")
    p.add_argument("--port", type=port, default=5001, help="port to serve on (default 5001)")
    p.add_argument("--ip", default="127.0.0.1", help="address to listen on (default loopback only)")
    p.add_argument("--memory-path", default=None, help="memory folder (default $MEM_MEMORY_PATH or data/mem_knowledge/)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    p.set_defaults(func=_run)
