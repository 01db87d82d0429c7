"""The default brain: confidence from what happened in the most similar past situations.

No LLM, offline and deterministic. For a signal (strategy, action, market features) it
asks the decision store for the ``k`` nearest closed decisions of the same strategy and
action (:meth:`~memlab.memory.DecisionStore.neighbourhood`, distance in standard
deviations of each feature), weighs each by closeness and recency, and shrinks the
weighted win rate toward a prior (that strategy/action's overall win rate, itself shrunk
toward ``default_prior`` while it rests on few trades) in proportion to how thin the
evidence is::

    confidence = (weighted_wins + prior_strength * prior) / (weighted_n + prior_strength)

The reason cites the evidence a person can check:
``"14 similar momentum BUYs in high volatility: 10 won, mean +1.1% -> confidence 0.66"``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np

from memlab.memory import DecisionStore, Neighbourhood
from memlab.memory.decisions import WinRateHistory


class Analysis(TypedDict):
    """What ``analyze_signal`` returns: all JSON-serialisable."""

    confidence: float
    reason: str
    evidence: dict[str, Any]
    position_size: float


@dataclass(frozen=True)
class BrainConfig:
    """Knobs of the default brain (defaults suit 1-minute to daily bars).

    - ``k``: how many similar past decisions to consult.
    - ``prior_strength``: how many decisions' worth of weight the prior carries.
    - ``half_life_days``: a decision this much older than the newest neighbour counts half.
    - ``default_prior``: the prior before a strategy/action has any closed decision.
    - ``full_size_confidence``: the confidence at which the full position size is used;
      size falls linearly to zero at 0.5 (no edge). With no similar past decision at all
      (a cold start), the size is the base size: the agent trades, and so learns.
    - ``explore_evidence``: while the evidence weighs less than this many similar trades,
      the size is at least the base size times the share still missing (so one early loss
      does not stop a situation from ever being traded, and so learned, again).
    - ``use_in_sample``: also learn from training's in-sample experience (trades on the
      bars its parameters were chosen on, which flatter them). Off by default.
    """

    k: int = 30
    prior_strength: float = 8.0
    half_life_days: float = 90.0
    default_prior: float = 0.5
    full_size_confidence: float = 0.75
    explore_evidence: float = 10.0
    use_in_sample: bool = False


def volatility_label(features: Mapping[str, float]) -> str:
    """``"high volatility"`` / ``"low volatility"`` / ``"normal volatility"`` from ``vol_ratio``
    (short- over long-run realised volatility)."""
    ratio = float(features.get("vol_ratio", 1.0))
    if ratio >= 1.25:
        return "high volatility"
    if ratio <= 0.8:
        return "low volatility"
    return "normal volatility"


def trend_label(features: Mapping[str, float]) -> str:
    trend = float(features.get("trend", 0.0))
    return "up-trend" if trend > 0.25 else "down-trend" if trend < -0.25 else "flat trend"


@dataclass(frozen=True)
class Evidence:
    """The neighbours' outcomes reduced to what the confidence and reason need."""

    n: int
    wins: int
    mean_return_pct: float
    weighted_win_rate: float
    effective_n: float
    prior: float
    confidence: float
    ids: list[int] = field(default_factory=list)
    mean_distance: float = math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "similar": self.n,
            "wins": self.wins,
            "losses": self.n - self.wins,
            "mean_return_pct": _round(self.mean_return_pct),
            "weighted_win_rate": _round(self.weighted_win_rate),
            "effective_n": _round(self.effective_n),
            "prior": _round(self.prior),
            "mean_distance": _round(self.mean_distance),
            "decision_ids": self.ids[:10],
        }


def _round(x: float, nd: int = 4) -> float | None:
    return None if not math.isfinite(x) else round(float(x), nd)


class PriorTable:
    """Overall win rate per (strategy, action) over closed decisions, point in time, cached.

    The counts are the decision store's (:meth:`~memlab.memory.DecisionStore.win_rate_history`,
    read through a separate read-only connection, so WAL readers never block the writer).
    Outcomes this process closes are counted in as they happen (:meth:`record`); the
    whole table is re-read after :meth:`invalidate` or every ``refresh_seconds`` (so
    decisions another process, such as nightly training, adds are seen too). Every
    count can be taken ``as_of`` a time: only outcomes known strictly before it count.
    ``include_in_sample=False`` leaves out training's in-sample experience.
    """

    def __init__(self, store: DecisionStore, *, refresh_seconds: float = 300.0,
                 include_in_sample: bool = True) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._history: WinRateHistory | None = None
        self._loaded_at = 0.0
        self._refresh_seconds = refresh_seconds
        self._include_in_sample = include_in_sample

    def invalidate(self) -> None:
        with self._lock:
            self._history = None

    def _table(self) -> WinRateHistory:
        with self._lock:
            if self._history is None or time.monotonic() - self._loaded_at > self._refresh_seconds:
                self._loaded_at = time.monotonic()
                self._history = self._store.win_rate_history(include_in_sample=self._include_in_sample)
            return self._history

    def rate(self, strategy: str | None, action: str, default: float,
             as_of: float | None = None) -> tuple[float, int]:
        """``(win rate, closed count)`` for the pair (all strategies when ``strategy`` is None)."""
        n, wins = self._table().count(strategy, action, as_of)
        return (wins / n if n else default), n

    def record(self, strategy: str, action: str, won: bool, closed_at: float = -math.inf) -> None:
        """Count one newly closed decision (known at ``closed_at``, epoch seconds) without
        re-reading the store."""
        with self._lock:
            if self._history is not None:
                self._history.add(strategy, action, won, closed_at)

    def overall(self, default: float, as_of: float | None = None) -> float:
        """Win rate over every closed decision in the store (known before ``as_of``)."""
        n, wins = self._table().count(None, None, as_of)
        return wins / n if n else default


class DefaultBrain:
    """Scores a signal from its neighbourhood in the decision store (see the module docstring).

    >>> import tempfile
    >>> from pathlib import Path
    >>> from memlab.memory import Decision, Outcome
    >>> store = DecisionStore(Path(tempfile.mkdtemp()))
    >>> f = {"ret_5": 1.0, "ret_20": 2.0, "volatility": 0.5, "vol_ratio": 1.0, "rsi": 60.0, "trend": 1.0}
    >>> _ = store.record_many([Decision("BTCUSDT", "momentum", "BUY", 0.6, features=f,
    ...                                 outcome=Outcome(pnl=10.0, return_pct=1.0)) for _ in range(20)])
    >>> a = DefaultBrain(store).score("momentum", "BUY", f, base_size=0.1)
    >>> a["confidence"] > 0.5, a["reason"].startswith("20 similar momentum BUYs")
    (True, True)
    """

    name = "default"

    def __init__(self, store: DecisionStore, config: BrainConfig | None = None) -> None:
        self.store = store
        self.config = config or BrainConfig()
        self.priors = PriorTable(store, include_in_sample=self.config.use_in_sample)

    def evidence(self, strategy: str | None, action: str, features: Mapping[str, float],
                 *, as_of: float | None = None) -> Evidence:
        """The weighted outcomes of the ``k`` most similar closed decisions, as they were
        known strictly before ``as_of`` (epoch seconds; None: everything in memory)."""
        cfg = self.config
        hood = self.store.neighbourhood(features, cfg.k, strategy=strategy, action=action, closed_only=True,
                                        as_of=as_of, include_in_sample=cfg.use_in_sample)
        return self._weigh(hood, self.prior(strategy, action, as_of=as_of)[0], as_of)

    def prior(self, strategy: str | None, action: str, *, as_of: float | None = None) -> tuple[float, int]:
        """The win rate of closed ``strategy`` ``action``s known strictly before ``as_of``,
        shrunk toward the default prior while it rests on few trades; and how many there were."""
        cfg = self.config
        rate, n = self.priors.rate(strategy, action, cfg.default_prior, as_of)
        return (rate * n + cfg.prior_strength * cfg.default_prior) / (n + cfg.prior_strength), int(n)

    def _weigh(self, hood: Neighbourhood, prior: float, as_of: float | None = None) -> Evidence:
        cfg = self.config
        if len(hood) == 0:
            return Evidence(0, 0, math.nan, math.nan, 0.0, prior, prior)
        won = (hood.pnl > 0).astype(np.float64)
        # Closeness: 1 at the nearest neighbour's distance scale, falling off smoothly.
        scale = max(float(np.median(hood.distance)), 1e-9)
        w_near = 1.0 / (1.0 + (hood.distance / scale) ** 2)
        now = hood.decided_at.max() if as_of is None else as_of
        age_days = (now - hood.decided_at) / 86400.0
        w_recent = 0.5 ** (age_days / cfg.half_life_days)
        w = w_near * w_recent
        wsum = float(w.sum())
        weighted_rate = float((w * won).sum() / wsum) if wsum > 0 else math.nan
        # Weight of evidence: Kish's effective sample size of the weights.
        eff_n = wsum**2 / float((w**2).sum()) if wsum > 0 else 0.0
        wins_eff = weighted_rate * eff_n if wsum > 0 else 0.0
        confidence = (wins_eff + cfg.prior_strength * prior) / (eff_n + cfg.prior_strength)
        ret = hood.return_pct[~np.isnan(hood.return_pct)]
        return Evidence(
            n=len(hood),
            wins=int(won.sum()),
            mean_return_pct=float(ret.mean()) if len(ret) else math.nan,
            weighted_win_rate=weighted_rate,
            effective_n=eff_n,
            prior=prior,
            confidence=float(min(max(confidence, 0.0), 1.0)),
            ids=[int(i) for i in hood.ids],
            mean_distance=float(hood.distance.mean()),
        )

    def size_for(self, confidence: float, base_size: float, *, similar: int | None = None,
                 evidence_weight: float | None = None) -> float:
        """Position size: ``base_size`` at ``full_size_confidence`` and above, zero at 0.5 and
        below; ``base_size`` on a cold start (``similar == 0``: nothing to judge by yet), and
        at least :meth:`exploration` of it while the evidence is thin."""
        if similar == 0:
            return float(base_size)
        span = max(self.config.full_size_confidence - 0.5, 1e-9)
        by_confidence = base_size * min(max((confidence - 0.5) / span, 0.0), 1.0)
        return float(max(by_confidence, base_size * self.exploration(evidence_weight)))

    def exploration(self, evidence_weight: float | None) -> float:
        """The share of the base size kept while evidence is thin: 1 with none, falling
        linearly to 0 at ``explore_evidence`` similar trades' worth."""
        if evidence_weight is None or self.config.explore_evidence <= 0:
            return 0.0
        return max(0.0, 1.0 - evidence_weight / self.config.explore_evidence)

    def score(
        self, strategy: str | None, action: str, features: Mapping[str, float], *, base_size: float,
        as_of: float | None = None,
    ) -> Analysis:
        """Confidence, reason, evidence and position size for one signal, from what memory
        knew strictly before ``as_of`` (epoch seconds; None: everything it holds)."""
        ev = self.evidence(strategy, action, features, as_of=as_of)
        return self.analysis(ev, strategy, action, features, base_size=base_size)

    def analysis(
        self,
        ev: Evidence,
        strategy: str | None,
        action: str,
        features: Mapping[str, float],
        *,
        base_size: float,
    ) -> Analysis:
        regime = volatility_label(features)
        what = f"{strategy} {action}s" if strategy else f"{action}s"
        size = self.size_for(ev.confidence, base_size, similar=ev.n, evidence_weight=ev.effective_n)
        if ev.n == 0:
            reason = (
                f"no similar past decisions: prior only (no closed {what} in memory yet; "
                f"confidence {ev.prior:.2f}), sized at the base size {base_size:.4g}"
            )
        else:
            mean = "" if math.isnan(ev.mean_return_pct) else f", mean {ev.mean_return_pct:+.1f}%"
            reason = (
                f"{ev.n} similar {what} in {regime}: {ev.wins} won{mean}"
                f" -> confidence {ev.confidence:.2f} "
                f"(prior {ev.prior:.2f}, evidence weight {ev.effective_n:.1f})"
            )
            explore = self.exploration(ev.effective_n)
            if size <= 0:
                reason += "; size 0: no edge at a confidence of 0.50 or less"
            elif ev.confidence <= 0.5 and explore > 0:
                reason += (f"; evidence still thin ({ev.effective_n:.1f} of {self.config.explore_evidence:g}): "
                           f"exploring at {explore:.0%} of the base size")
        evidence = ev.as_dict()
        evidence.update(
            {
                "brain": self.name,
                "strategy": strategy,
                "action": action,
                "regime": regime,
                "trend": trend_label(features),
                "features": {k: round(float(v), 6) for k, v in features.items()},
            }
        )
        return Analysis(
            confidence=round(ev.confidence, 6),
            reason=reason,
            evidence=evidence,
            position_size=round(size, 8),
        )
