"""Memory is point in time: a decision scored at a bar sees only what was known before that bar."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from memlab.agent import MemoryAgent
from memlab.data import synthetic_ohlcv
from memlab.features import FEATURE_NAMES
from memlab.memory import Decision, DecisionStore, MemoryStores, Outcome
from memlab.trader import TraderConfig, UnifiedMemGPTTrader

F = dict(zip(FEATURE_NAMES, [1.0, 2.0, 0.5, 1.0, 60.0, 1.0], strict=True))
T0 = pd.Timestamp("2020-01-01", tz="UTC")


def day(n: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=n)


def planted(store: DecisionStore, *, decided: float = 0, closed: float = 5, pnl: float = 1000.0,
            meta: dict[str, Any] | None = None, n: int = 1) -> list[int]:
    return store.record_many(
        Decision("BTCUSDT", "momentum", "BUY", 0.6, features=F, decided_at=day(decided), meta=meta or {},
                 outcome=Outcome(pnl=pnl, return_pct=pnl / 100, closed_at=day(closed)))
        for _ in range(n)
    )


def test_a_planted_future_outcome_is_invisible_to_recall_before_its_time(tmp_path: Path) -> None:
    store = DecisionStore(tmp_path)
    [i] = planted(store, decided=0, closed=5)
    # Before the outcome was known the decision is there, but not as evidence.
    assert len(store.neighbourhood(F, k=5, closed_only=True, as_of=day(3))) == 0
    early = store.neighbourhood(F, k=5, as_of=day(3))
    assert early.ids.tolist() == [i] and np.isnan(early.pnl[0]) and np.isnan(early.closed_at[0])
    frame = store.nearest(F, k=5, as_of=day(3))
    assert np.isnan(frame.loc[i, "pnl"]) and pd.isna(frame.loc[i, "closed_at"])
    # Strictly before: at the very moment it closed it is not yet known; just after, it is.
    assert len(store.neighbourhood(F, k=5, closed_only=True, as_of=day(5))) == 0
    late = store.neighbourhood(F, k=5, closed_only=True, as_of=day(5) + pd.Timedelta(seconds=1))
    assert late.ids.tolist() == [i] and late.pnl[0] == 1000.0
    # Before the decision itself was made, it does not exist at all.
    assert len(store.neighbourhood(F, k=5, as_of=day(-1))) == 0
    # Without as_of: everything the store holds, as before.
    assert store.neighbourhood(F, k=5, closed_only=True).ids.tolist() == [i]
    # Win rates for priors are point in time too.
    assert store.win_rates(as_of=day(4)).empty
    assert int(store.win_rates(as_of=day(6)).loc[("momentum", "BUY"), "n"]) == 1
    store.close()


def test_the_agent_scores_from_the_past_only_and_a_cold_start_trades_at_the_base_size(tmp_path: Path) -> None:
    agent = MemoryAgent(tmp_path, agent_id="pit")
    planted(agent.stores.decisions, decided=0, closed=5, pnl=-1000.0, n=30)  # 30 losers, known from day 5
    agent.brain.priors.invalidate()
    signal = {"symbol": "BTCUSDT", "strategy": "momentum", "action": "BUY", "price": 1.0, "features": F}

    before = agent.analyze_signal({**signal, "time": day(4).isoformat()})
    assert before["reason"].startswith("no similar past decisions: prior only")
    assert before["confidence"] == pytest.approx(0.5)
    assert agent.base_size() > 0
    assert before["position_size"] == pytest.approx(agent.base_size())  # never 0 silently

    after = agent.analyze_signal({**signal, "time": day(6).isoformat()})
    assert after["reason"].startswith("30 similar momentum BUYs") and after["confidence"] < 0.3
    assert after["position_size"] == 0 and "size 0" in after["reason"]

    # An as_of before all of memory is the cold-start answer, not an error.
    ancient = agent.analyze_signal({**signal, "time": "1990-01-01"})
    assert ancient["evidence"]["similar"] == 0 and ancient["position_size"] > 0
    agent.close()


def test_training_in_sample_experience_is_left_out_unless_asked_for(tmp_path: Path) -> None:
    from memlab.agent.agent import AgentConfig
    from memlab.agent.brain import BrainConfig

    with MemoryStores(tmp_path) as mem:
        planted(mem.decisions, pnl=500.0, n=20, meta={"sample": "in-sample"})
        planted(mem.decisions, pnl=-500.0, n=10, meta={"sample": "out-of-sample", "fold": 0})
    signal = {"symbol": "BTCUSDT", "strategy": "momentum", "action": "BUY", "price": 1.0, "features": F,
              "time": day(10).isoformat()}
    honest = MemoryAgent(tmp_path, agent_id="a")
    a = honest.analyze_signal(signal)
    assert a["evidence"]["similar"] == 10 and a["evidence"]["wins"] == 0
    honest.close()
    flattered = MemoryAgent(tmp_path, agent_id="b", config=AgentConfig(brain=BrainConfig(use_in_sample=True)))
    b = flattered.analyze_signal(signal)
    assert b["evidence"]["similar"] == 30 and b["evidence"]["wins"] == 20 and b["confidence"] > a["confidence"]
    flattered.close()


class Spy:
    """Passes every analysis through unchanged and keeps (signal, analysis) pairs."""

    def __init__(self, trader: UnifiedMemGPTTrader) -> None:
        self.calls: list[tuple[dict[str, Any], dict[str, Any]]] = []
        start = trader.start

        async def started() -> None:  # the agent opens with the session: wrap it then
            await start()
            self._inner = trader.agent.analyze_signal_async
            trader.agent.analyze_signal_async = self

        trader.start = started  # type: ignore[method-assign]

    async def __call__(self, signal: dict[str, Any]) -> dict[str, Any]:
        analysis = await self._inner(signal)
        self.calls.append((dict(signal), dict(analysis)))
        return analysis


def test_replaying_the_same_bars_over_a_memory_that_holds_their_outcomes_gives_the_same_confidences(
        tmp_path: Path) -> None:
    bars = synthetic_ohlcv(5000, freq="1h", seed=3)
    first = tmp_path / "first"
    config = TraderConfig(symbols=("SYN",), strategy="sma_cross", params={"fast": 5, "slow": 20},
                          memory_path=first, sizing="full", balance=100_000.0, feed={"data": bars, "warmup": 200})

    async def session() -> Spy:
        trader = UnifiedMemGPTTrader(config)
        spy = Spy(trader)
        await trader.run()
        return spy

    spy = asyncio.run(session())
    with MemoryStores(first) as mem:
        closed = mem.decisions.frame(closed=True)
    assert len(closed) > 40, "the session should have built up real experience"
    assert sum(a["evidence"].get("similar", 0) > 0 for _, a in spy.calls) > 40

    # The second replay's memory holds every outcome of the first, including those from after
    # each bar it scores: none of them may change a confidence.
    second = tmp_path / "second"
    shutil.copytree(first, second)
    agent = MemoryAgent(second, agent_id="trader_001")
    again = [agent.analyze_signal(signal) for signal, _ in spy.calls]
    agent.close()
    assert [a["confidence"] for a in again] == [a["confidence"] for _, a in spy.calls]
    assert [a["evidence"].get("decision_ids") for a in again] == [a["evidence"].get("decision_ids")
                                                                   for _, a in spy.calls]
    # Without as_of the future would show: the same signals scored "now" differ somewhere.
    agent = MemoryAgent(second, agent_id="trader_001")
    now = [agent.analyze_signal({k: v for k, v in s.items() if k != "time"}) for s, _ in spy.calls]
    agent.close()
    assert [a["confidence"] for a in now] != [a["confidence"] for _, a in spy.calls]


def test_journal_and_adaptations_written_while_replaying_carry_the_bars_market_time(tmp_path: Path) -> None:
    bars = synthetic_ohlcv(3000, freq="1h", seed=5)
    asyncio.run(UnifiedMemGPTTrader(TraderConfig(
        symbols=("SYN",), strategy="sma_cross", params={"fast": 5, "slow": 20}, memory_path=tmp_path,
        sizing="full", balance=100_000.0, feed={"data": bars, "warmup": 200})).run())
    first, last = bars.index[0].to_pydatetime(), bars.index[-1].to_pydatetime()
    with MemoryStores(tmp_path) as mem:
        trading = [e for e in mem.journal.entries()
                   if any(k in e.fields for k in ("Decision", "P&L", "Adaptation", "Learned"))]
        history = mem.parameters.history()
    assert len(trading) > 20
    outside = [str(e) for e in trading if not first <= e.time <= last]
    assert outside == []
    adapted = history[history["reason"] != "initial agent parameters"]
    assert len(adapted) and adapted["market_time"].between(bars.index[0], bars.index[-1]).all()
