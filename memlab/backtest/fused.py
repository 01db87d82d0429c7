"""Fused sweeps: every long-only parameter set of a sweep in one parallel numba kernel.

A strategy with a batch function (:mod:`memlab.backtest.rules`) declares its signals as
rules on indicator lines. The sweep computes each distinct line once, holds at most
``memory_budget_gb`` of them at a time (sets are taken in order, in chunks whose lines
fit; a line that leaves is recomputed if a later chunk needs it), and
:func:`memlab.backtest.kernels.fused_sweep_nb` reads the signals from the lines bar by
bar. A strategy without one is still fused: its own signal frames, computed a chunk of
sets at a time, are handed to the same kernel as one-byte flags. Either way no
bars-by-sets float matrix and no order records are built, and the results are
vectorbt's, set by set.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numba
import numpy as np
import pandas as pd

from memlab.backtest.engine import periods_per_year
from memlab.backtest.kernels import FLAG, fused_sweep_nb
from memlab.backtest.rules import Indicators, compile_rules, declare, evaluate
from memlab.errors import InvalidInputError
from memlab.strategies import BATCH, check_params, get

#: Bars per block of the kernel's walk: the block's prices and lines stay in cache while
#: every set of a group advances through it.
BLOCK_BARS = 2048
#: Sets per group, the unit of work a thread takes (threads take the next group as they
#: free up, so a busy core slows only its own groups).
GROUP_SETS = 32
#: Most sets per kernel call when the caller gives no ``chunk_size`` (for progress; the
#: per-set state is small).
MAX_SETS_PER_CALL = 4096
#: Most sets whose signal frames are held at once for a strategy without a batch function.
MAX_FLAG_SETS = 256
#: Parameter sets of the grid whose refusal by the batch function and by the strategy
#: are compared (evenly spaced over the grid).
REFUSAL_SAMPLE = 8


def check_batch(ohlcv: pd.DataFrame, strategy: str, grid: list[dict[str, Any]], first: dict[str, Any]) -> None:
    """Refuse a batch function that does not say what its strategy does: the signals of
    ``first`` (checked parameters) on ``ohlcv``, and which sets of a sample of ``grid``
    (merged over the defaults) are refused."""
    batch = BATCH[strategy]
    fn = get(strategy)
    ind = Indicators(ohlcv)
    rules = declare(batch, ind, first, strategy)
    mine = evaluate(rules, ind.values, len(ohlcv))
    theirs = fn(ohlcv, **first)
    for name in ("entry", "exit"):
        expected = theirs[name].to_numpy(dtype=bool)
        differ = np.flatnonzero(mine[name] != expected)
        if len(differ):
            at = differ[0]
            raise InvalidInputError(
                f"the batch function of {strategy} disagrees with {strategy} on {name} for {first} at "
                f"{ohlcv.index[at]} (bar {at}: rules say {bool(mine[name][at])}, the strategy "
                f"{bool(expected[at])}; {len(differ)} bars differ): fix its rules or remove BATCH[{strategy!r}]")
    picks = sorted({int(i) for i in np.linspace(0, len(grid) - 1, min(REFUSAL_SAMPLE, len(grid)))})
    two_bars = ohlcv.iloc[:2]
    for i in picks:
        try:
            params = check_params(strategy, grid[i])
        except InvalidInputError:
            continue
        rules_say = _verdict(lambda p=params: declare(batch, Indicators(two_bars), p, strategy))
        strategy_says = _verdict(lambda p=params: fn(two_bars, **p))
        if rules_say != strategy_says:
            raise InvalidInputError(f"the batch function of {strategy} {rules_say} {params}, which {strategy} "
                                    f"{strategy_says}: it must refuse what the strategy refuses")


def _verdict(call: Callable[[], Any]) -> str:
    try:
        call()
    except InvalidInputError:
        return "refuses"
    return "accepts"


def fused_sets(
    ohlcv: pd.DataFrame,
    strategy: str,
    combos: list[dict[str, Any]],
    *,
    fees: float,
    slippage: float,
    fill: str,
    init_cash: float,
    size: float = 1.0,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    trailing_stop: float | None = None,
    exit_after: int | None = None,
    chunk_size: int | None = None,
    memory_budget_gb: float = 2.0,
    progress: bool = True,
    marks_at: np.ndarray,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Backtest ``combos`` (already checked) long-only in the fused kernel: the table
    (parameters, total_return, n_trades, win_rate, sharpe, max_drawdown) and each set's
    equity at the bars ``marks_at``."""
    from tqdm.auto import tqdm

    n = len(ohlcv)
    prices = [np.ascontiguousarray(ohlcv[c].to_numpy(np.float64)) for c in ("Open", "High", "Low", "Close")]
    settings = (
        fill == "next_open", float(fees), float(slippage), float(init_cash), float(size),
        np.nan if stop_loss is None else float(stop_loss), np.nan if trailing_stop is None else float(trailing_stop),
        np.nan if take_profit is None else float(take_profit), int(exit_after or 0),
        np.ascontiguousarray(marks_at, dtype=np.int64), BLOCK_BARS, GROUP_SETS,
    )
    budget = memory_budget_gb * 1e9
    out = np.empty((len(combos), 6))
    marks = np.empty((len(combos), len(marks_at)))
    bar = tqdm(total=len(combos), desc=f"sweep {strategy}", unit="set", disable=not progress)
    try:
        for lo, hi, lines, flags, arrays in _chunks(ohlcv, strategy, combos, budget, chunk_size):
            with numba.parallel_chunksize(1):  # one group at a time: dynamic scheduling
                out[lo:hi], marks[lo:hi] = fused_sweep_nb(*prices, lines, flags, *arrays, *settings)
            bar.update(hi - lo)
    finally:
        bar.close()
    ppy = periods_per_year(ohlcv.index)
    count = n - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = out[:, 3] / count
        var = (out[:, 4] - out[:, 3] * mean) / (count - 1) if count > 1 else np.full(len(out), np.nan)
        std = np.sqrt(np.maximum(var, 0.0))
        sharpe = np.where(std > 0, mean / std * np.sqrt(ppy), np.nan)
        win_rate = np.where(out[:, 1] > 0, out[:, 2] / out[:, 1], np.nan)
    table = pd.DataFrame(combos)
    table["total_return"] = out[:, 0]
    table["n_trades"] = out[:, 1].astype(np.int64)
    table["win_rate"] = win_rate
    table["sharpe"] = sharpe
    table["max_drawdown"] = out[:, 5]
    return table, marks


def _chunks(ohlcv: pd.DataFrame, strategy: str, combos: list[dict[str, Any]], budget: float, chunk_size: int | None):  # type: ignore[no-untyped-def]
    """``(lo, hi, lines, flags, (terms, consts, clauses, signals))`` per kernel call."""
    n = len(ohlcv)
    batch = BATCH.get(strategy)
    if batch is None:
        yield from _flag_chunks(ohlcv, get(strategy), combos, budget, chunk_size)
        return
    no_flags = np.zeros((0, 0), dtype=np.uint8)
    ind = Indicators(ohlcv)
    rules = [declare(batch, ind, params, strategy) for params in combos]
    keys = [r.lines() for r in rules]
    max_sets = chunk_size or MAX_SETS_PER_CALL
    n_distinct = len(set().union(*keys))
    rows = min(n_distinct, max(int(budget // (8 * max(n, 1))), max((len(k) for k in keys), default=0), 1))
    lines = np.empty((rows, n))
    slot: dict[Hashable, int] = {}
    lo = 0
    while lo < len(rules):
        hi, needed = lo, set()
        while hi < len(rules) and hi - lo < max_sets and len(needed | keys[hi]) <= rows:
            needed |= keys[hi]
            hi += 1
        _fill_lines(ind, lines, slot, needed)
        yield lo, hi, lines, no_flags, compile_rules(rules[lo:hi], slot)
        lo = hi


def _fill_lines(ind: Indicators, lines: np.ndarray, slot: dict[Hashable, int], needed: set[Hashable]) -> None:
    """Put every line in ``needed`` into a row of ``lines``, reusing rows already computed
    and evicting lines not needed."""
    free = sorted(set(range(len(lines))) - set(slot.values()))
    spare = [k for k in slot if k not in needed]
    for key in needed - set(slot):
        row = free.pop() if free else slot.pop(spare.pop())
        lines[row] = ind.values(key)
        slot[key] = row


def _flag_chunks(ohlcv: pd.DataFrame, fn: Callable[..., pd.DataFrame], combos: list[dict[str, Any]], budget: float,
                 chunk_size: int | None):  # type: ignore[no-untyped-def]
    n = len(ohlcv)
    no_lines = np.zeros((0, n))
    per_chunk = max(1, min(chunk_size or MAX_FLAG_SETS, MAX_FLAG_SETS, int(budget // (2 * max(n, 1)))))
    for lo in range(0, len(combos), per_chunk):
        chunk = combos[lo : lo + per_chunk]
        flags = np.empty((2 * len(chunk), n), dtype=np.uint8)
        for i, params in enumerate(chunk):
            frame = fn(ohlcv, **params)
            flags[2 * i] = frame["entry"].to_numpy(dtype=bool)
            flags[2 * i + 1] = frame["exit"].to_numpy(dtype=bool)
        k = len(chunk)
        terms = np.zeros((2 * k, 4), dtype=np.int64)
        terms[:, 0] = FLAG
        terms[:, 1] = np.arange(2 * k)
        terms[:, 2] = -1
        clauses = np.column_stack([np.arange(2 * k), np.arange(1, 2 * k + 1)]).astype(np.int64)
        signals = np.stack([np.column_stack([np.arange(0, 2 * k, 2), np.arange(1, 2 * k + 1, 2)]),
                            np.column_stack([np.arange(1, 2 * k, 2), np.arange(2, 2 * k + 1, 2)])], axis=1)
        yield lo, lo + k, no_lines, flags, (terms, np.zeros(2 * k), clauses, np.ascontiguousarray(signals, dtype=np.int64))


__all__ = ["check_batch", "fused_sets"]
