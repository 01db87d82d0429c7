"""Resampling of dependent time series: the stationary bootstrap of Politis & Romano (1994).

Returns of trading strategies are autocorrelated (positions persist, volatility
clusters), so resampling single observations would understate the variance of their
mean. The stationary bootstrap resamples blocks of consecutive observations whose
lengths are geometric with mean ``mean_block``, wrapping around the end of the
sample; the resampled series is stationary, unlike with fixed blocks.

>>> import numpy as np
>>> idx = stationary_bootstrap_indices(10, 3, 4.0, np.random.default_rng(0))
>>> idx.shape, bool(((idx >= 0) & (idx < 10)).all())
((3, 10), True)
>>> round(default_block_length(1000), 6)
10.0
"""

from __future__ import annotations

import numpy as np

from memlab.errors import InvalidInputError


def default_block_length(n: int) -> float:
    """Mean block length for ``n`` observations: ``n ** (1/3)``, at least 1.

    The n^(1/3) rate is the MSE-optimal order of the block length for variance
    estimation with block bootstraps (Hall, Horowitz & Jing 1995; Politis & White 2004
    derive the constant from the data's autocorrelations, which needs the series; this
    rule needs only its length).
    """
    if n < 1:
        raise InvalidInputError(f"n must be at least 1, not {n}")
    return max(1.0, float(n) ** (1.0 / 3.0))


def stationary_bootstrap_indices(n: int, draws: int, mean_block: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``draws`` stationary-bootstrap resamples of a series of length ``n``.

    Each row is one resample: ``series[idx[b]]``. Row ``b`` starts a block at a uniform
    random position; each next index continues the block (``previous + 1``, wrapping to
    0 after ``n - 1``) with probability ``1 - 1/mean_block`` or starts a new block at a
    uniform random position otherwise (Politis & Romano 1994). Vectorised: two random
    (draws, n) arrays and a running maximum, no Python loop over elements.

    Args:
        n: length of the series.
        draws: number of resamples.
        mean_block: expected block length (>= 1; 1 is the i.i.d. bootstrap).
        rng: the random generator (seed it for reproducible results).

    Returns:
        int64 array of shape (draws, n) with values in ``[0, n)``.

    Raises:
        InvalidInputError: ``n`` or ``draws`` below 1, or ``mean_block`` below 1.
    """
    if n < 1 or draws < 1:
        raise InvalidInputError(f"n and draws must be at least 1 (got n={n}, draws={draws})")
    if not mean_block >= 1.0:
        raise InvalidInputError(f"mean_block must be at least 1, not {mean_block}")
    starts = rng.integers(0, n, size=(draws, n), dtype=np.int64)
    new_block = rng.random((draws, n)) < 1.0 / mean_block
    new_block[:, 0] = True
    positions = np.arange(n, dtype=np.int64)
    # For every position, where its block began: the last position at or before it that
    # started a block.
    block_start = np.maximum.accumulate(np.where(new_block, positions, 0), axis=1)
    offset = positions - block_start
    first = np.take_along_axis(starts, block_start, axis=1)
    return (first + offset) % n
