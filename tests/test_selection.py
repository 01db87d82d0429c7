"""Selection statistics: published numbers, independent references, and what a user relies on.

- the deflated Sharpe ratio reproduces the numerical example of Bailey & López de Prado (2014);
- PBO reproduces a CSCV worked by hand and a literal loop over the paper's steps;
- the SPA / Reality Check p-values are those of arch 8.0.0 (an independent implementation);
- noise gives high PBO and no significance, a planted edge the opposite;
- every sweep carries a report; one parameter set says no statistic applies;
- the guard refuses with the numbers in its message.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from memlab import backtest
from memlab.backtest.bootstrap import default_block_length, stationary_bootstrap_indices
from memlab.backtest.selection import (
    ONE_SET_NOTE,
    SelectionRefused,
    SelectionReport,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    guard_parameters,
    pbo_cscv,
    selection_report,
    spa_test,
)
from memlab.backtest.sweep import subperiod_edges
from memlab.data import sample
from memlab.errors import MemlabError

# --------------------------------------------------------------------------- bootstrap


def test_stationary_bootstrap_draws_geometric_blocks_of_uniform_starts() -> None:
    n, draws, block = 500, 400, 8.0
    idx = stationary_bootstrap_indices(n, draws, block, np.random.default_rng(5))
    assert idx.shape == (draws, n) and idx.dtype == np.int64
    assert idx.min() >= 0 and idx.max() < n
    # A block continues (next index = previous + 1, wrapping) with probability 1 - 1/block.
    continues = (idx[:, 1:] == (idx[:, :-1] + 1) % n).mean()
    assert continues == pytest.approx(1 - 1 / block, abs=0.01)
    # Every observation is equally likely to be drawn: chi-square test of the counts.
    counts = np.bincount(idx.ravel(), minlength=n)
    assert stats.chisquare(counts).pvalue > 1e-4
    same = stationary_bootstrap_indices(n, draws, block, np.random.default_rng(5))
    np.testing.assert_array_equal(idx, same)
    iid = stationary_bootstrap_indices(n, draws, 1.0, np.random.default_rng(5))
    assert (iid[:, 1:] == (iid[:, :-1] + 1) % n).mean() < 0.01


def test_default_block_length_is_the_cube_root_rule() -> None:
    assert default_block_length(1000) == pytest.approx(10.0)
    assert default_block_length(1) == 1.0


# --------------------------------------------------------------------------- DSR


def test_deflated_sharpe_ratio_reproduces_the_papers_numerical_example() -> None:
    """Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", numerical example:
    100 trials whose annualised Sharpe ratios vary with variance 1/2, the best at 2.5
    annualised, 1,250 daily returns (five years), skewness -3, kurtosis 10: the expected
    maximum is 0.1132 per day and DSR = 0.9004."""
    daily = 250
    sr0 = expected_max_sharpe(100, 0.5 / daily)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = deflated_sharpe_ratio(2.5 / math.sqrt(daily), n_trials=100, sharpe_variance=0.5 / daily, n_obs=1250,
                                skewness=-3.0, kurtosis=10.0)
    assert dsr == pytest.approx(0.9004, abs=5e-5)


def test_deflated_sharpe_ratio_falls_with_trials_negative_skew_and_fat_tails() -> None:
    base = {"sharpe": 0.15, "sharpe_variance": 0.002, "n_obs": 1000}
    few, many = (deflated_sharpe_ratio(n_trials=n, **base) for n in (10, 10_000))
    assert many < few
    normal = deflated_sharpe_ratio(n_trials=100, **base)  # 0.15 beats the 0.113 expected from luck
    assert 0.5 < deflated_sharpe_ratio(n_trials=100, skewness=-2.0, kurtosis=12.0, **base) < normal
    assert expected_max_sharpe(1, 1.0) == 0.0


# --------------------------------------------------------------------------- PBO


def _pbo_by_the_papers_steps(perf: np.ndarray, n_blocks: int) -> np.ndarray:
    """CSCV written out literally: split, concatenate, Sharpe, rank (average ties), logit."""
    t, n = perf.shape
    blocks = np.array_split(np.arange(t), n_blocks)
    logits = []
    for chosen in itertools.combinations(range(n_blocks), n_blocks // 2):
        rows_in = np.concatenate([blocks[b] for b in chosen])
        rows_out = np.concatenate([blocks[b] for b in range(n_blocks) if b not in chosen])

        def sharpe(rows: np.ndarray) -> np.ndarray:
            sd = perf[rows].std(axis=0, ddof=1)
            return np.where(sd > 0, perf[rows].mean(axis=0) / np.where(sd > 0, sd, 1.0), 0.0)

        best = int(np.argmax(sharpe(rows_in)))
        rank = stats.rankdata(sharpe(rows_out))[best]
        w = rank / (n + 1)
        logits.append(math.log(w / (1 - w)))
    return np.array(logits)


def test_pbo_of_a_hand_worked_example() -> None:
    """Four blocks of two rows, three strategies. A earns in blocks 0-1 and loses in 2-3, B
    the reverse, C earns a little everywhere. Splits (0,1) and (2,3) pick A resp. B in
    sample, worst out of sample: rank 1 of 3, logit log(1/3). The four mixed splits see A
    and B at zero and pick C, best out of sample too: logit log(3). PBO = 2/6."""
    wiggle = np.array([-0.01, 0.01])
    means = {"A": [1, 1, -1, -1], "B": [-1, -1, 1, 1], "C": [0.1, 0.1, 0.1, 0.1]}
    perf = np.column_stack([np.concatenate([m + wiggle for m in ms]) for ms in means.values()])
    result = pbo_cscv(perf, n_blocks=4)
    expected = np.log([1 / 3, 3, 3, 3, 3, 1 / 3])  # splits in itertools.combinations order
    np.testing.assert_allclose(result.logits, expected, rtol=1e-12)
    assert result.pbo == pytest.approx(2 / 6)
    assert result.n_splits == 6


def test_pbo_matches_a_literal_implementation_of_the_paper() -> None:
    rng = np.random.default_rng(11)
    perf = rng.standard_t(5, (96, 9)) * 0.01 + rng.normal(0, 0.002, 9)
    perf[:, 4] = perf[:, 3]  # a duplicated set: tied ranks
    perf[:, 7] = 0.0  # a set that never trades
    result = pbo_cscv(perf, n_blocks=8)
    np.testing.assert_allclose(result.logits, _pbo_by_the_papers_steps(perf, 8), rtol=1e-9, atol=1e-12)
    assert result.n_splits == math.comb(8, 4)


def test_pbo_is_high_for_noise_and_low_for_a_real_edge() -> None:
    rng = np.random.default_rng(2)
    noise = rng.normal(0.0, 0.01, (256, 200))
    assert pbo_cscv(noise).pbo > 0.3
    edged = noise.copy()
    edged[:, 17] += 0.004  # Sharpe 0.4 per sub-period where the others have none
    assert pbo_cscv(edged).pbo < 0.05


# --------------------------------------------------------------------------- SPA


def _spa_data() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.normal(0, 1, (200, 6)) + np.array([0, 0.05, 0.1, -0.2, 0.15, 0.0])


def test_spa_p_values_agree_with_arch() -> None:
    """arch 8.0.0, ``SPA(np.zeros(200), -x, block_size=5, reps=20000, seed=11)`` on this
    data gave lower 0.01535, consistent 0.0426, upper 0.0579 (the upper one is White's
    Reality Check). Ours draws its own resamples: equal within Monte Carlo error."""
    result = spa_test(_spa_data(), draws=20000, mean_block=5, studentize=False, seed=0)
    assert result.pvalue_lower == pytest.approx(0.01535, abs=0.006)
    assert result.pvalue == pytest.approx(0.0426, abs=0.01)
    assert result.pvalue_upper == pytest.approx(0.0579, abs=0.01)
    assert result.reality_check_pvalue == result.pvalue_upper


def test_spa_equals_arch_on_the_same_resamples() -> None:
    arch = pytest.importorskip("arch.bootstrap", reason="arch is a test-only reference, not a dependency")
    x = _spa_data()
    for block in (5, 12):
        theirs = arch.SPA(np.zeros(200), -x, block_size=block, reps=1000, seed=11)
        theirs.compute()
        resampler = arch.StationaryBootstrap(block, np.zeros(200), seed=11)
        indices = np.array([resampler.index for _ in resampler.bootstrap(1000)])
        ours = spa_test(x, indices=indices, mean_block=block, studentize=False)
        assert (ours.pvalue_lower, ours.pvalue, ours.pvalue_upper) == tuple(theirs.pvalues)


def test_studentized_spa_matches_a_resample_by_resample_loop() -> None:
    x = _spa_data()
    x[:, 5] = 0.0  # a set that never trades takes no part
    n = len(x)
    indices = stationary_bootstrap_indices(n, 300, 6.0, np.random.default_rng(4))
    ours = spa_test(x, indices=indices, mean_block=6.0)
    mean, sd = x.mean(0), x.std(0)
    live = sd > 0
    # Consistent re-centring: Hansen's threshold on the stationary bootstrap's long-run variance.
    q = 1 / 6.0
    demeaned = x - mean
    omega2 = (demeaned**2).sum(0) / n
    for i in range(1, n):
        kappa = (1 - i / n) * (1 - q) ** i + (i / n) * (1 - q) ** (n - i)
        omega2 += 2 * kappa * (demeaned[: n - i] * demeaned[i:]).sum(0) / n
    valid = mean >= -np.sqrt(omega2 / n * 2 * np.log(np.log(n)))
    centre = np.where(valid, mean, 0.0)
    statistic = max(0.0, float(np.max(np.sqrt(n) * mean[live] / sd[live])))
    simulated = []
    for row in indices:
        star = x[row]
        t_star = np.sqrt(n) * (star.mean(0) - centre)[live] / star.std(0)[live]
        simulated.append(max(0.0, float(t_star.max())))
    assert ours.pvalue == pytest.approx(np.mean(np.array(simulated) > statistic), abs=1e-12)
    assert ours.statistic == pytest.approx(statistic)


def test_spa_finds_a_planted_edge_and_not_noise() -> None:
    rng = np.random.default_rng(9)
    noise = rng.standard_t(4, (256, 300)) * 0.01
    noise[1:] += 0.3 * noise[:-1].copy()  # some autocorrelation, as sub-period returns have
    quiet = spa_test(noise, seed=1)
    assert quiet.pvalue > 0.1 and quiet.reality_check_pvalue > 0.1
    edged = noise.copy()
    edged[:, 42] += 0.01  # Sharpe about 0.7 per sub-period
    loud = spa_test(edged, seed=1)
    assert loud.pvalue < 0.01
    flat = spa_test(np.zeros((50, 3)))
    assert flat.pvalue == 1.0 and flat.reality_check_pvalue == 1.0


# --------------------------------------------------------------------------- sweeps


GRID = {"fast": [3, 5, 10, 20], "slow": [15, 30, 60]}


def test_every_sweep_reports_on_its_choice() -> None:
    data = sample("GOOG")
    table = backtest.sweep(data, "sma_cross", GRID, progress=False)
    report = table.attrs["selection"]
    assert isinstance(report, SelectionReport) and report.applicable
    assert report.n_trials == len(table) == 11  # (20, 15) is refused, so not a trial
    best = table.loc[table["sharpe"].idxmax()]
    assert report.chosen == {"fast": best["fast"], "slow": best["slow"]}
    assert report.chosen_sharpe == pytest.approx(best["sharpe"])
    assert report.n_obs == len(data) - 1 and report.n_subperiods == 256
    assert report.fitted_on == (data.index[0], data.index[-1])
    for value in (report.dsr, report.pbo, report.spa_pvalue, report.reality_check_pvalue):
        assert value is not None and 0.0 <= value <= 1.0
    as_json = json.loads(json.dumps(report.as_dict(), allow_nan=False))
    assert as_json["fitted_on"] == {"start": data.index[0].isoformat(), "end": data.index[-1].isoformat()}
    # The fused kernel and vectorbt give the same selection statistics.
    other = backtest.sweep(data, "sma_cross", GRID, progress=False, engine="vectorbt").attrs["selection"]
    assert (other.pbo, other.spa_pvalue, other.reality_check_pvalue, other.chosen) == (
        report.pbo, report.spa_pvalue, report.reality_check_pvalue, report.chosen)
    assert other.dsr == pytest.approx(report.dsr, rel=1e-9)
    assert "selection" not in backtest.sweep(data, "sma_cross", GRID, progress=False, selection=False).attrs


def test_sub_period_returns_are_the_sets_own_returns() -> None:
    """Sub-period returns compound to the set's total return, whichever engine ran it."""
    from memlab.backtest.sweep import _run_sets

    data = sample("EURUSD")
    combos = [{"fast": 5, "slow": 21}, {"fast": 8, "slow": 34}]
    edges = subperiod_edges(len(data))
    options = {"fees": 0.001, "slippage": 0.0, "fill": "next_open", "direction": "longonly", "init_cash": 1e5,
               "chunk_size": 1, "memory_budget_gb": 1.0, "progress": False}
    fused, marks = _run_sets(data, "sma_cross", combos, engine="auto", marks_at=edges, **options)  # type: ignore[arg-type]
    _, marks_vbt = _run_sets(data, "sma_cross", combos, engine="vectorbt", marks_at=edges, **options)  # type: ignore[arg-type]
    np.testing.assert_allclose(marks, marks_vbt, rtol=1e-12)
    compounded = np.prod(marks[:, 1:] / marks[:, :-1], axis=1) - 1
    np.testing.assert_allclose(compounded, fused["total_return"], rtol=1e-9)


def test_one_parameter_set_says_no_selection_statistic_applies() -> None:
    table = backtest.sweep(sample("GOOG"), "sma_cross", {"fast": [10], "slow": [30]}, progress=False)
    report = table.attrs["selection"]
    assert not report.applicable and report.note == ONE_SET_NOTE
    assert report.n_trials == 1 and report.chosen == {"fast": 10, "slow": 30}
    assert (report.dsr, report.pbo, report.spa_pvalue, report.reality_check_pvalue) == (None, None, None, None)
    text = json.dumps(report.as_dict(), allow_nan=False)  # no NaN anywhere
    assert "no selection took place" in text


def test_no_set_with_a_sharpe_ratio_means_nothing_was_chosen() -> None:
    index = pd.date_range("2024-01-01", periods=100, freq="D", tz="UTC")
    report = selection_report([{"fast": 2}, {"fast": 3}], np.array([np.nan, np.nan]), lambda i: np.zeros(99),
                              np.zeros((64, 2)), index=index, periods_per_year=365.0)
    assert not report.applicable and report.chosen == {} and "none of the 2 parameter sets" in report.note
    assert report.dsr is None and report.pbo is None and report.spa_pvalue is None


def test_a_short_history_gets_dsr_but_no_pbo_or_spa() -> None:
    data = sample("GOOG").iloc[:30]
    report = backtest.sweep(data, "sma_cross", {"fast": [2, 3], "slow": [5, 8]}, progress=False).attrs["selection"]
    assert report.n_subperiods == 0 and report.pbo is None and report.spa_pvalue is None
    assert report.dsr is not None and "PBO and SPA not computed" in report.note


# --------------------------------------------------------------------------- guard


def _report(dsr: float | None, applicable: bool = True) -> SelectionReport:
    span = (pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-06-30", tz="UTC"))
    return SelectionReport(n_trials=10_000, chosen={"fast": 12, "slow": 80}, chosen_sharpe=2.1,
                           sharpe_per_period=0.0021, expected_max_sharpe=0.0035, dsr=dsr, pbo=0.62,
                           spa_pvalue=0.41, reality_check_pvalue=0.55, n_obs=262_799, n_subperiods=256,
                           fitted_on=span, applicable=applicable, note="")


def test_guard_refuses_a_negative_out_of_sample_sharpe_and_says_so() -> None:
    with pytest.raises(SelectionRefused) as refused:
        guard_parameters(_report(0.99), -0.37, min_dsr=0.95, force=False)
    message = str(refused.value)
    assert "-0.37" in message and "<= 0" in message and "force=True" in message
    assert "{'fast': 12, 'slow': 80}" in message and "2024-01-01" in message
    assert isinstance(refused.value, MemlabError)
    with pytest.raises(SelectionRefused, match="undefined"):
        guard_parameters(_report(0.99), float("nan"), min_dsr=0.95, force=False)


def test_guard_refuses_a_deflated_sharpe_below_the_bar() -> None:
    with pytest.raises(SelectionRefused) as refused:
        guard_parameters(_report(0.31), 1.2, min_dsr=0.95, force=False)
    message = str(refused.value)
    assert "0.31" in message and "0.95" in message and "10000 sets" in message and "PBO 0.62" in message


def test_guard_passes_good_parameters_and_yields_to_force() -> None:
    guard_parameters(_report(0.97), 0.8, min_dsr=0.95, force=False)
    guard_parameters(_report(0.10), -1.0, min_dsr=0.95, force=True)
    # One parameter set: no DSR to judge, the out-of-sample Sharpe still counts.
    one = _report(None, applicable=False)
    guard_parameters(one, 0.5, min_dsr=0.95, force=False)
    with pytest.raises(SelectionRefused):
        guard_parameters(one, -0.5, min_dsr=0.95, force=False)
