"""Signal rules: a strategy's signals declared on indicator lines, so sweeps can fuse them.

A sweep of thousands of parameter sets is fastest when each distinct indicator is
computed once and the signals are read from it inside the simulation kernel
(:mod:`memlab.backtest.kernels`), never built as bars-by-sets arrays. A strategy says how
by a *batch function* beside it: it takes an :class:`Indicators` and the strategy's
parameters and returns the same signals as the strategy, as rules on indicator lines.
An EMA crossover, for example:

>>> from memlab.data import sample
>>> from memlab.strategies import BATCH, register, signal_frame
>>> from memlab.strategies.signal_frame import crossed_above, crossed_below
>>> def ema_crossover(ohlcv, fast=12, slow=26):
...     close = ohlcv["Close"]
...     f, s = close.ewm(span=fast, adjust=False).mean(), close.ewm(span=slow, adjust=False).mean()
...     return signal_frame(ohlcv.index, entry=crossed_above(f, s), exit=crossed_below(f, s))
>>> def ema_crossover_batch(ind, fast=12, slow=26):
...     f = ind.line(("ema", fast), lambda: ind.ohlcv["Close"].ewm(span=fast, adjust=False).mean())
...     s = ind.line(("ema", slow), lambda: ind.ohlcv["Close"].ewm(span=slow, adjust=False).mean())
...     return ind.signals(entry=f.crossed_above(s), exit=f.crossed_below(s))
>>> _ = register("ema_crossover", ema_crossover)
>>> BATCH["ema_crossover"] = ema_crossover_batch
>>> from memlab import backtest
>>> table = backtest.sweep(sample("GOOG"), "ema_crossover", {"fast": [5, 12], "slow": [26, 50]}, progress=False)
>>> len(table), int(table["n_trades"].min()) > 0
(4, True)

What a batch function can say:

- ``ind.line(key, compute)``: an indicator line; ``compute()`` returns one number per bar
  (a Series or array) and runs at most once per sweep for each ``key`` (lazily, when a
  chunk of sets needs it), so ``key`` must name everything the values depend on. The
  batch function runs once per set: leave the work, even reading a column of
  ``ind.ohlcv``, to ``compute``. ``ind.price("Close")`` is a price column.
- comparisons of a line with another line or a number: ``a > b``, ``a >= b``, ``a < 0.3``,
  ``a <= b``; crossings: ``a.crossed_above(b)``, ``a.crossed_below(b)`` (as
  :func:`memlab.strategies.signal_frame.crossed_above`: above now, at or below the bar
  before). NaN compares False, as in pandas.
- conditions combine with ``&``, ``|`` and ``~`` (not ``and``/``or``/``not``).
- ``ind.signals(entry=..., exit=..., short_entry=..., short_exit=...)``: what it returns;
  a signal left out never fires.

It must refuse the parameters its strategy refuses (raise
:class:`memlab.errors.InvalidInputError`; calling the strategy's own check does it): the
sweep then skips the set without calling the strategy. Each sweep checks that the rules
of its first set give the strategy's own signals on the sweep's bars, and that the rules
and the strategy refuse the same sets among a sample, and refuses to run otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from memlab.backtest.kernels import CROSSED_ABOVE, CROSSED_BELOW, GE, GT, LE, LT
from memlab.errors import InvalidInputError

#: The signals a batch function can declare, in the signal frame's order.
SIGNAL_NAMES: tuple[str, ...] = ("entry", "exit", "short_entry", "short_exit")
#: Most clauses (ANDs of terms, ORed) one condition may expand to.
MAX_CLAUSES = 64

#: Between two lines, ``a < b`` is ``b > a``, and so on.
_MIRRORED = {LT: GT, LE: GE, CROSSED_BELOW: CROSSED_ABOVE}

#: ``(operator, line a, line b or None, constant, negated)``
Term = tuple[int, Hashable, Hashable | None, float, bool]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class Line:
    """One indicator line of a sweep, by key; compare it to build a :class:`Condition`."""

    key: Hashable

    def _term(self, op: int, other: Line | float) -> Condition:
        if isinstance(other, Line):
            return Condition((((op, self.key, other.key, 0.0, False),),))
        if _number(other) and not np.isnan(other):
            return Condition((((op, self.key, None, float(other), False),),))
        raise InvalidInputError(f"line {self.key!r} can be compared with another line or a number, not {other!r}")

    def __gt__(self, other: Line | float) -> Condition:  # type: ignore[override]
        return self._term(GT, other)

    def __ge__(self, other: Line | float) -> Condition:  # type: ignore[override]
        return self._term(GE, other)

    def __lt__(self, other: Line | float) -> Condition:  # type: ignore[override]
        return self._term(LT, other)

    def __le__(self, other: Line | float) -> Condition:  # type: ignore[override]
        return self._term(LE, other)

    def crossed_above(self, other: Line | float) -> Condition:
        """True on the bar where this line moves from at or below ``other`` to above it."""
        return self._term(CROSSED_ABOVE, other)

    def crossed_below(self, other: Line | float) -> Condition:
        """True on the bar where this line moves from at or above ``other`` to below it."""
        return self._term(CROSSED_BELOW, other)


class Condition:
    """A per-bar truth built from terms: an OR of clauses, each an AND of terms."""

    __slots__ = ("clauses",)

    def __init__(self, clauses: tuple[tuple[Term, ...], ...]) -> None:
        if len(clauses) > MAX_CLAUSES:
            raise InvalidInputError(f"a condition expands to {len(clauses)} clauses (ORs of ANDs), more than "
                                    f"{MAX_CLAUSES}: simplify it, or compute it as a line of its own")
        self.clauses = clauses

    def __and__(self, other: Condition) -> Condition:
        if not isinstance(other, Condition):
            return NotImplemented
        return Condition(tuple(a + b for a in self.clauses for b in other.clauses))

    def __or__(self, other: Condition) -> Condition:
        if not isinstance(other, Condition):
            return NotImplemented
        return Condition(self.clauses + other.clauses)

    def __invert__(self) -> Condition:
        negated = [Condition(tuple(((op, a, b, c, not neg),) for op, a, b, c, neg in clause)) for clause in self.clauses]
        out = negated[0]
        for part in negated[1:]:
            out = out & part
        return out

    def __bool__(self) -> bool:
        raise TypeError("a Condition holds on some bars and not others, so it has no single truth value: "
                        "combine conditions with &, | and ~, not and, or, not")

    def __repr__(self) -> str:
        return f"Condition({self.clauses!r})"

    def lines(self) -> set[Hashable]:
        """The keys of the lines it reads."""
        return {k for clause in self.clauses for _, a, b, _, _ in clause for k in (a, b) if k is not None}


@dataclass(frozen=True)
class SignalRules:
    """What a batch function returns: a condition per signal (None: never)."""

    entry: Condition | None = None
    exit: Condition | None = None
    short_entry: Condition | None = None
    short_exit: Condition | None = None

    def lines(self) -> set[Hashable]:
        """The keys of every line the signals read."""
        out: set[Hashable] = set()
        for name in SIGNAL_NAMES:
            cond = getattr(self, name)
            if cond is not None:
                out |= cond.lines()
        return out


class Indicators:
    """The indicator lines of one sweep, each computed once, when a chunk of sets needs it.

    ``ohlcv`` is the sweep's bars, for ``compute`` functions to read.
    """

    def __init__(self, ohlcv: pd.DataFrame) -> None:
        self.ohlcv = ohlcv
        self._recipes: dict[Hashable, Callable[[], Any]] = {}

    def line(self, key: Hashable, compute: Callable[[], Any]) -> Line:
        """The line called ``key``; ``compute()`` gives its values (one per bar) when needed.

        A key already declared keeps its first ``compute``: the key names the values."""
        try:
            hash(key)
        except TypeError:
            raise InvalidInputError(f"a line's key must be hashable (a string or tuple), got {key!r}") from None
        if not callable(compute):
            raise InvalidInputError(f"line {key!r}: compute must be a function of no arguments, got {compute!r}")
        self._recipes.setdefault(key, compute)
        return Line(key)

    def price(self, column: str = "Close") -> Line:
        """A price column of the bars as a line."""
        if column not in self.ohlcv.columns:
            raise InvalidInputError(f"the bars have no {column!r} column; they have {list(self.ohlcv.columns)}")
        return self.line(("price", column), lambda: self.ohlcv[column])

    def signals(self, *, entry: Condition | None = None, exit: Condition | None = None,
                short_entry: Condition | None = None, short_exit: Condition | None = None) -> SignalRules:
        """The strategy's signals as rules (what a batch function returns)."""
        given = {"entry": entry, "exit": exit, "short_entry": short_entry, "short_exit": short_exit}
        for name, cond in given.items():
            if cond is not None and not isinstance(cond, Condition):
                raise InvalidInputError(f"{name} must be a condition built from lines (a > b, "
                                        f"a.crossed_above(b), ...), not {type(cond).__name__}")
        return SignalRules(**given)

    def values(self, key: Hashable) -> np.ndarray:
        """Compute line ``key`` now: float64, one value per bar."""
        try:
            recipe = self._recipes[key]
        except KeyError:
            raise InvalidInputError(f"no line {key!r} was declared") from None
        raw = recipe()
        values = np.asarray(raw.to_numpy() if isinstance(raw, pd.Series) else raw, dtype=np.float64)
        if values.shape != (len(self.ohlcv),):
            raise InvalidInputError(f"line {key!r} has shape {values.shape}; it needs one value per bar "
                                    f"({len(self.ohlcv)})")
        return values


def declare(batch: Callable[..., Any], ind: Indicators, params: dict[str, Any], strategy: str) -> SignalRules:
    """``batch(ind, **params)``, checked to be :class:`SignalRules`."""
    rules = batch(ind, **params)
    if not isinstance(rules, SignalRules):
        raise InvalidInputError(f"the batch function of {strategy} returned {type(rules).__name__}; it must return "
                                "ind.signals(entry=..., exit=...)")
    return rules


def evaluate(rules: SignalRules, values: Callable[[Hashable], np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Each signal of ``rules`` as a boolean array over ``n`` bars (``values(key)`` gives a
    line): the same truth the kernel reads bar by bar, for checking rules against their
    strategy."""

    def term(op: int, a: Hashable, b: Hashable | None, c: float, neg: bool) -> np.ndarray:
        x = values(a)
        y: np.ndarray | float = c if b is None else values(b)
        with np.errstate(invalid="ignore"):
            if op == GT:
                out = x > y
            elif op == GE:
                out = x >= y
            elif op == LT:
                out = x < y
            elif op == LE:
                out = x <= y
            else:
                x0 = np.concatenate([[np.nan], x[:-1]])
                y0 = y if b is None else np.concatenate([[np.nan], np.asarray(y)[:-1]])
                out = (x > y) & (x0 <= y0) if op == CROSSED_ABOVE else (x < y) & (x0 >= y0)
                out[:1] = False
        return ~out if neg else out

    result = {}
    for name in SIGNAL_NAMES:
        cond = getattr(rules, name)
        hit = np.zeros(n, dtype=bool)
        for clause in (cond.clauses if cond is not None else ()):
            holds = np.ones(n, dtype=bool)
            for t in clause:
                holds &= term(*t)
            hit |= holds
        result[name] = hit
    return result


def compile_rules(rule_sets: Iterable[SignalRules], slots: dict[Hashable, int], n_signals: int = 2,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The kernel's arrays for ``rule_sets`` (lines at ``slots[key]``): terms, constants,
    clauses and per-set signal ranges (the first ``n_signals`` signals)."""
    terms: list[tuple[int, int, int, int]] = []
    consts: list[float] = []
    clauses: list[tuple[int, int]] = []
    signals: list[list[tuple[int, int]]] = []
    for rules in rule_sets:
        ranges = []
        for name in SIGNAL_NAMES[:n_signals]:
            cond = getattr(rules, name)
            first = len(clauses)
            for clause in (cond.clauses if cond is not None else ()):
                start = len(terms)
                for op, a, b, c, neg in clause:
                    if b is not None and op in _MIRRORED:  # a < b is b > a: fewer kinds for the kernel
                        op, a, b = _MIRRORED[op], b, a
                    terms.append((op, slots[a], -1 if b is None else slots[b], int(neg)))
                    consts.append(c)
                clauses.append((start, len(terms)))
            ranges.append((first, len(clauses)))
        signals.append(ranges)
    return (np.array(terms, dtype=np.int64).reshape(-1, 4), np.array(consts, dtype=np.float64),
            np.array(clauses, dtype=np.int64).reshape(-1, 2),
            np.array(signals, dtype=np.int64).reshape(-1, n_signals, 2))
