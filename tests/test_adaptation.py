"""The agent adapts its risk parameters on each trigger's condition, and only then."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from memlab.agent import AdaptationConfig, Adapter, MemoryAgent
from memlab.features import FEATURE_NAMES
from memlab.memory import MemoryStores


def trades(wins: int, losses: int, *, ret: float = 1.0) -> pd.DataFrame:
    """Closed trades, oldest first: ``wins`` winners then ``losses`` losers (interleaved)."""
    outcomes = [True] * wins + [False] * losses
    # Interleave so no drawdown builds up by accident.
    order = sorted(range(len(outcomes)), key=lambda i: (i * 7919) % max(len(outcomes), 1))
    won = [outcomes[i] for i in order]
    return pd.DataFrame(
        {"pnl": [10.0 if w else -10.0 for w in won], "return_pct": [ret if w else -ret * 0.5 for w in won]}
    )


@pytest.fixture
def mem(memory_dir: Path) -> MemoryStores:
    stores = MemoryStores(memory_dir)
    yield stores
    stores.close()


@pytest.fixture
def adapter(mem: MemoryStores) -> Adapter:
    return Adapter(mem.parameters, mem.journal, AdaptationConfig(window=20, max_drawdown_pct=10.0))


def changes(mem: MemoryStores, trigger_text: str) -> list[dict]:
    doc = json.loads(mem.parameters.path.read_text())
    return [a for day in doc.values() for a in day["adjustments"] if trigger_text in a["reason"]]


def test_low_win_rate_cuts_position_size_by_30_percent_and_says_why(mem, adapter):
    fired = adapter.after_close(trades(8, 12))  # 0.40 < 0.45
    assert [a.trigger for a in fired] == ["win_rate"]
    assert mem.parameters.get("position_size") == pytest.approx(0.07)
    (change,) = changes(mem, "win rate 0.40")
    assert change["from"]["position_size"] == 0.1 and change["to"]["position_size"] == pytest.approx(0.07)
    line = [e for e in mem.journal.entries(key="Adaptation")][-1]
    assert line.fields["Adaptation"] == "win_rate" and line.fields["Parameter"] == "position_size"


def test_win_rate_at_threshold_or_too_few_trades_changes_nothing(mem, adapter):
    assert adapter.after_close(trades(9, 11)) == []  # 0.45 is not below 0.45
    assert adapter.after_close(trades(3, 16)) == []  # 19 trades < window of 20
    assert mem.parameters.get("position_size") == 0.1


def test_one_bad_streak_is_one_cut_then_it_waits_a_window(mem, adapter):
    history = trades(8, 12)
    assert adapter.after_close(history)
    for extra in range(1, 20):  # the next 19 closes see the same bad rate: no further cut
        more = pd.concat([history, trades(0, extra)], ignore_index=True)
        assert adapter.after_close(more) == []
    assert adapter.after_close(pd.concat([history, trades(0, 20)], ignore_index=True))
    assert mem.parameters.get("position_size") == pytest.approx(0.049)


def test_position_size_never_falls_below_its_floor(mem):
    adapter = Adapter(mem.parameters, mem.journal, AdaptationConfig(window=20, min_position_size=0.05))
    history = trades(8, 12)
    for n in range(6):
        adapter.after_close(pd.concat([history, trades(0, 20 * n)], ignore_index=True))
    assert mem.parameters.get("position_size") == pytest.approx(0.05)


def test_size_recovers_toward_baseline_when_winning_again_and_not_beyond(mem, adapter):
    bad = trades(8, 12)
    adapter.after_close(bad)
    good = pd.concat([bad, trades(14, 6, ret=0.2)], ignore_index=True)  # 0.70 >= 0.55
    fired = adapter.after_close(good)
    assert [a.trigger for a in fired] == ["win_rate_recovery"]
    assert mem.parameters.get("position_size") == pytest.approx(0.1)
    assert adapter.after_close(pd.concat([good, trades(20, 0, ret=0.2)], ignore_index=True)) == []
    assert mem.parameters.get("position_size") == pytest.approx(0.1)


def test_decay_against_the_trained_baseline(mem, adapter):
    recent = trades(10, 10, ret=0.5)  # 0.50: fine in absolute terms ...
    assert adapter.after_close(recent, baseline_win_rate=0.55) == []  # ... and within 0.10 of 0.55
    fired = adapter.after_close(recent, baseline_win_rate=0.65)  # 0.15 below what training promised
    assert [a.trigger for a in fired] == ["win_rate_decay"]
    assert mem.parameters.get("position_size") == pytest.approx(0.085)
    assert "trained baseline 0.65" in fired[0].reason


def test_drawdown_beyond_the_limit_halves_risk_once_and_recovers(mem, adapter):
    steady = pd.DataFrame({"pnl": [10.0] * 5, "return_pct": [1.0] * 5})
    assert adapter.after_close(steady) == []
    crash = pd.concat([steady, pd.DataFrame({"pnl": [-50.0] * 3, "return_pct": [-4.0] * 3})], ignore_index=True)
    fired = adapter.after_close(crash)  # 1 - 0.96**3 = 11.5 % > 10 %
    assert [a.trigger for a in fired] == ["drawdown"]
    assert mem.parameters.get("risk_per_trade") == pytest.approx(0.01)
    assert adapter.after_close(crash) == []  # still in drawdown: no second cut
    back = pd.concat([crash, pd.DataFrame({"pnl": [50.0] * 3, "return_pct": [3.0] * 3})], ignore_index=True)
    fired = adapter.after_close(back)
    assert [a.trigger for a in fired] == ["drawdown_recovery"]
    assert mem.parameters.get("risk_per_trade") == pytest.approx(0.02)


def test_drawdown_within_the_limit_changes_nothing(mem, adapter):
    dip = pd.DataFrame({"pnl": [10.0, -30.0, -30.0], "return_pct": [1.0, -4.0, -4.0]})  # 7.8 %
    assert adapter.after_close(dip) == []
    assert mem.parameters.get("risk_per_trade") == 0.02


def test_new_volatility_regime_with_hysteresis(mem, adapter):
    assert adapter.observe_volatility(1.3) == []  # agitated, not yet a new regime
    assert adapter.observe_volatility(1.6) == []  # one reading in the high band is noise...
    fired = adapter.observe_volatility(1.7)  # ...two in a row are a regime
    assert [a.trigger for a in fired] == ["volatility_regime"]
    assert mem.parameters.get("volatility_regime") == "high"
    assert mem.parameters.get("volatility_scale") == 0.5
    assert adapter.observe_volatility(1.3) == []  # above the exit band: stays high
    assert adapter.observe_volatility(1.0) == []
    assert adapter.observe_volatility(1.0)[0].changes["volatility_regime"] == ("high", "normal")
    assert mem.parameters.get("volatility_scale") == 1.0
    assert adapter.observe_volatility(0.5) == [] and adapter.observe_volatility(1.0) == []  # a dip, not a regime
    assert adapter.observe_volatility(0.5) == []
    assert adapter.observe_volatility(0.5)[0].changes["volatility_regime"] == ("normal", "low")


def test_agent_applies_triggers_from_real_closes_and_emits_events(memory_dir: Path):
    agent = MemoryAgent(memory_dir, agent_id="live", config=None)
    heard = []
    agent.add_listener(lambda kind, payload: heard.append((kind, payload)))
    feats = dict.fromkeys(FEATURE_NAMES, 1.0)
    signal = {"symbol": "BTCUSDT", "strategy": "momentum", "action": "BUY", "features": feats}
    for i in range(20):
        did = agent.log_decision({**signal, "mem_confidence": 0.6}, {"order_id": f"o{i}", "status": "filled"})
        agent.close_position(did, pnl=10.0 if i % 5 < 1 else -10.0, return_pct=0.1 if i % 5 < 1 else -0.05)
    assert agent.parameters()["position_size"] == pytest.approx(0.07)  # 4 of 20 won
    adaptations = [p for kind, p in heard if kind == "adaptation"]
    assert adaptations and adaptations[-1]["to"] == {"position_size": pytest.approx(0.07)}
    assert agent.analyze_signal(signal)["evidence"]["similar"] == 20
    agent.close()


def test_every_adaptation_shows_in_the_recommended_position_size(memory_dir: Path):
    agent = MemoryAgent(memory_dir)
    feats = dict.fromkeys(FEATURE_NAMES, 1.0)
    signal = {"symbol": "X", "strategy": "s", "action": "BUY", "features": feats}
    from memlab.memory import Decision, Outcome

    agent.stores.decisions.record_many(
        [Decision("X", "s", "BUY", 0.5, features=feats, outcome=Outcome(pnl=1.0)) for _ in range(60)]
    )
    full = agent.analyze_signal(signal)["position_size"]
    assert full == pytest.approx(0.1)
    agent.adapter.observe_volatility(2.0)
    agent.adapter.observe_volatility(2.0)  # high volatility, confirmed: half size
    assert agent.analyze_signal(signal)["position_size"] == pytest.approx(0.05)
    agent.adapter.after_close(pd.DataFrame({"pnl": [-1.0] * 3, "return_pct": [-5.0] * 3}))  # drawdown: half risk
    assert agent.analyze_signal(signal)["position_size"] == pytest.approx(0.025)
    agent.close()


def test_win_rate_trigger_keeps_working_when_the_history_window_slides(mem, adapter):
    times = pd.date_range("2025-01-01", periods=200, freq="h", tz="UTC")
    frame = trades(8, 192)
    frame["closed_at"] = times
    window = 50  # the agent reads only its most recent trades
    fired = [a.trigger for n in range(20, 201) for a in adapter.after_close(frame.iloc[max(0, n - window) : n])]
    # A cut at 20 trades, then one every 20 more, until the floor of 0.01 stops them:
    # 0.1 -> 0.07 -> 0.049 -> 0.0343 -> 0.024 -> 0.0168 -> 0.0118 -> 0.01.
    assert fired.count("win_rate") == 7 and mem.parameters.get("position_size") == pytest.approx(0.01)


def test_the_agents_outcome_window_fires_the_same_triggers_as_a_frame(tmp_path: Path) -> None:
    """The agent hands the triggers its in-memory window, not a DataFrame: same decisions,
    same marks in the parameter history."""
    from memlab.agent.adaptation import OutcomeWindow

    times = pd.date_range("2025-01-01", periods=200, freq="h", tz="UTC")
    frame = trades(30, 170)
    frame["return_pct"] = frame["return_pct"] * 4  # deep enough for the drawdown trigger too
    frame["closed_at"] = times
    runs = []
    for name in ("frame", "window"):
        stores = MemoryStores(tmp_path / name)
        adapter = Adapter(stores.parameters, stores.journal, AdaptationConfig(window=20, max_drawdown_pct=10.0))
        window = OutcomeWindow(50)
        fired = []
        for n in range(1, 201):
            row = frame.iloc[n - 1]
            window.append(n, row["closed_at"].value, row["pnl"], row["return_pct"])
            given = frame.iloc[max(0, n - 50) : n] if name == "frame" else window
            fired += [(n, a.trigger, a.reason) for a in adapter.after_close(given)]
        runs.append((fired, stores.parameters.current()))
        stores.close()
    assert runs[0] == runs[1]
    assert {t for _, t, _ in runs[0][0]} >= {"win_rate", "drawdown"}


def test_outcome_window_holds_the_newest_trades_however_many_closed() -> None:
    """The triggers read the last ``trade_history`` closes: after thousands of appends the
    window is exactly the newest ones, in order, with a missing return as NaN."""
    from memlab.agent.adaptation import OutcomeWindow

    start = pd.Timestamp("2026-01-01", tz="UTC")
    rows = [(i, start + pd.Timedelta(minutes=i), float(i % 7 - 3), None if i % 5 == 0 else i / 10) for i in range(1, 1001)]
    window = OutcomeWindow(64)
    for decision_id, closed_at, pnl, ret in rows:
        window.append(decision_id, closed_at.value, pnl, ret)
    frame = window.frame()
    newest = rows[-64:]
    assert len(window) == 64 and window.last_id == 1000
    assert frame["closed_at"].tolist() == [r[1] for r in newest]
    assert frame["pnl"].tolist() == [r[2] for r in newest]
    assert frame["return_pct"].isna().tolist() == [r[3] is None for r in newest]
    # Rebuilt from the store's frame (a restarted agent): the same window.
    stored = pd.DataFrame({"decision_id": [r[0] for r in rows], "closed_at": [r[1] for r in rows],
                           "pnl": [r[2] for r in rows], "return_pct": [r[3] for r in rows]})
    pd.testing.assert_frame_equal(OutcomeWindow.from_frame(stored, 64).frame(), frame)
    with pytest.raises(ValueError, match="limit"):
        OutcomeWindow(0)
