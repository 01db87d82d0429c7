"""Plotly figures for backtests: equity with drawdown, and a two-parameter sweep heatmap."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from memlab.errors import InvalidInputError


def equity_figure(equity: pd.Series, *, title: str = "Equity") -> go.Figure:
    """Equity curve (top) and drawdown in percent (bottom)."""
    drawdown = (equity / equity.cummax() - 1.0) * 100
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04)
    fig.add_trace(go.Scatter(x=equity.index, y=equity.values, name="equity", line={"width": 1.5}), row=1, col=1)
    fig.add_trace(go.Scatter(x=drawdown.index, y=drawdown.values, name="drawdown %", fill="tozeroy",
                             line={"width": 1, "color": "firebrick"}), row=2, col=1)
    fig.update_layout(title=title, height=520, showlegend=False, margin={"l": 60, "r": 20, "t": 50, "b": 40})
    fig.update_yaxes(title_text="equity", row=1, col=1)
    fig.update_yaxes(title_text="drawdown %", row=2, col=1)
    return fig


def sweep_heatmap(results: pd.DataFrame, x: str, y: str, metric: str = "sharpe") -> go.Figure:
    """Heatmap of ``metric`` over two swept parameters ``x`` and ``y``."""
    for col in (x, y, metric):
        if col not in results.columns:
            raise InvalidInputError(f"sweep results have no column {col!r}; columns: {list(results.columns)}")
    table = results.pivot_table(index=y, columns=x, values=metric, aggfunc="mean")
    fig = go.Figure(go.Heatmap(z=table.values, x=table.columns.astype(str), y=table.index.astype(str),
                               colorscale="RdYlGn", colorbar={"title": metric}))
    fig.update_layout(title=f"{metric} by {x} and {y}", xaxis_title=x, yaxis_title=y, height=520)
    return fig
