"""The agent learns, measured: trained on one stretch of a market, it tells winning
situations from losing ones on the stretch that follows, and is better calibrated than
a constant confidence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memlab.agent import MemoryAgent, calibrate
from memlab.data import Regime, synthetic_ohlcv
from memlab.features import FEATURE_NAMES, market_features
from memlab.memory import Decision, Outcome

HOLD = 10  # bars each trade is held


@pytest.fixture(scope="module")
def market():
    """A seeded market that alternates calm up-trends (where buying wins) and falling storms
    (where it loses), and a BUY every 7 bars with its outcome after ``HOLD`` bars."""
    regimes = (
        Regime("calm_up", drift=0.0006, volatility=0.003, mean_length=300),
        Regime("storm_down", drift=-0.0006, volatility=0.012, mean_length=300),
    )
    bars = synthetic_ohlcv(40_000, seed=11, regimes=regimes, with_regimes=True)
    feats = market_features(bars)
    close = bars["Close"].to_numpy()
    entries = np.arange(100, len(bars) - HOLD, 7)
    returns = (close[entries + HOLD] / close[entries] - 1.0) * 100.0
    split = int(len(entries) * 0.7)  # train on the first 70 %, judge on the rest
    return bars, feats, entries, returns, split


def test_confidence_separates_the_regimes_on_unseen_data_and_beats_a_constant(market, memory_dir: Path):
    bars, feats, entries, returns, split = market
    agent = MemoryAgent(memory_dir, agent_id="learner")
    values = feats[list(FEATURE_NAMES)].to_numpy()
    agent.stores.decisions.record_many(
        Decision(
            "SYN", "momentum", "BUY", 0.5,
            features=dict(zip(FEATURE_NAMES, values[i].tolist(), strict=True)),
            decided_at=bars.index[i], agent_id="trainer",
            outcome=Outcome(pnl=float(r), return_pct=float(r), closed_at=bars.index[i + HOLD]),
        )
        for i, r in zip(entries[:split], returns[:split], strict=True)
    )
    confidence, regime = [], []
    for i in entries[split:]:
        signal = {"symbol": "SYN", "strategy": "momentum", "action": "BUY",
                  "features": dict(zip(FEATURE_NAMES, values[i].tolist(), strict=True))}
        confidence.append(agent.analyze_signal(signal)["confidence"])
        regime.append(bars["regime"].iloc[i])
    confidence, regime = np.array(confidence), np.array(regime)
    won = returns[split:] > 0

    winning, losing = confidence[regime == "calm_up"].mean(), confidence[regime == "storm_down"].mean()
    assert won[regime == "calm_up"].mean() > 0.6 > 0.45 > won[regime == "storm_down"].mean()  # the market is as built
    assert winning - losing > 0.12, (winning, losing)

    train_rate = float((returns[:split] > 0).mean())
    report = calibrate(confidence, won, baseline=train_rate)
    assert report.brier < report.baseline_brier - 0.01, report.summary()
    # Also better than the best constant in hindsight (the unseen stretch's own win rate).
    assert report.brier < calibrate(confidence, won).baseline_brier
    agent.close()
