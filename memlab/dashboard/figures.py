"""Plotly figures of the monitor: equity marked to market with buy-and-hold and drawdown, the price with
the trades on it, and P&L per day.

Every x axis is market time (UTC): during a replay of 2012 bars the axes read 2012.
Figures take the width of their container (``autosize`` and plotly's ``responsive``
config, which follows the container's size, so a figure first drawn in a hidden tab
widens when the tab is shown) instead of plotly's fixed 700 px default.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

#: Trace order of :func:`equity_figure` (the first stays the realised one, one point per fill).
TRACES = ("realised", "equity", "benchmark", "drawdown")
TITLE = "Equity marked to market every bar, buy & hold, and drawdown"
REALISED_TITLE = "Realised P&L at fills and its drawdown (not marked to market)"
FALLBACK_TITLE = ("Realised P&L at fills and its drawdown — no equity log in this folder "
                  "(written by a trader that predates it), so nothing is marked to market")


#: Height of the monitor's figures in px (the page keeps their room while they are drawn).
HEIGHT = 290
#: plotly's config for every figure of the app: follow the container's width, no logo.
CONFIG = {"responsive": True, "displaylogo": False, "displayModeBar": "hover"}


def _widget(fig: go.Figure) -> go.FigureWidget:
    widget = go.FigureWidget(fig)
    widget._config = dict(CONFIG)  # a synced trait: set before display, it reaches the browser with the data
    return widget


def equity_figure(curve: pd.DataFrame | None = None, realised: pd.DataFrame | None = None, *,
                  benchmark_name: str = "buy & hold", height: int = HEIGHT) -> go.FigureWidget:
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
    fig.update_layout(height=height, autosize=True, margin={"l": 56, "r": 10, "t": 48, "b": 26},
                      legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0, "font": {"size": 11}},
                      title={"text": TITLE, "font": {"size": 13}, "y": 0.98, "yanchor": "top"})
    fig.update_xaxes(type="date")
    fig.update_xaxes(title_text="market time (UTC)", row=2, col=1)
    fig.update_yaxes(title_text="drawdown", tickformat=".0%", row=2, col=1)
    if curve is not None:
        update_equity(fig, curve, realised=realised)
    elif realised is not None:
        update_equity(fig, realised)
        fig.layout.title.text = FALLBACK_TITLE
    else:
        _empty(fig, "no equity log and no fills yet")
    return _widget(fig)


def _empty(fig: go.Figure, why: str) -> None:
    """Say there is nothing to draw instead of plotly's empty axes (which read "Jan 2000")."""
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.add_annotation(text=why, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                       font={"size": 13, "color": "#777"})


def _x(index: pd.Index) -> np.ndarray:
    """Market times as milliseconds since the epoch (UTC), which a plotly ``date`` axis
    draws as UTC dates. Not tz-aware Timestamps (they do not survive the widget's JSON
    sync), and not strings or lists: plotly validates and deep-copies those element by
    element (seconds for a few traces of 5,000 points on a busy machine), while a float
    array is copied at once and sent as a binary buffer."""
    return pd.DatetimeIndex(index).as_unit("ns").asi8 / 1e6


def market_times(x: object) -> pd.DatetimeIndex:
    """A figure's x values back as UTC market times (see :func:`_x`)."""
    return pd.to_datetime(np.asarray(x, dtype=float), unit="ms", utc=True)


def _y(values: pd.Series) -> np.ndarray:
    return values.to_numpy(dtype=float)


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
            fig.data[1].x, fig.data[1].y = x, _y(thin["equity"])
            fig.data[2].x, fig.data[2].y = x, _y(thin["benchmark"])
            fig.data[3].x, fig.data[3].y = x, _y(thin["drawdown"])
            if realised is not None and len(curve):
                start = float(curve["equity"].iloc[0])
                steps = _thin(realised, max_points)
                fig.data[0].x, fig.data[0].y = _x(steps.index), _y(start + steps["pnl"])
            fig.layout.yaxis.title = "equity"
            fig.layout.yaxis2.tickformat = ".0%"
            fig.layout.title.text = TITLE
        else:  # realised P&L only
            thin = _thin(curve, max_points)
            x = _x(thin.index)
            fig.data[0].x, fig.data[0].y = x, _y(thin["pnl"])
            fig.data[0].name = "realised P&L"
            fig.data[3].x, fig.data[3].y = x, _y(thin["drawdown"])
            fig.layout.yaxis.title = "realised P&L"
            fig.layout.yaxis2.tickformat = ",.0f"
            fig.layout.title.text = REALISED_TITLE


#: How many of the newest entries carry their confidence as a label (all have it on hover).
LABELLED = 20
#: Marker per kind of fill on the price chart: (symbol, colour, size).
MARKERS = {"entry": ("triangle-up", "#1d7a3e", 11), "exit": ("triangle-down", "#2a6fdb", 11),
           "stop": ("x", "#b3261e", 11), "take profit": ("star", "#7b3fb0", 12)}


def price_figure(prices: pd.Series | None = None, fills: pd.DataFrame | None = None, *, symbol: str = "",
                 stops: list[float] | None = None, note: str = "", height: int = HEIGHT) -> go.FigureWidget:
    """The price of ``symbol`` at market time (``prices``: closes indexed by bar time, from
    the equity log), with the trades on it: ``fills`` (columns ``time``, ``price``,
    ``kind`` in :data:`MARKERS`, ``hover``, ``label``) as markers, entries labelled with
    the agent's confidence, and each open stop order's level (``stops``) as a dashed line.
    Data are given at construction (see :func:`equity_figure`)."""
    fig = go.Figure()
    title = f"{symbol} price (market time) with entries, exits and stops" if symbol else "Price with trades"
    if note:
        title += f" — {note}"
    x_range: list[float] | None = None
    if prices is not None and len(prices):
        x = _x(prices.index)
        x_range = [float(x[0]), float(x[-1])]
        fig.add_trace(go.Scatter(x=x, y=_y(prices), name="close", mode="lines",
                                 line={"color": "#55595f", "width": 1.2}, hovertemplate="%{x|%Y-%m-%d %H:%M} (market time)<br>close %{y:,.6~g}<extra></extra>"))
    if fills is not None and len(fills):
        for kind, (shape, color, size) in MARKERS.items():
            part = fills[fills["kind"] == kind]
            if not len(part):
                continue
            labelled = kind == "entry"  # the newest LABELLED entries: more would hide the price
            text = part["label"].to_numpy(dtype=str).copy() if labelled else None
            if text is not None:
                text[: max(0, len(text) - LABELLED)] = ""
            fig.add_trace(go.Scatter(
                x=_x(pd.DatetimeIndex(part["time"])), y=_y(part["price"]), name=kind,
                mode="markers+text" if labelled else "markers", text=text,
                textposition="bottom center", textfont={"size": 9, "color": color},
                hovertext=part["hover"].to_numpy(dtype=str), hoverinfo="text",
                marker={"symbol": shape, "color": color, "size": size, "line": {"width": 0.5, "color": "#fff"}}))
    for level in stops or []:
        fig.add_hline(y=level, line={"color": "#b3261e", "dash": "dash", "width": 1},
                      annotation_text=f"stop {level:,.6g}", annotation_position="bottom right",
                      annotation_font={"size": 10, "color": "#b3261e"})
    fig.update_layout(height=height, autosize=True, margin={"l": 56, "r": 10, "t": 48, "b": 26},
                      legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0, "font": {"size": 11}},
                      title={"text": title, "font": {"size": 13}, "y": 0.98, "yanchor": "top"},
                      hovermode="closest")
    fig.update_xaxes(title_text="market time (UTC)", type="date", range=x_range)
    fig.update_yaxes(title_text="price", tickformat=",.6~g")
    if not fig.data:
        _empty(fig, note or "no bar prices and no trades yet")
    return _widget(fig)


def daily_figure(daily: pd.Series) -> go.Figure:
    """Bar chart of realised P&L per market day."""
    colors = ["#3c9a5f" if v >= 0 else "#d9534f" for v in daily.to_numpy()]
    fig = go.Figure(go.Bar(x=daily.index, y=daily.to_numpy(), marker_color=colors))
    fig.update_layout(height=260, margin={"l": 50, "r": 10, "t": 30, "b": 30},
                      title={"text": "Realised P&L per day (market time)", "font": {"size": 13}})
    return fig
