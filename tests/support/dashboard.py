"""Run the real dashboard server (``memlab dashboard``) as a subprocess on a free loopback port, for tests."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback port nobody listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    """(status, body) of a GET over loopback; HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback only
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(url: str, timeout: float = 10) -> tuple[int, Any]:
    status, body = get(url, timeout)
    return status, json.loads(body)


def server_info(base: str) -> dict[str, Any]:
    """``/api/server.json``: open viewers, pid and resident memory of the server."""
    return get_json(base + "api/server.json")[1]


def wait_until(condition: Any, timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll ``condition()`` until it returns something truthy (returned); AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@contextlib.contextmanager
def serve_dashboard(root: Path, tmp_path: Path, *, timeout: float = 180) -> Iterator[str]:
    """``memlab dashboard --memory-path root`` on a free loopback port; yields its base URL
    (``http://127.0.0.1:PORT/``) once it answers, and stops it afterwards. Its output goes to
    ``tmp_path/dashboard.log`` (quoted in the error if it does not come up). Start-up (imports,
    warm-up) takes ~12 s on a busy 2-core machine and several times that when it is
    oversubscribed: the wait is for it to answer, bounded generously."""
    port = free_port()
    log_path = tmp_path / "dashboard.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLARA_")}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "memlab.cli", "dashboard", "--port", str(port), "--ip", "127.0.0.1",
             "--memory-path", str(root), "--no-browser"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}/"

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the dashboard exited with {proc.returncode}: {log_path.read_text()[-3000:]}")
            try:
                return get(base + "api/server.json", timeout=2)[0] == 200
            except OSError:
                return False

        try:
            wait_until(up, timeout, f"the dashboard on {base} (log: {log_path})", every=0.1)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def server_pid(base: str) -> int:
    return int(server_info(base)["pid"])
