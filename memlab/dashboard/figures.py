"""Plotly figures of the monitor: realised P&L curve with its drawdown, and P&L per day."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots


def equity_figure(curve: pd.DataFrame | None = None) -> go.FigureWidget:
    """A two-row FigureWidget (P&L curve above, drawdown below), filled from ``curve`` when given.
    The live app builds a new one when fills arrive: data set on a widget before the page
    shows it did not reach the browser in Voilà (plotly 7), data given at construction does."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.05)
    fig.add_trace(go.Scatter(name="realised P&L", mode="lines", line={"color": "#2a6fdb"}), row=1, col=1)
    fig.add_trace(go.Scatter(name="drawdown", mode="lines", fill="tozeroy", line={"color": "#d9534f"}), row=2, col=1)
    fig.update_layout(height=360, margin={"l": 50, "r": 10, "t": 30, "b": 30}, showlegend=False,
                      title={"text": "Equity (realised P&L net of fees) and drawdown", "font": {"size": 13}})
    widget = go.FigureWidget(fig)
    if curve is not None:
        update_equity(widget, curve)
    return go.FigureWidget(widget.to_dict())


def update_equity(fig: go.FigureWidget, curve: pd.DataFrame, *, max_points: int = 5000) -> None:
    """Put ``curve`` (from :func:`memlab.dashboard.metrics.pnl_curve`) into ``fig``, thinned to
    ``max_points`` so a history of 100,000 trades still draws quickly."""
    if len(curve) > max_points:
        step = -(-len(curve) // max_points)
        curve = pd.concat([curve.iloc[::step], curve.iloc[[-1]]])
    # ISO strings (UTC): tz-aware Timestamps do not survive the widget's JSON sync
    x = pd.DatetimeIndex(curve.index).strftime("%Y-%m-%d %H:%M:%S").tolist()
    with fig.batch_update():
        fig.data[0].x, fig.data[0].y = x, curve["pnl"].tolist()
        fig.data[1].x, fig.data[1].y = x, curve["drawdown"].tolist()


def daily_figure(daily: pd.Series) -> go.Figure:
    """Bar chart of realised P&L per day."""
    colors = ["#3c9a5f" if v >= 0 else "#d9534f" for v in daily.to_numpy()]
    fig = go.Figure(go.Bar(x=daily.index, y=daily.to_numpy(), marker_color=colors))
    fig.update_layout(height=260, margin={"l": 50, "r": 10, "t": 30, "b": 30},
                      title={"text": "Realised P&L per day", "font": {"size": 13}})
    return fig
