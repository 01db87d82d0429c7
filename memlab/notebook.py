"""Notebooks that read well after the run: figures that survive export, no third-party noise.

- :func:`setup` (first cell of every memlab notebook): plotly figures carry both their
  Jupyter mime bundle and self-contained HTML (plotly.js embedded once per notebook), so an
  executed notebook exported by nbconvert shows its figures, offline.
- :func:`quiet_kernel` (run by ``make install``): the project's ``python3`` kernel logs only
  errors, so ipykernel's start-up warnings ("running over TCP without encryption") never
  land in a cell's output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

#: Jupyter's own figure bundle, plus HTML with plotly.js inline for nbconvert and browsers.
RENDERERS = "plotly_mimetype+notebook"
QUIET = "--IPKernelApp.log_level=ERROR"


def setup() -> None:
    """Make this kernel's plotly figures render in Jupyter and in exported HTML alike."""
    import plotly.io as pio

    pio.renderers.default = RENDERERS


def quiet_kernel(name: str = "python3") -> Path:
    """Add ``--IPKernelApp.log_level=ERROR`` to kernel ``name``'s argv (idempotent); returns
    its ``kernel.json``."""
    from jupyter_client.kernelspec import KernelSpecManager

    path = Path(KernelSpecManager().get_kernel_spec(name).resource_dir) / "kernel.json"
    spec = json.loads(path.read_text())
    if QUIET not in spec["argv"]:
        spec["argv"].append(QUIET)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(spec, indent=1) + "\n")
        os.chmod(tmp, path.stat().st_mode & 0o777)  # as readable as it was: kernels run for other users too
        os.replace(tmp, path)
    return path


if __name__ == "__main__":  # pragma: no cover - `python -m memlab.notebook` from the Makefile
    print(f"quiet kernel: {quiet_kernel()}")
