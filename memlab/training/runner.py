"""Nightly runs: execute the training notebook with papermill into ``runs/YYYY-MM-DD/``.

The run folder gets the executed notebook (kept even when a cell fails, for
inspection) and ``summary.json``, which the notebook writes through memlab. A failed
cell raises :class:`NightlyRunError` naming the notebook to open.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memlab.errors import MemlabError

DEFAULT_NOTEBOOK = Path("notebooks") / "nightly_training.ipynb"


class NightlyRunError(MemlabError):
    """A cell of the nightly notebook failed; ``notebook`` is the executed copy to inspect."""

    def __init__(self, message: str, notebook: Path) -> None:
        super().__init__(message)
        self.notebook = notebook


def run_nightly(
    parameters: dict[str, Any],
    *,
    notebook: str | os.PathLike[str] = DEFAULT_NOTEBOOK,
    out_root: str | os.PathLike[str] = "runs",
    date: str | None = None,
    kernel_name: str = "python3",
    progress: bool = True,
) -> Path:
    """Execute ``notebook`` with ``parameters``; returns the run folder."""
    import papermill as pm

    source = Path(notebook)
    if not source.exists():
        raise MemlabError(f"{source}: no such notebook (run from the project folder or pass --notebook)")
    day = date or datetime.now(UTC).strftime("%Y-%m-%d")
    run_dir = Path(out_root) / day
    run_dir.mkdir(parents=True, exist_ok=True)
    executed = run_dir / source.name
    params = {**parameters, "output_dir": str(run_dir.resolve())}
    try:
        pm.execute_notebook(str(source), str(executed), parameters=params, kernel_name=kernel_name,
                            progress_bar=progress, cwd=str(Path.cwd()))
    except pm.PapermillExecutionError as exc:
        raise NightlyRunError(
            f"nightly run failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}. "
            f"The executed notebook is kept at {executed}", executed,
        ) from None
    summary = run_dir / "summary.json"
    if not summary.exists():
        raise NightlyRunError(f"{executed} ran but wrote no summary.json", executed)
    json.loads(summary.read_text())  # a summary that is not JSON is a failed run too
    return run_dir
