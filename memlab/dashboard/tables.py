"""HTML tables, cards and number formats for the monitor, escaped, each under a stable CSS class the browser test finds.

Numbers read as a trader reads them: prices to a precision that suits their magnitude
(``43,251.37``, ``1.08533``, ``0.00001235``), money with thousands separators, P&L with
its sign, confidence as a percentage and durations as ``3 h 20 m`` / ``2 d 4 h``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

# No rule here sets a height or an overflow that scrolls: the page grows instead, so a
# full-page screenshot holds everything (the dashboard view is sized to fit 1440x900).
STYLE = """<style>
.memlab-monitor {width: 100%;}
.memlab-table table {border-collapse: collapse; font: 12px/1.35 system-ui, sans-serif; width: 100%;}
.memlab-table th {background: #eef1f5; text-align: left; padding: 2px 6px; border-bottom: 1px solid #ccd;
                  white-space: nowrap;}
.memlab-table td {padding: 1px 6px; border-bottom: 1px solid #eee; white-space: nowrap; max-width: 420px;
                  overflow: hidden; text-overflow: ellipsis;}
.memlab-table td.memlab-num {text-align: right; font-variant-numeric: tabular-nums;}
.memlab-table td.memlab-wrap {white-space: normal; min-width: 220px;}
.memlab-table caption {text-align: left; font-weight: 600; padding: 4px 0 2px;}
.memlab-up {color: #1d7a3e;}
.memlab-down {color: #b3261e;}
.memlab-banner-stale {background: #fff4d6; border: 1px solid #e0b84c; padding: 4px 10px; border-radius: 4px;
                      font: 13px system-ui, sans-serif;}
.memlab-banner-live {background: #e5f6e9; border: 1px solid #6cbf84; padding: 4px 10px; border-radius: 4px;
                     font: 13px system-ui, sans-serif;}
.memlab-banner-missing {background: #fde8e6; border: 1px solid #d9534f; padding: 8px 12px; border-radius: 4px;
                        font: 14px system-ui, sans-serif;}
.memlab-card {display: inline-block; margin: 2px 18px 2px 0; font: 12px system-ui, sans-serif; color: #555;
              vertical-align: top;}
.memlab-card b {display: block; font-size: 18px; color: #111;}
.memlab-card small {display: block; font-size: 11px; color: #777;}
.memlab-missing {color: #777; font-style: italic;}
.memlab-pause-running {background: #fff4d6; border: 1px solid #e0b84c; padding: 3px 10px; border-radius: 4px;
                       margin: 2px 0 4px; font: 13px system-ui, sans-serif; white-space: nowrap; overflow: hidden;
                       text-overflow: ellipsis;}
.memlab-alert {color: #a33;}
.memlab-alerts ul, .memlab-health ul {margin: 2px 0 4px; padding-left: 18px; font: 12px/1.35 system-ui, sans-serif;}
.memlab-alerts li[data-severity=critical] {color: #b3261e; font-weight: 600;}
.memlab-alerts li[data-severity=warning] {color: #8a5a00;}
.memlab-alerts li[data-severity=info] {color: #555;}
.memlab-alerts li[data-severity=info].memlab-alert {color: #555;}
.memlab-side > .widget-html, .memlab-side > .jupyter-widgets {margin: 0 0 4px;}
.memlab-figure-title {font: 600 12px system-ui, sans-serif; margin: 0;}
</style>"""


# -- number formats -------------------------------------------------------------------

def _bad(v: object) -> bool:
    return v is None or v is pd.NaT or (isinstance(v, float) and not math.isfinite(v))


def price(v: float | None) -> str:
    """A price to 6 significant digits, at least 2 decimals and at most 8 (trailing zeros
    past the second dropped), with thousands separators: ``43,251.37``, ``120.597``,
    ``1.08533``, ``90.00``, ``0.00001235`` (6 digits keep an average entry price within 1e-5
    of the book's)."""
    if _bad(v):
        return ""
    x = float(v)  # type: ignore[arg-type]
    decimals = 2 if x == 0 else min(8, max(2, 5 - math.floor(math.log10(abs(x)))))
    text = f"{x:,.{decimals}f}"
    if decimals > 2:  # digits that say nothing go: a stop at 90 reads 90.00, not 90.0000
        whole, frac = text.split(".")
        text = f"{whole}.{frac.rstrip('0').ljust(2, '0')}"
    return text


def quantity(v: float | None) -> str:
    """An amount of an asset: 6 significant digits, thousands separators above 1,000."""
    if _bad(v):
        return ""
    x = float(v)  # type: ignore[arg-type]
    return f"{x:,.2f}" if abs(x) >= 1000 else f"{x:.6g}"


def money(v: float | None) -> str:
    """Money: ``12,345.67``."""
    return "" if _bad(v) else f"{float(v):,.2f}"  # type: ignore[arg-type]


def signed_money(v: float | None) -> str:
    """P&L in money with its sign: ``+1,234.50`` / ``−12.00``."""
    return "" if _bad(v) else f"{float(v):+,.2f}".replace("-", "−")  # type: ignore[arg-type]


def signed_pct(v: float | None, decimals: int = 2) -> str:
    """A fraction as a signed percentage: ``+1.23 %``."""
    return "" if _bad(v) else f"{float(v) * 100:+.{decimals}f} %".replace("-", "−")  # type: ignore[arg-type]


def pct(v: float | None, decimals: int = 1) -> str:
    """A fraction as a percentage: ``61.5 %``."""
    return "" if _bad(v) else f"{float(v) * 100:.{decimals}f} %"  # type: ignore[arg-type]


def confidence(v: float | None) -> str:
    """The agent's confidence (0-1) as a percentage: 0.199646 reads ``20 %``."""
    return pct(v, 0)


def duration(v: pd.Timedelta | float | None) -> str:
    """A duration (a Timedelta or seconds) the way a trader says it: ``45 s``, ``12 m``,
    ``3 h 20 m``, ``2 d 4 h``."""
    if _bad(v):
        return ""
    seconds = v.total_seconds() if isinstance(v, pd.Timedelta) else float(v)  # type: ignore[arg-type]
    s = int(round(seconds))
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    if d:
        return f"{d} d {h} h" if h else f"{d} d"
    if h:
        return f"{h} h {m} m" if m else f"{h} h"
    if m:
        return f"{m} m {sec} s" if sec and m < 10 else f"{m} m"
    return f"{sec} s"


def pnl_with_pct(value: float | None, fraction: float | None) -> str:
    """``+123.45 (+1.23 %)``."""
    if _bad(value):
        return ""
    return f"{signed_money(value)} ({signed_pct(fraction)})" if not _bad(fraction) else signed_money(value)


def fmt(value: object) -> str:
    """One cell as text when no column format applies: floats to 6 significant digits,
    times to the second, NaN/NaT/None blank."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, pd.Timestamp):
        return "" if pd.isna(value) else value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


#: How a column of any table is shown, by its name (tables pass their own for others).
FORMATS: dict[str, Callable[[Any], str]] = {
    "price": price, "entry_price": price, "mark_price": price, "average": price, "exit_price": price,
    "entry price": price, "exit price": price, "mark price": price, "avg fill price": price, "stop": price,
    "amount": quantity, "quantity": quantity, "filled": quantity, "size": quantity,
    "fee": money, "fees": money, "cost": money,
    "pnl": signed_money, "unrealized_pnl": signed_money, "realized_pnl": signed_money,
    "unrealised P&L": signed_money, "realised P&L": signed_money,
    "confidence": confidence, "duration": duration,
}
_NUMERIC = {c for c, f in FORMATS.items() if f not in (duration,)} | {"P&L", "P&L %", "return %"}
_SIGNED = {"pnl", "unrealized_pnl", "realized_pnl", "unrealised P&L", "realised P&L", "P&L", "P&L %"}
_WRAP = {"reason", "evidence", "similar past trades", "text", "line"}


def _cell(col: str, value: object, formats: Mapping[str, Callable[[Any], str]]) -> str:
    fn = formats.get(col) or FORMATS.get(col)
    text = fn(value) if fn is not None and not isinstance(value, str) else fmt(value)
    css = []
    if col in _NUMERIC:
        css.append("memlab-num")
    if col in _SIGNED and isinstance(value, int | float) and not _bad(value) and value:
        css.append("memlab-up" if value > 0 else "memlab-down")
    elif col in _SIGNED and isinstance(value, str) and value[:1] in ("+", "−"):  # pre-formatted P&L
        css.append("memlab-up" if value[0] == "+" else "memlab-down")
    if col in _WRAP:
        css.append("memlab-wrap")
    attr = f' class="{" ".join(css)}"' if css else ""
    return f'<td data-col="{html.escape(col)}"{attr}>{html.escape(text)}</td>'


def table(frame: pd.DataFrame | None, caption: str, *, missing: str, columns: Sequence[str] | None = None,
          formats: Mapping[str, Callable[[Any], str]] | None = None, total: int | None = None,
          labels: Mapping[str, str] | None = None) -> str:
    """``frame`` as an HTML table (header + one ``<tr>`` per row), or a ``missing`` note.
    Cells are formatted by column name (:data:`FORMATS`, overridden by ``formats``); the
    caption counts the rows, or says ``n of total`` when ``total`` is given. ``labels``
    renames headers only: cells keep ``data-col`` = the column's name."""
    if frame is None:
        return f'<p class="memlab-missing">{html.escape(caption)}: {html.escape(missing)}</p>'
    cols = list(columns or frame.columns)
    frame = frame.reindex(columns=cols)  # a source with no rows yet may have no columns either
    fm = formats or {}
    names = labels or {}
    head = "".join(f"<th>{html.escape(names.get(c, c))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(_cell(c, v, fm) for c, v in zip(cols, row, strict=True)) + "</tr>"
        for row in frame[cols].itertuples(index=False, name=None)
    )
    empty = "" if len(frame) else f'<tr><td colspan="{len(cols)}" class="memlab-missing">none</td></tr>'
    count = f"{len(frame)}" if total is None or total == len(frame) else f"newest {len(frame)} of {total:,}"
    return (f"<table><caption>{html.escape(caption)} ({count})</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}{empty}</tbody></table>")


def cards(values: Mapping[str, str | tuple[str, str]]) -> str:
    """Headline figures side by side; a value may be ``(figure, small print)``."""
    out = []
    for k, v in values.items():
        figure, note = v if isinstance(v, tuple) else (v, "")
        figure = figure or "—"  # nothing to show yet, said as such
        small = f"<small>{html.escape(note)}</small>" if note else ""
        out.append(f'<span class="memlab-card">{html.escape(k)}<b>{html.escape(figure)}</b>{small}</span>')
    return "".join(out)
