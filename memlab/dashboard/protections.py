"""Protection starts read back from the journal, and whether a pause runs now, as the monitor shows them.

The trader journals each protection that starts (:mod:`memlab.trader.protections`) at the
market time of the bar that started it::

    [2024-01-01 04:04:00] Protection: drawdown halt - Decision: PAUSE - Bars: 30 - drawdown halt: equity 0.5% ...

and each entry a protection blocks as a ``Decision: SKIP`` line whose note names it
(``BTC/USDT BUY not taken, drawdown halt: ... (paused 2 of 30 bars): ...``; the per-symbol
cooldown only ever blocks, it never starts a pause).

>>> from datetime import datetime, UTC
>>> from memlab.memory.journal import JournalEntry
>>> at = lambda m: datetime(2024, 1, 1, 4, m, tzinfo=UTC)
>>> starts = protection_starts([
...     JournalEntry(at(4), {"Protection": "drawdown halt", "Decision": "PAUSE", "Bars": "30"},
...                  ("drawdown halt: equity 0.5% below its peak 10,399.19 (limit 0.4%): no entries for 30 bars",)),
...     JournalEntry(at(6), {"Strategy": "sma_cross", "Decision": "SKIP"},
...                  ("BTC/USDT BUY not taken, drawdown halt: equity 0.5% below ... (paused 2 of 30 bars)",))])
>>> starts[["protection", "bars", "blocked"]].values.tolist()
[['drawdown halt', 30, 1]]
>>> bars = pd.date_range("2024-01-01 04:00", "2024-01-01 04:20", freq="1min", tz="UTC")
>>> pause = running_pause(starts, bars)
>>> pause.protection, pause.elapsed, pause.left, str(pause.ends)
('drawdown halt', 16, 14, '2024-01-01 04:34:00+00:00')
>>> running_pause(starts, pd.date_range("2024-01-01 04:00", periods=40, freq="1min", tz="UTC")) is None
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from memlab.memory.journal import JournalEntry

#: The protections that start a pause (journalled as ``Protection: <name>``).
PROTECTIONS = ("stop-loss guard", "drawdown halt")
#: What blocks entries without starting a pause (SKIP lines only).
COOLDOWN = "cooldown"
COLUMNS = ["protection", "bars", "reason", "blocked"]


def _blocker(entry: JournalEntry) -> str | None:
    """The protection a ``Decision: SKIP`` line names as what blocked its entry, or None."""
    if entry.fields.get("Decision") != "SKIP":
        return None
    text = " ".join(entry.notes)
    for name in (*PROTECTIONS, COOLDOWN):
        if f"{name}:" in text:
            return name
    return None


class ProtectionLog:
    """Protection starts and the entries blocked, taken from journal entries as they come
    (:meth:`add`, in journal order), so a monitor parses each journal line once."""

    def __init__(self) -> None:
        self.lines = 0  #: the journal's line number of the last entry taken
        self._rows: list[dict[str, object]] = []
        self._times: list[pd.Timestamp] = []
        self._latest: dict[str, int] = {}  # protection -> row of its latest start
        self.cooldown_blocked = 0  #: entries the cooldown blocked
        self.cooldown_last: JournalEntry | None = None  #: the newest of them
        self._frame: pd.DataFrame | None = None

    def add(self, entries: Iterable[JournalEntry]) -> ProtectionLog:
        for entry in entries:
            self.lines = max(self.lines, entry.line)
            name = entry.fields.get("Protection")
            if name is not None and entry.fields.get("Decision") == "PAUSE":
                try:
                    bars = int(entry.fields.get("Bars", ""))
                except ValueError:
                    bars = 0  # an unreadable length: shown, never counted as running
                self._latest[name] = len(self._rows)
                self._rows.append({"protection": name, "bars": bars, "reason": " ".join(entry.notes), "blocked": 0})
                self._times.append(pd.Timestamp(entry.time))
                self._frame = None
                continue
            blocker = _blocker(entry)
            if blocker == COOLDOWN:
                self.cooldown_blocked, self.cooldown_last = self.cooldown_blocked + 1, entry
            elif blocker in self._latest:
                self._rows[self._latest[blocker]]["blocked"] += 1  # type: ignore[operator]
                self._frame = None
        return self

    def starts(self) -> pd.DataFrame:
        """Every start taken, oldest first, indexed by its market time (UTC): ``protection``,
        ``bars`` (how long it pauses entries), ``reason`` (the journal's note) and ``blocked``
        (the entries it blocked: SKIP lines naming it from its start until the next start of
        the same protection)."""
        if self._frame is None:
            index = pd.DatetimeIndex(self._times, name="market time").tz_convert("UTC") if self._times else \
                pd.DatetimeIndex([], tz="UTC", name="market time")
            self._frame = pd.DataFrame([dict(r) for r in self._rows], index=index, columns=COLUMNS)
        return self._frame


def protection_starts(entries: Iterable[JournalEntry]) -> pd.DataFrame:
    """Every protection start in ``entries`` (journal order): :meth:`ProtectionLog.starts`."""
    return ProtectionLog().add(entries).starts()


def cooldown_note(entry: JournalEntry) -> str:
    """What a cooldown's SKIP line says, without the agent's analysis after it:
    ``BTC/USDT BUY not taken, cooldown: BTC/USDT closed a position 0 bars ago (waits 4)``."""
    text = " ".join(entry.notes)
    head, found, _ = text.partition(")" + ": ")
    return head + ")" if found else text


def bar_interval(bars: pd.DatetimeIndex) -> pd.Timedelta | None:
    """The session's bar interval: the median spacing of its newest 500 bars (None with < 2)."""
    if len(bars) < 2:
        return None
    steps = np.diff(pd.DatetimeIndex(bars[-500:]).as_unit("ns").asi8)
    steps = steps[steps > 0]
    return pd.Timedelta(int(np.median(steps)), unit="ns") if len(steps) else None


@dataclass(frozen=True)
class Pause:
    """A protection's pause that runs at the session's last bar."""

    protection: str
    started: pd.Timestamp  #: market time of the bar that started it
    bars: int  #: how many bars it pauses entries for
    elapsed: int  #: bars of the session after ``started``, up to its last bar
    reason: str
    ends: pd.Timestamp | None  #: market time of the bar it ends on (estimated with the bar interval)
    last_bar: pd.Timestamp  #: market time of the session's last bar

    @property
    def left(self) -> int:
        """Bars still paused after the last bar."""
        return self.bars - self.elapsed


def running_pause(starts: pd.DataFrame | None, bars: pd.DatetimeIndex) -> Pause | None:
    """The pause running at the session's last bar, or None.

    The rule: the latest protection start (by market time) is running when fewer than its
    ``Bars`` bars of the session have passed since it, counted as the trader counts them:
    the bars with a market time after the start's, up to the session's last bar (``bars``:
    every bar's market time, from the equity log, which marks each bar). The trader blocks
    entries on bars 0 .. Bars-1 after the start and allows them again on bar ``Bars``. Its
    end's market time is the last bar plus the bars left times the bar interval
    (:func:`bar_interval`). Only the latest start is considered: a newer start is the
    pause a trader would be told about, and an older one that overlaps it ends no later
    in practice (every protection pauses for the same ``pause`` bars). Without bars (no
    equity log yet) nothing can be counted, so no pause is said to run.
    """
    if starts is None or not len(starts) or not len(bars):
        return None
    bars = pd.DatetimeIndex(bars)
    started = starts.index[-1]
    last = starts.iloc[-1]
    elapsed = int(len(bars) - bars.searchsorted(started, side="right"))
    if elapsed >= int(last["bars"]):
        return None
    step = bar_interval(bars)
    ends = None if step is None else bars[-1] + (int(last["bars"]) - elapsed) * step
    return Pause(str(last["protection"]), started, int(last["bars"]), elapsed, str(last["reason"]), ends, bars[-1])
