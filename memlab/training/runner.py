"""Nightly runs: execute the training notebook with papermill into ``runs/YYYY-MM-DD/``.

The run folder gets the executed notebook (kept even when a cell fails, for
inspection), the same notebook as one self-contained HTML report (``nightly_training.html``:
its figures drawn offline, for reading in any browser or mailing on) and ``summary.json``, which the notebook writes through memlab
(:func:`write_summary`, :func:`add_to_summary`): the training results per symbol, and
under ``"evaluation"`` whether memory helped out of sample (:func:`nightly_evaluation`,
whose files go to ``evaluation/`` in the run folder). A failed cell raises
:class:`NightlyRunError` naming the notebook to open.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memlab.errors import InvalidInputError, MemlabError
from memlab.memory.durable import atomic_write_bytes

if TYPE_CHECKING:
    from memlab.evaluation import EvaluationReport

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
        report = write_report(executed)
        raise NightlyRunError(
            f"nightly run failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}. "
            f"The executed notebook is kept at {executed} (report: {report})", executed,
        ) from None
    write_report(executed)
    summary = run_dir / "summary.json"
    if not summary.exists():
        raise NightlyRunError(f"{executed} ran but wrote no summary.json", executed)
    json.loads(summary.read_text())  # a summary that is not JSON is a failed run too
    return run_dir


def write_report(executed: str | os.PathLike[str]) -> Path:
    """Write ``executed`` (a run notebook) as one HTML file beside it, atomically; returns its path.

    The figures are plotly's, with plotly.js inline (see :mod:`memlab.notebook`), so the page
    draws them with no network; the code cells stay in, so a reader sees what produced what.
    nbconvert's template links require.js and MathJax from a CDN: the figures need neither and
    memlab's notebooks have no formulas, so those links are left out and the file opens
    complete offline.
    """
    from nbconvert import HTMLExporter

    source = Path(executed)
    body, _ = HTMLExporter().from_filename(str(source))
    body = re.sub(r'<script src="https?://[^"]*">\s*</script>', "", body)
    path = source.with_suffix(".html")
    atomic_write_bytes(path, body.encode())
    return path


def write_summary(output_dir: str | os.PathLike[str], summary: Mapping[str, Any]) -> Path:
    """Write ``summary.json`` in ``output_dir`` atomically (a reader never sees half a file)."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "summary.json"
    atomic_write_bytes(path, json.dumps(dict(summary), indent=2, default=str).encode())
    return path


def add_to_summary(output_dir: str | os.PathLike[str], key: str, value: Any) -> Path:
    """Set ``key`` in ``output_dir/summary.json`` (kept as it was otherwise; created if missing)."""
    path = Path(output_dir) / "summary.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    summary[key] = value
    return write_summary(output_dir, summary)


def nightly_evaluation(
    output_dir: str | os.PathLike[str],
    markets: Sequence[str],
    *,
    strategy: str = "sma_cross",
    draws: int = 1000,
    seed: int = 0,
) -> EvaluationReport | None:
    """Does memory help? on ``markets`` (see :mod:`memlab.evaluation`), into the nightly run.

    The report's files go to ``output_dir/evaluation/`` and its summary to
    ``summary.json["evaluation"]``. No market long enough for one fold is not a failed
    night: the summary then says why under ``"evaluation"["error"]`` and this returns
    None. An unknown market or strategy raises :class:`~memlab.errors.InvalidInputError`.
    With no markets the evaluation is skipped (``"evaluation": null``).
    """
    from memlab.evaluation import evaluate_memory

    if not markets:
        add_to_summary(output_dir, "evaluation", None)
        return None
    try:
        report = evaluate_memory(list(markets), strategy=strategy, draws=draws, seed=seed, progress=False)
    except InvalidInputError:
        raise
    except MemlabError as exc:
        add_to_summary(output_dir, "evaluation", {"error": str(exc)})
        return None
    folder = Path(output_dir) / "evaluation"
    paths = report.save(folder)
    add_to_summary(output_dir, "evaluation", {**report.summary(), "files": {k: str(p) for k, p in paths.items()}})
    return report
