"""Does memory help? The evaluation never lets the agent see the future, reports every
column for every market, says what a short market needs, and finds no edge where gating
cannot matter."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from memlab.agent import MemoryAgent
from memlab.agent.brain import Analysis
from memlab.cli import main
from memlab.evaluation import TABLE_COLUMNS, evaluate_memory, load_market, market_events
from memlab.evaluation.memory_edge import EvaluationConfig, _book_returns, _fold_trades

MARKET = "synthetic:3:2400"  # 5 folds of 300 test bars, ~30 signals: seconds, not minutes
SMALL = "synthetic:3:1200"  # 5 folds of 150 test bars, for what needs a report, not a learning agent


@pytest.fixture(autouse=True)
def _no_host_memory_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEM_MEMORY_PATH", raising=False)
    monkeypatch.delenv("MEM_ENCRYPTION_KEY", raising=False)


class WatchedAgent(MemoryAgent):
    """A real agent that records, at every scoring, what its store held and what it used."""

    scorings: list[dict[str, Any]]

    def analyze_signal(self, signal: Mapping[str, Any]) -> Analysis:
        at = pd.Timestamp(signal["time"])
        held = self.stores.decisions.outcomes()
        analysis = super().analyze_signal(signal)
        used = [self.stores.decisions.get(i).outcome for i in analysis["evidence"].get("decision_ids", [])]
        self.scorings.append({"time": at, "held": pd.DatetimeIndex(held["closed_at"]),
                              "used": [pd.Timestamp(o.closed_at) for o in used if o is not None]})
        return analysis


class FullSizeAgent(MemoryAgent):
    """Every signal at the starting base size, whatever memory and adaptations say: gating
    cannot matter."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, agent_id="evaluator")
        self.full_size = self.base_size()

    def analyze_signal(self, signal: Mapping[str, Any]) -> Analysis:
        return {**super().analyze_signal(signal), "position_size": self.full_size}


def test_the_agent_never_sees_an_outcome_from_after_its_scoring_time() -> None:
    agents: list[WatchedAgent] = []

    def watched(path: Path) -> MemoryAgent:
        agent = WatchedAgent(path, agent_id="evaluator")
        agent.scorings = []
        agents.append(agent)
        return agent

    report = evaluate_memory([MARKET], agent_factory=watched, draws=200, progress=False)
    [agent] = agents
    signals = report.signals
    assert len(agent.scorings) == len(signals) >= 20
    exits = pd.DatetimeIndex(signals["exit_time"])
    for scoring in agent.scorings:
        at = scoring["time"]
        # Memory holds no outcome from after the signal bar...
        assert (scoring["held"] <= at).all(), f"memory held a future outcome when scoring at {at}"
        # ...and every outcome known by then (shadow outcomes of skipped signals included).
        assert len(scoring["held"]) == int((exits <= at).sum())
        # The evidence the agent used closed strictly before the signal.
        assert all(closed < at for closed in scoring["used"]), f"evidence from the future at {at}"
    assert sum(len(s["used"]) > 0 for s in agent.scorings) >= 10  # the check was not vacuous
    # The Brier reference is the same point-in-time past: outcomes closed strictly before.
    first = signals.iloc[0]
    assert first["past_outcomes"] == 0 and first["base_rate"] == 0.5
    for row in signals.itertuples():
        assert row.past_outcomes == int((exits < row.signal_time).sum())


def test_where_gating_cannot_matter_the_interval_covers_zero_and_says_no_edge() -> None:
    report = evaluate_memory([MARKET], agent_factory=FullSizeAgent,
                             draws=300, progress=False)
    row = report.table.loc[MARKET]
    assert row["raw_trades"] == row["gated_trades"] > 0
    assert row["raw_sharpe"] == row["gated_sharpe"]
    assert row["sharpe_diff_low"] <= 0.0 <= row["sharpe_diff_high"]
    assert row["verdict"].startswith("no edge")
    assert report.table.loc["overall", "verdict"].startswith("no edge")
    equity = report.equity[report.equity["market"] == MARKET]
    assert np.array_equal(equity["raw"].to_numpy(), equity["gated"].to_numpy())


def test_the_cli_reports_every_column_for_every_market_and_what_a_short_market_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "evaluation"
    code = main(["evaluate", "--markets", SMALL, "BTCUSD", "--out", str(out), "--draws", "200", "--quiet"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "BTCUSD: 156 bars is too short for one fold; it needs at least 250 bars" in printed.out
    assert "wrote evaluation.csv" in printed.out and str(out) in printed.out
    table = pd.read_csv(out / "evaluation.csv", index_col="market")
    assert list(table.index) == [SMALL, "overall"]
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert table.drop(columns=["raw_brier_skill", "gated_brier_skill"]).notna().all().all()
    assert table.loc[SMALL, "fitted_on"].startswith("5 train windows of 450 bars")
    assert table.loc[SMALL, "judged_on"].startswith("5 test windows of 150 bars")
    summary = json.loads((out / "evaluation.json").read_text())
    assert set(summary["markets"]) == {SMALL} and "BTCUSD" in summary["skipped"]
    assert set(summary["markets"][SMALL]) == set(summary["overall"]) == set(TABLE_COLUMNS)
    assert "shadow" in " ".join(summary["method"])
    assert {"evaluation.html", "folds.csv", "signals.csv", "equity.csv"} <= {p.name for p in out.iterdir()}
    assert "Traceback" not in printed.err


def test_user_mistakes_exit_2_and_failures_exit_1_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--markets", "NOPE", "--out", str(tmp_path / "a"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown market 'NOPE'" in err and "Traceback" not in err
    assert main(["evaluate", "--markets", "GOOG", "--strategy", "nope", "--quiet"]) == 2
    assert "unknown strategy 'nope'" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["evaluate", "--out", str(tmp_path / "file"), "--quiet"]) == 2
    assert main(["evaluate", "--markets", "BTCUSD", "--out", str(tmp_path / "b"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "needs at least 250 bars" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()


def test_exits_come_before_entries_at_equal_times() -> None:
    t = pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"], utc=True)
    # The second signal is decided at the close of the bar whose open filled the first exit.
    trades = pd.DataFrame({"signal_time": [t[1], t[0]], "exit_time": [t[2], t[1]]})
    events = market_events(trades)
    assert list(zip(events["event"], events["trade"], strict=True)) == [
        ("entry", 1), ("exit", 1), ("entry", 0), ("exit", 0)]


def test_the_raw_book_is_the_backtest_of_the_same_window() -> None:
    from memlab.backtest.engine import simulate
    from memlab.strategies import get

    bars = load_market(MARKET)
    cfg = EvaluationConfig(fees=0.001, slippage=0.0005)
    params = {"fast": 5, "slow": 30}
    trades = _fold_trades(bars, cfg, params, 900, 1200, 900)
    expected = simulate(bars.iloc[900:1200], get("sma_cross")(bars.iloc[:1200], **params).iloc[900:],
                        fees=0.001, slippage=0.0005).value().to_numpy()
    raw = 100_000 * np.cumprod(1 + _book_returns(bars.iloc[900:1200], trades, np.ones(len(trades)), cfg))
    assert len(trades) >= 3
    np.testing.assert_allclose(raw, expected, rtol=1e-12)
    half = 100_000 * np.cumprod(1 + _book_returns(bars.iloc[900:1200], trades, np.full(len(trades), 0.5), cfg))
    assert abs(half[-1] / 100_000 - 1) < abs(raw[-1] / 100_000 - 1)  # half the size, a smaller move


def test_the_nightly_run_keeps_the_evaluation_in_its_summary(tmp_path: Path) -> None:
    from memlab.training.runner import nightly_evaluation, write_summary

    write_summary(tmp_path, {"symbols": {"SYN3": {}}})
    report = nightly_evaluation(tmp_path, [SMALL, "BTCUSD"], draws=200)
    assert report is not None
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["symbols"] == {"SYN3": {}}  # training's results are kept
    evaluation = summary["evaluation"]
    assert set(evaluation["markets"][SMALL]) == set(TABLE_COLUMNS)
    assert "needs at least 250 bars" in evaluation["skipped"]["BTCUSD"]
    assert Path(evaluation["files"]["evaluation.html"]).exists()
    # A night whose markets are all too short is not a failed night: the summary says why.
    assert nightly_evaluation(tmp_path, ["BTCUSD"]) is None
    assert "needs at least 250 bars" in json.loads((tmp_path / "summary.json").read_text())["evaluation"]["error"]
