"""Strategy parameters from ``params/``: shipped defaults, then what training chose.

- ``params/strategies.json`` — defaults per strategy (committed).
- ``params/trained.json`` — written by training: per symbol and strategy, the chosen
  parameters with the date and the reason (atomic writes).

The folder is ``$MEMLAB_PARAMS_DIR`` or ``params/`` in the working directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memlab.errors import InvalidInputError

PARAMS_DIR_ENV = "MEMLAB_PARAMS_DIR"


def params_dir(path: str | os.PathLike[str] | None = None) -> Path:
    return Path(path or os.environ.get(PARAMS_DIR_ENV) or "params")


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(doc, dict):
        raise InvalidInputError(f"{path}: must hold a JSON object")
    return doc


def default_params(strategy: str, directory: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The defaults for ``strategy`` from ``params/strategies.json`` (empty if none)."""
    return dict(_read(params_dir(directory) / "strategies.json").get(strategy, {}))


def load_params(strategy: str, symbol: str | None = None, directory: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Defaults, overlaid with the trained parameters for ``symbol`` when there are some."""
    out = default_params(strategy, directory)
    if symbol is not None:
        trained = _read(params_dir(directory) / "trained.json")
        out.update(trained.get(symbol, {}).get(strategy, {}).get("params", {}))
    return out


def save_trained(symbol: str, strategy: str, params: Mapping[str, Any], *, reason: str,
                 directory: str | os.PathLike[str] | None = None,
                 data_span: tuple[str, str] | None = None) -> Path:
    """Record the parameters training chose for ``symbol``/``strategy`` (atomic write), with
    ``data_span``, the first and last bar of the history training saw (ISO times): a paper
    session replaying this market trades only after it (see :func:`trained_until`)."""
    from memlab.memory.durable import atomic_write_bytes

    path = params_dir(directory) / "trained.json"
    doc = _read(path)
    entry: dict[str, Any] = {
        "params": dict(params), "trained_at": datetime.now(UTC).isoformat(timespec="seconds"), "reason": reason,
    }
    if data_span is not None:
        entry["data_from"], entry["data_until"] = data_span
    doc.setdefault(symbol, {})[strategy] = entry
    atomic_write_bytes(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
    return path


def trained_until(symbol: str, strategy: str, directory: str | os.PathLike[str] | None = None) -> str | None:
    """The last bar of history training saw for ``symbol``/``strategy`` (ISO time), or None."""
    entry = _read(params_dir(directory) / "trained.json").get(symbol, {}).get(strategy, {})
    return entry.get("data_until")
