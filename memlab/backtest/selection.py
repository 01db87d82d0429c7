"""Selection statistics: how much of a sweep's best Sharpe ratio survives having searched.

Picking the best of many parameter sets inflates its backtest: with enough trials,
noise alone produces a good-looking Sharpe ratio. Three published checks say how much
of the choice is luck; :func:`memlab.backtest.sweep` attaches all three to its table as
``table.attrs["selection"]`` (a :class:`SelectionReport`):

- **Deflated Sharpe ratio** (Bailey & López de Prado 2014): the probability that the
  chosen set's true Sharpe ratio exceeds the best one expected from ``n_trials``
  worthless trials, given its skewness, kurtosis and track-record length.
- **Probability of backtest overfitting** by combinatorially symmetric
  cross-validation (Bailey, Borwein, López de Prado & Zhu 2015): how often the set that
  is best on half the data ranks below the median on the other half.
- **Reality Check / SPA** (White 2000; Hansen 2005): a stationary-bootstrap p-value for
  "no parameter set beats doing nothing (a zero return)".

Sharpe ratios here are per period (per bar), never annualised.

>>> dsr = deflated_sharpe_ratio(2.5 / 250**0.5, n_trials=100, sharpe_variance=0.5 / 250,
...                             n_obs=1250, skewness=-3.0, kurtosis=10.0)
>>> round(dsr, 4)   # the paper's numerical example
0.9004

Training calls :func:`guard_parameters` before it writes parameters: it raises
:class:`SelectionRefused` when the out-of-sample Sharpe is not positive or the deflated
Sharpe ratio is below the bar.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numba
import numpy as np
import pandas as pd
from scipy import stats

from memlab.backtest.bootstrap import default_block_length, stationary_bootstrap_indices
from memlab.errors import InvalidInputError, MemlabError

#: Euler-Mascheroni constant, in the expected maximum of N normal draws.
_EULER_GAMMA = 0.5772156649015329

#: What the report says when there was nothing to choose from.
ONE_SET_NOTE = "one parameter set: no selection took place, no selection statistic applies"


class SelectionRefused(MemlabError):
    """Parameters chosen by a sweep failed the selection guard; the message says why."""


# --------------------------------------------------------------------------- DSR


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected maximum Sharpe ratio of ``n_trials`` trials with no skill.

    ``sqrt(V) * ((1 - g) * Z(1 - 1/N) + g * Z(1 - 1/(N e)))`` with ``Z`` the standard
    normal quantile and ``g`` the Euler-Mascheroni constant (Bailey & López de Prado
    2014, eq. 2 with a zero mean Sharpe across trials). 0 for a single trial.
    """
    if n_trials < 1:
        raise InvalidInputError(f"n_trials must be at least 1, not {n_trials}")
    if not sharpe_variance >= 0.0:
        raise InvalidInputError(f"sharpe_variance must be >= 0, not {sharpe_variance}")
    if n_trials == 1:
        return 0.0
    z = (1.0 - _EULER_GAMMA) * stats.norm.ppf(1.0 - 1.0 / n_trials) + _EULER_GAMMA * stats.norm.ppf(
        1.0 - 1.0 / (n_trials * math.e))
    return float(math.sqrt(sharpe_variance) * z)


def probabilistic_sharpe_ratio(sharpe: float, benchmark: float, n_obs: int, skewness: float = 0.0,
                               kurtosis: float = 3.0) -> float:
    """Probability that the true Sharpe ratio exceeds ``benchmark`` (Bailey & López de Prado 2012).

    ``Phi((SR - SR*) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2))``; ``kurtosis`` is
    the plain (not excess) kurtosis, 3 for normal returns. Per-period Sharpe ratios.
    """
    if n_obs < 2:
        raise InvalidInputError(f"n_obs must be at least 2, not {n_obs}")
    # Non-negative for any distribution (kurtosis >= skewness^2 + 1); clip rounding.
    spread = max(1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2, 1e-300)
    return float(stats.norm.cdf((sharpe - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(spread)))


def deflated_sharpe_ratio(sharpe: float, *, n_trials: int, sharpe_variance: float, n_obs: int,
                          skewness: float = 0.0, kurtosis: float = 3.0) -> float:
    """Deflated Sharpe ratio (Bailey & López de Prado 2014): a probability in [0, 1].

    The probabilistic Sharpe ratio of the chosen set against the maximum Sharpe expected
    from ``n_trials`` skill-less trials whose Sharpe ratios vary with ``sharpe_variance``.

    Args:
        sharpe: the chosen set's per-period Sharpe ratio.
        n_trials: how many parameter sets were tried.
        sharpe_variance: variance of the per-period Sharpe ratios across the trials.
        n_obs: number of returns the chosen Sharpe ratio was estimated from.
        skewness: skewness of the chosen set's returns.
        kurtosis: kurtosis (not excess: 3 for normal returns) of the chosen set's returns.

    One trial leaves the probabilistic Sharpe ratio against 0, ``Phi(0.1 * 10 / sqrt(1.005))``:

    >>> round(deflated_sharpe_ratio(0.1, n_trials=1, sharpe_variance=0.0, n_obs=101), 4)
    0.8407
    """
    return probabilistic_sharpe_ratio(sharpe, expected_max_sharpe(n_trials, sharpe_variance), n_obs,
                                      skewness, kurtosis)


# --------------------------------------------------------------------------- PBO


@dataclass(frozen=True)
class PBOResult:
    """Combinatorially symmetric cross-validation of a T x N performance matrix."""

    pbo: float
    """Share of splits whose in-sample best ranks at or below the out-of-sample median."""
    logits: np.ndarray = field(repr=False)
    """Per split, ``log(w / (1 - w))`` of the in-sample best's relative out-of-sample rank ``w``."""
    n_blocks: int
    n_splits: int


@numba.njit(inline="always")
def _sharpe_key(total: float, squares: float, count: float) -> float:
    """An increasing function of the Sharpe ratio, ``SR * |SR|`` up to a positive factor.

    Ranking needs only the order: ``sum * |sum| / (sum of squares - sum^2 / count)`` spares
    a square root. A flat column (a set that never trades) has no Sharpe ratio: 0, no edge.
    """
    spread = squares - total * total / count
    if spread > 1e-12 * squares:
        return total * abs(total) / spread
    return 0.0


@numba.njit(parallel=True, cache=True)
def _cscv_logits(block_sum: np.ndarray, block_sq: np.ndarray, block_n: np.ndarray,
                 splits: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Per split: the logit of the in-sample best's relative out-of-sample rank."""
    n_sets = block_sum.shape[1]
    total_n = block_n.sum()
    total_sum = block_sum.sum(axis=0)
    total_sq = block_sq.sum(axis=0)
    logits = np.empty(splits.shape[0])
    for i in numba.prange(splits.shape[0]):
        is_sum = np.zeros(n_sets)
        is_sq = np.zeros(n_sets)
        is_n = 0.0
        for b in splits[i]:
            is_sum += block_sum[b]
            is_sq += block_sq[b]
            is_n += block_n[b]
        best = 0
        best_key = -np.inf
        for k in range(n_sets):
            key = _sharpe_key(is_sum[k], is_sq[k], is_n)
            if key > best_key:
                best_key = key
                best = k
        out_n = total_n - is_n
        below = 0
        level = 0
        # Out-of-sample sums are the totals less the in-sample ones.
        chosen_key = _sharpe_key(total_sum[best] - is_sum[best], total_sq[best] - is_sq[best], out_n)
        for k in range(n_sets):
            key = _sharpe_key(total_sum[k] - is_sum[k], total_sq[k] - is_sq[k], out_n)
            if key < chosen_key:
                below += 1
            elif key == chosen_key:
                level += 1
        w = (below + (level + 1) / 2.0) / (n_sets + 1.0)
        logits[i] = np.log(w / (1.0 - w))
    return logits


def pbo_cscv(perf: np.ndarray, n_blocks: int = 16) -> PBOResult:
    """Probability of backtest overfitting by CSCV (Bailey, Borwein, López de Prado & Zhu 2015).

    ``perf`` holds one column of returns per parameter set, rows in time order. The rows
    are cut into ``n_blocks`` consecutive blocks (equal when ``T`` is a multiple of
    ``n_blocks``; otherwise sizes differ by one). For every one of the C(n_blocks,
    n_blocks/2) ways to pick half the blocks as in-sample (12,870 for 16), the set with
    the best in-sample Sharpe ratio is found and ranked among all sets by out-of-sample
    Sharpe ratio; ``w = rank / (N + 1)``, logit ``log(w / (1 - w))``. PBO is the share of
    logits <= 0. Ties share their average rank; a column with no spread in a subsample
    counts as Sharpe 0. Block sums are taken once; a compiled loop over the splits (in
    parallel) ranks from them, in O(N) memory per split.

    >>> rng = np.random.default_rng(1)
    >>> skill = rng.normal(0.0, 1.0, (64, 5)) + np.array([0.0, 0.0, 0.0, 0.0, 2.0])
    >>> pbo_cscv(skill, n_blocks=8).pbo
    0.0
    """
    perf = np.asarray(perf, dtype=np.float64)
    if perf.ndim != 2:
        raise InvalidInputError(f"perf must be a (T, N) matrix, not shape {perf.shape}")
    t, n = perf.shape
    if n_blocks < 2 or n_blocks % 2:
        raise InvalidInputError(f"n_blocks must be even and at least 2, not {n_blocks}")
    if n < 2:
        raise InvalidInputError("PBO needs at least two parameter sets (columns)")
    if t < 2 * n_blocks:
        raise InvalidInputError(f"PBO with {n_blocks} blocks needs at least {2 * n_blocks} rows, not {t}")
    if not np.isfinite(perf).all():
        raise InvalidInputError("perf holds NaN or infinite values")
    bounds = np.linspace(0, t, n_blocks + 1).round().astype(np.int64)
    block_sum = np.ascontiguousarray(np.add.reduceat(perf, bounds[:-1], axis=0))
    block_sq = np.ascontiguousarray(np.add.reduceat(perf * perf, bounds[:-1], axis=0))
    block_n = np.diff(bounds).astype(np.float64)
    splits = np.array(list(itertools.combinations(range(n_blocks), n_blocks // 2)), dtype=np.int64)
    logits = _cscv_logits(block_sum, block_sq, block_n, splits)
    return PBOResult(pbo=float(np.mean(logits <= 0.0)), logits=logits, n_blocks=n_blocks, n_splits=len(splits))


# --------------------------------------------------------------------------- SPA


@dataclass(frozen=True)
class SPAResult:
    """Bootstrap p-values for "no column beats the zero-return benchmark"."""

    pvalue: float
    """Hansen's SPA p-value, consistent re-centring (the one to report)."""
    pvalue_lower: float
    """Re-centring only columns with a positive mean (a lower bound)."""
    pvalue_upper: float
    """Re-centring every column (an upper bound; White's choice)."""
    reality_check_pvalue: float
    """White's Reality Check: not studentized, every column re-centred."""
    statistic: float
    """``max(0, max_k sqrt(n) mean_k / sd_k)``, or ``max(0, max_k mean_k)`` unstudentized."""
    n_obs: int
    draws: int
    mean_block: float


def _bootstrap_variance(x: np.ndarray, mean_block: float) -> np.ndarray:
    """Long-run variance of each column of x as the stationary bootstrap sees it.

    ``gamma_0 + 2 sum_i k_i gamma_i`` with ``k_i = (1 - i/n)(1 - q)^i + (i/n)(1 - q)^(n - i)``,
    ``q = 1/mean_block`` (Politis & Romano 1994; Hansen 2005, eq. 5), autocovariances by
    FFT.
    """
    n = x.shape[0]
    rows = np.ascontiguousarray((x - x.mean(axis=0)).T)  # one column per row: FFTs run along memory
    size = 1 << int(2 * n - 1).bit_length()
    spectrum = np.fft.rfft(rows, size, axis=1)
    autocov = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, size, axis=1)[:, :n] / n
    i = np.arange(1, n)
    q = 1.0 / mean_block
    kappa = (1.0 - i / n) * (1.0 - q) ** i + (i / n) * (1.0 - q) ** (n - i)
    return autocov[:, 0] + 2.0 * (autocov[:, 1:] @ kappa)


@numba.njit(parallel=True, cache=True)
def _spa_maxima(boot: np.ndarray, second: np.ndarray, studentize: bool, shift_lower: np.ndarray,
                shift_consistent: np.ndarray, scale: np.ndarray, spread: np.ndarray, flat: np.ndarray,
                simulated: np.ndarray) -> None:  # pragma: no cover - compiled
    """Fold one block of columns into each resample's largest re-centred (studentized) mean.

    ``boot[b, k]``: resample b's mean of column k less the sample mean; ``second[b, k]``:
    its mean of squared deviations (for the resample's own standard deviation).
    ``simulated`` rows: lower, consistent, upper, Reality Check.
    """
    for b in numba.prange(boot.shape[0]):
        lower = simulated[0, b]
        consistent = simulated[1, b]
        upper = simulated[2, b]
        reality = simulated[3, b]
        for k in range(boot.shape[1]):
            if flat[k]:
                continue
            z = boot[b, k]
            if studentize:
                var = second[b, k] - z * z
                factor = 1.0 / np.sqrt(var) if var > 1e-12 * spread[k] else 0.0
            else:
                factor = scale[k]
            lower = max(lower, (z + shift_lower[k]) * factor)
            consistent = max(consistent, (z + shift_consistent[k]) * factor)
            upper = max(upper, z * factor)
            reality = max(reality, z)
        simulated[0, b] = lower
        simulated[1, b] = consistent
        simulated[2, b] = upper
        simulated[3, b] = reality


def spa_test(returns: np.ndarray, *, draws: int = 1000, mean_block: float | None = None, seed: int = 0,
             studentize: bool = True, indices: np.ndarray | None = None,
             columns_per_pass: int | None = None) -> SPAResult:
    """Reality Check (White 2000) and SPA (Hansen 2005) against a zero-return benchmark.

    ``returns`` is (n, N): one column of returns per parameter set. H0: no set has a
    positive expected return. The means of ``draws`` stationary-bootstrap resamples
    (mean block ``mean_block``, default :func:`default_block_length`), re-centred by
    Hansen's lower/consistent/upper rules, give the null distribution of the largest
    mean. The consistent rule leaves a column un-centred when its mean is below
    ``-sqrt(2 log log n)`` standard errors, the long-run variance being the stationary
    bootstrap's own (Hansen 2005, eq. 5).

    ``studentize`` divides each column's mean by its standard deviation, recomputed in
    every resample (a bootstrap-t, as in Romano & Wolf 2005): Hansen's fixed
    studentization rejects far too often when thousands of columns compete (20 % at a
    5 % level for 1,000 noise columns of 256 returns, measured), this one holds its
    level. Without ``studentize`` and with a positive best mean, ``pvalue_lower``,
    ``pvalue`` and ``pvalue_upper`` equal ``arch.bootstrap.SPA``'s on the same resamples.
    ``reality_check_pvalue`` is always White's: unstudentized, every column re-centred.

    Args:
        returns: (n, N) returns, rows in time order.
        draws: bootstrap resamples.
        mean_block: mean block length of the stationary bootstrap.
        seed: seeds the resampling, so the p-values are reproducible.
        studentize: studentize the column means (see above).
        indices: (draws, n) resample indices to use instead of drawing them.
        columns_per_pass: columns per matrix product (bounds memory to about
            ``8 * draws * columns_per_pass`` bytes per array).

    >>> rng = np.random.default_rng(3)
    >>> noise = rng.normal(0.0, 1.0, (250, 20))
    >>> spa_test(noise).pvalue > 0.05, spa_test(noise + np.eye(20)[0] * 0.5).pvalue < 0.01
    (True, True)
    """
    x = np.asarray(returns, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 3:
        raise InvalidInputError(f"returns must be an (n, N) matrix with n >= 3, not shape {x.shape}")
    if not np.isfinite(x).all():
        raise InvalidInputError("returns hold NaN or infinite values")
    n, k = x.shape
    block = float(mean_block) if mean_block is not None else default_block_length(n)
    if indices is None:
        indices = stationary_bootstrap_indices(n, draws, block, np.random.default_rng(seed))
    indices = np.asarray(indices)
    if indices.ndim != 2 or indices.shape[1] != n:
        raise InvalidInputError(f"indices must have shape (draws, {n}), not {indices.shape}")
    draws = indices.shape[0]
    # Each resample's mean is (how often it drew each row) @ rows / n: one matrix product.
    counts = np.zeros((draws, n))
    np.add.at(counts, (np.repeat(np.arange(draws), n), indices.ravel()), 1.0)
    counts /= n
    mean = x.mean(axis=0)
    centred = x - mean
    squares = centred * centred
    spread = squares.mean(axis=0)
    flat = spread <= 1e-24 * (x * x).mean(axis=0)  # a set that never trades: no spread, no test
    variance = np.where(flat, 0.0, _bootstrap_variance(x, block))
    threshold = -np.sqrt(np.maximum(variance, 0.0) / n * 2.0 * math.log(math.log(n)))
    # Re-centring: every column (upper) less these shifts for the lower and consistent rules.
    shift_lower = mean - np.maximum(mean, 0.0)
    shift_consistent = np.where(mean >= threshold, 0.0, mean)
    if studentize:
        scale = np.where(flat, 0.0, 1.0 / np.sqrt(np.where(flat, 1.0, spread)))
    else:
        scale = np.where(flat, 0.0, 1.0)
    if flat.all():  # nothing moved: no evidence of anything
        return SPAResult(pvalue=1.0, pvalue_lower=1.0, pvalue_upper=1.0, reality_check_pvalue=1.0, statistic=0.0,
                         n_obs=n, draws=draws, mean_block=block)
    statistic = max(0.0, float(np.max(mean * scale)))
    rc_statistic = float(np.max(np.where(flat, -np.inf, mean)))
    simulated = np.full((4, draws), -np.inf)
    step = columns_per_pass or max(1, int(2_000_000 // draws))
    for lo in range(0, k, step):
        cols = slice(lo, lo + step)
        boot = counts @ centred[:, cols]  # resample mean less the sample mean
        second = counts @ squares[:, cols] if studentize else boot
        _spa_maxima(boot, second, studentize, shift_lower[cols], shift_consistent[cols], scale[cols], spread[cols],
                    flat[cols], simulated)
    simulated[:3] = np.maximum(simulated[:3], 0.0)
    lower, consistent, upper = (float(np.mean(simulated[r] > statistic)) for r in range(3))
    return SPAResult(pvalue=consistent, pvalue_lower=lower, pvalue_upper=upper,
                     reality_check_pvalue=float(np.mean(simulated[3] > rc_statistic)),
                     statistic=statistic * (math.sqrt(n) if studentize else 1.0),
                     n_obs=n, draws=draws, mean_block=block)


# --------------------------------------------------------------------------- report


def _plain(value: Any) -> Any:
    """A JSON-safe version of a parameter value or statistic (NaN becomes None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


@dataclass(frozen=True)
class SelectionReport:
    """What choosing the best of a sweep's parameter sets is worth.

    Every statistic is ``None`` (never NaN) when it does not apply; ``note`` says why.
    """

    n_trials: int
    """Parameter sets backtested and compared."""
    chosen: dict[str, Any]
    """The chosen parameters (the best by ``metric``); empty when nothing could be chosen."""
    chosen_sharpe: float | None
    """The chosen set's Sharpe ratio, annualised as in the sweep's table."""
    sharpe_per_period: float | None
    """The same, per bar: the Sharpe ratio the statistics use."""
    expected_max_sharpe: float | None
    """Per-bar Sharpe ratio the best of ``n_trials`` skill-less sets would reach."""
    dsr: float | None
    """Deflated Sharpe ratio: probability the chosen set's true Sharpe beats ``expected_max_sharpe``."""
    pbo: float | None
    """Probability of backtest overfitting (CSCV over ``n_subperiods`` sub-period returns)."""
    spa_pvalue: float | None
    """Hansen's SPA p-value: no set beats a zero return (small = some set does)."""
    reality_check_pvalue: float | None
    """White's Reality Check p-value for the same hypothesis."""
    n_obs: int
    """Bar returns the Sharpe ratios were computed from."""
    n_subperiods: int
    """Equal-length sub-periods (in bars) the PBO and SPA were computed on; 0 if none."""
    fitted_on: tuple[pd.Timestamp, pd.Timestamp] | None
    """First and last bar of the data the sweep ran on (None without a time index)."""
    applicable: bool
    """False when no selection statistic applies (one set, or no set with a Sharpe ratio)."""
    note: str
    """How the figures were made, or why they are missing."""
    metric: str = "sharpe"
    draws: int = 0
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-safe types (timestamps as ISO strings, no NaN)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "chosen":
                value = {str(k): _plain(v) for k, v in value.items()}
            elif name == "fitted_on":
                value = None if value is None else {"start": _plain(value[0]), "end": _plain(value[1])}
            else:
                value = _plain(value)
            out[name] = value
        return out


def _fitted_on(index: pd.Index) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    if isinstance(index, pd.DatetimeIndex) and len(index):
        return index[0], index[-1]
    return None


def selection_report(
    params: Sequence[Mapping[str, Any]],
    sharpe: np.ndarray,
    chosen_returns: Callable[[int], np.ndarray],
    subperiod_returns: np.ndarray | None,
    *,
    index: pd.Index,
    periods_per_year: float,
    n_blocks: int = 16,
    draws: int = 1000,
    seed: int = 0,
) -> SelectionReport:
    """Selection statistics for choosing the set with the highest Sharpe ratio.

    Args:
        params: the parameter sets, in column order.
        sharpe: each set's annualised Sharpe ratio (NaN where undefined).
        chosen_returns: gives the per-bar returns of set ``i`` (called once, for the
            chosen set: its skewness and kurtosis enter the DSR).
        subperiod_returns: (P, N) returns of every set over P equal sub-periods, for
            PBO and SPA; None or P < 2 * n_blocks leaves those two out.
        index: the bars' index (its first and last times become ``fitted_on``).
        periods_per_year: bars per year, to turn annualised Sharpe ratios per bar.
        n_blocks: CSCV blocks for PBO.
        draws: bootstrap resamples for the SPA and Reality Check p-values.
        seed: seeds the bootstrap.
    """
    n_trials = len(params)
    n_obs = max(len(index) - 1, 0)
    span = _fitted_on(index)
    n_sub = 0 if subperiod_returns is None else int(subperiod_returns.shape[0])
    sharpe = np.asarray(sharpe, dtype=np.float64)
    empty = SelectionReport(n_trials=n_trials, chosen={}, chosen_sharpe=None, sharpe_per_period=None,
                            expected_max_sharpe=None, dsr=None, pbo=None, spa_pvalue=None,
                            reality_check_pvalue=None, n_obs=n_obs, n_subperiods=n_sub, fitted_on=span,
                            applicable=False, note=ONE_SET_NOTE, draws=draws, seed=seed)
    finite = np.isfinite(sharpe)
    if n_trials == 1:
        only = dict(params[0])
        value = float(sharpe[0]) if finite[0] else None
        return replace(empty, chosen=only, chosen_sharpe=value,
                       sharpe_per_period=None if value is None else value / math.sqrt(periods_per_year))
    if not finite.any():
        return replace(empty, note=(f"none of the {n_trials} parameter sets has a Sharpe ratio (no set's equity "
                                    "ever moved): nothing to choose, no selection statistic applies"))
    best = int(np.nanargmax(sharpe))
    per_bar = sharpe[finite] / math.sqrt(periods_per_year)
    chosen_sr = float(sharpe[best] / math.sqrt(periods_per_year))
    variance = float(np.var(per_bar, ddof=1)) if per_bar.size > 1 else 0.0
    rets = np.asarray(chosen_returns(best), dtype=np.float64)
    rets = rets[np.isfinite(rets)]
    skew = float(stats.skew(rets)) if rets.size > 2 and rets.std() > 0 else 0.0
    kurt = float(stats.kurtosis(rets, fisher=False)) if rets.size > 3 and rets.std() > 0 else 3.0
    sr0 = expected_max_sharpe(n_trials, variance)
    dsr = probabilistic_sharpe_ratio(chosen_sr, sr0, max(n_obs, 2), skew, kurt)
    notes = [f"best of {n_trials} sets by sharpe; DSR from the variance of {per_bar.size} finite per-bar "
             f"Sharpe ratios ({variance:.3g}), skewness {skew:.3g}, kurtosis {kurt:.3g} over {n_obs} bar returns"]
    pbo = spa = rc = None
    if subperiod_returns is not None and n_sub >= 2 * n_blocks:
        sub = np.nan_to_num(np.asarray(subperiod_returns, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        pbo = pbo_cscv(sub, n_blocks).pbo
        tested = spa_test(sub, draws=draws, seed=seed)
        spa, rc = tested.pvalue, tested.reality_check_pvalue
        notes.append(f"PBO by CSCV over {n_sub} equal sub-periods in {n_blocks} blocks; SPA and Reality Check "
                     f"against a zero return, {tested.draws} stationary-bootstrap draws "
                     f"(mean block {tested.mean_block:.2f} sub-periods, seed {seed})")
    else:
        notes.append(f"PBO and SPA not computed: {n_sub} sub-periods, fewer than the {2 * n_blocks} "
                     f"they need ({n_blocks} blocks of at least 2)")
    return SelectionReport(n_trials=n_trials, chosen=dict(params[best]), chosen_sharpe=float(sharpe[best]),
                           sharpe_per_period=chosen_sr, expected_max_sharpe=sr0, dsr=dsr, pbo=pbo, spa_pvalue=spa,
                           reality_check_pvalue=rc, n_obs=n_obs, n_subperiods=n_sub, fitted_on=span,
                           applicable=True, note="; ".join(notes), draws=draws, seed=seed)


# --------------------------------------------------------------------------- guard


def guard_parameters(report: SelectionReport, oos_sharpe: float, *, min_dsr: float, force: bool) -> None:
    """Refuse parameters whose selection does not hold up; return quietly otherwise.

    Raises :class:`SelectionRefused` when ``oos_sharpe`` (the chosen set's Sharpe ratio
    on unseen data) is not positive or undefined, or when the report's deflated Sharpe
    ratio is below ``min_dsr``; the message gives the numbers and how to override.
    A report that does not apply (one parameter set) is judged on ``oos_sharpe`` only.
    ``force=True`` never raises.
    """
    if force:
        return
    reasons = []
    if not (isinstance(oos_sharpe, (int, float, np.floating)) and math.isfinite(oos_sharpe)):
        reasons.append(f"the out-of-sample Sharpe ratio is undefined ({oos_sharpe}): no trades or a flat equity")
    elif oos_sharpe <= 0:
        reasons.append(f"the out-of-sample Sharpe ratio {oos_sharpe:.4g} is <= 0")
    if report.applicable and report.dsr is not None and report.dsr < min_dsr:
        reasons.append(f"the deflated Sharpe ratio {report.dsr:.4g} is below the bar of {min_dsr:.4g} "
                       f"(best of {report.n_trials} sets: per-bar Sharpe {report.sharpe_per_period:.4g} "
                       f"against {report.expected_max_sharpe:.4g} expected from luck alone)")
    if not reasons:
        return
    span = ""
    if report.fitted_on is not None:
        span = f", fitted on {report.fitted_on[0].isoformat()} .. {report.fitted_on[1].isoformat()}"
    extra = []
    if report.pbo is not None:
        extra.append(f"PBO {report.pbo:.3g}")
    if report.spa_pvalue is not None:
        extra.append(f"SPA p-value {report.spa_pvalue:.3g}")
    raise SelectionRefused(
        f"refusing parameters {report.chosen}{span}: " + "; ".join(reasons)
        + (f" ({', '.join(extra)})" if extra else "")
        + ". Widen the data, narrow the grid, or pass force=True (memlab train --force) to write them anyway.")
