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
    """k-nearest-neighbour search over decision features with symbol/strategy/action filters."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._ids = _Column(np.int64)
        self._x = _Column(np.float32, dim)
        self._codes = {name: _Column(np.int32) for name in ("symbol", "strategy", "action")}
        self._vocab: dict[str, dict[str, int]] = {name: {} for name in self._codes}
        self._closed = _Column(np.bool_)
        self._built_n = 0
        self._scaled_n = 0
        self._mean = np.zeros(dim)
        self._scale = np.ones(dim)
        self._trees: dict[tuple[int, int, int], tuple[cKDTree, np.ndarray]] = {}
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
        closed: np.ndarray,
    ) -> None:
        """Append rows (ids increasing, after every id already held)."""
        if len(ids) == 0:
            return
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
            self._closed.extend(np.asarray(closed, dtype=np.bool_))

    def mark_closed(self, ids: np.ndarray) -> None:
        """Note that these decisions now have outcomes."""
        if len(ids) == 0:
            return
        with self._lock:
            held = self._ids.values
            rows = np.searchsorted(held, ids)
            ok = (rows < len(held)) & (held[np.minimum(rows, len(held) - 1)] == ids)
            self._closed.values[rows[ok]] = True

    def query(
        self,
        point: np.ndarray,
        k: int,
        *,
        symbol: str | None = None,
        strategy: str | None = None,
        action: str | None = None,
        closed_only: bool = False,
    ) -> Neighbours:
        """The ``k`` nearest rows that match every filter given."""
        with self._lock:
            key = self._filter_key(symbol, strategy, action)
            if key is None or self._ids.n == 0 or k <= 0:
                return Neighbours(np.empty(0, np.int64), np.empty(0))
            self._maybe_rebuild()
            z = (np.asarray(point, dtype=np.float64).reshape(self.dim) - self._mean) / self._scale
            dists, rows = self._query_tree(key, z, k, closed_only)
            tail_d, tail_rows = self._query_tail(key, z, k, closed_only)
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

    def _mask(self, key: tuple[int, int, int], lo: int, hi: int) -> np.ndarray:
        mask = np.ones(hi - lo, dtype=bool)
        for name, code in zip(("symbol", "strategy", "action"), key, strict=True):
            if code >= 0:
                mask &= self._codes[name].values[lo:hi] == code
        return mask

    def _maybe_rebuild(self) -> None:
        n = self._ids.n
        target = rebuild_point(n)
        if target != self._built_n or (target == 0 and self._scaled_n != n):
            x = self._x.values[: target or n].astype(np.float64)
            self._mean = x.mean(axis=0)
            scale = x.std(axis=0)
            self._scale = np.where(scale > 0, scale, 1.0)
            self._built_n, self._scaled_n = target, (target or n)
            self._trees.clear()

    def _tree(self, key: tuple[int, int, int]) -> tuple[cKDTree, np.ndarray]:
        if key not in self._trees:
            rows = np.flatnonzero(self._mask(key, 0, self._built_n))
            z = (self._x.values[rows].astype(np.float64) - self._mean) / self._scale
            self._trees[key] = (cKDTree(z), rows)
        return self._trees[key]

    def _query_tree(
        self, key: tuple[int, int, int], z: np.ndarray, k: int, closed_only: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        if self._built_n == 0:
            return np.empty(0), np.empty(0, np.int64)
        tree, rows = self._tree(key)
        if len(rows) == 0:
            return np.empty(0), np.empty(0, np.int64)
        want = k * 4 if closed_only else k
        while True:
            kk = min(want, len(rows))
            d, i = tree.query(z, k=kk)
            d, i = np.atleast_1d(d), np.atleast_1d(i)
            hit = rows[i]
            if closed_only:
                keep = self._closed.values[hit]
                d, hit = d[keep], hit[keep]
            if len(hit) >= k or kk == len(rows):
                return d[:k], hit[:k]
            want *= 4

    def _query_tail(
        self, key: tuple[int, int, int], z: np.ndarray, k: int, closed_only: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self._built_n, self._ids.n
        if hi <= lo:
            return np.empty(0), np.empty(0, np.int64)
        mask = self._mask(key, lo, hi)
        if closed_only:
            mask &= self._closed.values[lo:hi]
        rows = lo + np.flatnonzero(mask)
        if len(rows) == 0:
            return np.empty(0), np.empty(0, np.int64)
        diff = (self._x.values[rows].astype(np.float64) - self._mean) / self._scale - z
        d = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        if len(d) > k:
            part = np.argpartition(d, k)[:k]
            return d[part], rows[part]
        return d, rows
