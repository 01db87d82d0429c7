"""Shared fixtures: a fresh memory folder per test, and the ``--live`` switch."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--live",
        action="store_true",
        default=False,
        help="run tests marked live (real exchanges / network)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--live"):
        return
    skip = pytest.mark.skip(reason="needs --live (real exchange or network)")
    for item in items:
        if "live" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def memory_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty memory folder; MEM_* variables cleared so the host's settings never leak in."""
    monkeypatch.delenv("MEM_MEMORY_PATH", raising=False)
    monkeypatch.delenv("MEM_ENCRYPTION_KEY", raising=False)
    path = tmp_path / "mem_knowledge"
    return path
