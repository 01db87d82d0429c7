"""Adaptation: the agent changes its own risk parameters when performance or the market says so.

Four triggers, each checked after a position closes (volatility also when a decision is
logged), each bounded and each reversible:

============================  =====================================  =========================
trigger                        fires when                             change
============================  =====================================  =========================
``win_rate``                   win rate of the last ``window`` closed  ``position_size`` x 0.7
                               trades < 0.45                          (floor ``min_position_size``)
``win_rate_recovery``          win rate >= 0.55 while size is cut     size / 0.7 (cap: baseline)
``win_rate_decay``             win rate < trained baseline - 0.10     ``position_size`` x 0.85
                               (but not < 0.45: that is ``win_rate``)
``volatility_regime``          short/long realised volatility enters  ``volatility_regime``;
                               a new band (with hysteresis) on        ``volatility_scale`` 0.5/1.0
                               ``regime_confirm`` observations running
``drawdown``                   drawdown of cumulative return > limit  ``risk_per_trade`` x 0.5
                                                                      (floor ``min_risk_per_trade``)
``drawdown_recovery``          drawdown back under half the limit     ``risk_per_trade`` = baseline
============================  =====================================  =========================

After a win-rate trigger fires it waits ``window`` more closed trades before firing
again, so one bad streak is one cut, not one per trade. Every change goes through
:class:`~memlab.memory.ParameterStore` (``parameter_updates.json``: reason, from, to) and
is a journal line ``Adaptation: win_rate - Parameter: position_size - From: 0.1 - To: 0.07``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from memlab.memory import MemoryJournal, ParameterStore


@dataclass(frozen=True)
class AdaptationConfig:
    """Thresholds and bounds of the triggers (see the module docstring)."""

    window: int = 20
    min_win_rate: float = 0.45
    recovery_win_rate: float = 0.55
    size_cut: float = 0.7
    decay_margin: float = 0.10
    decay_cut: float = 0.85
    max_drawdown_pct: float = 10.0
    risk_cut: float = 0.5
    high_vol_enter: float = 1.5
    high_vol_exit: float = 1.2
    low_vol_enter: float = 0.6
    low_vol_exit: float = 0.8
    high_vol_scale: float = 0.5
    regime_confirm: int = 2
    min_position_size: float = 0.01
    min_risk_per_trade: float = 0.0025


#: Parameters a new agent starts with (and recovers to).
BASELINE: dict[str, Any] = {
    "position_size": 0.1,
    "risk_per_trade": 0.02,
    "volatility_regime": "normal",
    "volatility_scale": 1.0,
    "drawdown_mode": False,
}


@dataclass(frozen=True)
class Adaptation:
    """One parameter change the agent made, and why."""

    trigger: str
    reason: str
    changes: dict[str, tuple[Any, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "reason": self.reason,
            "from": {k: a for k, (a, _) in self.changes.items()},
            "to": {k: b for k, (_, b) in self.changes.items()},
        }


def _utc_ns(values: Any) -> np.ndarray:
    """Any datetime-like column (naive means UTC) as int64 nanoseconds since the epoch, UTC."""
    times = pd.DatetimeIndex(pd.to_datetime(values, utc=True)).tz_convert(None)
    return times.to_numpy("datetime64[ns]").view(np.int64)


class OutcomeWindow:
    """The last ``limit`` closed outcomes (``closed_at`` in ns, ``pnl``, ``return_pct``), in
    order of closing, kept in NumPy buffers: a close appends in O(1) and a column is a
    view, so the triggers cost the same after 5,000 trades as after 5."""

    columns = ("closed_at", "pnl", "return_pct")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self.last_id: int | None = None  # the newest outcome's decision id (a repeated close adds nothing)
        self._times = np.empty(2 * limit, np.int64)
        self._pnl = np.empty(2 * limit, float)
        self._ret = np.empty(2 * limit, float)
        self._end = 0

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, limit: int) -> OutcomeWindow:
        """From :meth:`~memlab.memory.decisions.DecisionStore.outcomes`' frame."""
        window = cls(limit)
        frame = frame.iloc[-limit:]
        n = len(frame)
        window._times[:n] = _utc_ns(frame["closed_at"])
        window._pnl[:n] = frame["pnl"].to_numpy(float)
        window._ret[:n] = frame["return_pct"].to_numpy(float)
        window._end = n
        window.last_id = int(frame["decision_id"].iloc[-1]) if n else None
        return window

    def __len__(self) -> int:
        return min(self._end, self.limit)

    def append(self, decision_id: int, closed_at_ns: int, pnl: float, return_pct: float | None) -> None:
        if self._end == len(self._times):  # full: keep the newest limit - 1, then add
            keep = self.limit - 1
            for buffer in (self._times, self._pnl, self._ret):
                buffer[:keep] = buffer[self._end - keep : self._end]
            self._end = keep
        i = self._end
        self._times[i], self._pnl[i] = closed_at_ns, pnl
        self._ret[i] = np.nan if return_pct is None else return_pct
        self._end += 1
        self.last_id = decision_id

    def __getitem__(self, column: str) -> np.ndarray:
        """A column of the window as a NumPy view (``closed_at`` as UTC ``datetime64[ns]``)."""
        start = max(self._end - self.limit, 0)
        if column == "closed_at":
            return self._times[start : self._end].view("M8[ns]")
        if column == "pnl":
            return self._pnl[start : self._end]
        if column == "return_pct":
            return self._ret[start : self._end]
        raise KeyError(column)

    def frame(self) -> pd.DataFrame:
        """``closed_at`` (UTC), ``pnl``, ``return_pct`` of the window, oldest first."""
        return pd.DataFrame({"closed_at": pd.DatetimeIndex(self["closed_at"]).tz_localize("UTC"),
                             "pnl": self["pnl"], "return_pct": self["return_pct"]}, copy=True)


def _since_mark(trades: pd.DataFrame | OutcomeWindow, mark: Any) -> tuple[int, Any]:
    """How many trades closed after the last win-rate change, and the mark for this one.

    The mark is the last trade's ``closed_at`` (so it survives the history window
    sliding); frames without ``closed_at`` count by position.
    """
    if "closed_at" in trades.columns and len(trades):
        closed = trades["closed_at"]
        ns = closed.view(np.int64) if isinstance(closed, np.ndarray) else _utc_ns(closed)  # window or frame
        new_mark = pd.Timestamp(int(ns[-1]), tz="UTC").isoformat()
        if isinstance(mark, str):
            return int((ns > pd.Timestamp(mark).value).sum()), new_mark
        return len(trades), new_mark
    previous = int(mark) if isinstance(mark, (int, float)) and not isinstance(mark, bool) else 0
    return len(trades) - previous, len(trades)


class Adapter:
    """Checks the triggers and writes the changes; ``on_change`` hears every :class:`Adaptation`."""

    def __init__(
        self,
        parameters: ParameterStore,
        journal: MemoryJournal,
        config: AdaptationConfig | None = None,
        *,
        on_change: Callable[[Adaptation], None] | None = None,
    ) -> None:
        self.parameters = parameters
        self.journal = journal
        self.config = config or AdaptationConfig()
        self.on_change = on_change
        self._candidates: list[str] = []  # the regime each recent observation pointed to
        missing = {k: v for k, v in BASELINE.items() if k not in parameters.current()}
        if missing:
            parameters.update(missing, reason="initial agent parameters")

    def params(self) -> dict[str, Any]:
        return {**BASELINE, **self.parameters.current()}

    # -- performance triggers ------------------------------------------------------
    def after_close(self, trades: pd.DataFrame | OutcomeWindow, *,
                    baseline_win_rate: float | None = None, at: Any = None) -> list[Adaptation]:
        """Check the performance triggers on the agent's closed trades.

        ``trades`` has one row per closed trade, oldest first, with ``pnl`` and
        ``return_pct`` (percent), and ``closed_at`` when known: a DataFrame, or the agent's
        :class:`OutcomeWindow`. ``baseline_win_rate`` is what training promised. ``at`` is
        the market time of the close when replaying history (journal and parameter
        history record it).
        """
        cfg = self.config
        out: list[Adaptation] = []
        p = self.params()
        n_closed = len(trades)
        won = (np.asarray(trades["pnl"], dtype=float) > 0) if n_closed else np.empty(0, bool)
        since, mark = _since_mark(trades, p.get("win_rate_checked_at"))
        if n_closed >= cfg.window and since >= cfg.window:
            rate = float(won[-cfg.window :].mean())
            size = float(p["position_size"])
            base = float(BASELINE["position_size"])
            if rate < cfg.min_win_rate and size > cfg.min_position_size:
                new = max(round(size * cfg.size_cut, 8), cfg.min_position_size)
                out += self._apply(
                    "win_rate",
                    f"win rate {rate:.2f} over the last {cfg.window} closed trades < {cfg.min_win_rate}: "
                    f"position size x {cfg.size_cut}",
                    {"position_size": new, "win_rate_checked_at": mark}, at,
                )
            elif rate >= cfg.recovery_win_rate and size < base:
                new = min(round(size / cfg.size_cut, 8), base)
                out += self._apply(
                    "win_rate_recovery",
                    f"win rate {rate:.2f} over the last {cfg.window} closed trades >= "
                    f"{cfg.recovery_win_rate}: position size back toward {base}",
                    {"position_size": new, "win_rate_checked_at": mark}, at,
                )
            elif (
                baseline_win_rate is not None
                and math.isfinite(baseline_win_rate)
                and rate < baseline_win_rate - cfg.decay_margin
                and size > cfg.min_position_size
            ):
                new = max(round(size * cfg.decay_cut, 8), cfg.min_position_size)
                out += self._apply(
                    "win_rate_decay",
                    f"win rate {rate:.2f} over the last {cfg.window} closed trades is more than "
                    f"{cfg.decay_margin:.2f} below the trained baseline {baseline_win_rate:.2f}: "
                    f"position size x {cfg.decay_cut}",
                    {"position_size": new, "win_rate_checked_at": mark}, at,
                )
        if n_closed:
            out += self._drawdown(np.asarray(trades["return_pct"], dtype=float), p, at)
        return out

    def _drawdown(self, returns_pct: np.ndarray, p: Mapping[str, Any], at: Any = None) -> list[Adaptation]:
        cfg = self.config
        r = np.nan_to_num(returns_pct, nan=0.0)
        equity = np.cumprod(1.0 + r / 100.0)
        peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
        dd = float((1.0 - equity[-1] / peak[-1]) * 100.0)
        risk = float(p["risk_per_trade"])
        base = float(BASELINE["risk_per_trade"])
        reduced = bool(p.get("drawdown_mode", False))
        if dd > cfg.max_drawdown_pct and not reduced:
            new = max(round(risk * cfg.risk_cut, 8), cfg.min_risk_per_trade)
            return self._apply(
                "drawdown",
                f"drawdown {dd:.1f}% > limit {cfg.max_drawdown_pct:.1f}%: risk per trade x {cfg.risk_cut}",
                {"risk_per_trade": new, "drawdown_mode": True}, at,
            )
        if reduced and dd < cfg.max_drawdown_pct / 2:
            return self._apply(
                "drawdown_recovery",
                f"drawdown {dd:.1f}% back under {cfg.max_drawdown_pct / 2:.1f}%: risk per trade back to {base}",
                {"risk_per_trade": base, "drawdown_mode": False}, at,
            )
        return []

    def _band(self, vol_ratio: float, current: str) -> str:
        """The regime ``vol_ratio`` points to from ``current`` (hysteresis bands)."""
        cfg = self.config
        new = current
        if current == "normal":
            if vol_ratio >= cfg.high_vol_enter:
                new = "high"
            elif vol_ratio <= cfg.low_vol_enter:
                new = "low"
        elif current == "high" and vol_ratio < cfg.high_vol_exit:
            new = "low" if vol_ratio <= cfg.low_vol_enter else "normal"
        elif current == "low" and vol_ratio > cfg.low_vol_exit:
            new = "high" if vol_ratio >= cfg.high_vol_enter else "normal"
        return new

    def seed_observations(self, vol_ratios: list[float]) -> None:
        """Recall the last observations (from the decision store) after a restart, so the
        confirmation count goes on as if the process had never stopped."""
        current = str(self.params()["volatility_regime"])
        self._candidates = [self._band(v, current) for v in vol_ratios if math.isfinite(v)][-self.config.regime_confirm:]

    # -- market trigger --------------------------------------------------------------
    def observe_volatility(self, vol_ratio: float, *, at: Any = None) -> list[Adaptation]:
        """Check for a new volatility regime from short- over long-run realised volatility.

        The regime changes when ``regime_confirm`` observations in a row fall in the new
        band: one noisy reading is not a regime (on minute bars it would flap every trade)."""
        cfg = self.config
        if not math.isfinite(vol_ratio):
            return []
        current = str(self.params()["volatility_regime"])
        new = self._band(vol_ratio, current)
        self._candidates = [*self._candidates, new][-cfg.regime_confirm:]
        if new == current or len(self._candidates) < cfg.regime_confirm or any(c != new for c in self._candidates):
            return []
        self._candidates = []
        scale = cfg.high_vol_scale if new == "high" else 1.0
        return self._apply(
            "volatility_regime",
            f"new volatility regime: short/long realised volatility {vol_ratio:.2f} -> {new} "
            f"(position scale {scale})",
            {"volatility_regime": new, "volatility_scale": scale}, at,
        )

    # -- writing ----------------------------------------------------------------------
    def _apply(self, trigger: str, reason: str, values: dict[str, Any], at: Any = None) -> list[Adaptation]:
        # The parameter file is dated by the wall clock (its history is append-only); the
        # market time of a replayed bar goes beside it, and on the journal line.
        changes = self.parameters.update(values, reason=reason, market_time=at)
        visible = {k: v for k, v in changes.items() if k not in ("win_rate_checked_at",)}
        if not visible:
            return []
        events = [
            {"Adaptation": trigger, "Parameter": k, "From": a if a is not None else "none", "To": b}
            for k, (a, b) in visible.items()
        ]
        if events:
            events[0] = {**events[0], "Reason": reason}
        self.journal.append_many([(at, e, ()) for e in events])
        adaptation = Adaptation(trigger, reason, visible)
        if self.on_change is not None:
            self.on_change(adaptation)
        return [adaptation]
