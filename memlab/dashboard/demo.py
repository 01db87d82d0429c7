"""``make run``'s monitor step: render the dashboard for the demo's memory once, as static HTML."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from memlab.dashboard import tables
from memlab.dashboard.figures import daily_figure, equity_figure, update_equity
from memlab.dashboard.metrics import performance, pnl_curve
from memlab.dashboard.snapshot import read_snapshot


def run_monitor_demo(out_dir: Path, memory_path: Path) -> dict[str, Path]:
    """Write ``live_monitor.html`` (positions, perf, equity/drawdown, trades, decisions, memory)
    for ``memory_path`` into ``out_dir``; returns ``{"monitor_html": path}``. To watch live:
    ``memlab dashboard --memory-path MEMORY`` then open http://localhost:5001."""
    out_dir.mkdir(parents=True, exist_ok=True)
    snap = read_snapshot(memory_path)
    fills = snap.fills
    parts = [tables.STYLE, f"<h1>memlab monitor — {memory_path}</h1>",
             f"<p>State read {tables.fmt(snap.read_at)} UTC; last write {tables.fmt(snap.last_write)} UTC.</p>"]
    if fills is not None and len(fills):
        perf = performance(fills)
        parts.append(tables.cards({k: tables.fmt(v) for k, v in perf.items()}))
        fig = equity_figure()
        update_equity(fig, pnl_curve(fills))
        parts.append(fig.to_html(full_html=False, include_plotlyjs=True))
        daily = (fills["pnl"].fillna(0) - fills["fee"]).groupby(pd.DatetimeIndex(fills["time"]).floor("D")).sum()
        parts.append(daily_figure(daily).to_html(full_html=False, include_plotlyjs=False))
    missing = "source not found"
    core = None if snap.core_memory is None else pd.DataFrame(list(snap.core_memory.items()), columns=["block", "text"])
    for frame, caption in ((snap.positions, "Positions"), (snap.orders, "Orders"), (snap.decisions, "Agent decisions"),
                           (None if snap.parameters is None else snap.parameters.reset_index(), "Parameter history"),
                           (core, "Core memory"), (pd.DataFrame({"line": snap.journal[::-1]}), "Journal")):
        parts.append(f'<div class="memlab-table">{tables.table(frame, caption, missing=missing)}</div>')
    path = out_dir / "live_monitor.html"
    path.write_text("<!doctype html><meta charset='utf-8'>" + "".join(parts), encoding="utf-8")
    return {"monitor_html": path}


if __name__ == "__main__":  # pragma: no cover
    import sys

    t0 = time.perf_counter()
    print(run_monitor_demo(Path(sys.argv[1]), Path(sys.argv[2])), f"{time.perf_counter() - t0:.2f}s")
