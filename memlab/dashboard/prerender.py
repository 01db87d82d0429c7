"""The monitor's first paint, rendered on the server: plain HTML of a page's view.

A served page needs Solara's scripts, a websocket and a virtual kernel before its widgets
show (about 2.5 s on a 2-core machine). Meanwhile the page shows this: the same tables and
numbers, built by the same :class:`~memlab.dashboard.app.MonitorApp` from the same read of
the stores, as static HTML (the figures' places are kept empty). It is labelled as a
snapshot with the (wall) time it was read, and the page removes it as soon as the live
monitor is on screen.

Its widget classes are renamed ``memlab-X`` → ``memlab-first-X`` (``memlab-table`` and the
classes inside the tables are kept, so it looks the same), so a script or test that asks
for ``.memlab-decisions`` finds only the live monitor.
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from memlab.dashboard.app import MonitorApp

#: The element the page shows the snapshot in (and removes once the live monitor shows).
ELEMENT_ID = "memlab-first"

_KEPT = {"memlab-table"}
_LAYOUT = {"flex": "flex", "width": "width", "min_width": "min-width", "min_height": "min-height",
           "grid_gap": "gap"}


def _renamed(name: str) -> str:
    return name if name in _KEPT or not name.startswith("memlab-") else "memlab-first-" + name[len("memlab-"):]


def _classes(widget: Any) -> str:
    return " ".join(_renamed(name) for name in getattr(widget, "_dom_classes", ()))


def _widget_classes(widget: Any) -> set[str]:
    import ipywidgets as W

    out = set(getattr(widget, "_dom_classes", ()))
    for child in getattr(widget, "children", ()) if isinstance(widget, W.Box) else ():
        out |= _widget_classes(child)
    return out


def _css_for(style: str, renamed: set[str]) -> str:
    """``style`` (the monitor's CSS) with the rules on widget classes in ``renamed`` applied to
    their first-paint names too (the classes inside the tables' HTML are kept as they are)."""
    return re.sub(r"\.(memlab-[a-z-]+)\b(?!-)", lambda m: "." + _renamed(m.group(1)) if m.group(1) in renamed
                  else m.group(0), style)


def _style(widget: Any, direction: str) -> str:
    parts = [f"display: flex; flex-direction: {direction}"]
    layout = getattr(widget, "layout", None)
    for attr, css in _LAYOUT.items():
        value = getattr(layout, attr, None)
        if value:
            parts.append(f"{css}: {value}")
    return "; ".join(parts)


def _render(widget: Any) -> str:
    import ipywidgets as W

    if isinstance(widget, W.HTML):
        return f'<div class="widget-html {_classes(widget)}"><div class="widget-html-content">{widget.value}</div></div>'
    if isinstance(widget, W.Box):
        direction = "row" if isinstance(widget, W.HBox) else "column"
        inner = "".join(_render(c) for c in widget.children)
        return f'<div class="{_classes(widget)}" style="{_style(widget, direction)}">{inner}</div>'
    return ""  # figures (not built yet), the search box, the page probe: the live page brings them


def page_html(app: MonitorApp, read_at: pd.Timestamp) -> str:
    """``app``'s selected view as static HTML: its banner, the view's names (as links to them)
    and the view's tables and numbers; ``read_at`` (UTC) is when the stores were read."""
    from memlab.dashboard.app import VIEWS
    from memlab.dashboard.tables import STYLE

    index = app.tabs.selected_index or 0
    links = " · ".join(f'<a href="/{v}">{v}</a>' if i != index else f"<b>{v}</b>" for i, v in enumerate(VIEWS))
    stamp = pd.Timestamp(read_at).strftime("%H:%M:%S UTC")
    note = (f'<div class="memlab-first-note">A snapshot of the stores read at {html.escape(stamp)}; '
            "the live monitor is loading…</div>")
    view = app.tabs.children[index]
    css = _css_for(STYLE, _widget_classes(app.widget) | _widget_classes(view))
    return (f"{css}{note}<div class=\"memlab-first-views\">{links}</div>{_render(app.banner)}"
            f"{_render(view)}")


_REMOVER = """<script>
(function () {
  var box = document.getElementById("ELEMENT_ID");
  var watch = new MutationObserver(function () {
    var banner = document.querySelector("#app .memlab-monitor .memlab-banner");
    if (banner && banner.textContent.trim() !== "") { watch.disconnect(); box.remove(); }
  });
  watch.observe(document.documentElement, {childList: true, subtree: true, characterData: true});
})();
</script>""".replace("ELEMENT_ID", ELEMENT_ID)

_BOX_STYLE = f"""<style>
#{ELEMENT_ID} {{padding: 8px 16px; font: 13px system-ui, sans-serif;}}
#{ELEMENT_ID} ~ #app #loader-container {{display: none !important;}}
.memlab-first-note {{font: 12px system-ui, sans-serif; color: #777; margin: 0 0 4px;}}
.memlab-first-views {{font: 13px system-ui, sans-serif; margin: 0 0 6px;}}
.memlab-first-views a {{color: #555;}}
</style>"""


def boot(first: str) -> str:
    """What the server puts before Solara's ``#app`` in a page: the first paint ``first``
    (:func:`page_html`), shown until the live monitor's banner has content, then removed."""
    return f'<div id="{ELEMENT_ID}">{_BOX_STYLE}{first}</div>{_REMOVER}'
