"""Strategies by name, each with the default grid and parameter bounds it declares.

A strategy is ``f(ohlcv, **params) -> signal frame`` (see
:mod:`memlab.strategies.signal_frame`). Declare it beside its grid and bounds, and it
works by name everywhere (backtest, sweep, training, evaluation, the trader)::

    from memlab.strategies import signal_frame, strategy

    @strategy("breakout", grid={"window": [10, 20, 40]}, bounds={"window": (2, None)})
    def breakout(ohlcv, window=20):
        high = ohlcv["High"].rolling(window).max().shift(1)
        return signal_frame(ohlcv.index, entry=ohlcv["Close"] > high, exit=ohlcv["Close"] < high)

- ``grid``: the parameter sets training and ``memlab evaluate`` sweep when given none.
- ``bounds``: ``{parameter: (low, high)}``, inclusive, ``None`` for an open end; a
  parameter or grid value outside them is refused, naming it.

Reading :data:`REGISTRY` (``get``, ``in``, iterating) first loads the strategies declared
outside memlab, once per process: ``MEMLAB_STRATEGIES`` and installed packages (see
:mod:`memlab.strategies.plugins`). Two strategies with one name are refused, naming both
sources; declaring the same function from the same source again is fine.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from memlab.errors import InvalidInputError
from memlab.strategies.signal_frame import check_signal_frame

StrategyFn = Callable[..., pd.DataFrame]
Bounds = tuple[float | None, float | None]


@dataclass(frozen=True)
class StrategySpec:
    """One declared strategy: its function and what it says about its parameters."""

    name: str
    #: the function as written (``REGISTRY`` may hold it wrapped in an output check)
    fn: StrategyFn
    #: default parameter sets to sweep: ``{parameter: [values]}``
    grid: dict[str, list[Any]] = field(default_factory=dict)
    #: ``{parameter: (low, high)}``, inclusive; None is an open end
    bounds: dict[str, Bounds] = field(default_factory=dict)
    #: where its code lives: ``package.module:function``, or ``/path/to/file.py:function``
    ref: str = ""


class _Registry(dict[str, StrategyFn]):
    """``name -> strategy function``; every read loads plug-in strategies first (once)."""

    loaded = False  # set by plugins.load_plugins when every plug-in is in

    def _ready(self) -> None:
        if not self.loaded:
            from memlab.strategies.plugins import load_plugins

            load_plugins()

    def __getitem__(self, name: str) -> StrategyFn:
        self._ready()
        return super().__getitem__(name)

    def __contains__(self, name: object) -> bool:
        self._ready()
        return super().__contains__(name)

    def __iter__(self) -> Iterator[str]:
        self._ready()
        return super().__iter__()

    def __len__(self) -> int:
        self._ready()
        return super().__len__()

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        self._ready()
        return super().get(name, default)

    def keys(self):  # type: ignore[no-untyped-def]
        self._ready()
        return super().keys()

    def values(self):  # type: ignore[no-untyped-def]
        self._ready()
        return super().values()

    def items(self):  # type: ignore[no-untyped-def]
        self._ready()
        return super().items()

    def copy(self) -> dict[str, StrategyFn]:
        self._ready()
        return dict(super().items())


#: Strategy functions by name (memlab's own, then plug-ins).
REGISTRY: _Registry = _Registry()
#: Optional fast paths for sweeps: a batch function ``f(ind, **params)`` declaring the
#: strategy's signals as rules on indicator lines (see :mod:`memlab.backtest.rules`).
BATCH: dict[str, Callable[..., Any]] = {}
_SPECS: dict[str, StrategySpec] = {}
#: Every name declared, in order (a strategy file's loader reads what its file declared).
_DECLARED: list[str] = []


def _parameters(fn: Callable[..., Any]) -> tuple[list[str], bool]:
    """``(names after ohlcv, takes **kwargs)``."""
    try:
        params = list(inspect.signature(fn).parameters.values())[1:]
    except (TypeError, ValueError):
        return [], True
    names = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def reference(fn: Callable[..., Any]) -> str:
    """Where ``fn``'s code lives: ``package.module:function``, or ``/path/file.py:function``
    for a function from a strategy file (see :func:`memlab.strategies.plugins.load_strategy_file`)."""
    from memlab.strategies.plugins import file_of_module

    module = getattr(fn, "__module__", None) or "?"
    qualname = getattr(fn, "__qualname__", None) or type(fn).__name__
    path = file_of_module(module)
    return f"{path if path is not None else module}:{qualname}"


def _bounds(name: str, fn: StrategyFn, bounds: Mapping[str, Sequence[Any]] | None) -> dict[str, Bounds]:
    accepted, _ = _parameters(fn)
    out: dict[str, Bounds] = {}
    for param, pair in (bounds or {}).items():
        if param not in accepted:
            raise InvalidInputError(f"{name}: bounds name {param!r}, which it does not take; "
                                    f"it takes {', '.join(accepted) or 'no parameters'}")
        try:
            low, high = pair
        except (TypeError, ValueError):
            raise InvalidInputError(f"{name}: bounds[{param!r}] must be (low, high), got {pair!r}") from None
        for end in (low, high):
            if end is not None and (isinstance(end, bool) or not isinstance(end, (int, float)) or math.isnan(end)):
                raise InvalidInputError(f"{name}: bounds[{param!r}] takes numbers or None, got {pair!r}")
        if low is not None and high is not None and low > high:
            raise InvalidInputError(f"{name}: bounds[{param!r}] has low {low} above high {high}")
        out[param] = (low, high)
    return out


def _outside(value: Any, bounds: Bounds) -> bool:
    if isinstance(value, bool) or (not isinstance(value, (int, float)) and not hasattr(value, "__float__")):
        return True  # not a number: outside any range
    low, high = bounds
    number = float(value)
    return math.isnan(number) or (low is not None and number < low) or (high is not None and number > high)


def _span(bounds: Bounds) -> str:
    low, high = bounds
    return f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"


def _check_values(name: str, accepted: list[str], kwargs: bool, bounds: Mapping[str, Bounds],
                  values: Mapping[str, Sequence[Any]], what: str) -> None:
    """Refuse names ``name`` does not take and values outside its bounds (``what`` says where)."""
    unknown = [p for p in values if p not in accepted]
    if unknown and not kwargs:
        raise InvalidInputError(f"{what} names {', '.join(map(repr, unknown))}, which {name} does not take; "
                                f"it takes {', '.join(accepted) or 'no parameters'}")
    for param, seq in values.items():
        if param in bounds:
            bad = next((v for v in seq if _outside(v, bounds[param])), None)
            if bad is not None:
                raise InvalidInputError(f"{what}: {param}={bad!r} is outside {name}'s bounds {_span(bounds[param])}")


def _grid_values(grid: Any) -> dict[str, list[Any]]:
    """``{parameter: [values]}`` of a grid given as a mapping or as a list of parameter dicts."""
    if isinstance(grid, Mapping):
        return {str(k): list(v) if isinstance(v, Sequence) and not isinstance(v, (str, bytes)) else [v]
                for k, v in grid.items()}
    if isinstance(grid, Sequence) and not isinstance(grid, (str, bytes)):
        out: dict[str, list[Any]] = {}
        for combo in grid:
            if not isinstance(combo, Mapping):
                raise InvalidInputError(f"a grid given as a list holds parameter dicts, got {combo!r}")
            for k, v in combo.items():
                out.setdefault(str(k), []).append(v)
        return out
    raise InvalidInputError(f"a grid is {{parameter: [values]}} or a list of parameter dicts, got {type(grid).__name__}")


def register(name: str, fn: StrategyFn, *, grid: Mapping[str, Sequence[Any]] | None = None,
             bounds: Mapping[str, Sequence[Any]] | None = None) -> StrategyFn:
    """Make ``fn`` available by ``name`` everywhere (backtest, sweep, training, evaluation,
    trader), with its default ``grid`` and parameter ``bounds``; returns ``fn``.

    Raises:
        InvalidInputError: ``name`` is not an identifier; the grid or bounds name a
            parameter ``fn`` does not take, or a value outside the bounds; or another
            function, from another source, is already called ``name`` (both are named).
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise InvalidInputError(f"strategy name {name!r} must be an identifier")
    if not callable(fn):
        raise InvalidInputError(f"strategy {name!r} must be a function f(ohlcv, **params), got {fn!r}")
    accepted, kwargs = _parameters(fn)
    checked_bounds = _bounds(name, fn, bounds)
    declared = _grid_values(grid or {})
    _check_values(name, accepted, kwargs, checked_bounds, declared, f"{name}'s declared grid")
    if any(not values for values in declared.values()):
        raise InvalidInputError(f"{name}'s declared grid gives a parameter no values: {dict(grid or {})}")
    defaults = {p: [d] for p, d in _defaults(fn).items() if p in checked_bounds}
    _check_values(name, accepted, kwargs, checked_bounds, defaults, f"{name}'s default")
    spec = StrategySpec(name, fn, declared, checked_bounds, reference(fn))
    old = _SPECS.get(name)
    if old is not None and old.ref != spec.ref:
        raise InvalidInputError(f"two strategies are called {name!r}: {old.ref} and {spec.ref}; rename one of them")
    _SPECS[name] = spec
    _DECLARED.append(name)
    # memlab's own strategies are tested to return signal frames (and sweeps recognise them
    # by identity); any other strategy's output is checked on every call.
    trusted = getattr(fn, "__module__", "").startswith("memlab.strategies.")
    dict.__setitem__(REGISTRY, name, fn if trusted else _checked(name, fn))
    if old is None or old.fn is not fn:
        BATCH.pop(name, None)  # a replaced strategy must not keep the old fast path
    return fn


def strategy(name: str | None = None, *, grid: Mapping[str, Sequence[Any]] | None = None,
             bounds: Mapping[str, Sequence[Any]] | None = None) -> Callable[[StrategyFn], StrategyFn]:
    """Decorator form of :func:`register`: ``@strategy("name", grid=..., bounds=...)``
    (the name defaults to the function's)."""

    def declare(fn: StrategyFn) -> StrategyFn:
        return register(name or fn.__name__, fn, grid=grid, bounds=bounds)

    return declare


def _checked(name: str, fn: StrategyFn) -> StrategyFn:
    @functools.wraps(fn)
    def run(ohlcv: pd.DataFrame, *args: Any, **kwargs: Any) -> pd.DataFrame:
        return check_signal_frame(name, ohlcv, fn(ohlcv, *args, **kwargs))

    return run


def _defaults(fn: StrategyFn) -> dict[str, Any]:
    try:
        params = list(inspect.signature(fn).parameters.values())[1:]
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def _unknown(name: str) -> InvalidInputError:
    return InvalidInputError(f"unknown strategy {name!r}; known: {', '.join(sorted(REGISTRY))}")


def get(name: str) -> StrategyFn:
    """The strategy function called ``name``."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise _unknown(name) from None


def spec_of(name: str) -> StrategySpec:
    """What strategy ``name`` declares: function, default grid, bounds, source."""
    get(name)
    return _SPECS[name]


def name_of(fn: Callable[..., Any]) -> str | None:
    """The name ``fn`` is registered under, if it is."""
    return next((s.name for s in _SPECS.values() if s.fn is fn or dict.get(REGISTRY, s.name) is fn), None)


def default_grid(name: str) -> dict[str, list[Any]]:
    """The grid strategy ``name`` declares, which training and evaluation sweep by default."""
    spec = spec_of(name)
    if not spec.grid:
        raise InvalidInputError(f"{name} declares no default grid; pass grid=, or declare one: "
                                f"@strategy({name!r}, grid={{...}}) or register({name!r}, fn, grid={{...}})")
    return {k: list(v) for k, v in spec.grid.items()}


def check_grid(name: str, grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]) -> None:
    """Refuse a grid that names a parameter strategy ``name`` does not take, or a value
    outside its bounds (the message names them).

    >>> check_grid("sma_cross", {"fast": [5, 10], "slwo": [30]})
    Traceback (most recent call last):
    ...
    memlab.errors.InvalidInputError: the grid names 'slwo', which sma_cross does not take; it takes fast, slow
    """
    spec = spec_of(name)
    accepted, kwargs = _parameters(spec.fn)
    _check_values(name, accepted, kwargs, spec.bounds, _grid_values(grid), "the grid")
    if dict.get(REGISTRY, name) is not spec.fn:  # a plug-in: see that it returns signal frames
        _probe(spec, grid)


#: Parameter sets :func:`_probe` tries before concluding nothing.
PROBE_SETS = 4


def _probe(spec: StrategySpec, grid: Any) -> None:
    """Run ``spec`` on a small synthetic market with the grid's first sets it accepts, and
    refuse a result that is not a signal frame. A sweep would otherwise skip every set
    (each "refused") and say only that no combination was valid."""
    import itertools

    from memlab.data import synthetic_ohlcv

    if isinstance(grid, Mapping):
        names = list(grid)
        sets = (dict(zip(names, combo, strict=True))
                for combo in itertools.product(*(_grid_values(grid)[n] for n in names)))
    else:
        sets = (dict(combo) for combo in grid)
    bars = synthetic_ohlcv(64, seed=0)
    for params in itertools.islice(sets, PROBE_SETS):
        try:
            frame = spec.fn(bars, **{**_defaults(spec.fn), **params})
        except Exception:  # refused or broken: the run itself reports it, with its data
            continue
        check_signal_frame(spec.name, bars, frame)
        return


def check_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` merged over the function's defaults; unknown names and values outside the
    declared bounds are an error."""
    spec = spec_of(name)
    accepted, kwargs = _parameters(spec.fn)
    unknown = set(params) - set(accepted)
    if unknown and not kwargs:
        raise InvalidInputError(f"{name} has no parameter(s) {sorted(unknown)}; it takes {accepted}")
    merged = {**_defaults(spec.fn), **params}
    for param, bounds in spec.bounds.items():
        if param in merged and _outside(merged[param], bounds):
            raise InvalidInputError(f"{name}: {param}={merged[param]!r} is outside its bounds {_span(bounds)}")
    return merged
