"""Nearest past situations: a k-d tree over standardised feature vectors, kept in step
with the decision store.

Rows arrive in id order. The bulk sits in k-d trees (one per filter, built on first
use); rows that arrived since the last build are scanned directly until they are many
enough to justify a rebuild, so a query stays sub-millisecond while the store grows.

The trees and the standardisation cover the first :func:`rebuild_point` rows, a fixed
function of the row count, so a query's answer depends only on what the store holds,
never on when this process happened to build its index: a restarted trader decides
exactly as one that never stopped.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

#: Below this many rows a query scans them all; above, see :func:`rebuild_point`.
SCAN_ROWS = 4096


def rebuild_point(n: int) -> int:
    """How many of ``n`` rows the trees and the standardisation cover.

    0 below ``SCAN_ROWS`` (every row is scanned, standardised over all of them); above,
    ``n`` rounded down to a step of ``max(SCAN_ROWS, 2**floor(log2 n) / 16)``, so the
    scanned tail stays under about 6 % of the rows and trees are rebuilt that seldom.
    """
    if n < SCAN_ROWS:
        return 0
    step = max(SCAN_ROWS, (1 << (n.bit_length() - 1)) // 16)
    return n - n % step


@dataclass(frozen=True)
class Neighbours:
    """Ids of the nearest rows and their distances (in standard deviations), nearest first."""

    ids: np.ndarray
    distances: np.ndarray


class _Column:
    """A growable column (capacity doubling, amortised O(1) appends)."""

    def __init__(self, dtype: type | np.dtype, width: int | None = None) -> None:
        shape = (1024,) if width is None else (1024, width)
        self._data = np.empty(shape, dtype=dtype)
        self.n = 0

    def extend(self, values: np.ndarray) -> None:
        need = self.n + len(values)
        if need > len(self._data):
            cap = max(need, 2 * len(self._data))
            grown = np.empty((cap, *self._data.shape[1:]), dtype=self._data.dtype)
            grown[: self.n] = self._data[: self.n]
            self._data = grown
        self._data[self.n : need] = values
        self.n = need

    @property
    def values(self) -> np.ndarray:
        return self._data[: self.n]


class FeatureIndex:
    """k-nearest-neighbour search over decision features with symbol/strategy/action filters,
    point in time.

    Each row carries the market time it was decided (``decided``) and the time its outcome
    became known (``known``; +inf while open). A query ``as_of`` a time sees only decisions
    decided strictly before it, and counts an outcome as known only when it closed strictly
    before it. Its standardisation covers the longest run of rows, in id order, that were
    all decided before ``as_of`` (rounded down by :func:`rebuild_point`), so a replay that
    meets a memory holding its own future finds exactly the neighbours, at exactly the
    distances, it found the first time.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._ids = _Column(np.int64)
        self._x = _Column(np.float32, dim)
        self._codes = {name: _Column(np.int32) for name in ("symbol", "strategy", "action")}
        self._vocab: dict[str, dict[str, int]] = {name: {} for name in self._codes}
        self._decided = _Column(np.float64)
        self._decided_max = _Column(np.float64)  # running max of ``decided`` in id order
        self._known = _Column(np.float64)
        self._in_sample = _Column(np.bool_)
        self._scales: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._trees: dict[tuple[int, int, int, bool, int], tuple[cKDTree, np.ndarray]] = {}
        self._recent_counts: list[int] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._ids.n

    @property
    def last_id(self) -> int:
        return int(self._ids.values[-1]) if self._ids.n else 0

    def add(
        self,
        ids: np.ndarray,
        features: np.ndarray,
        symbols: list[str],
        strategies: list[str],
        actions: list[str],
        known: np.ndarray,
        *,
        decided: np.ndarray | None = None,
        in_sample: np.ndarray | None = None,
    ) -> None:
        """Append rows (ids increasing, after every id already held).

        ``known`` is when each outcome became known (epoch seconds; +inf or NaN while
        open; ``True``/``False`` is taken as known long ago / open). ``decided`` defaults to
        the epoch (always in the past); ``in_sample`` marks training's in-sample rows.
        """
        n = len(ids)
        if n == 0:
            return
        known = np.asarray(known)
        if known.dtype == np.bool_:
            known = np.where(known, -np.inf, np.inf)
        known = np.where(np.isnan(known.astype(np.float64)), np.inf, known.astype(np.float64))
        decided_v = np.zeros(n) if decided is None else np.asarray(decided, dtype=np.float64)
        with self._lock:
            self._ids.extend(np.asarray(ids, dtype=np.int64))
            self._x.extend(np.asarray(features, dtype=np.float32).reshape(-1, self.dim))
            for name, labels in (
                ("symbol", symbols),
                ("strategy", strategies),
                ("action", actions),
            ):
                vocab = self._vocab[name]
                codes = np.fromiter(
                    (vocab.setdefault(label, len(vocab)) for label in labels),
                    dtype=np.int32,
                    count=len(labels),
                )
                self._codes[name].extend(codes)
            prev = self._decided_max.values[-1] if self._decided_max.n else -np.inf
            self._decided.extend(decided_v)
            self._decided_max.extend(np.maximum.accumulate(np.maximum(decided_v, prev)))
            self._known.extend(known)
            self._in_sample.extend(
                np.zeros(n, np.bool_) if in_sample is None else np.asarray(in_sample, np.bool_)
            )

    def mark_closed(self, ids: np.ndarray, known: np.ndarray | None = None) -> None:
        """Note that these decisions now have outcomes, known at ``known`` (epoch seconds;
        default: long ago)."""
        if len(ids) == 0:
            return
        when = np.full(len(ids), -np.inf) if known is None else np.asarray(known, np.float64)
        with self._lock:
            held = self._ids.values
            rows = np.searchsorted(held, ids)
            ok = (rows < len(held)) & (held[np.minimum(rows, len(held) - 1)] == ids)
            self._known.values[rows[ok]] = when[ok]

    def query(
        self,
        point: np.ndarray,
        k: int,
        *,
        symbol: str | None = None,
        strategy: str | None = None,
        action: str | None = None,
        closed_only: bool = False,
        as_of: float | None = None,
        include_in_sample: bool = True,
    ) -> Neighbours:
        """The ``k`` nearest rows that match every filter given, as of ``as_of`` (epoch
        seconds; None: everything held)."""
        with self._lock:
            key = self._filter_key(symbol, strategy, action)
            if key is None or self._ids.n == 0 or k <= 0:
                return _NOTHING
            n = self._ids.n
            cutoff = np.inf if as_of is None else float(as_of)
            prefix = n if as_of is None else int(np.searchsorted(self._decided_max.values, cutoff, "left"))
            if prefix == 0 and as_of is not None and not (self._decided.values < cutoff).any():
                return _NOTHING  # nothing was decided before as_of: the cold start
            built = rebuild_point(prefix)
            mean, scale = self._scale(built or prefix)
            z = (np.asarray(point, dtype=np.float64).reshape(self.dim) - mean) / scale
            tkey = (*key, include_in_sample, built)
            dists, rows = self._query_tree(tkey, z, k, closed_only, cutoff, mean, scale)
            tail_d, tail_rows = self._query_tail(
                key, built, z, k, closed_only, cutoff, include_in_sample, mean, scale
            )
            all_d = np.concatenate([dists, tail_d])
            all_rows = np.concatenate([rows, tail_rows])
            order = np.argsort(all_d, kind="stable")[:k]
            return Neighbours(self._ids.values[all_rows[order]], all_d[order])

    # -- internals ---------------------------------------------------------------
    def _filter_key(
        self, symbol: str | None, strategy: str | None, action: str | None
    ) -> tuple[int, int, int] | None:
        key = []
        for name, label in (("symbol", symbol), ("strategy", strategy), ("action", action)):
            if label is None:
                key.append(-1)
            elif label in self._vocab[name]:
                key.append(self._vocab[name][label])
            else:
                return None  # nothing with that label was ever stored
        return key[0], key[1], key[2]

    def _mask(self, key: tuple[int, ...], lo: int, hi: int, include_in_sample: bool = True) -> np.ndarray:
        mask = np.ones(hi - lo, dtype=bool)
        for name, code in zip(("symbol", "strategy", "action"), key[:3], strict=True):
            if code >= 0:
                mask &= self._codes[name].values[lo:hi] == code
        if not include_in_sample:
            mask &= ~self._in_sample.values[lo:hi]
        return mask

    def _scale(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the first ``rows`` rows (cached: a few row counts
        are in use at a time, one per point in time being replayed)."""
        if rows == 0:
            return np.zeros(self.dim), np.ones(self.dim)
        if rows not in self._scales:
            x = self._x.values[:rows].astype(np.float64)
            scale = x.std(axis=0)
            if len(self._scales) >= 8:
                self._scales.pop(next(iter(self._scales)))
            self._scales[rows] = (x.mean(axis=0), np.where(scale > 0, scale, 1.0))
        return self._scales[rows]

    def _tree(self, tkey: tuple[int, int, int, bool, int], mean: np.ndarray,
              scale: np.ndarray) -> tuple[cKDTree, np.ndarray]:
        built = tkey[4]
        if built in self._recent_counts:
            self._recent_counts.remove(built)
        self._recent_counts.insert(0, built)
        if tkey not in self._trees:
            # Trees of points in time no longer queried go: keep the last 3 row counts used.
            del self._recent_counts[3:]
            for t in [t for t in self._trees if t[4] not in self._recent_counts]:
                del self._trees[t]
            rows = np.flatnonzero(self._mask(tkey, 0, built, tkey[3]))
            z = (self._x.values[rows].astype(np.float64) - mean) / scale
            self._trees[tkey] = (cKDTree(z), rows)
        return self._trees[tkey]

    def _query_tree(
        self, tkey: tuple[int, int, int, bool, int], z: np.ndarray, k: int, closed_only: bool,
        cutoff: float, mean: np.ndarray, scale: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        if tkey[4] == 0:
            return np.empty(0), np.empty(0, np.int64)
        tree, rows = self._tree(tkey, mean, scale)
        if len(rows) == 0:
            return np.empty(0), np.empty(0, np.int64)
        want = k * 4 if closed_only else k
        while True:
            kk = min(want, len(rows))
            d, i = tree.query(z, k=kk)
            d, i = np.atleast_1d(d), np.atleast_1d(i)
            hit = rows[i]
            if closed_only:
                keep = self._known.values[hit] < cutoff
                d, hit = d[keep], hit[keep]
            if len(hit) >= k or kk == len(rows):
                return d[:k], hit[:k]
            want *= 4

    def _query_tail(
        self, key: tuple[int, int, int], lo: int, z: np.ndarray, k: int, closed_only: bool,
        cutoff: float, include_in_sample: bool, mean: np.ndarray, scale: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        hi = self._ids.n
        if hi <= lo:
            return np.empty(0), np.empty(0, np.int64)
        mask = self._mask(key, lo, hi, include_in_sample)
        if np.isfinite(cutoff):
            mask &= self._decided.values[lo:hi] < cutoff
        if closed_only:
            mask &= self._known.values[lo:hi] < cutoff
        rows = lo + np.flatnonzero(mask)
        if len(rows) == 0:
            return np.empty(0), np.empty(0, np.int64)
        diff = (self._x.values[rows].astype(np.float64) - mean) / scale - z
        d = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        if len(d) > k:
            part = np.argpartition(d, k)[:k]
            return d[part], rows[part]
        return d, rows


_NOTHING = Neighbours(np.empty(0, np.int64), np.empty(0))
