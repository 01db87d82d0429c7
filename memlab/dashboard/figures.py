"""Plotly figures of the monitor: equity marked to market with buy-and-hold and drawdown, and P&L per day.

Every x axis is market time (UTC): during a replay of 2012 bars the axes read 2012.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

#: Trace order of :func:`equity_figure` (the first stays the realised one, one point per fill).
TRACES = ("realised", "equity", "benchmark", "drawdown")
TITLE = "Equity marked to market every bar, buy & hold, and drawdown"
REALISED_TITLE = "Realised P&L at fills and its drawdown (not marked to market)"
FALLBACK_TITLE = ("Realised P&L at fills and its drawdown — no equity log in this folder "
                  "(written by a trader that predates it), so nothing is marked to market")


def equity_figure(curve: pd.DataFrame | None = None, realised: pd.DataFrame | None = None, *,
                  benchmark_name: str = "buy & hold") -> go.FigureWidget:
    """Two rows on a shared market-time axis: above, equity marked to market (``curve`` from
    :func:`memlab.dashboard.metrics.equity_curve`), the buy-and-hold benchmark, and the
    starting equity plus realised P&L at each fill (``realised`` from ``pnl_curve``);
    below, the drawdown in %. With ``realised`` alone (a folder without an equity log) it
    draws the realised P&L and its drawdown in money, and its title says so.

    The live app builds a new widget when the data change: data set on a widget before the
    page shows it did not reach the browser in Voilà (plotly 7), data given at construction does."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.06)
    fig.add_trace(go.Scatter(name="start + realised P&L (at fills)", mode="lines", line_shape="hv",
                             line={"color": "#8a8f98", "dash": "dot"}, legendrank=3), row=1, col=1)
    fig.add_trace(go.Scatter(name="equity (marked to market)", mode="lines", line={"color": "#2a6fdb"},
                             legendrank=1), row=1, col=1)
    fig.add_trace(go.Scatter(name=benchmark_name, mode="lines", line={"color": "#e08a1e", "width": 1},
                             legendrank=2), row=1, col=1)
    fig.add_trace(go.Scatter(name="drawdown", mode="lines", fill="tozeroy", line={"color": "#d9534f"},
                             showlegend=False), row=2, col=1)
    fig.update_layout(height=400, margin={"l": 60, "r": 10, "t": 60, "b": 40},
                      legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0, "font": {"size": 11}},
                      title={"text": TITLE, "font": {"size": 13}, "y": 0.98, "yanchor": "top"})
    fig.update_xaxes(title_text="market time (UTC)", row=2, col=1)
    fig.update_yaxes(title_text="drawdown", tickformat=".0%", row=2, col=1)
    if curve is not None:
        update_equity(fig, curve, realised=realised)
    elif realised is not None:
        update_equity(fig, realised)
        fig.layout.title.text = FALLBACK_TITLE
    return go.FigureWidget(fig)


def _x(index: pd.Index) -> list[str]:
    # ISO strings (UTC): tz-aware Timestamps do not survive the widget's JSON sync
    return pd.DatetimeIndex(index).strftime("%Y-%m-%d %H:%M:%S").tolist()


def _thin(frame: pd.DataFrame, max_points: int) -> pd.DataFrame:
    if len(frame) <= max_points:
        return frame
    step = -(-len(frame) // max_points)
    return pd.concat([frame.iloc[::step], frame.iloc[[-1]]])


def update_equity(fig: go.Figure, curve: pd.DataFrame, *, realised: pd.DataFrame | None = None,
                  max_points: int = 5000) -> None:
    """Put ``curve`` into ``fig``, thinned to ``max_points`` so a long session still draws
    quickly: an equity curve (columns ``equity``, ``benchmark``, ``drawdown``), with the
    ``realised`` P&L curve beside it; or, alone, a realised P&L curve (``pnl``,
    ``drawdown``: the fallback for folders without an equity log)."""
    with fig.batch_update():
        if "equity" in curve:
            thin = _thin(curve, max_points)
            x = _x(thin.index)
            fig.data[1].x, fig.data[1].y = x, thin["equity"].tolist()
            fig.data[2].x, fig.data[2].y = x, thin["benchmark"].tolist()
            fig.data[3].x, fig.data[3].y = x, thin["drawdown"].tolist()
            if realised is not None and len(curve):
                start = float(curve["equity"].iloc[0])
                steps = _thin(realised, max_points)
                fig.data[0].x, fig.data[0].y = _x(steps.index), (start + steps["pnl"]).tolist()
            fig.layout.yaxis.title = "equity"
            fig.layout.yaxis2.tickformat = ".0%"
            fig.layout.title.text = TITLE
        else:  # realised P&L only
            thin = _thin(curve, max_points)
            x = _x(thin.index)
            fig.data[0].x, fig.data[0].y = x, thin["pnl"].tolist()
            fig.data[0].name = "realised P&L"
            fig.data[3].x, fig.data[3].y = x, thin["drawdown"].tolist()
            fig.layout.yaxis.title = "realised P&L"
            fig.layout.yaxis2.tickformat = ",.0f"
            fig.layout.title.text = REALISED_TITLE


def daily_figure(daily: pd.Series) -> go.Figure:
    """Bar chart of realised P&L per market day."""
    colors = ["#3c9a5f" if v >= 0 else "#d9534f" for v in daily.to_numpy()]
    fig = go.Figure(go.Bar(x=daily.index, y=daily.to_numpy(), marker_color=colors))
    fig.update_layout(height=260, margin={"l": 50, "r": 10, "t": 30, "b": 30},
                      title={"text": "Realised P&L per day (market time)", "font": {"size": 13}})
    return fig
