"""Protections in the monitor: each protection start the trader journalled is an alert (a
warning: above routine adaptations, below a real drawdown), with its market time and reason,
and the first screen says when a pause runs at the session's last bar."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from memlab.dashboard.app import MonitorApp
from memlab.dashboard.protections import protection_starts
from memlab.memory import MemoryStores
from memlab.memory.journal import MemoryJournal
from memlab.trader.equity import EquityLog, read_equity

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 1, 1, 4, 0, tzinfo=UTC)
HALT = "drawdown halt: equity 0.5% below its peak 10,399.19 (limit 0.4%): no entries for 30 bars"
GUARD = "stop-loss guard: 2 stop-losses within 40 bars: no entries for 30 bars"


def _minute(i: int) -> datetime:
    return T0 + timedelta(minutes=i)


def _write_session(root: Path, bars: int) -> None:
    """A memory folder as a 1-minute session writes it, through the stores' own writers: an
    older stop-loss guard, a drawdown halt at 04:04 with two entries it blocked, a cooldown's
    block, then enough other journal lines that the starts are not among the last 30; an
    adaptation; and ``bars`` bars of equity from 04:00, 20 % below the peak at the end."""
    with MemoryStores(root) as mem:
        mem.journal.append({"Protection": "stop-loss guard", "Decision": "PAUSE", "Bars": 30}, note=GUARD,
                           at=_minute(-90))
        mem.journal.append({"Protection": "drawdown halt", "Decision": "PAUSE", "Bars": 30}, note=HALT, at=_minute(4))
        for i in (6, 9):
            mem.journal.append({"Strategy": "sma_cross", "Decision": "SKIP", "Confidence": 0.5,
                                "Bar": _minute(i).isoformat()},
                               note=f"BTC/USDT BUY not taken, drawdown halt: equity 0.5% below its peak 10,399.19 "
                                    f"(limit 0.4%) (paused {i - 4} of 30 bars): 2 similar BUYs", at=_minute(i))
        mem.journal.append({"Strategy": "sma_cross", "Decision": "SKIP", "Confidence": 0.5},
                           note="BTC/USDT BUY not taken, cooldown: BTC/USDT closed a position 1 bars ago (waits 4): "
                                "3 similar BUYs, 1 won",
                           at=_minute(-100))
        for _ in range(40):
            mem.journal.append({"Strategy": "sma_cross", "Decision": "HOLD", "Confidence": 0.5}, at=_minute(10))
        mem.parameters.set("position_size", 0.07, reason="win rate 0.41 < 0.45")
    _mark(root, range(bars))


def _mark(root: Path, minutes: range) -> None:
    """Bars of the equity log at these minutes after 04:00 (equity 20 % below its peak at the end)."""
    log = EquityLog(root, ["BTC/USDT"])
    log.hold(0.0, [100.0])
    for i in minutes:
        log.mark(_minute(i).timestamp(), [100.0 if i < 10 else 80.0])
    log.close()


def test_protection_starts_are_warnings_and_the_first_screen_says_a_pause_runs(tmp_path: Path) -> None:
    root = tmp_path / "mem"
    _write_session(root, bars=21)  # the last bar is 04:20: 16 bars after the halt's 04:04
    app = MonitorApp(root)
    items = app.alert_items(app.snapshot)
    severities = [s for s, _ in items]
    assert severities == sorted(severities, key=("critical", "warning", "info").index)
    warnings = [t for s, t in items if s == "warning"]
    assert warnings[:2] == [
        f"Protection drawdown halt started at market time 2024-01-01 04:04 UTC for 30 bars (running now: 14 of 30 bars "
        f"left, until ~2024-01-01 04:34 UTC) — {HALT}; 2 entries blocked",
        f"Protection stop-loss guard started at market time 2024-01-01 02:30 UTC for 30 bars (over) — {GUARD}"]
    # Ranked: below the real drawdown (critical), above the adaptation and the cooldown (info).
    assert severities[0] == "critical" and items[0][1].startswith("Drawdown 20.0%")
    assert ("info", "Cooldown held back 1 entry; the newest at market time 2024-01-01 02:20 UTC: BTC/USDT BUY not "
                    "taken, cooldown: BTC/USDT closed a position 1 bars ago (waits 4)") in items
    assert any(s == "info" and "win rate 0.41" in t for s, t in items)
    page = app.alerts.value
    assert page.index('data-severity="critical"') < page.index("Protection drawdown halt") < page.index(
        'data-severity="info"')
    # The first screen, above the cards: the pause running now, its market times and its reason.
    assert app.pause.value.startswith('<div class="memlab-pause-running" data-protection="drawdown halt"><b>Entries '
                                      'paused now</b> — drawdown halt since market time 2024-01-01 04:04 UTC: 14 of 30 '
                                      'bars left at the last bar 2024-01-01 04:20 (until ~2024-01-01 04:34 UTC)')
    assert HALT in app.pause.value
    assert app.widget.children[3].children[0].children[0] is app.pause  # the dashboard tab's first widget

    # 14 more bars (to 04:34): the 30th bar after the start allows entries again.
    _mark(root, range(21, 35))
    app.refresh()
    assert app.pause.value == ""
    assert any(t.startswith("Protection drawdown halt started at market time 2024-01-01 04:04 UTC for 30 bars (over)")
               for s, t in app.alert_items(app.snapshot) if s == "warning")

    # The trader goes on: a late SKIP of the halt, then the stop-loss guard starts at 04:30.
    with MemoryStores(root) as mem:
        mem.journal.append({"Strategy": "sma_cross", "Decision": "SKIP", "Confidence": 0.5},
                           note="BTC/USDT BUY not taken, drawdown halt: equity 0.5% below its peak 10,399.19 (limit "
                                "0.4%) (paused 29 of 30 bars): 2 similar BUYs", at=_minute(33))
        mem.journal.append({"Protection": "stop-loss guard", "Decision": "PAUSE", "Bars": 30}, note=GUARD,
                           at=_minute(30))
    app.refresh()
    warnings = [t for s, t in app.alert_items(app.snapshot) if s == "warning"]
    assert warnings[0].startswith("Protection stop-loss guard started at market time 2024-01-01 04:30 UTC for 30 bars "
                                  "(running now: 26 of 30 bars left, until ~2024-01-01 05:00 UTC)")
    assert warnings[1].startswith("Protection drawdown halt started at market time 2024-01-01 04:04 UTC for 30 bars "
                                  "(over)") and warnings[1].endswith("; 3 entries blocked")
    assert warnings[2] == ("1 earlier protection start this session (first at market time 2024-01-01 02:30 UTC); "
                           "see the journal")
    assert 'data-protection="stop-loss guard"' in app.pause.value and "26 of 30 bars left" in app.pause.value
    # What the monitor keeps up to date line by line is what the whole journal says.
    assert app.snapshot.protections.equals(protection_starts(MemoryJournal(root).entries()))


def test_the_last_paused_bar_still_counts_as_running(tmp_path: Path) -> None:
    root = tmp_path / "mem"
    _write_session(root, bars=34)  # last bar 04:33: 29 bars after 04:04, the pause's last one
    app = MonitorApp(root)
    assert "1 of 30 bars left at the last bar 2024-01-01 04:33" in app.pause.value


def test_without_an_equity_log_a_start_is_shown_but_not_said_to_run(tmp_path: Path) -> None:
    root = tmp_path / "mem"
    with MemoryStores(root) as mem:
        mem.journal.append({"Protection": "drawdown halt", "Decision": "PAUSE", "Bars": 30}, note=HALT, at=_minute(4))
    app = MonitorApp(root)
    assert app.pause.value == ""
    assert ("warning", f"Protection drawdown halt started at market time 2024-01-01 04:04 UTC for 30 bars (no equity "
                       f"log to count bars: whether it still runs is unknown) — {HALT}") in app.alert_items(app.snapshot)


def test_a_paper_session_with_protections_shows_what_its_journal_holds(tmp_path: Path) -> None:
    """A real `memlab paper` session whose drawdown halt and stop-loss guard fire many times."""
    root = tmp_path / "mem"
    env = {k: v for k, v in os.environ.items() if k != "MEM_ENCRYPTION_KEY"} | {"MEM_MEMORY_PATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-m", "memlab.cli", "paper", "--symbol", "BTC/USDT", "--strategy", "sma_cross",
         "--param", "fast=5", "--param", "slow=20", "--synthetic", "1500", "--seed", "3", "--warmup", "200",
         "--sizing", "full", "--max-stop-losses", "2", "--stop-loss-window", "40", "--pause", "30",
         "--cooldown", "4", "--max-drawdown", "0.004", "--stop-loss", "0.002"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    journal = MemoryJournal(root).entries()
    starts = [e for e in journal if e.fields.get("Decision") == "PAUSE" and "Protection" in e.fields]
    assert len(starts) > 2, "the session should start protections (its flags are tight)"
    assert len(MemoryJournal(root).tail(30)) == 30  # more than the journal tail the monitor lists

    app = MonitorApp(root)
    warnings = [t for s, t in app.alert_items(app.snapshot) if s == "warning"]
    newest, before = starts[-1], starts[-2]
    for entry, shown in ((newest, warnings[0]), (before, warnings[1])):
        assert shown.startswith(f"Protection {entry.fields['Protection']} started at market time "
                                f"{entry.time:%Y-%m-%d %H:%M} UTC for {entry.fields['Bars']} bars")
        assert shown.split(" — ", 1)[1].startswith(entry.notes[0])  # the reason, as journalled
    assert f"{len(starts) - 2} earlier protection starts this session (first at market time " \
           f"{starts[0].time:%Y-%m-%d %H:%M} UTC)" in warnings[2]
    # Running now or not, counted independently: the equity log's bars after the newest start.
    bars = read_equity(root).index
    elapsed = int((bars > pd.Timestamp(newest.time)).sum())
    left = int(newest.fields["Bars"]) - elapsed
    if left > 0:
        assert f"(running now: {left} of {newest.fields['Bars']} bars left" in warnings[0]
        assert f"{left} of {newest.fields['Bars']} bars left at the last bar {bars[-1]:%Y-%m-%d %H:%M}" in app.pause.value
    else:
        assert "(over)" in warnings[0] and app.pause.value == ""
    blocked = sum(1 for e in journal if e.fields.get("Decision") == "SKIP" and e.time >= newest.time
                  and f"not taken, {newest.fields['Protection']}:" in " ".join(e.notes))
    assert (f"; {blocked} entr" in warnings[0]) == (blocked > 0)


@pytest.mark.parametrize("view", ["trades", "dashboard"])
def test_a_served_page_builds_its_figures_once_the_page_has_shown_a_view_with_figures(
        tmp_path: Path, view: str) -> None:
    root = tmp_path / "mem"
    _write_session(root, bars=21)
    due: list[bool] = []
    app = MonitorApp(root, view=view, defer_figures=True)
    app.on_figures_due = lambda: due.append(True)
    assert app.equity is None and app.price is None and app.figures_held  # tables first
    assert "Entries paused now" in app.pause.value and "drawdown halt" in app.alerts.value
    app.refresh()
    assert app.equity is None
    app.page_shown()
    if view == "trades":  # no figure on this view: none is built until one that has them is selected
        app.refresh()
        assert app.equity is None and due == []
        app.tabs.selected_index = 1  # metrics
    assert due == [True] and not app.figures_held
    app.refresh()
    assert list(app.equity.data[1].y) == read_equity(root)["equity"].tolist()
    assert app.price.data[0].name == "close"
