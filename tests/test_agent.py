"""The agent's memory hierarchy, signal checks, decision logging and lessons."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from memlab.agent import CoreMemoryLimitError, InvalidSignalError, MemoryAgent
from memlab.data import synthetic_ohlcv
from memlab.errors import InvalidInputError
from memlab.features import FEATURE_NAMES
from memlab.memory import Decision, MemoryStores, Outcome
from memlab.memory.archival import ArchivalMemory
from memlab.memory.verify import verify_memory

FEATS = {"ret_5": 1.0, "ret_20": 2.0, "volatility": 0.5, "vol_ratio": 1.0, "rsi": 60.0, "trend": 1.0}
SIGNAL = {"symbol": "BTCUSDT", "strategy": "momentum", "action": "BUY", "price": 65000.0, "features": FEATS}


@pytest.fixture
def agent(memory_dir: Path) -> MemoryAgent:
    a = MemoryAgent(memory_dir, agent_id="trader_001")
    yield a
    a.close()


# -- core memory ------------------------------------------------------------------------
def test_core_memory_edits_persist_and_each_is_a_journal_line(agent, memory_dir):
    agent.core.append("market_notes", "Support at 64500 is strong")
    agent.core.replace("market_notes", "64500", "64000")
    agent.close()
    again = MemoryAgent(memory_dir, agent_id="trader_001")
    assert again.core.get("market_notes").value == "Support at 64000 is strong"
    lines = again.stores.journal.entries(key="Core Memory")
    assert [(e.fields["Core Memory"], e.fields["Block"]) for e in lines] == [
        ("append", "market_notes"),
        ("replace", "market_notes"),
    ]
    assert lines[1].fields["Old"] == "64500" and lines[1].fields["New"] == "64000"
    assert stat.S_IMODE(os.stat(memory_dir / "core_memory.json").st_mode) == 0o600
    assert verify_memory(memory_dir).ok
    again.close()


def test_core_memory_refuses_edits_past_the_block_limit_and_keeps_the_block(agent):
    limit = agent.core.get("market_notes").limit
    agent.core.append("market_notes", "x" * (limit - 10))
    before = agent.core.get("market_notes").value
    with pytest.raises(CoreMemoryLimitError, match=f"over its limit of {limit}"):
        agent.core.append("market_notes", "this is too long")
    with pytest.raises(CoreMemoryLimitError):
        agent.core.replace("market_notes", "xx", "y" * 20)
    assert agent.core.get("market_notes").value == before
    assert len(agent.stores.journal.entries(key="Core Memory")) == 1
    agent.core.append("market_notes", "12345678")  # exactly fills it (newline + 8 = 9 <= 10)
    assert len(agent.core.get("market_notes").value) == limit - 1


def test_core_memory_replace_needs_the_exact_text_and_unknown_blocks_are_named(agent):
    agent.core.append("strategy_view", "momentum works in calm up-trends")
    with pytest.raises(InvalidInputError, match="does not contain"):
        agent.core.replace("strategy_view", "mean reversion", "x")
    with pytest.raises(InvalidInputError, match="no core-memory block 'nope'"):
        agent.core.append("nope", "x")
    agent.core.replace("strategy_view", "momentum works in calm up-trends", "")
    assert agent.core.get("strategy_view").value == ""


# -- archival memory ------------------------------------------------------------------------
def test_archival_memory_is_searchable_durable_private_and_audited(memory_dir):
    mem = MemoryStores(memory_dir)
    arch = ArchivalMemory(memory_dir, audit=mem.audit)
    arch.insert("Learned: Support at 64500 is strong", tags=["BTCUSDT"])
    arch.insert("Learned: breakouts fail in high volatility")
    assert arch.insert("once", key="k1") == arch.insert("once", key="k1")
    arch.close()
    again = ArchivalMemory(memory_dir)
    assert len(again) == 3
    hits = again.search("breakout volatility")  # stemmed: "breakout" finds "breakouts"
    assert hits["text"].tolist() == ["Learned: breakouts fail in high volatility"]
    assert again.search("support")["tags"].iloc[0] == ["BTCUSDT"]
    assert stat.S_IMODE(os.stat(memory_dir / "archival.sqlite").st_mode) == 0o600
    assert len(mem.audit.for_file("archival.sqlite")) == 3
    with pytest.raises(InvalidInputError):
        again.search("  ")
    again.close()
    mem.close()


# -- signals ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"action": "HOLD"}, "'BUY' or 'SELL'"),
        ({"symbol": ""}, "'symbol'"),
        ({"price": -1}, "'price'"),
        ({"features": {**FEATS, "rsi": float("nan")}}, "'rsi'"),
        ({"features": {"rsi": 50.0}}, "lacks"),
        ({"features": None}, "needs 'features'"),
    ],
)
def test_bad_signals_are_refused_with_the_field_named(agent, change, message):
    with pytest.raises(InvalidSignalError, match=message):
        agent.analyze_signal({**SIGNAL, **change})


def test_signal_with_bars_is_scored_from_the_bars_features(agent):
    bars = synthetic_ohlcv(300, seed=3)
    from memlab.features import market_features

    expected = market_features(bars).iloc[-1]
    a = agent.analyze_signal({"symbol": "SYN", "strategy": "momentum", "action": "sell", "bars": bars})
    assert a["evidence"]["features"]["rsi"] == pytest.approx(expected["rsi"], rel=1e-5)
    assert a["evidence"]["action"] == "SELL"


# -- scoring ---------------------------------------------------------------------------------
def test_confidence_is_shrunk_toward_the_prior_when_evidence_is_thin(agent):
    store = agent.stores.decisions
    won = Outcome(pnl=10.0, return_pct=1.0)
    store.record_many([Decision("BTCUSDT", "momentum", "BUY", 0.5, features=FEATS, outcome=won) for _ in range(3)])
    thin = agent.analyze_signal(SIGNAL)
    store.record_many([Decision("BTCUSDT", "momentum", "BUY", 0.5, features=FEATS, outcome=won) for _ in range(27)])
    agent.brain.priors.invalidate()
    thick = agent.analyze_signal(SIGNAL)
    # Three wins out of three is not certainty; thirty out of thirty is close to it.
    assert 0.5 < thin["confidence"] < thick["confidence"] < 1.0
    assert thick["reason"].startswith("30 similar momentum BUYs in normal volatility: 30 won, mean +1.0%")
    assert thick["evidence"]["wins"] == 30 and thick["position_size"] == pytest.approx(0.1)


def test_an_even_record_gives_no_edge_and_no_position(agent):
    store = agent.stores.decisions
    store.record_many(
        [
            Decision("BTCUSDT", "momentum", "BUY", 0.5, features=FEATS, outcome=Outcome(pnl=(-1) ** i * 5.0))
            for i in range(40)
        ]
    )
    a = agent.analyze_signal(SIGNAL)
    assert a["confidence"] == pytest.approx(0.5, abs=0.02)
    assert a["position_size"] < 0.01


def test_recent_outcomes_weigh_more_than_old_ones(memory_dir):
    agent = MemoryAgent(memory_dir)
    old = [
        Decision("X", "momentum", "BUY", 0.5, features=FEATS, decided_at=f"2020-01-{d:02d}", outcome=Outcome(pnl=-1.0))
        for d in range(1, 16)
    ]
    new = [
        Decision("X", "momentum", "BUY", 0.5, features=FEATS, decided_at=f"2024-01-{d:02d}", outcome=Outcome(pnl=1.0))
        for d in range(1, 16)
    ]
    agent.stores.decisions.record_many(old + new)  # 15 losses long ago, 15 wins lately
    assert agent.analyze_signal(SIGNAL)["evidence"]["weighted_win_rate"] > 0.95
    agent.close()


# -- logging decisions ------------------------------------------------------------------------
def test_log_decision_journals_in_the_seed_format_and_stores_features(agent):
    did = agent.log_decision(
        {**SIGNAL, "mem_confidence": 0.85, "mem_reason": "breakout", "stop_loss": 64500, "target": 66000},
        {"order_id": "A1", "status": "filled", "price": 65000.0},
    )
    lines = [e.text for e in agent.stores.journal.tail(2)]
    assert lines == [
        "Strategy: momentum - Decision: BUY - Confidence: 0.85",
        f"Entry Price: 65000 - Stop Loss: 64500 - Target: 66000 - Decision Id: {did}",
    ]
    stored = agent.stores.decisions.get(did)
    assert stored.features == pytest.approx(FEATS) and stored.outcome is None
    assert stored.meta["order"]["order_id"] == "A1"
    # The same order logged again is the same decision.
    assert agent.log_decision({**SIGNAL, "mem_confidence": 0.85}, {"order_id": "A1"}) == did
    agent.close_position(did, pnl=500.0, return_pct=0.77)
    assert agent.stores.journal.tail(1)[0].text == f"P&L: +$500.00 - Return: +0.77% - Decision Id: {did} - Closed momentum BUY BTCUSDT (won)"
    # Logged and closed again (a retry, a restarted trader): nothing new in the journal.
    lines = len(agent.stores.journal)
    assert agent.log_decision({**SIGNAL, "mem_confidence": 0.85}, {"order_id": "A1"}) == did
    assert agent.close_position(did, pnl=500.0, return_pct=0.77) == [] and len(agent.stores.journal) == lines
    assert agent.stores.decisions.get(did).outcome.pnl == 500.0


def test_rejected_orders_are_journalled_but_not_remembered_as_trades(agent):
    assert agent.log_decision({**SIGNAL, "mem_confidence": 0.6}, {"status": "rejected"}) is None
    assert agent.stores.decisions.count() == 0
    assert agent.stores.journal.tail(1)[0].fields["Order"] == "rejected"


def test_a_significant_pattern_becomes_one_lesson(agent):
    heard = []
    agent.add_listener(lambda kind, payload: heard.append(kind))
    rng = np.random.default_rng(0)
    calm = {**FEATS, "vol_ratio": 0.7}
    storm = {**FEATS, "vol_ratio": 2.5, "volatility": 3.0, "trend": -2.0}
    history = []
    for i in range(200):  # the strategy wins 50 % overall: 80 % when calm, 20 % in storms
        f = calm if i % 2 else storm
        win = rng.random() < (0.8 if i % 2 else 0.2)
        history.append(Decision("X", "momentum", "BUY", 0.5, features=f, outcome=Outcome(pnl=1.0 if win else -1.0)))
    agent.stores.decisions.record_many(history)
    for i in range(3):
        did = agent.log_decision({**SIGNAL, "features": storm, "mem_confidence": 0.3}, {"order_id": f"s{i}"})
        agent.close_position(did, pnl=-5.0, return_pct=-0.5)
    lessons = agent.archival.recent(10)["text"].tolist()
    assert len(lessons) == 1, lessons
    assert lessons[0].startswith("Learned: momentum BUYs in high volatility with a down-trend lost more often")
    assert agent.stores.journal.entries(key="Learned")[0].fields["Learned"] in lessons[0]
    assert heard.count("lesson") == 1


def test_no_lesson_from_noise(agent):
    rng = np.random.default_rng(1)
    agent.stores.decisions.record_many(
        [
            Decision("X", "momentum", "BUY", 0.5, features={n: float(rng.normal()) for n in FEATURE_NAMES},
                     outcome=Outcome(pnl=1.0 if rng.random() < 0.5 else -1.0))
            for _ in range(300)
        ]
    )
    for i in range(5):
        did = agent.log_decision({**SIGNAL, "mem_confidence": 0.5}, {"order_id": f"n{i}"})
        agent.close_position(did, pnl=1.0 if i % 2 else -1.0)
    assert len(agent.archival) == 0


def test_memory_files_hold_no_nan_and_status_is_json(agent):
    agent.log_decision({**SIGNAL, "mem_confidence": 0.5}, {"order_id": "z", "fee": float("nan")})
    assert json.loads(json.dumps(agent.status(), allow_nan=False))["decisions"] == 1
