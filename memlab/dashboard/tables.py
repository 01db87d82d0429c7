"""HTML tables and cards for the monitor, escaped, each under a stable CSS class the browser test finds."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import pandas as pd

STYLE = """<style>
.memlab-table table {border-collapse: collapse; font: 12px/1.4 system-ui, sans-serif; width: 100%;}
.memlab-table th {background: #eef1f5; text-align: left; padding: 3px 8px; border-bottom: 1px solid #ccd;}
.memlab-table td {padding: 2px 8px; border-bottom: 1px solid #eee; white-space: nowrap; max-width: 480px;
                  overflow: hidden; text-overflow: ellipsis;}
.memlab-table caption {text-align: left; font-weight: 600; padding: 6px 0;}
.memlab-banner-stale {background: #fff4d6; border: 1px solid #e0b84c; padding: 6px 10px; border-radius: 4px;}
.memlab-banner-live {background: #e5f6e9; border: 1px solid #6cbf84; padding: 6px 10px; border-radius: 4px;}
.memlab-card {display: inline-block; margin: 4px 14px 4px 0; font: 13px system-ui, sans-serif;}
.memlab-card b {display: block; font-size: 18px;}
.memlab-missing {color: #777; font-style: italic;}
.memlab-alert {color: #a33;}
</style>"""


def fmt(value: object) -> str:
    """One cell as text: floats to 6 significant digits, times to the second, NaN/NaT/None blank."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, pd.Timestamp):
        return "" if pd.isna(value) else value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def table(frame: pd.DataFrame | None, caption: str, *, missing: str, columns: Sequence[str] | None = None) -> str:
    """``frame`` as an HTML table (header + one ``<tr>`` per row), or a ``missing`` note."""
    if frame is None:
        return f'<p class="memlab-missing">{html.escape(caption)}: {html.escape(missing)}</p>'
    cols = list(columns or frame.columns)
    frame = frame.reindex(columns=cols)  # a source with no rows yet may have no columns either
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f'<td data-col="{html.escape(c)}">{html.escape(fmt(v))}</td>' for c, v in zip(cols, row, strict=True)) + "</tr>"
        for row in frame[cols].itertuples(index=False, name=None)
    )
    empty = "" if len(frame) else f'<tr><td colspan="{len(cols)}" class="memlab-missing">none</td></tr>'
    return (f"<table><caption>{html.escape(caption)} ({len(frame)})</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}{empty}</tbody></table>")


def cards(values: dict[str, str]) -> str:
    """Headline figures side by side."""
    return "".join(f'<span class="memlab-card">{html.escape(k)}<b>{html.escape(v)}</b></span>' for k, v in values.items())
