"""The memory-driven trading agent: scores signals from memory, logs decisions, learns, adapts.

:class:`MemoryAgent` ties the memory hierarchy together:

- core memory (:class:`~memlab.memory.core_memory.CoreMemory`): small always-in-view blocks;
- recall memory: every decision with features and outcome (the :class:`~memlab.memory.DecisionStore`);
- archival memory (:class:`~memlab.memory.archival.ArchivalMemory`): lessons it wrote;
- parameters (``parameter_updates.json``), changed by :class:`~memlab.agent.adaptation.Adapter`.

>>> import tempfile
>>> agent = MemoryAgent(tempfile.mkdtemp(), agent_id="doc")
>>> f = {"ret_5": 1.0, "ret_20": 2.0, "volatility": 0.5, "vol_ratio": 1.0, "rsi": 60.0, "trend": 1.0}
>>> signal = {"symbol": "BTCUSDT", "strategy": "momentum", "action": "BUY", "price": 65000.0, "features": f}
>>> a = agent.analyze_signal(signal)
>>> a["reason"]
'no similar past decisions: prior only (no closed momentum BUYs in memory yet; confidence 0.50), sized at the base size 0.1'
>>> a["position_size"]
0.1
>>> i = agent.log_decision({**signal, "mem_confidence": a["confidence"]}, {"order_id": "o-1", "status": "filled"})
>>> _ = agent.close_position(i, pnl=500.0, return_pct=0.77)
>>> [str(e).split("] ")[1] for e in agent.stores.journal.tail(3)][0]
'Strategy: momentum - Decision: BUY - Confidence: 0.5'
>>> agent.close()
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from memlab.agent.adaptation import BASELINE, Adaptation, AdaptationConfig, Adapter, OutcomeWindow
from memlab.agent.brain import Analysis, BrainConfig, DefaultBrain, trend_label, volatility_label
from memlab.agent.calibration import CalibrationReport, calibrate
from memlab.agent.signal import check_signal, signal_time, situation
from memlab.errors import InvalidInputError
from memlab.events import EventBus, Listener
from memlab.memory import Decision, MemoryStores
from memlab.memory.archival import ArchivalMemory
from memlab.memory.core_memory import CoreMemory
from memlab.memory.decisions import IN_SAMPLE

if TYPE_CHECKING:
    from memlab.agent.llm_brain import LLMBrain

log = logging.getLogger(__name__)

#: Order statuses that mean no position was opened (the decision is journalled, not stored).
NOT_OPENED = frozenset({"rejected", "failed", "error", "canceled", "cancelled", "expired"})


@dataclass(frozen=True)
class AgentConfig:
    """Settings of the agent; every field has a working default.

    - ``lesson_min_similar`` / ``lesson_p_value``: a pattern is significant (and becomes a
      lesson) when at least this many similar closed trades won or lost more often than
      the prior by a binomial test at this level.
    - ``baseline_win_rate``: what training promised (None: the store's overall win rate).
    - ``trade_history``: how many recent closed decisions the performance triggers read.
    """

    brain: BrainConfig = field(default_factory=BrainConfig)
    adaptation: AdaptationConfig = field(default_factory=AdaptationConfig)
    lesson_min_similar: int = 20
    lesson_p_value: float = 0.01
    baseline_win_rate: float | None = None
    trade_history: int = 5000


class MemoryAgent:
    """A trading agent with persistent memory under ``memory_path`` (see the module docstring).

    ``llm`` is an optional :class:`~memlab.agent.llm_brain.LLMBrain`; without it (or when it
    fails) the default brain decides. ``decision``, ``adaptation``, ``lesson`` and ``error``
    events go on :attr:`events` (an :class:`~memlab.events.EventBus`; pass ``events=`` to
    share one with the connection manager), heard as ``listener(type, payload)``.
    """

    def __init__(
        self,
        memory_path: str | os.PathLike[str] | None = None,
        *,
        agent_id: str = "trader_001",
        config: AgentConfig | None = None,
        llm: LLMBrain | None = None,
        stores: MemoryStores | None = None,
        events: EventBus | None = None,
    ) -> None:
        if not isinstance(agent_id, str) or not agent_id.strip():
            raise InvalidInputError(f"agent_id must be non-empty text, got {agent_id!r}")
        self.agent_id = agent_id
        self.config = config or AgentConfig()
        self.stores = stores if stores is not None else MemoryStores(memory_path)
        self.path = self.stores.path
        self.core = CoreMemory(
            self.path, journal=self.stores.journal, audit=self.stores.audit, cipher=self.stores.cipher
        )
        self.archival = ArchivalMemory(self.path, audit=self.stores.audit, agent_id=agent_id)
        self.brain = DefaultBrain(self.stores.decisions, self.config.brain)
        self.adapter = Adapter(
            self.stores.parameters,
            self.stores.journal,
            self.config.adaptation,
            on_change=self._adapted,
        )
        self._volatility_seeded = False  # recalled from the store at the first decision (point in time)
        self.llm = llm
        self.events = events if events is not None else EventBus(f"agent {agent_id}")
        self._lock = threading.Lock()
        self._params: dict[str, Any] | None = None
        self._params_stamp: tuple[int, int] | None = None
        self._outcomes: OutcomeWindow | None = None  # this agent's recent outcomes, for the triggers

    def __repr__(self) -> str:
        return f"MemoryAgent(agent_id={self.agent_id!r}, path={str(self.path)!r}, llm={self.llm is not None})"

    def close(self) -> None:
        self.archival.close()
        self.stores.close()

    # -- events ------------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(type, payload)`` on every event; returns a function that removes it
        (an alias of ``agent.events.subscribe``)."""
        return self.events.subscribe(listener)

    def _emit(self, kind: str, payload: dict[str, Any]) -> None:
        self.events.publish(kind, payload)  # a broken subscriber is logged there, never breaks the agent

    def _adapted(self, adaptation: Adaptation) -> None:
        self._params = None
        self._emit("adaptation", adaptation.as_dict())

    # -- parameters --------------------------------------------------------------------
    def parameters(self) -> dict[str, Any]:
        """Current parameters (cached until ``parameter_updates.json`` changes on disk)."""
        try:
            st = self.stores.parameters.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if self._params is None or stamp != self._params_stamp:
            self._params = self.adapter.params()
            self._params_stamp = stamp
        return self._params

    def base_size(self) -> float:
        """Position size before confidence scaling.

        ``position_size x volatility_scale x risk_per_trade / 0.02``: every adaptation
        (a win-rate cut, a high-volatility regime, a drawdown's lower risk) shows in the
        size ``analyze_signal`` recommends.
        """
        p = self.parameters()
        risk = float(p.get("risk_per_trade", BASELINE["risk_per_trade"])) / float(BASELINE["risk_per_trade"])
        return float(p["position_size"]) * float(p.get("volatility_scale", 1.0)) * risk

    # -- scoring -----------------------------------------------------------------------
    def analyze_signal(self, signal: Mapping[str, Any]) -> Analysis:
        """Score a :class:`~memlab.agent.signal.Signal` with the default brain (never calls an LLM).

        Point in time: a signal with a ``time`` (the bar's market time, when replaying) is
        scored only from decisions made, and outcomes known, strictly before that time;
        without one, from everything memory holds now. Returns ``{'confidence', 'reason',
        'evidence', 'position_size'}``; raises :class:`~memlab.agent.signal.InvalidSignalError`
        naming a bad field.
        """
        _, strategy, action = check_signal(signal)
        features = situation(signal)
        return self.brain.score(strategy, action, features, base_size=self.base_size(), as_of=_as_of(signal))

    def analyze_prior_only(self, signal: Mapping[str, Any], why: str) -> Analysis:
        """Score a signal whose market situation is unknown (no features, no bars, and
        none to be had: ``why`` says what was tried) from the prior alone: the win rate of
        this strategy and action as memory knew it before the signal's time. Sized like a
        cold start while there is no closed trade to judge by, else by that confidence."""
        _, strategy, action = check_signal(signal)
        prior, n = self.brain.prior(strategy, action, as_of=_as_of(signal))
        base = self.base_size()
        size = self.brain.size_for(prior, base, similar=n, evidence_weight=float(n))
        known = f"{n} closed {strategy} {action}s" if n else f"no closed {strategy} {action}s in memory yet"
        reason = f"no market data for this signal ({why}): prior only from {known}, confidence {prior:.2f}"
        if n == 0:
            reason += f", sized at the base size {base:.4g}"
        elif size <= 0:
            reason += "; size 0: no edge at a confidence of 0.50 or less"
        evidence = {"brain": "prior_only", "strategy": strategy, "action": action, "n": 0, "prior": prior,
                    "prior_trades": n, "confidence": prior, "missing_market_data": why}
        return Analysis(confidence=round(prior, 6), reason=reason, evidence=evidence, position_size=round(size, 8))

    async def analyze_signal_async(self, signal: Mapping[str, Any]) -> Analysis:
        """Score with the LLM brain when one is configured, else (or on its failure) the default."""
        default = self.analyze_signal(signal)
        if self.llm is None:
            return default
        from memlab.agent.tools import MemoryTools

        result = await self.llm.analyze(signal, default, MemoryTools(self, signal))
        if result["evidence"].get("brain") == "default" and "llm_error" in result["evidence"]:
            self._emit("error", {"source": "llm_brain", "message": result["evidence"]["llm_error"]})
        else:
            # The model's confidence is its own judgement of the evidence: sized by it alone.
            result["position_size"] = round(self.brain.size_for(result["confidence"], self.base_size()), 8)
        return result

    # -- recording -------------------------------------------------------------------
    def journal_unsituated(self, decision: Mapping[str, Any], result: Mapping[str, Any] | Any, why: str) -> None:
        """A decision whose market situation is unknown (``why``): journalled with its order,
        but not stored for recall, since similar-situation recall needs its features."""
        _, strategy, action = check_signal(decision)
        result = _as_mapping(result)
        order = result.get("order_id", result.get("id", result.get("status", "")))
        at = signal_time(decision) if decision.get("time") is not None else None
        self.stores.journal.append(
            {"Strategy": strategy, "Decision": action, "Confidence": round(_confidence(decision), 4), "Order": str(order)},
            at=at, note=f"not stored for recall: {why}")
        log.warning("decision on %s not stored for recall: %s", decision.get("symbol"), why)

    def log_decision(self, decision: Mapping[str, Any], result: Mapping[str, Any] | Any = None) -> int | None:
        """Record a decision the trader acted on; returns its id in the decision store.

        ``decision`` is the signal plus the agent's verdict (``mem_confidence`` /
        ``mem_reason``, or ``confidence`` / ``reason``) and optionally ``stop_loss`` and
        ``target``. ``result`` is the broker's answer (``order_id``, ``status``, ``price``...;
        a dict, a dataclass or any object with those attributes);
        when it already carries ``pnl`` the position is closed at once. A rejected or
        failed order is journalled but stored as no decision (returns None). The same
        ``order_id`` logged twice is stored once.
        """
        symbol, strategy, action = check_signal(decision)
        result = _as_mapping(result)
        features = situation(decision)
        confidence = _confidence(decision)
        reason = str(decision.get("mem_reason") or decision.get("reason") or "")
        status = str(result.get("status", "")).lower()
        at = signal_time(decision) if decision.get("time") is not None else None  # market time when replaying
        if status in NOT_OPENED:
            self.stores.journal.append(
                {"Strategy": strategy, "Decision": action, "Confidence": round(confidence, 4), "Order": status}, at=at
            )
            self._emit("decision", {"decision_id": None, "symbol": symbol, "action": action, "status": status})
            return None
        order_id = result.get("order_id", result.get("id"))
        key = f"{self.agent_id}:order:{order_id}" if order_id is not None else None
        if key is not None:
            existing = self.stores.decisions.find_key(key)
            if existing is not None:
                return existing  # logged before (a retried call, or a restarted trader): once is enough
        price = result.get("price", decision.get("price"))
        meta = {"order": _json_safe({k: v for k, v in result.items() if k not in ("pnl", "return_pct", "closed_at")})}
        decided_at = signal_time(decision)
        decision_id = self.stores.decisions.record(
            Decision(
                symbol=symbol,
                strategy=strategy,
                action=action,
                confidence=confidence,
                reason=reason,
                features=features,
                agent_id=self.agent_id,
                decided_at=decided_at,
                price=float(price) if price is not None else None,
                key=key,
                meta=meta,
            )
        )
        self.stores.journal.append_many(
            [(at, e, ()) for e in self._decision_lines(strategy, action, confidence, decision, price, decision_id)])
        self._emit(
            "decision",
            {
                "decision_id": decision_id,
                "symbol": symbol,
                "strategy": strategy,
                "action": action,
                "confidence": confidence,
                "reason": reason,
                "status": status or "open",
            },
        )
        if not self._volatility_seeded:
            # The observations before this decision, as they were then (not ones a later run wrote).
            before = self.stores.decisions.frame(agent_id=self.agent_id, limit=self.config.adaptation.regime_confirm,
                                                 until=pd.Timestamp(decided_at) - pd.Timedelta(microseconds=1))
            if "vol_ratio" in before:
                self.adapter.seed_observations(before["vol_ratio"].astype(float).tolist())
            self._volatility_seeded = True
        self.adapter.observe_volatility(features["vol_ratio"], at=at)
        if result.get("pnl") is not None:
            self.close_position(
                decision_id,
                pnl=float(result["pnl"]),
                return_pct=result.get("return_pct"),
                closed_at=result.get("closed_at"),
            )
        return decision_id

    def close_position(
        self,
        decision_id: int,
        *,
        pnl: float,
        return_pct: float | None = None,
        closed_at: datetime | str | None = None,
        notes: str = "",
    ) -> list[Adaptation]:
        """Attach the outcome to a logged decision, then learn and adapt; returns the adaptations.
        Closing a decision already closed with this outcome again changes nothing.

        ``closed_at`` is when the outcome became known: the market time of the exit's fill
        when replaying (now when not given). Learning and adaptation then see memory as it
        stood at that time, and the journal lines carry it."""
        store = self.stores.decisions
        before = store.get(decision_id).outcome
        store.close_outcome(decision_id, pnl=pnl, return_pct=return_pct, closed_at=closed_at, notes=notes)
        if before is not None:
            return []
        stored = store.get(decision_id)
        won = pnl > 0
        known = pd.Timestamp(stored.outcome.closed_at)  # type: ignore[union-attr]
        at = known if closed_at is not None else None
        # What is known at the close includes the close itself: "as of" just after it.
        as_of = known.timestamp() + 1e-6
        if self.config.brain.use_in_sample or stored.meta.get("sample") != IN_SAMPLE:
            self.brain.priors.record(stored.strategy, stored.action, won, known.timestamp())
        line = self._outcome_line(stored)
        self.stores.journal.append_many([(at, line[1], line[2])])
        self._emit("decision", {"decision_id": decision_id, "status": "closed", "pnl": pnl, "return_pct": return_pct})
        features = {k: float(v) for k, v in dict(stored.features).items()}  # type: ignore[union-attr]
        self._maybe_learn(stored.strategy, stored.action, features, as_of=as_of, at=at)
        baseline = self.config.baseline_win_rate
        if baseline is None:
            baseline = self.brain.priors.overall(math.nan, as_of)
        return self.adapter.after_close(self._recent_outcomes(stored), baseline_win_rate=baseline, at=at)

    def _recent_outcomes(self, stored: Any) -> OutcomeWindow:
        """This agent's last ``trade_history`` outcomes, kept in memory after the first read
        (the triggers run on every close; re-reading thousands of rows each time would not do).
        The first read takes those known by this close, not ones a later run stored."""
        outcome = stored.outcome
        if self._outcomes is None or outcome is None:
            until = None if outcome is None else outcome.closed_at
            frame = self.stores.decisions.outcomes(agent_id=self.agent_id, limit=self.config.trade_history,
                                                   until=until)
            self._outcomes = OutcomeWindow.from_frame(frame, self.config.trade_history)
        elif self._outcomes.last_id != stored.id:
            self._outcomes.append(stored.id, pd.Timestamp(outcome.closed_at).value, float(outcome.pnl),
                                  None if outcome.return_pct is None else float(outcome.return_pct))
        return self._outcomes

    # -- journal lines ----------------------------------------------------------------
    @staticmethod
    def _decision_lines(strategy: str, action: str, confidence: float, decision: Mapping[str, Any],
                        price: Any, decision_id: int) -> list[Mapping[str, Any]]:
        """The seed's two lines: the decision, then entry price / stop / target (and the id
        that ties the journal to the decision store)."""
        entry = {
            label: decision[key]
            for label, key in (("Entry Price", "price"), ("Stop Loss", "stop_loss"), ("Target", "target"))
            if decision.get(key) is not None
        }
        if price is not None:
            entry["Entry Price"] = price
        entry["Decision Id"] = decision_id
        return [{"Strategy": strategy, "Decision": action, "Confidence": round(confidence, 4)}, entry]

    @staticmethod
    def _outcome_line(stored: Any) -> tuple[Any, dict[str, Any], tuple[str, ...]]:
        outcome = stored.outcome
        pnl, won = float(outcome.pnl), outcome.pnl > 0
        fields: dict[str, Any] = {"P&L": f"{'+' if pnl >= 0 else '-'}${abs(pnl):,.2f}"}
        if outcome.return_pct is not None:
            fields["Return"] = f"{float(outcome.return_pct):+.2f}%"
        fields["Decision Id"] = stored.id
        note = f"Closed {stored.strategy} {stored.action} {stored.symbol} ({'won' if won else 'lost'})"
        return (None, fields, (note,))

    def repair_journal(self, last: int = 5) -> int:
        """Write the journal lines of this agent's last ``last`` decisions and outcomes that
        are in the store but not in the journal (a crash between the two writes); returns
        how many events were written. A restarted trader calls it first."""
        recent = self.stores.decisions.frame(agent_id=self.agent_id, limit=last)
        if recent.empty:
            return 0
        seen: set[tuple[str, str]] = set()
        for entry in self.stores.journal.tail(50 + 4 * last):
            ref = entry.fields.get("Decision Id")
            if ref is not None:
                seen.add(("P&L" if "P&L" in entry.fields else "entry", ref))
        events: list[Any] = []
        for decision_id in recent["id"].tolist():
            stored = self.stores.decisions.get(int(decision_id))
            if ("entry", str(stored.id)) not in seen:
                events += [(stored.decided_at, e, ()) for e in self._decision_lines(
                    stored.strategy, stored.action, stored.confidence, {}, stored.price, stored.id)]
            if stored.outcome is not None and ("P&L", str(stored.id)) not in seen:
                _, fields, notes = self._outcome_line(stored)
                events.append((stored.outcome.closed_at, fields, notes))
        if events:
            self.stores.journal.append_many(events)
            log.warning("journal repaired: %d event(s) of decisions stored before a crash", len(events))
        return len(events)

    def closed_trades(self) -> pd.DataFrame:
        """This agent's closed decisions (most recent ``trade_history``), in order of closing."""
        frame = self.stores.decisions.frame(closed=True, agent_id=self.agent_id, limit=self.config.trade_history)
        return frame.sort_values("closed_at", kind="stable")

    # -- learning ------------------------------------------------------------------------
    def _maybe_learn(self, strategy: str, action: str, features: Mapping[str, float], *,
                     as_of: float | None = None, at: Any = None) -> None:
        from scipy.special import bdtr, bdtrc
        from scipy.stats import binomtest

        ev = self.brain.evidence(strategy, action, features, as_of=as_of)
        cfg = self.config
        if ev.n < cfg.lesson_min_similar or not 0 < ev.prior < 1:
            return
        # The two-sided p-value is at least the tail on the observed side; when that tail
        # alone is not significant, skip the exact test (most closes; it costs ~1 ms).
        tail = bdtrc(ev.wins - 1, ev.n, ev.prior) if ev.wins >= ev.n * ev.prior else bdtr(ev.wins, ev.n, ev.prior)
        if tail >= cfg.lesson_p_value:
            return
        p_value = binomtest(ev.wins, ev.n, ev.prior).pvalue
        if p_value >= cfg.lesson_p_value:
            return
        regime, trend = volatility_label(features), trend_label(features)
        better = ev.wins / ev.n > ev.prior
        key = f"lesson:{strategy}:{action}:{regime}:{trend}:{'won' if better else 'lost'}"
        if self.archival.has_key(key):
            return
        mean = "" if math.isnan(ev.mean_return_pct) else f", mean {ev.mean_return_pct:+.2f}%"
        body = (
            f"{strategy} {action}s in {regime} with {'an' if trend.startswith('up') else 'a'} {trend} "
            f"{'won' if better else 'lost'} more often: "
            f"{ev.wins} of {ev.n} similar trades won{mean}, against {ev.prior:.0%} overall (p={p_value:.1g})"
        )
        self.remember(f"Learned: {body}", tags=[strategy, action, regime, trend], key=key, journal_key="Learned",
                      journal_text=body, at=at)
        self._emit("lesson", {"text": f"Learned: {body}", "key": key, "p_value": p_value})

    def remember(
        self,
        text: str,
        *,
        tags: list[str] | None = None,
        key: str | None = None,
        journal_key: str = "Archival Memory",
        journal_text: str | None = None,
        at: Any = None,
    ) -> int:
        """Insert a passage into archival memory and journal it (at market time ``at`` when
        replaying); returns the passage id."""
        pid = self.archival.insert(text, tags=tags or [], key=key)
        self.stores.journal.append({journal_key: journal_text or text}, at=at)
        return pid

    # -- reporting -------------------------------------------------------------------------
    def calibration(self, *, all_agents: bool = False, bins: int = 10, baseline: float | None = None,
                    as_of: Any = None) -> CalibrationReport:
        """Confidence vs realised win rate over this agent's closed decisions (all agents' if
        asked), counting only outcomes known strictly before ``as_of`` when given."""
        frame = self.stores.decisions.frame(closed=True, agent_id=None if all_agents else self.agent_id)
        if as_of is not None:
            frame = frame[frame["closed_at"] < _utc_timestamp(as_of)]
        return calibrate(frame["confidence"].to_numpy(), (frame["pnl"] > 0).to_numpy(), bins=bins, baseline=baseline)

    def status(self) -> dict[str, Any]:
        """A JSON-friendly summary: parameters, memory sizes, core blocks' fill."""
        return {
            "agent_id": self.agent_id,
            "memory_path": str(self.path),
            "decisions": self.stores.decisions.count(),
            "lessons": len(self.archival),
            "parameters": _json_safe(self.parameters()),
            "core_memory": {b.label: f"{len(b.value)}/{b.limit}" for b in self.core.blocks().values()},
            "llm": self.llm is not None,
        }


def _utc_timestamp(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _as_of(signal: Mapping[str, Any]) -> float | None:
    """The point in time a signal is scored at: its ``time`` (epoch seconds), or None (now)."""
    return None if signal.get("time") is None else signal_time(signal).timestamp()


def _as_mapping(result: Any) -> dict[str, Any]:
    """A broker result as a dict: dicts as they are, dataclasses and plain objects by field."""
    import dataclasses

    if result is None:
        return {}
    if isinstance(result, Mapping):
        return dict(result)
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    if hasattr(result, "__dict__"):
        return {k: v for k, v in vars(result).items() if not k.startswith("_")}
    raise InvalidInputError(f"a broker result is a dict or an object with fields, got {type(result).__name__}")


def _confidence(decision: Mapping[str, Any]) -> float:
    value = decision.get("mem_confidence", decision.get("confidence"))
    if value is None:
        raise InvalidInputError("a decision needs 'mem_confidence' (from analyze_signal) or 'confidence'")
    try:
        conf = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"decision confidence must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= conf <= 1.0:
        raise InvalidInputError(f"decision confidence must be in [0, 1], got {conf}")
    return conf


def _json_safe(value: Any) -> Any:
    """``value`` as plain JSON: non-finite numbers become None, unknown objects text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):
        try:
            return _json_safe(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)
