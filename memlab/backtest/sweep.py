"""Parameter sweeps: many parameter sets backtested at once, with bounded memory.

The grid is expanded to every combination. Long-only sweeps run in the fused kernel
(:mod:`memlab.backtest.fused`): each distinct indicator computed once per sweep, every set
simulated in one parallel numba pass, vectorbt's numbers set by set. Long/short sweeps
(and ``engine="vectorbt"``) run as the columns of vectorbt calls, ``chunk_size`` columns
per call so memory stays bounded on long histories.

Every sweep also says what choosing its best set is worth: each set's equity is
recorded at the ends of at most :data:`SUBPERIODS` equal sub-periods while it is
simulated (one small sets-by-sub-periods matrix, never bars by sets), and
:func:`memlab.backtest.selection.selection_report` turns them, with the sets' Sharpe
ratios, into ``table.attrs["selection"]``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from memlab.backtest.engine import (
    Direction,
    Fill,
    check_costs,
    check_exits,
    periods_per_year,
    simulate,
)
from memlab.backtest.fused import check_batch, fused_sets
from memlab.backtest.rules import Indicators, declare
from memlab.backtest.selection import SelectionReport, selection_report
from memlab.costs import DEFAULT_COSTS
from memlab.data.validate import require_ohlcv
from memlab.errors import InvalidInputError
from memlab.strategies import BATCH, check_grid, check_params, get

#: Bar-by-set float64 matrices vectorbt and the stats hold at once (measured: 100 sets of
#: 525,600 bars peaked at 18 GB).
_MATRICES_PER_SET = 45

#: Most sub-periods a sweep records per set for PBO and SPA: 16 CSCV blocks of 16, so each
#: half-sample Sharpe ratio rests on 128 returns, the bootstrap has 256 to resample, and
#: 10,000 sets hold 20 MB.
SUBPERIODS = 256
#: CSCV blocks for the probability of backtest overfitting (C(16, 8) = 12,870 splits).
PBO_BLOCKS = 16


def subperiod_edges(n_bars: int) -> np.ndarray:
    """Bar positions that cut ``n_bars`` bars into equal sub-periods (in bars) for PBO and SPA.

    ``SUBPERIODS`` of them, or fewer on short histories (a multiple of ``PBO_BLOCKS``, at
    least one bar each); empty when fewer than ``2 * PBO_BLOCKS`` bar returns exist.
    Sub-period ``p`` runs from the close of bar ``edges[p]`` to the close of ``edges[p + 1]``.

    >>> subperiod_edges(1000)[:3], len(subperiod_edges(1000)) - 1, len(subperiod_edges(20))
    (array([0, 4, 8]), 256, 0)
    """
    count = PBO_BLOCKS * min(SUBPERIODS // PBO_BLOCKS, max(n_bars - 1, 0) // PBO_BLOCKS)
    if count < 2 * PBO_BLOCKS:
        return np.empty(0, dtype=np.int64)
    return np.floor(np.linspace(0, n_bars - 1, count + 1) + 0.5).astype(np.int64)


def _sweep_piece(task: tuple[pd.DataFrame, str, list[dict[str, Any]], dict[str, Any]]) -> tuple[pd.DataFrame, np.ndarray]:
    """One worker's share of a distributed sweep (a top-level function, so Dask can ship it)."""
    ohlcv, strategy, combos, options = task
    return _run_sets(ohlcv, strategy, combos, progress=False, **options)


def expand_grid(grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, as parameter dicts (a list of dicts is
    taken as the combinations themselves)."""
    if isinstance(grid, Sequence) and not isinstance(grid, (str, bytes)):
        if not grid:
            raise InvalidInputError("no parameter sets given")
        return [dict(c) for c in grid]
    if not grid:
        raise InvalidInputError("the grid is empty: give each swept parameter a list of values")
    names = list(grid)
    for name in names:
        if isinstance(grid[name], (str, bytes)) or len(grid[name]) == 0:
            raise InvalidInputError(f"grid[{name!r}] must be a non-empty list of values")
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(grid[n] for n in names))]


def _column_stats(values: np.ndarray, ppy: float) -> dict[str, np.ndarray]:
    """Vectorised headline stats for an (n_bars, n_columns) equity matrix."""
    rets = np.diff(values, axis=0) / values[:-1]
    std = rets.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(std > 0, rets.mean(axis=0) / std * np.sqrt(ppy), np.nan)
    peak = np.maximum.accumulate(values, axis=0)
    return {
        "total_return": values[-1] / values[0] - 1.0,
        "sharpe": sharpe,
        "max_drawdown": -(values / peak - 1.0).min(axis=0),
    }


def sweep(
    ohlcv: pd.DataFrame,
    strategy: str,
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    *,
    fees: float = DEFAULT_COSTS.fees,
    slippage: float = DEFAULT_COSTS.slippage,
    fill: Fill = "next_open",
    direction: Direction = "longonly",
    init_cash: float = 100_000.0,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    trailing_stop: float | None = None,
    exit_after: int | None = None,
    size: float = 1.0,
    chunk_size: int | None = None,
    memory_budget_gb: float = 2.0,
    progress: bool = True,
    skip_invalid: bool = True,
    engine: str = "auto",
    scheduler: str | None = None,
    parts: int = 8,
    selection: bool = True,
    selection_draws: int = 1000,
    selection_seed: int = 0,
) -> pd.DataFrame:
    """Backtest every combination of ``grid``; one row per combination.

    The costs, ``fill``, ``direction``, exits (``stop_loss``, ``take_profit``,
    ``trailing_stop``, ``exit_after``) and ``size`` are :func:`memlab.backtest.run`'s,
    applied to every set.

    ``engine="auto"`` runs long-only sweeps in the fused kernel of
    :mod:`memlab.backtest.fused` (same numbers as vectorbt, far faster, memory bounded by
    ``memory_budget_gb`` whatever the number of sets) and long/short sweeps through
    vectorbt; ``engine="vectorbt"`` forces vectorbt. A strategy with a batch function
    (``memlab.strategies.BATCH[name]``, see :mod:`memlab.backtest.rules`) has each
    distinct indicator computed once per sweep; one without is fused from its own signal
    frames, a chunk of sets at a time.

    ``scheduler`` (``"local"`` or ``"tcp://HOST:8786"``) splits the sets into ``parts``
    and runs them on Dask workers; rows come back in grid order either way.

    ``chunk_size`` is the most parameter sets per kernel or vectorbt call; vectorbt's
    default is what fits in ``memory_budget_gb`` (it holds a few dozen bar-by-set
    matrices per call).

    Columns: the parameters, then ``total_return``, ``n_trades``, ``win_rate``,
    ``sharpe``, ``max_drawdown`` (as in :func:`memlab.backtest.run`). Combinations the
    strategy refuses (e.g. ``fast >= slow``) are skipped when ``skip_invalid``.

    ``table.attrs["selection"]`` is the :class:`~memlab.backtest.selection.SelectionReport`
    for choosing the set with the best Sharpe ratio: deflated Sharpe ratio over all the
    sets tried, probability of backtest overfitting and SPA p-value (``selection_draws``
    bootstrap draws, seeded by ``selection_seed``) over equal sub-periods (see
    :func:`subperiod_edges`). ``selection=False`` skips it (and its cost).

    >>> from memlab.data import sample
    >>> table = sweep(sample("GOOG"), "sma_cross", {"fast": [5, 10], "slow": [20, 40]}, progress=False)
    >>> len(table), list(table.columns[:3])
    (4, ['fast', 'slow', 'total_return'])
    >>> report = table.attrs["selection"]
    >>> report.n_trials, report.chosen == table.loc[table["sharpe"].idxmax(), ["fast", "slow"]].to_dict()
    (4, True)
    """
    check_grid(strategy, grid)  # a grid naming a parameter the strategy lacks is refused, naming it
    ohlcv = require_ohlcv(ohlcv)  # the same checks as load_ohlcv: NaN, inf, unsorted or naive times...
    if engine not in ("auto", "vectorbt"):
        raise InvalidInputError(f"engine must be 'auto' or 'vectorbt', not {engine!r}")
    check_costs(fees=fees, slippage=slippage, fill=fill, direction=direction)
    exits: dict[str, Any] = {"stop_loss": stop_loss, "take_profit": take_profit, "trailing_stop": trailing_stop,
                             "exit_after": exit_after, "size": size}
    check_exits(**exits)
    batch = BATCH.get(strategy) if _fused(engine, direction) else None
    expanded = expand_grid(grid)
    combos = valid_sets(strategy, expanded, ohlcv, skip_invalid=skip_invalid, batch=batch)
    if batch is not None:
        check_batch(ohlcv, strategy, expanded, combos[0])
    options: dict[str, Any] = {"fees": fees, "slippage": slippage, "fill": fill, "direction": direction, "init_cash": init_cash,
               "chunk_size": chunk_size, "memory_budget_gb": memory_budget_gb, "engine": engine, **exits}
    edges = subperiod_edges(len(ohlcv)) if selection else np.empty(0, dtype=np.int64)
    if scheduler is not None:
        from memlab.training.distributed import fan_out

        per_part = -(-len(combos) // max(1, parts))
        pieces = [combos[i : i + per_part] for i in range(0, len(combos), per_part)]
        results = fan_out(_sweep_piece, [(ohlcv, strategy, piece, {**options, "marks_at": edges}) for piece in pieces],
                          scheduler=scheduler, desc=f"sweep {strategy}", progress=progress)
        table = pd.concat([r[0] for r in results], ignore_index=True)
        marks = np.vstack([r[1] for r in results])
    else:
        table, marks = _run_sets(ohlcv, strategy, combos, progress=progress, marks_at=edges, **options)
    if selection:
        table.attrs["selection"] = _selection(ohlcv, strategy, combos, table, marks, options,
                                              draws=selection_draws, seed=selection_seed)
    return table


def valid_sets(strategy: str, sets: Sequence[Mapping[str, Any]], ohlcv: pd.DataFrame, *, skip_invalid: bool = True,
               batch: Any = None) -> list[dict[str, Any]]:
    """The parameter sets of ``sets`` the strategy accepts, checked on two bars of ``ohlcv``
    (through its batch function when ``batch`` is given); the others are skipped when
    ``skip_invalid``, else raised. None accepted is an :class:`InvalidInputError`."""
    fn = get(strategy)
    two_bars = Indicators(ohlcv.iloc[:2]) if batch is not None else None
    combos = []
    for combo in sets:
        try:
            params = check_params(strategy, combo)
            if batch is not None:
                declare(batch, two_bars, params, strategy)  # refuses what the strategy refuses
            else:
                fn(ohlcv.iloc[:2], **params)  # the strategy's own checks, on two bars
        except InvalidInputError:
            if not skip_invalid:
                raise
            continue
        combos.append(params)
    if not combos:
        raise InvalidInputError(f"no valid parameter combination in the grid for {strategy}")
    return combos


def _selection(ohlcv: pd.DataFrame, strategy: str, combos: list[dict[str, Any]], table: pd.DataFrame,
               marks: np.ndarray, options: dict[str, Any], *, draws: int, seed: int) -> SelectionReport:
    """The selection statistics of a finished sweep (``marks``: sets x sub-period ends)."""
    every_bar = np.arange(len(ohlcv), dtype=np.int64)

    def bar_returns(i: int) -> np.ndarray:
        # One set again, its equity at every bar: cheap next to the sweep, and exactly its returns.
        _, equity = _run_sets(ohlcv, strategy, [combos[i]], progress=False, marks_at=every_bar, **options)
        return np.diff(equity[0]) / equity[0, :-1]

    sub = None
    if marks.shape[1] > 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            sub = (marks[:, 1:] / marks[:, :-1] - 1.0).T
    return selection_report(combos, table["sharpe"].to_numpy(np.float64), bar_returns, sub, index=ohlcv.index,
                            periods_per_year=periods_per_year(ohlcv.index), n_blocks=PBO_BLOCKS, draws=draws,
                            seed=seed)


def _run_sets(
    ohlcv: pd.DataFrame,
    strategy: str,
    combos: list[dict[str, Any]],
    *,
    fees: float,
    slippage: float,
    fill: Fill,
    direction: Direction,
    init_cash: float,
    chunk_size: int | None,
    memory_budget_gb: float,
    engine: str,
    progress: bool,
    marks_at: np.ndarray,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    trailing_stop: float | None = None,
    exit_after: int | None = None,
    size: float = 1.0,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Backtest ``combos`` (already checked): the table, and each set's equity at the bars ``marks_at``."""
    from tqdm.auto import tqdm

    exits: dict[str, Any] = {"stop_loss": stop_loss, "take_profit": take_profit, "trailing_stop": trailing_stop,
                             "exit_after": exit_after, "size": size}
    if _fused(engine, direction):
        check_costs(fees=fees, slippage=slippage, fill=fill, direction=direction)
        check_exits(**exits)
        return fused_sets(ohlcv, strategy, combos, fees=fees, slippage=slippage, fill=fill, init_cash=init_cash,
                          chunk_size=chunk_size, memory_budget_gb=memory_budget_gb, progress=progress,
                          marks_at=marks_at, **exits)
    fn = get(strategy)
    if chunk_size is None:
        chunk_size = max(1, min(200, int(memory_budget_gb * 1e9 / (len(ohlcv) * 8 * _MATRICES_PER_SET))))
    ppy = periods_per_year(ohlcv.index)
    shift = fill == "next_open"
    rows: list[dict[str, Any]] = []
    marks = np.empty((len(combos), len(marks_at)))
    bar = tqdm(total=len(combos), desc=f"sweep {strategy}", unit="set", disable=not progress)
    # Sweeps need numbers only: a RangeIndex spares vectorbt converting a tz-aware
    # DatetimeIndex to Python objects on every check and wrap (most of the time otherwise).
    plain = ohlcv[["Open", "High", "Low", "Close", "Volume"]].reset_index(drop=True)
    try:
        for lo in range(0, len(combos), chunk_size):
            chunk = combos[lo : lo + chunk_size]
            n = len(ohlcv)
            names = ("entries", "exits", "short_entries", "short_exits")
            orders = {k: np.zeros((n, len(chunk)), dtype=bool) for k in names}
            per_combo = (
                tuple(sig[c].to_numpy(dtype=bool) for c in ("entry", "exit", "short_entry", "short_exit"))
                for sig in (fn(ohlcv, **params) for params in chunk)
            )
            for j, arrays in enumerate(per_combo):
                for arg, values in zip(names, arrays, strict=True):
                    if shift:
                        orders[arg][1:, j] = values[:-1]
                    else:
                        orders[arg][:, j] = values
            pf = simulate(plain, orders, fees=fees, slippage=slippage, fill=fill, direction=direction, init_cash=init_cash,
                          **exits)
            values = pf.value().to_numpy()
            marks[lo : lo + len(chunk)] = values[marks_at].T
            stats = _column_stats(values, ppy)
            closed = pf.trades.closed
            counts = np.atleast_1d(np.asarray(closed.count())).ravel()
            col_idx = closed.records["col"]
            wins = np.bincount(col_idx[closed.records["pnl"] > 0], minlength=len(chunk))
            for j, params in enumerate(chunk):
                n_trades = int(counts[j])
                rows.append({
                    **params,
                    "total_return": float(stats["total_return"][j]),
                    "n_trades": n_trades,
                    "win_rate": wins[j] / n_trades if n_trades else float("nan"),
                    "sharpe": float(stats["sharpe"][j]),
                    "max_drawdown": float(stats["max_drawdown"][j]),
                })
            bar.update(len(chunk))
    finally:
        bar.close()
    return pd.DataFrame(rows), marks


def _fused(engine: str, direction: str) -> bool:
    """Whether a sweep runs in the fused kernel: long-only, unless vectorbt is asked for."""
    return engine == "auto" and direction == "longonly"
