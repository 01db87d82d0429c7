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
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np

from memlab.memory import DecisionStore, Neighbourhood


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
      size falls linearly to zero at 0.5 (no edge).
    """

    k: int = 30
    prior_strength: float = 8.0
    half_life_days: float = 90.0
    default_prior: float = 0.5
    full_size_confidence: float = 0.75


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
    """Overall win rate per (strategy, action) over closed decisions, cached.

    Read through a separate read-only connection (WAL readers never block the writer).
    Outcomes this process closes are counted in as they happen (:meth:`record`); the
    whole table is re-read after :meth:`invalidate` or every ``refresh_seconds`` (so
    decisions another process, such as nightly training, adds are seen too).
    """

    def __init__(self, store: DecisionStore, *, refresh_seconds: float = 300.0) -> None:
        self._path = store.path
        self._lock = threading.Lock()
        self._rates: dict[tuple[str, str], tuple[int, int]] | None = None
        self._loaded_at = 0.0
        self._refresh_seconds = refresh_seconds

    def invalidate(self) -> None:
        with self._lock:
            self._rates = None

    def rate(self, strategy: str | None, action: str, default: float) -> tuple[float, int]:
        """``(win rate, closed count)`` for the pair (all strategies when ``strategy`` is None)."""
        with self._lock:
            if self._rates is None or time.monotonic() - self._loaded_at > self._refresh_seconds:
                self._rates = self._load()
            rates = self._rates
        if strategy is None:
            pairs = [v for (s, a), v in rates.items() if a == action]
            n = sum(p[0] for p in pairs)
            wins = sum(p[1] for p in pairs)
        else:
            n, wins = rates.get((strategy, action), (0, 0))
        return (wins / n if n else default), n

    def record(self, strategy: str, action: str, won: bool) -> None:
        """Count one newly closed decision without re-reading the store."""
        with self._lock:
            if self._rates is not None:
                n, w = self._rates.get((strategy, action), (0, 0))
                self._rates[(strategy, action)] = (n + 1, w + int(won))

    def overall(self, default: float) -> float:
        """Win rate over every closed decision in the store."""
        with self._lock:
            if self._rates is None:
                self._rates = self._load()
            n = sum(v[0] for v in self._rates.values())
            w = sum(v[1] for v in self._rates.values())
        return w / n if n else default

    def _load(self) -> dict[tuple[str, str], tuple[int, int]]:
        self._loaded_at = time.monotonic()
        if not self._path.exists():
            return {}
        conn = sqlite3.connect(f"{self._path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
        try:
            rows = conn.execute(
                "SELECT d.strategy, d.action, count(*), sum(o.pnl > 0) FROM decisions d "
                "JOIN outcomes o ON o.decision_id = d.id GROUP BY d.strategy, d.action"
            ).fetchall()
        finally:
            conn.close()
        return {(s, a): (int(n), int(w or 0)) for s, a, n, w in rows}


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
        self.priors = PriorTable(store)

    def evidence(self, strategy: str | None, action: str, features: Mapping[str, float]) -> Evidence:
        """The weighted outcomes of the ``k`` most similar closed decisions."""
        cfg = self.config
        hood = self.store.neighbourhood(features, cfg.k, strategy=strategy, action=action, closed_only=True)
        rate, n = self.priors.rate(strategy, action, cfg.default_prior)
        # The prior is itself an estimate: shrink it toward the default while it rests on few trades.
        prior = (rate * n + cfg.prior_strength * cfg.default_prior) / (n + cfg.prior_strength)
        return self._weigh(hood, prior)

    def _weigh(self, hood: Neighbourhood, prior: float) -> Evidence:
        cfg = self.config
        if len(hood) == 0:
            return Evidence(0, 0, math.nan, math.nan, 0.0, prior, prior)
        won = (hood.pnl > 0).astype(np.float64)
        # Closeness: 1 at the nearest neighbour's distance scale, falling off smoothly.
        scale = max(float(np.median(hood.distance)), 1e-9)
        w_near = 1.0 / (1.0 + (hood.distance / scale) ** 2)
        age_days = (hood.decided_at.max() - hood.decided_at) / 86400.0
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

    def size_for(self, confidence: float, base_size: float) -> float:
        """Position size: ``base_size`` at ``full_size_confidence`` and above, zero at 0.5 and below."""
        span = max(self.config.full_size_confidence - 0.5, 1e-9)
        return float(base_size * min(max((confidence - 0.5) / span, 0.0), 1.0))

    def score(
        self, strategy: str | None, action: str, features: Mapping[str, float], *, base_size: float
    ) -> Analysis:
        """Confidence, reason, evidence and position size for one signal."""
        ev = self.evidence(strategy, action, features)
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
        if ev.n == 0:
            reason = (
                f"no closed {what} in memory yet; confidence is the prior {ev.prior:.2f}"
            )
        else:
            mean = "" if math.isnan(ev.mean_return_pct) else f", mean {ev.mean_return_pct:+.1f}%"
            reason = (
                f"{ev.n} similar {what} in {regime}: {ev.wins} won{mean}"
                f" -> confidence {ev.confidence:.2f} "
                f"(prior {ev.prior:.2f}, evidence weight {ev.effective_n:.1f})"
            )
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
            position_size=round(self.size_for(ev.confidence, base_size), 8),
        )
