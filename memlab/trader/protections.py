"""Protections: rules that stop a session opening positions for a while, as traders know them.

Three rules, each off unless set, each counted in bars of the symbol being traded:

- **stop-loss guard** (``max_stop_losses`` within ``stop_loss_window`` bars): after that
  many positions closed by a stop (a stop-loss or trailing stop child) in the window, no
  symbol opens a position for ``pause`` bars;
- **drawdown halt** (``max_drawdown``): when equity falls that far below its peak, no
  entries for ``pause`` bars; the peak then restarts from the equity at that moment, so
  the halt does not fire again at once while the account is still below the old peak;
- **cooldown** (``cooldown`` bars): a symbol whose position just closed waits that many
  bars before it opens another.

Exits are never blocked. An entry a protection blocks is a ``Decision: SKIP`` journal line
with the protection's reason (through the decision pipeline), and each protection that
starts is one journal line (``Protection: ...``) and a ``protection`` event on the
session's bus, which the alert targets and the monitor show.

State survives restarts: it is kept in ``protections.json`` in the memory folder, written
atomically as it changes (after the book is written up to that bar, before the journal
line that says so; fsynced with the bar's group commit), and a restarted session replays the exits the book filled after the
state's last exit and writes a start's journal line the killed run did not reach
(:meth:`ProtectionGuard.unannounced`), so ``kill -9`` loses no protection. The drawdown
peak is not saved on every bar: a restart takes it again from the equity log.

>>> rules = ProtectionRules(max_stop_losses=2, stop_loss_window=10, pause=5, cooldown=3)
>>> guard = ProtectionGuard(rules)
>>> bars = lambda t, now: int(now - t)            # bar times 0, 1, 2, ...: bars after t up to now
>>> guard.record_exit("BTC/USDT", 1.0, stop=True, bars_since=lambda t: bars(t, 1.0))
[]
>>> guard.record_exit("ETH/USDT", 4.0, stop=True, bars_since=lambda t: bars(t, 4.0))
['stop-loss guard: 2 stop-losses within 10 bars: no entries for 5 bars']
>>> guard.blocks("SOL/USDT", 6.0, lambda t: bars(t, 6.0))
'stop-loss guard: 2 stop-losses within 10 bars (paused 2 of 5 bars)'
>>> guard.blocks("SOL/USDT", 9.0, lambda t: bars(t, 9.0)) is None
True
>>> guard.blocks("ETH/USDT", 6.0, lambda t: bars(t, 6.0))   # its cooldown came first
'cooldown: ETH/USDT closed a position 2 bars ago (waits 3)'
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from memlab.errors import InvalidInputError
from memlab.memory.durable import at_group_end, atomic_write_bytes, in_group_commit

log = logging.getLogger(__name__)

STATE_FILE = "protections.json"
BarsSince = Callable[[float], int]


@dataclass(frozen=True)
class ProtectionRules:
    """Which protections a session runs (all off by default); counts are bars.

    Raises:
        InvalidInputError: a count that is not a whole number >= 1, or ``max_drawdown``
            outside (0, 1), naming it.
    """

    max_stop_losses: int | None = None
    stop_loss_window: int = 60
    pause: int = 60
    max_drawdown: float | None = None
    cooldown: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_stop_losses", "stop_loss_window", "pause", "cooldown"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidInputError(f"{name} must be a whole number of bars >= 1, got {value!r}")
        if self.max_drawdown is not None and not (isinstance(self.max_drawdown, (int, float))
                                                  and 0 < self.max_drawdown < 1):
            raise InvalidInputError(f"max_drawdown must be a fraction of equity in (0, 1), got {self.max_drawdown!r}")

    @property
    def active(self) -> bool:
        return self.max_stop_losses is not None or self.max_drawdown is not None or self.cooldown is not None


@dataclass
class ProtectionGuard:
    """The protections' state: what closed when, and which pause runs since when."""

    rules: ProtectionRules
    path: Path | None = None
    stops: list[float] = field(default_factory=list)  # bar times of stop-loss exits, within the window
    last_exit: dict[str, float] = field(default_factory=dict)  # symbol -> bar time of its last exit
    paused_at: dict[str, float] = field(default_factory=dict)  # "stop-loss guard" / "drawdown halt" -> bar time
    reasons: dict[str, str] = field(default_factory=dict)
    peak: float = math.nan
    peak_since: float = -math.inf  # the bar time the peak was last measured afresh from
    as_of: dict[str, float] = field(default_factory=dict)  # symbol -> bar time of its last exit in this state
    last_start: dict[str, tuple[float, str]] = field(default_factory=dict)  # name -> (bar time, journal note)
    #: Called before each save: the trader makes its book durable up to this bar first, so
    #: a restart never resumes from a bar before the state's (a paper book writes the marks
    #: of bars that fill nothing in batches).
    before_save: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def open(cls, rules: ProtectionRules, memory_path: str | Path) -> ProtectionGuard:
        """The guard of a memory folder: its saved state, or a fresh one."""
        path = Path(memory_path) / STATE_FILE
        guard = cls(rules, path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return guard
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("%s is damaged (%s): protections start afresh", path, exc)
            return guard
        guard.stops = [float(t) for t in data.get("stops", [])]
        guard.last_exit = {str(k): float(v) for k, v in data.get("last_exit", {}).items()}
        guard.paused_at = {str(k): float(v) for k, v in data.get("paused_at", {}).items()}
        guard.reasons = {str(k): str(v) for k, v in data.get("reasons", {}).items()}
        guard.peak = math.nan if data.get("peak") is None else float(data["peak"])
        guard.peak_since = -math.inf if data.get("peak_since") is None else float(data["peak_since"])
        guard.as_of = {str(k): float(v) for k, v in data.get("as_of", {}).items()}
        guard.last_start = {str(k): (float(v[0]), str(v[1])) for k, v in data.get("last_start", {}).items()}
        return guard

    def unannounced(self, announced: Iterable[tuple[str, float]]) -> list[tuple[str, float, str]]:
        """The starts this state holds whose journal line is not among ``announced``
        ((name, bar time) pairs from the journal): a run killed between the two writes.
        Returns (name, bar time, note) for each, to be journalled now."""
        said = {(name, int(t)) for name, t in announced}  # the journal keeps whole seconds
        return [(name, t, note) for name, (t, note) in sorted(self.last_start.items(), key=lambda kv: kv[1][0])
                if (name, int(t)) not in said]

    def restore_peak(self, equity: Iterable[float]) -> None:
        """Take the equity marked since the peak was last measured afresh (``peak_since``,
        from the equity log) after a restart: the peak is saved only when a halt starts."""
        for value in equity:
            if value > 0 and not self.peak >= value:
                self.peak = float(value)

    # -- what happened ---------------------------------------------------------------------
    def record_exit(self, symbol: str, bar_time: float, *, stop: bool, bars_since: BarsSince) -> list[str]:
        """A position of ``symbol`` closed at ``bar_time`` (by a stop when ``stop``);
        ``bars_since(t)`` counts the symbol's bars after ``t`` up to ``bar_time``. Returns
        the protections this starts, as journal notes."""
        self.last_exit[symbol] = bar_time
        self.as_of[symbol] = bar_time
        started: list[str] = []
        k = self.rules.max_stop_losses
        if stop and k is not None:
            window = self.rules.stop_loss_window
            self.stops = [t for t in self.stops if bars_since(t) < window][-(k - 1):] if k > 1 else []
            self.stops.append(bar_time)
            if len(self.stops) >= k and "stop-loss guard" not in self.paused_at:
                reason = f"stop-loss guard: {k} stop-losses within {window} bars"
                self.paused_at["stop-loss guard"] = bar_time
                self.reasons["stop-loss guard"] = reason
                self.stops.clear()
                started.append(f"{reason}: no entries for {self.rules.pause} bars")
                self.last_start["stop-loss guard"] = (bar_time, started[-1])
        self._changed()
        return started

    def record_equity(self, equity: float, bar_time: float) -> list[str]:
        """Equity marked at ``bar_time``; returns the drawdown halt's note when it starts."""
        limit = self.rules.max_drawdown
        if limit is None or not equity > 0:
            return []
        if not self.peak >= equity:
            self.peak = equity
            return []
        drawdown = 1 - equity / self.peak
        if drawdown < limit or "drawdown halt" in self.paused_at:
            return []
        reason = f"drawdown halt: equity {drawdown:.1%} below its peak {self.peak:,.2f} (limit {limit * 100:g}%)"
        self.paused_at["drawdown halt"] = bar_time
        self.reasons["drawdown halt"] = reason
        self.peak, self.peak_since = equity, bar_time  # measured afresh after the pause, not against the old peak
        note = f"{reason}: no entries for {self.rules.pause} bars"
        self.last_start["drawdown halt"] = (bar_time, note)
        self._changed()
        return [note]

    # -- what it allows --------------------------------------------------------------------
    def blocks(self, symbol: str, bar_time: float, bars_since: BarsSince) -> str | None:
        """Why an entry of ``symbol`` at ``bar_time`` is blocked, or None; ``bars_since(t)``
        counts the symbol's bars after ``t`` up to this one. A pause that is over ends here."""
        cooldown = self.rules.cooldown
        if cooldown is not None and symbol in self.last_exit:
            waited = bars_since(self.last_exit[symbol])
            if waited < cooldown:
                return f"cooldown: {symbol} closed a position {waited} bars ago (waits {cooldown})"
        for name, since in list(self.paused_at.items()):
            paused = bars_since(since)
            if paused < self.rules.pause:
                return f"{self.reasons.get(name, name)} (paused {paused} of {self.rules.pause} bars)"
            del self.paused_at[name]
            self.reasons.pop(name, None)
            self._changed()
        return None

    # -- keeping it --------------------------------------------------------------------------
    def _changed(self) -> None:
        """Write the state now, before the caller journals what changed. Inside a group
        commit the write skips its fsync (a killed process keeps it) and the group's end
        writes it once more, fsynced."""
        if self.path is None:
            return
        if self.before_save is not None:
            self.before_save()
        grouped = in_group_commit()
        self.save(sync=not grouped)
        if grouped:
            at_group_end(("protections", id(self)), self.save)

    def save(self, *, sync: bool = True) -> None:
        """Write the state atomically (``sync``: and durably, through a power cut)."""
        if self.path is None:
            return
        data = {"stops": self.stops, "last_exit": self.last_exit, "paused_at": self.paused_at,
                "reasons": self.reasons, "peak": None if math.isnan(self.peak) else self.peak,
                "peak_since": None if math.isinf(self.peak_since) else self.peak_since, "as_of": self.as_of,
                "last_start": self.last_start}
        atomic_write_bytes(self.path, json.dumps(data, indent=1).encode(), sync=sync)

    def active(self) -> dict[str, str]:
        """The pauses running now: name -> reason (for reports and the monitor)."""
        return {name: self.reasons.get(name, name) for name in self.paused_at}
