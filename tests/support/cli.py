"""What CLI tests share: the one error line a mistake gets."""

from __future__ import annotations

import subprocess


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The error line, after checking it is the only thing on stderr besides log records."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if " INFO " not in line and " WARNING " not in line]
    assert len(lines) == 1, done.stderr
    return lines[0]
