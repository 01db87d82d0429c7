"""The calibration report: Brier scores, reliability table and the plotly HTML."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memlab.agent import MemoryAgent, brier_score, calibrate
from memlab.errors import InvalidInputError


def test_brier_score_matches_its_definition():
    assert brier_score(np.array([1.0, 0.0]), np.array([True, False])) == 0.0
    assert brier_score(np.array([0.5, 0.5]), np.array([True, False])) == 0.25
    assert brier_score(np.array([0.9, 0.2]), np.array([False, False])) == pytest.approx((0.81 + 0.04) / 2)


def test_a_calibrated_forecaster_lands_on_the_diagonal_and_beats_the_constant():
    rng = np.random.default_rng(5)
    conf = rng.uniform(0.05, 0.95, 20_000)
    won = rng.random(20_000) < conf  # wins exactly as often as it says
    report = calibrate(conf, won)
    filled = report.table[report.table["count"] > 0]
    assert np.allclose(filled["win_rate"], filled["mean_confidence"], atol=0.03)
    assert report.brier < report.baseline_brier and report.skill > 0.2
    assert report.table["count"].sum() == 20_000


def test_an_overconfident_forecaster_scores_worse_than_the_constant():
    rng = np.random.default_rng(6)
    won = rng.random(5000) < 0.5
    conf = np.where(rng.random(5000) < 0.5, 0.95, 0.05)  # sure of itself, right by chance
    assert calibrate(conf, won).skill < 0


def test_bad_inputs_are_named():
    with pytest.raises(InvalidInputError, match="no closed decisions"):
        calibrate(np.array([]), np.array([]))
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        calibrate(np.array([1.2]), np.array([True]))


def test_agent_report_writes_a_self_contained_reliability_plot(memory_dir: Path, tmp_path: Path):
    agent = MemoryAgent(memory_dir, agent_id="cal")
    feats = {"ret_5": 0.0, "ret_20": 0.0, "volatility": 1.0, "vol_ratio": 1.0, "rsi": 50.0, "trend": 0.0}
    for i in range(30):
        did = agent.log_decision(
            {"symbol": "X", "strategy": "s", "action": "BUY", "features": feats, "mem_confidence": 0.7},
            {"order_id": str(i)},
        )
        agent.close_position(did, pnl=1.0 if i % 10 < 7 else -1.0)
    report = agent.calibration()
    assert report.n == 30 and report.brier == pytest.approx(0.21)  # 0.7 said, 70 % won
    path = report.write_html(tmp_path / "calibration.html")
    html = path.read_text()
    assert "plotly" in html.lower() and "Brier 0.2100" in html and "<script src=\"http" not in html and len(html) > 1_000_000
    agent.close()
