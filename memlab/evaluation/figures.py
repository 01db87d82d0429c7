"""Plotly figure of an evaluation: out-of-sample equity raw vs gated per market, and the
Sharpe-difference intervals."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

if TYPE_CHECKING:
    from memlab.evaluation.memory_edge import EvaluationReport

RAW, GATED = "#7f7f7f", "#1f77b4"


def evaluation_figure(report: EvaluationReport) -> go.Figure:
    """One panel per market (equity of both books on its test windows), then one panel of
    the Sharpe difference (gated - raw) with its bootstrap interval per market and overall."""
    markets = [m for m in report.table.index if m != "overall"]
    level = report.config.level
    titles = [f"{m}: equity on test windows ({report.table.loc[m, 'judged_on']})" for m in markets]
    titles.append(f"Sharpe gated - raw, {level:.0%} stationary-bootstrap interval (0 = no edge)")
    rows = len(markets) + 1
    fig = make_subplots(rows=rows, cols=1, subplot_titles=titles, vertical_spacing=0.25 / rows)
    for i, market in enumerate(markets, start=1):
        eq = report.equity[report.equity["market"] == market]
        for name, color in (("raw", RAW), ("gated", GATED)):
            fig.add_trace(go.Scatter(x=eq.index, y=eq[name], name=name, legendgroup=name, showlegend=i == 1,
                                     line={"width": 1.4, "color": color}), row=i, col=1)
        # Test windows are contiguous; mark where each fold (new parameters) begins.
        for start in report.folds.loc[report.folds["market"] == market, "test_start"].iloc[1:]:
            fig.add_vline(x=start, line={"width": 0.6, "dash": "dot", "color": "#bbbbbb"}, row=i, col=1)
        fig.update_yaxes(title_text="equity", row=i, col=1)
    t = report.table
    diff = t["sharpe_diff"].to_numpy(float)
    fig.add_trace(go.Scatter(
        x=list(t.index), y=diff, mode="markers", name="Sharpe gated - raw", marker={"size": 10, "color": GATED},
        error_y={"type": "data", "symmetric": False, "array": t["sharpe_diff_high"].to_numpy(float) - diff,
                 "arrayminus": diff - t["sharpe_diff_low"].to_numpy(float)},
        text=list(t["verdict"]), hovertemplate="%{x}: %{y:+.2f}<br>%{text}<extra></extra>",
    ), row=rows, col=1)
    fig.add_hline(y=0.0, line={"width": 1, "color": "black"}, row=rows, col=1)
    fig.update_yaxes(title_text="Sharpe difference", row=rows, col=1)
    fig.update_layout(
        title=f"Does memory help? {report.config.strategy}: raw vs gated by the agent, out of sample only",
        height=max(420, 260 * rows), margin={"l": 60, "r": 20, "t": 80, "b": 40},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
    )
    if not np.isfinite(diff).all():  # a market without a Sharpe: keep the axis readable
        fig.update_yaxes(rangemode="tozero", row=rows, col=1)
    return fig
