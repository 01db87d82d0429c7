"""Catch a strategy that peeks at the future, or whose signals depend on where history starts.

A strategy's row ``t`` must be decided from bars ``<= t`` only. :func:`check_strategy`
tests that by running it the way a backtest cannot:

- **Truncation** (look-ahead): the strategy is recomputed on histories that stop early
  (prefixes ending at a spread of cut points). Every row up to the cut must equal the
  full run's; a row that changes when later bars are removed was computed from them.
  This catches ``shift(-1)``, normalising by the whole series' max or mean, centred
  windows, ``bfill``, ``iloc[-1]`` and the like.
- **Later starts** (recursive indicators): the strategy is recomputed on histories that
  start ``k`` bars later. After a warm-up the rows must agree again; the bars that takes
  are reported per column. A column still differing after ``max_warmup`` bars depends on
  where the history starts (a cumulative sum, a very slow EWM): the paper trader, which
  sees a rolling window, would not get the backtest's signals.

NaN equals NaN; floats are compared with a tight tolerance (``rtol``/``atol``).

>>> report = check_strategy("sma_cross")
>>> report.ok, report.warmup["entry"]
(True, 30)
>>> import pandas as pd
>>> def peeks(ohlcv: pd.DataFrame) -> pd.DataFrame:
...     nxt = ohlcv["Close"].shift(-1)
...     return pd.DataFrame({"entry": nxt > ohlcv["Close"]}, index=ohlcv.index)
>>> [(f.kind, f.column) for f in check_strategy(peeks).findings]
[('lookahead', 'entry')]
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from memlab.errors import InvalidInputError, MemlabError

FindingKind = Literal["lookahead", "recursive"]

#: Default number of truncated recomputations (prefix histories).
DEFAULT_CUTS = 24
#: Default number of later-start recomputations.
DEFAULT_STARTS = 3


class StrategyCheckError(MemlabError):
    """The strategy could not be run on the full history, so nothing could be checked."""


@dataclass(frozen=True)
class Finding:
    """One column that failed a check, with the evidence.

    ``kind`` is ``"lookahead"`` (a row changed when later bars were removed) or
    ``"recursive"`` (the column never settles when the history starts later).
    ``first_bar`` is the earliest bar that shows it; ``value`` is the column there in the
    full run and ``other_value`` in the truncated / later-start run; ``history`` is the
    last bar (look-ahead) or first bar (recursive) of that other run.
    """

    kind: FindingKind
    column: str
    first_bar: pd.Timestamp
    detail: str
    value: Any = None
    other_value: Any = None
    history: pd.Timestamp | None = None
    runs: int = 1  # how many of the recomputations showed it

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "column": self.column, "first_bar": _iso(self.first_bar),
            "detail": self.detail, "value": _jsonable(self.value),
            "other_value": _jsonable(self.other_value), "history": _iso(self.history), "runs": self.runs,
        }

    def __str__(self) -> str:
        return f"{self.kind:<9}  {self.column}  {_day(self.first_bar)}: {self.detail}"


@dataclass
class LookaheadReport:
    """What :func:`check_strategy` found. ``ok`` when there are no findings of either kind.

    ``warmup`` maps each column that settles to the bars it needs after a later start
    before it agrees with the full run (0: it never differed).
    """

    strategy: str
    params: dict[str, Any]
    bars: int
    start: pd.Timestamp
    end: pd.Timestamp
    cuts: list[int] = field(default_factory=list)  # prefix lengths recomputed
    starts: list[int] = field(default_factory=list)  # bars dropped at the start, per recomputation
    max_warmup: int = 0
    findings: list[Finding] = field(default_factory=list)
    warmup: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # recomputations the strategy refused
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def lookahead(self) -> list[Finding]:
        return [f for f in self.findings if f.kind == "lookahead"]

    @property
    def recursive(self) -> list[Finding]:
        return [f for f in self.findings if f.kind == "recursive"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy, "params": {k: _jsonable(v) for k, v in self.params.items()},
            "bars": self.bars, "start": _iso(self.start), "end": _iso(self.end), "ok": self.ok,
            "cuts": list(self.cuts), "starts": list(self.starts), "max_warmup": self.max_warmup,
            "findings": [f.as_dict() for f in self.findings], "warmup": dict(self.warmup),
            "skipped": list(self.skipped), "seconds": round(self.seconds, 4),
        }

    def __str__(self) -> str:
        kinds = [label for label, found in (("LOOK-AHEAD", self.lookahead), ("RECURSIVE", self.recursive)) if found]
        verdict = " and ".join(kinds) or "OK"
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        lines = [f"{self.strategy}({params}) on {self.bars:,} bars {_day(self.start)} .. {_day(self.end)}: {verdict}"]
        la = len(self.lookahead)
        lines.append(f"  truncation: {len(self.cuts)} shorter histories ({self.cuts[0] if self.cuts else '-'}"
                     f" .. {self.cuts[-1] if self.cuts else '-'} bars): "
                     + ("no row changed" if not la else f"{la} column(s) changed"))
        settled = ", ".join(f"{c} {n}" for c, n in self.warmup.items())
        rec = len(self.recursive)
        lines.append(f"  later starts ({', '.join(map(str, self.starts))} bars dropped): "
                     + (f"{rec} column(s) never settle within {self.max_warmup} bars; " if rec else "")
                     + (f"bars to settle: {settled}" if settled else "no column settles"))
        lines += [f"  {f}" for f in self.findings]
        lines += [f"  skipped: {s}" for s in self.skipped]
        return "\n".join(lines)


def check_strategy(
    strategy: str | Callable[..., pd.DataFrame],
    ohlcv: pd.DataFrame | None = None,
    params: Mapping[str, Any] | None = None,
    *,
    cuts: int | Sequence[int] = DEFAULT_CUTS,
    starts: int | Sequence[int] = DEFAULT_STARTS,
    max_warmup: int | None = None,
    rtol: float = 1e-9,
    atol: float = 1e-12,
) -> LookaheadReport:
    """Check that ``strategy`` uses no future bars and settles after a later start.

    Args:
        strategy: a registered name (``"sma_cross"``) or a function ``f(ohlcv, **params)``
            returning a frame aligned with ``ohlcv``.
        ohlcv: the history to test on; default the shipped GOOG sample.
        params: parameters over the defaults (``params/strategies.json``, then the
            function's own defaults); unknown names are an error.
        cuts: how many truncated histories to recompute (spread geometrically near the
            start, evenly after), or the prefix lengths themselves.
        starts: how many later-start histories to recompute, or the numbers of bars to drop.
        max_warmup: bars a column may take to agree again after a later start; beyond it
            the column is reported as recursive. Default: half the shortest later history.
        rtol, atol: float tolerance (``numpy.isclose``); NaN equals NaN.

    Returns:
        A :class:`LookaheadReport`; ``report.ok`` is false when anything was found.

    Raises:
        InvalidInputError: unknown strategy or parameter, or too little data.
        StrategyCheckError: the strategy fails on the full history.
    """
    t0 = time.perf_counter()
    name, fn, chosen = _resolve(strategy, params)
    if ohlcv is None:
        from memlab.data import sample

        ohlcv = sample("GOOG")
    n = len(ohlcv)
    if n < 3:
        raise InvalidInputError(f"need at least 3 bars to check a strategy, got {n}")
    full = _run(fn, ohlcv, chosen, name, strict=True)
    assert full is not None
    full_values = {c: _values(full[c]) for c in full.columns}

    cut_list = _cut_points(n, cuts)
    start_list = _start_points(n, starts)
    shortest = n - max(start_list) if start_list else n
    warm_limit = max_warmup if max_warmup is not None else max(shortest // 2, 1)
    report = LookaheadReport(
        strategy=name, params=dict(chosen), bars=n, start=ohlcv.index[0], end=ohlcv.index[-1],
        cuts=cut_list, starts=start_list, max_warmup=warm_limit,
    )

    # Truncation: the earliest changed row per column over every cut.
    earliest: dict[Any, tuple[int, int, Any]] = {}  # column -> (row, prefix length, truncated value)
    seen: dict[Any, int] = {}
    for length in cut_list:
        part = _run(fn, ohlcv.iloc[:length], chosen, name, strict=False, skipped=report.skipped,
                    what=f"history ending {_day(ohlcv.index[length - 1])} ({length} bars)")
        if part is None:
            continue
        for col in full.columns:
            other = _values(part[col]) if col in part.columns else np.full(length, np.nan)
            bad = np.flatnonzero(_differs(full_values[col][:length], other, rtol, atol))
            if bad.size:
                seen[col] = seen.get(col, 0) + 1
                row = int(bad[0])
                if col not in earliest or row < earliest[col][0]:
                    earliest[col] = (row, length, part[col].iloc[row] if col in part.columns else None)
    for col, (row, length, other) in earliest.items():
        ahead = length - 1 - row
        report.findings.append(Finding(
            kind="lookahead", column=str(col), first_bar=ohlcv.index[row],
            value=_scalar(full[col].iloc[row]), other_value=_scalar(other), history=ohlcv.index[length - 1],
            runs=seen[col],
            detail=(f"{_show(full[col].iloc[row])} with the full history, {_show(other)} when the history ends "
                    + ("at this bar" if ahead == 0 else f"{ahead} bar(s) later, at {_day(ohlcv.index[length - 1])}")
                    + f" (changed in {seen[col]} of {len(cut_list)} truncations): it uses bars after this one"),
        ))

    # Later starts: how long each column takes to agree again, and which never do.
    settle: dict[Any, int] = {c: 0 for c in full.columns}
    unsettled: dict[Any, tuple[int, int, int]] = {}  # column -> (row in full, dropped, last differing row)
    unsettled_runs: dict[Any, int] = {}
    later_cache: dict[int, pd.DataFrame] = {}
    for k in start_list:
        part = _run(fn, ohlcv.iloc[k:], chosen, name, strict=False, skipped=report.skipped,
                    what=f"history starting {_day(ohlcv.index[k])} ({k} bars dropped)")
        if part is None:
            continue
        later_cache[k] = part
        for col in full.columns:
            other = _values(part[col]) if col in part.columns else np.full(n - k, np.nan)
            bad = np.flatnonzero(_differs(full_values[col][k:], other, rtol, atol))
            if not bad.size:
                continue
            settle[col] = max(settle[col], int(bad[-1]) + 1)
            late = bad[bad >= warm_limit]
            if late.size:
                unsettled_runs[col] = unsettled_runs.get(col, 0) + 1
                row = k + int(late[0])
                if col not in unsettled or row < unsettled[col][0]:
                    unsettled[col] = (row, k, k + int(bad[-1]))
    for col, (row, k, last) in unsettled.items():
        other = later_cache[k][col].iloc[row - k] if col in later_cache[k].columns else None
        trend = ""
        if col in later_cache[k].columns and pd.api.types.is_float_dtype(full[col].dtype):
            gap = np.abs(full_values[col][k:] - _values(later_cache[k][col]))
            first_gap, last_gap = gap[row - k], gap[last - k]
            if np.isfinite(first_gap) and np.isfinite(last_gap):
                trend = f"; the difference goes from {first_gap:.3g} to {last_gap:.3g} at the last one"
                if last_gap * 10 < first_gap:
                    trend += ", shrinking: a longer history may let it settle"
        report.findings.append(Finding(
            kind="recursive", column=str(col), first_bar=ohlcv.index[row],
            value=_scalar(full[col].iloc[row]), other_value=_scalar(other), history=ohlcv.index[k],
            runs=unsettled_runs[col],
            detail=(f"{_show(full[col].iloc[row])} with the full history, {_show(other)} when it starts "
                    f"{k} bar(s) later, at {_day(ohlcv.index[k])}: still different {row - k} bars after that start "
                    f"(last difference {_day(ohlcv.index[last])}, in {unsettled_runs[col]} of {len(later_cache)} "
                    f"later starts{trend}): it depends on where the history starts"),
        ))
    report.findings.sort(key=lambda f: (f.kind != "lookahead", f.first_bar, f.column))
    report.warmup = {str(c): settle[c] for c in full.columns if c not in unsettled}
    report.seconds = time.perf_counter() - t0
    return report


def resolve_strategy(strategy: str | Callable[..., pd.DataFrame]) -> tuple[str, Callable[..., pd.DataFrame]]:
    """The name and function of ``strategy``: a registered name, ``module:function``, or a function."""
    from memlab.strategies import REGISTRY, get
    from memlab.strategies.registry import name_of

    if callable(strategy):
        registered = name_of(strategy)
        return registered or getattr(strategy, "__name__", repr(strategy)), strategy
    if not isinstance(strategy, str):
        raise InvalidInputError(f"strategy must be a name or a function, got {type(strategy).__name__}")
    if ":" in strategy and strategy not in REGISTRY:
        import importlib

        module_name, _, attr = strategy.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise InvalidInputError(f"cannot import {module_name!r} for strategy {strategy!r}: {exc}") from None
        fn = getattr(module, attr, None)
        if not callable(fn):
            raise InvalidInputError(f"{module_name} has no function {attr!r}")
        return strategy, fn
    return strategy, get(strategy)


def strategy_params(strategy: str | Callable[..., pd.DataFrame],
                    params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The parameters a check runs with: the function's defaults, ``params/`` defaults, then ``params``."""
    return _resolve(strategy, params)[2]


def _resolve(strategy: str | Callable[..., pd.DataFrame],
             params: Mapping[str, Any] | None) -> tuple[str, Callable[..., pd.DataFrame], dict[str, Any]]:
    from memlab.strategies import REGISTRY, load_params

    name, fn = resolve_strategy(strategy)
    given = {**(load_params(name) if name in REGISTRY else {}), **(params or {})}
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return name, fn, dict(given)
    accepted = list(sig.parameters.values())[1:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted):
        defaults = {p.name: p.default for p in accepted
                    if p.default is not inspect.Parameter.empty and p.kind is not inspect.Parameter.VAR_KEYWORD}
        return name, fn, {**defaults, **given}
    names = [p.name for p in accepted if p.kind not in (inspect.Parameter.VAR_POSITIONAL,)]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise InvalidInputError(f"{name} has no parameter(s) {unknown}; it takes {names}")
    merged = {p.name: p.default for p in accepted if p.default is not inspect.Parameter.empty}
    merged.update(given)
    return name, fn, merged


def _run(fn: Callable[..., pd.DataFrame], ohlcv: pd.DataFrame, params: Mapping[str, Any], name: str, *,
         strict: bool, skipped: list[str] | None = None, what: str = "") -> pd.DataFrame | None:
    """The strategy's frame on (a copy of) ``ohlcv``; on a partial history a failure is noted, not raised."""
    data = ohlcv.copy()  # a strategy that edits its input must not change the next run's
    try:
        if strict:
            out = fn(data, **params)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # short histories make empty-window warnings
                out = fn(data, **params)
    except MemlabError:
        if strict:
            raise
        if skipped is not None:
            skipped.append(f"{what}: the strategy refused it")
        return None
    except Exception as exc:
        if strict:
            raise StrategyCheckError(f"{name} failed on the full history: {type(exc).__name__}: {exc}") from exc
        if skipped is not None:
            skipped.append(f"{what}: {type(exc).__name__}: {exc}")
        return None
    if isinstance(out, pd.Series):
        out = out.to_frame(out.name if out.name is not None else "signal")
    if not isinstance(out, pd.DataFrame) or len(out) != len(ohlcv) or not out.index.equals(ohlcv.index):
        got = type(out).__name__ if not isinstance(out, pd.DataFrame) else f"a frame of {len(out)} rows"
        message = f"{name} must return a frame aligned with its {len(ohlcv)} input bars; got {got}"
        if strict:
            raise StrategyCheckError(message)
        if skipped is not None:
            skipped.append(f"{what}: {message}")
        return None
    return out


def _cut_points(n: int, cuts: int | Sequence[int]) -> list[int]:
    """Prefix lengths in [2, n-1]: geometric near the start (warm-ups, bfill), even after."""
    if not isinstance(cuts, int):
        chosen = sorted({int(c) for c in cuts})
        if not chosen or chosen[0] < 1 or chosen[-1] >= n:
            raise InvalidInputError(f"cuts must be prefix lengths between 1 and {n - 1}, got {list(cuts)}")
        return chosen
    if cuts < 1:
        raise InvalidInputError(f"cuts must be at least 1, got {cuts}")
    early = np.geomspace(2, n - 1, num=max(cuts // 2, 1))
    even = np.linspace(max(n // 10, 2), n - 1, num=max(cuts - cuts // 2, 1))
    points = {int(round(x)) for x in np.concatenate([early, even])} | {n - 1}
    return sorted(p for p in points if 2 <= p <= n - 1) or [n - 1]


def _start_points(n: int, starts: int | Sequence[int]) -> list[int]:
    """Bars to drop at the start: 1, then up to a fifth of the history."""
    if not isinstance(starts, int):
        chosen = sorted({int(k) for k in starts})
        if chosen and (chosen[0] < 1 or chosen[-1] > n - 2):
            raise InvalidInputError(f"starts must be between 1 and {n - 2} bars, got {list(starts)}")
        return chosen
    if starts < 0:
        raise InvalidInputError(f"starts must be at least 0, got {starts}")
    if starts == 0:
        return []
    points = {1} | {int(round(x)) for x in np.linspace(1, n // 5, num=starts)[1:]}
    return sorted(p for p in points if 1 <= p <= n - 2)


def _values(column: pd.Series) -> np.ndarray:
    """The column as floats when it is numeric or boolean (nullable too), else as objects."""
    if pd.api.types.is_bool_dtype(column.dtype) or pd.api.types.is_numeric_dtype(column.dtype):
        return column.to_numpy(dtype=float, na_value=np.nan)
    return column.to_numpy(dtype=object)


def _differs(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """Element-wise "not the same": NaN equals NaN, floats within tolerance."""
    if a.dtype.kind == "f" and b.dtype.kind == "f":
        return ~np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
    left, right = pd.Series(a, dtype=object), pd.Series(b, dtype=object)
    same = (left == right).to_numpy(dtype=bool) | (left.isna() & right.isna()).to_numpy(dtype=bool)
    return ~same


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _jsonable(value: Any) -> Any:
    value = _scalar(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _show(value: Any) -> str:
    value = _scalar(value)
    if isinstance(value, float):
        return f"{value:.10g}"
    return repr(value)


def _iso(ts: pd.Timestamp | None) -> str | None:
    return None if ts is None else pd.Timestamp(ts).isoformat()


def _day(ts: Any) -> str:
    ts = pd.Timestamp(ts)
    return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.strftime("%Y-%m-%d %H:%M")


__all__ = ["Finding", "LookaheadReport", "StrategyCheckError", "check_strategy", "resolve_strategy",
           "strategy_params"]
