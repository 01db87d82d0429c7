"""`check_strategy` / `memlab check-strategy`: every shipped strategy is clean, planted leaks are caught."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memlab.data import sample
from memlab.errors import InvalidInputError
from memlab.strategies import REGISTRY, SIGNAL_COLUMNS, load_params
from memlab.strategies.lookahead import LookaheadReport, check_strategy
from memlab.strategies.signal_frame import signal_frame

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def goog() -> pd.DataFrame:
    return sample("GOOG")


def level_strategy(level_of):  # type: ignore[no-untyped-def]
    """A strategy that is long above ``level_of(close)``, with confidence from their ratio."""

    def strategy(ohlcv: pd.DataFrame) -> pd.DataFrame:
        close = ohlcv["Close"]
        level = level_of(close)
        return signal_frame(ohlcv.index, entry=close > level, exit=close < level,
                            confidence=(level / close).clip(0.0, 2.0))

    return strategy


# Each leaks the future in a way a vectorised backtest cannot see.
LEAKS = {
    "next_close": lambda c: c.shift(-1),
    "whole_series_max": lambda c: c / c.max() * 600.0,
    "whole_series_mean": lambda c: c - c.mean() + 400.0,
    "centred_window": lambda c: c.rolling(21, center=True).mean(),
    "bfill_warmup": lambda c: c.rolling(20).mean().bfill(),
    "bfill_gaps": lambda c: c.where(c.pct_change() > 0.01).bfill(),
}


# memlab's own strategies (other test modules register fixtures of their own in the same process).
SHIPPED = sorted(name for name, fn in REGISTRY.items() if fn.__module__.startswith("memlab."))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_registered_strategy_is_free_of_lookahead_and_settles(name: str, goog: pd.DataFrame) -> None:
    report = check_strategy(name, goog)
    assert report.ok, str(report)
    assert report.findings == [] and report.skipped == []
    assert load_params(name).items() <= report.params.items()  # the shipped defaults were used
    assert report.bars == len(goog) and len(report.cuts) >= 20 and len(report.starts) == 3
    assert set(SIGNAL_COLUMNS) <= set(report.warmup)


@pytest.mark.parametrize("leak", sorted(LEAKS))
def test_planted_lookahead_is_caught_with_its_evidence(leak: str, goog: pd.DataFrame) -> None:
    report = check_strategy(level_strategy(LEAKS[leak]), goog)
    assert not report.ok
    found = {f.column: f for f in report.lookahead}
    assert "confidence" in found, str(report)
    finding = found["confidence"]
    assert finding.first_bar in goog.index and finding.history is not None
    assert finding.first_bar <= finding.history  # the row changed although its bar was still there
    assert not (pd.isna(finding.value) and pd.isna(finding.other_value)) and finding.value != finding.other_value
    assert "confidence" in str(report) and finding.first_bar.strftime("%Y-%m-%d") in str(report)


def test_a_one_bar_peek_is_reported_at_the_last_bar_of_a_truncated_history(goog: pd.DataFrame) -> None:
    report = check_strategy(level_strategy(LEAKS["next_close"]), goog)
    finding = next(f for f in report.lookahead if f.column == "confidence")
    assert finding.first_bar == finding.history == goog.index[report.cuts[0] - 1]
    assert np.isnan(finding.other_value)  # no next bar on the truncated history
    assert finding.runs == len(report.cuts)


def test_a_cumulative_sum_depends_on_where_history_starts(goog: pd.DataFrame) -> None:
    def cumulative(ohlcv: pd.DataFrame) -> pd.DataFrame:
        drift = ohlcv["Close"].pct_change().fillna(0.0).cumsum()  # no window: every past bar counts forever
        return signal_frame(ohlcv.index, entry=drift > 0.5, exit=drift < 0.0, confidence=drift.clip(0.0, 1.0))

    report = check_strategy(cumulative, goog)
    assert report.lookahead == []  # a prefix computes the same sums
    assert "confidence" in {f.column for f in report.recursive}, str(report)
    assert "confidence" not in report.warmup and not report.ok


def test_a_slow_adjusted_ewm_never_settles_but_a_fast_one_reports_its_warmup(goog: pd.DataFrame) -> None:
    slow = check_strategy(level_strategy(lambda c: c.ewm(span=1000, adjust=True).mean()), goog)
    assert slow.lookahead == [] and "confidence" in {f.column for f in slow.recursive}, str(slow)
    fast = check_strategy(level_strategy(lambda c: c.ewm(span=20, adjust=True).mean()), goog)
    assert fast.ok, str(fast)
    assert 20 < fast.warmup["confidence"] < fast.max_warmup  # converges, after a measured warm-up


def test_nan_equals_nan_and_float_noise_below_tolerance_is_ignored(goog: pd.DataFrame) -> None:
    def quiet(ohlcv: pd.DataFrame) -> pd.DataFrame:
        noise = 1e-13 * (len(ohlcv) % 7)  # depends on the history's length, far below the tolerance
        return signal_frame(ohlcv.index, entry=np.zeros(len(ohlcv)), exit=np.zeros(len(ohlcv)),
                            confidence=np.full(len(ohlcv), np.nan)).assign(level=0.5 + noise)

    assert check_strategy(quiet, goog).ok
    assert not check_strategy(quiet, goog, atol=0.0, rtol=0.0).ok


def test_report_is_json_ready_and_names_strategy_params_and_bars(goog: pd.DataFrame) -> None:
    report = check_strategy("sma_cross", goog, {"fast": 5, "slow": 20})
    doc = json.loads(json.dumps(report.as_dict()))
    assert doc["strategy"] == "sma_cross" and doc["params"] == {"fast": 5, "slow": 20} and doc["ok"] is True
    assert doc["start"].startswith("2004-08-19") and doc["bars"] == len(goog)
    leaky = check_strategy(level_strategy(LEAKS["next_close"]), goog).as_dict()
    assert leaky["ok"] is False and {"kind", "column", "first_bar", "detail"} <= set(leaky["findings"][0])
    json.dumps(leaky)
    assert isinstance(check_strategy("momentum", goog), LookaheadReport)


def test_unknown_strategy_and_parameters_are_errors_naming_what_is_known(goog: pd.DataFrame) -> None:
    with pytest.raises(InvalidInputError, match="known: .*sma_cross"):
        check_strategy("no_such_strategy", goog)
    with pytest.raises(InvalidInputError, match="no parameter"):
        check_strategy("sma_cross", goog, {"fastest": 3})


def test_a_strategy_that_edits_its_input_does_not_poison_the_check(goog: pd.DataFrame) -> None:
    def scribbles(ohlcv: pd.DataFrame) -> pd.DataFrame:
        ohlcv["Close"] = ohlcv["Close"] * 2  # bad manners, but not look-ahead
        return signal_frame(ohlcv.index, entry=ohlcv["Close"] > 1000, exit=ohlcv["Close"] < 800)

    before = goog.copy()
    assert check_strategy(scribbles, goog).ok
    pd.testing.assert_frame_equal(goog, before)


# The command line -------------------------------------------------------------------

PLANTED = '''
from memlab.strategies.signal_frame import signal_frame

def peek(ohlcv, lead=1):
    ahead = ohlcv["Close"].shift(-lead)
    return signal_frame(ohlcv.index, entry=ahead > ohlcv["Close"], exit=ahead < ohlcv["Close"])
'''


def memlab(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "memlab"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "memlab.cli"]
    return subprocess.run([*cmd, "check-strategy", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=env)


def test_cli_exits_0_for_a_clean_strategy_and_1_for_a_planted_one(tmp_path: Path) -> None:
    done = memlab("sma_cross")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sma_cross(fast=10, slow=30)" in done.stdout and "OK" in done.stdout

    (tmp_path / "planted_strategies.py").write_text(textwrap.dedent(PLANTED))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = memlab("planted_strategies:peek", "--param", "lead=2", "--json", env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert doc["ok"] is False and doc["params"] == {"lead": 2}
    assert {f["kind"] for f in doc["findings"]} == {"lookahead"}


def test_cli_checks_every_strategy_on_other_data_as_json() -> None:
    done = memlab("--all", "--synthetic", "3000", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    docs = json.loads(done.stdout)
    assert sorted(d["strategy"] for d in docs) == SHIPPED and all(d["bars"] == 3000 for d in docs)


def test_cli_unknown_strategy_exits_2_naming_the_known_ones_without_a_traceback() -> None:
    done = memlab("no_such_strategy")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == (
        "memlab: error: unknown strategy 'no_such_strategy'; known: high_volatility, momentum, rsi_reversion, sma_cross")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sma_cross", "--param", "fast=ten"], "fast=ten"),
        (["sma_cross", "--param", "fastest=3"], "fastest=3"),
        (["sma_cross", "--param", "fast"], "expected NAME=VALUE"),
        (["sma_cross", "--param", "fast=40"], "fast (40) must be shorter than slow (30)"),
        (["sma_cross", "--data", "no/such/file.csv"], "no such file"),
        (["--all", "--param", "fast=3"], "not --all"),
        (["nope:peek"], "cannot import 'nope'"),
        ([], "NAME or --all"),
    ],
)
def test_cli_usage_errors_exit_2_with_one_line(args: list[str], message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from memlab.cli import main

    assert main(["check-strategy", *args]) == 2  # what the installed `memlab` script returns
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
