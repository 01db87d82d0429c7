"""Portfolios: several markets traded by one strategy on one cash balance.

A paper session of several symbols (``memlab paper --symbol BTC/USDT,ETH/USDT,SOL/USDT``)
trades them on shared cash; :func:`run_portfolio` is its backtest, on vectorbt's cash
sharing, with the trader's rules, so the two reconcile
(:func:`memlab.trader.reconcile_with_backtest`):

- **One cash balance, one equity curve.** At each bar every market's fills come first
  (market orders at the open, then stops inside the bar, in the given symbol order),
  then every signal at the close.
- **Sizing.** An entry spends ``size`` of the cash free at its signal's close: the cash
  after that bar's fills, less what the entries sent before it at that close hold
  (earlier symbols first). In vectorbt: ``size_type="percent"`` with a call sequence
  that puts each bar's entries first, in symbol order
  (:func:`memlab.backtest.engine.entries_first`). With ``size=1`` the first entry takes
  all the cash and the others wait for some to come free; ``size=1/n`` spreads it.
- **Exits, fees, slippage** are :func:`memlab.backtest.run`'s, per market.
- Long only (spot markets). The markets must share their bar times: a portfolio whose
  markets have different bars is refused, naming the first time one lacks.

:func:`sweep_portfolio` runs that same portfolio for every set of a grid (one row per
set) and says, as :func:`memlab.backtest.sweep` does, what choosing its best set is
worth (``table.attrs["selection"]``).

The paper trader's exposure limits (``max_position``, ``max_exposure``) have no twin
here; a session that sets them does not reconcile with this and says so.

>>> from memlab.data import synthetic_ohlcv
>>> bars = {s: synthetic_ohlcv(600, freq="1min", seed=k) for k, s in enumerate(["BTC/USDT", "ETH/USDT"])}
>>> result = run_portfolio(bars, "sma_cross", {"fast": 5, "slow": 20}, size=0.5, init_cash=10_000)
>>> result.symbols, len(result.equity) == 600
(('BTC/USDT', 'ETH/USDT'), True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from memlab.backtest.engine import periods_per_year, portfolio_stats, simulate, trades_frame
from memlab.backtest.selection import selection_report
from memlab.costs import DEFAULT_COSTS
from memlab.errors import InvalidInputError

FIELDS = ("Open", "High", "Low", "Close")


@dataclass
class PortfolioResult:
    """What :func:`run_portfolio` produced: vectorbt's grouped Portfolio, the one equity
    curve, headline stats (:func:`memlab.backtest.engine.portfolio_stats`), every trade
    with its ``symbol``, and the bars it ran on (``period``)."""

    pf: Any
    symbols: tuple[str, ...]
    equity: pd.Series
    stats: dict[str, float]
    trades: pd.DataFrame
    period: str

    def __repr__(self) -> str:
        return (f"PortfolioResult({', '.join(self.symbols)}; {self.period}; "
                f"return {self.stats['total_return']:.2%}, {self.stats['n_trades']} trades)")


def panel(bars: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The markets' OHLC as one frame with ``(field, symbol)`` columns; refuses markets
    whose bar times differ, naming the first time one of them lacks."""
    if not bars:
        raise InvalidInputError("a portfolio needs at least one market")
    symbols = list(bars)
    index = bars[symbols[0]].index
    for symbol in symbols[1:]:
        other = bars[symbol].index
        if not other.equals(index):
            missing = index.difference(other)
            extra = other.difference(index)
            where = (f"{symbol} has no bar at {missing[0]}" if len(missing)
                     else f"{symbol} has a bar at {extra[0]} that {symbols[0]} lacks" if len(extra)
                     else f"{symbol}'s bars are in another order")
            raise InvalidInputError(f"portfolio markets must share their bar times: {where} "
                                    f"(cut them to common times first)")
    for symbol, frame in bars.items():
        lacking = [f for f in FIELDS if f not in frame.columns]
        if lacking:
            raise InvalidInputError(f"{symbol}: no {lacking[0]} column")
    return pd.concat({f: pd.DataFrame({s: bars[s][f] for s in symbols}, index=index) for f in FIELDS}, axis=1)


def run_portfolio(
    bars: Mapping[str, pd.DataFrame],
    strategy: str,
    params: Mapping[str, Any] | Mapping[str, Mapping[str, Any]] | None = None,
    *,
    size: float = 1.0,
    fees: float = DEFAULT_COSTS.fees,
    slippage: float = DEFAULT_COSTS.slippage,
    init_cash: float = 100_000.0,
    warmup: int = 0,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    trailing_stop: float | None = None,
    exit_after: int | None = None,
) -> PortfolioResult:
    """Backtest ``strategy`` on every market of ``bars`` (symbol -> OHLCV, one shared bar
    index) on one cash balance of ``init_cash``.

    ``params``: one parameter set for all markets, or one per symbol (symbol -> params,
    as a session's learned per-symbol parameters). Signals are computed on the whole bars
    and traded from bar ``warmup`` on (a paper session's warm-up). Orders fill at the next
    bar's open.

    Raises:
        InvalidInputError: markets with different bar times, an unknown parameter, costs,
            exits or ``size`` out of range, naming the value.
    """
    from memlab.strategies import compute_signals

    frame = panel(bars)
    symbols = tuple(bars)
    if not 0 < size <= 1:
        raise InvalidInputError(f"size is the share of free cash each entry spends, in (0, 1], got {size!r}")
    if not isinstance(warmup, int) or not 0 <= warmup < len(frame):
        raise InvalidInputError(f"warmup must be a whole number of bars in [0, {len(frame)}), got {warmup!r}")
    per_symbol = params is not None and set(params) == set(symbols) and all(isinstance(v, Mapping) for v in params.values())
    signals = {s: compute_signals(strategy, bars[s], dict(params[s] if per_symbol else params or {}))  # type: ignore[arg-type,index]
               for s in symbols}
    traded = frame.iloc[warmup:]
    orders = {}
    for arg, col in (("entries", "entry"), ("exits", "exit")):
        raw = np.column_stack([signals[s][col].to_numpy(bool)[warmup:] for s in symbols])
        shifted = np.zeros_like(raw)
        shifted[1:] = raw[:-1]  # decided at a close, filled at the next open
        orders[arg] = shifted
    pf = simulate(traded, orders, fees=fees, slippage=slippage, init_cash=init_cash, size=size,
                  stop_loss=stop_loss, take_profit=take_profit, trailing_stop=trailing_stop, exit_after=exit_after,
                  cash_sharing=True)
    equity = pf.value()
    stats = portfolio_stats(pf, periods_per_year(traded.index))
    trades = trades_frame(pf)
    if len(trades):
        columns = pf.trades.records_readable["Column"].to_numpy()
        trades.insert(0, "symbol", [symbols[c] if isinstance(c, (int, np.integer)) else c for c in columns])
    period = f"{traded.index[0]} to {traded.index[-1]} ({len(traded):,} bars x {len(symbols)} markets)"
    return PortfolioResult(pf, symbols, equity, stats, trades, period)


#: The columns of :func:`sweep_portfolio`'s table after the parameters (:func:`memlab.backtest.sweep`'s).
SWEEP_STATS = ("total_return", "n_trades", "win_rate", "sharpe", "max_drawdown")


def sweep_portfolio(
    bars: Mapping[str, pd.DataFrame],
    strategy: str,
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    *,
    progress: bool = True,
    skip_invalid: bool = True,
    selection: bool = True,
    selection_draws: int = 1000,
    selection_seed: int = 0,
    **options: Any,
) -> pd.DataFrame:
    """The portfolio of :func:`run_portfolio` for every parameter set of ``grid`` (one set for
    all markets); one row per set, with :data:`SWEEP_STATS` of the one equity curve.

    ``options`` are :func:`run_portfolio`'s (``size``, costs, ``init_cash``, ``warmup``,
    exits), the same for every set. Sets the strategy refuses are skipped when
    ``skip_invalid``. ``table.attrs["period"]`` names the bars and markets it ran on, and
    ``table.attrs["selection"]`` is the
    :class:`~memlab.backtest.selection.SelectionReport` of choosing the set with the best
    Sharpe ratio (deflated Sharpe, PBO and SPA over equal sub-periods of the portfolio's
    equity; ``selection=False`` skips it).

    >>> from memlab.data import synthetic_ohlcv
    >>> bars = {s: synthetic_ohlcv(800, freq="1min", seed=k) for k, s in enumerate(["BTC/USDT", "ETH/USDT"])}
    >>> table = sweep_portfolio(bars, "sma_cross", {"fast": [5, 10], "slow": [20, 40]}, size=0.5, progress=False)
    >>> len(table), list(table.columns[:3]), table.attrs["selection"].n_trials
    (4, ['fast', 'slow', 'total_return'], 4)
    """
    from tqdm.auto import tqdm

    from memlab.backtest.sweep import PBO_BLOCKS, expand_grid, subperiod_edges, valid_sets
    from memlab.strategies import check_grid

    check_grid(strategy, grid)
    frame = panel(bars)  # refuses mismatched markets before any set runs
    combos = valid_sets(strategy, expand_grid(grid), bars[next(iter(bars))], skip_invalid=skip_invalid)

    def one(params: Mapping[str, Any]) -> PortfolioResult:
        return run_portfolio(bars, strategy, params, **options)

    rows, marks = [], []
    edges: np.ndarray | None = None
    period = ""
    for params in tqdm(combos, desc=f"portfolio sweep {strategy} ({len(bars)} markets)", disable=not progress):
        result = one(params)
        rows.append({**params, **{k: result.stats[k] for k in SWEEP_STATS}})
        equity = result.equity.to_numpy(np.float64)
        if edges is None:
            edges = subperiod_edges(len(equity)) if selection else np.empty(0, dtype=np.int64)
            period = result.period
        marks.append(equity[edges])
    table = pd.DataFrame(rows)
    table.attrs["period"] = period
    if selection:
        traded = frame.index[int(options.get("warmup", 0)):]
        mark = np.vstack(marks)
        sub = None
        if mark.shape[1] > 1:
            with np.errstate(divide="ignore", invalid="ignore"):
                sub = (mark[:, 1:] / mark[:, :-1] - 1.0).T

        def bar_returns(i: int) -> np.ndarray:  # the chosen set again, its equity at every bar
            equity = one(combos[i]).equity.to_numpy(np.float64)
            return np.diff(equity) / equity[:-1]

        table.attrs["selection"] = selection_report(
            combos, table["sharpe"].to_numpy(np.float64), bar_returns, sub, index=traded,
            periods_per_year=periods_per_year(traded), n_blocks=PBO_BLOCKS, draws=selection_draws,
            seed=selection_seed)
    return table
