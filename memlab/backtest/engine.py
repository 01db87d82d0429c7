"""Backtest one strategy on one market with vectorbt's Portfolio.

Signals are decided at a bar's close. By default they fill at the **next bar's open**
(no look-ahead); ``fill="close"`` fills at the signal bar's close instead. Fees and
slippage are fractions of traded value (0.001 = 0.1 %); by default
:data:`memlab.costs.DEFAULT_COSTS`, the costs every layer charges. A fill model (a spread
from the bar's range, order latency, a maker fee) is off by default: see "Fill model".

The bars get the same checks as :func:`memlab.data.load_ohlcv` whichever way they come
in (see :func:`memlab.data.require_ohlcv`): NaN or infinite prices, unsorted or duplicate
times, a naive index, High below Low are refused naming the column and the first bad
timestamp; lowercase ``open``…``volume`` columns are taken as ``Open``…``Volume``.

Exits and sizing
----------------
``stop_loss``, ``take_profit`` and ``trailing_stop`` are fractions in (0, 1);
``exit_after=N`` closes a position N bars after its entry; ``size`` is the fraction of
equity an entry spends (1.0, all in, by default). All are off by default. They follow the
paper broker's rules (:mod:`memlab.connectors.paper_broker`), so a paper session with a
stop-loss and a take-profit reconciles with its backtest to 1e-9
(:func:`memlab.trader.reconcile_with_backtest`):

- **Levels.** A stop is measured from the entry's reference price: the close of the bar
  whose signal made the entry, the last price known when the order and its stop-loss /
  take-profit children are sent (with ``fill="close"``, the entry's own price). The
  stop-loss sits at ``reference * (1 - stop_loss)``, the take-profit at
  ``reference * (1 + take_profit)``, the trailing stop at ``(1 - trailing_stop)`` times
  the highest of the reference and the highs of the bars since. An entry that gaps away
  from the reference keeps these levels. In vectorbt: ``stop_entry_price="valprice"``
  with ``val_price=-inf``, which values each bar at the previous close.
- **Fills.** Stops are watched from the bar after the entry. A bar that trades through a
  level fills at the level; a bar that opens beyond it (a gap) fills at its open. This
  is vectorbt's own stop price (``get_stop_price_nb``). A bar that touches both levels
  fills the stop-loss (the paper broker checks it first too).
- **Slippage.** A stop-loss is a stop order: once triggered it sells at market, and
  slippage applies. A take-profit is a limit order: no slippage. vectorbt has one
  ``stop_exit_price`` for both, so the take-profit callback picks it at each bar:
  ``"stopmarket"`` where the stop-loss is hit, ``"stoplimit"`` where the take-profit is.
- **Market exits come first.** The strategy's exit and ``exit_after``'s are market
  orders, filled at the next bar's open, before any price inside that bar: the paper
  trader cancels the stops when it sends the exit. vectorbt checks stops before signals,
  so the stop callbacks switch the stops off at that bar. With ``fill="close"`` the exit
  fills at the close, after the stops, and vectorbt's order applies as it is.
- **exit_after.** vectorbt's ``from_signals`` has no time exit, and a mask computed from
  the entry signals cannot make one (when a position opens depends on the stops that
  closed the one before). A signal function exits the position at the bar N bars after
  its entry bar (vectorbt's ``init_i``, which the stop callback passes on): a market exit
  at the open of bar ``e + N`` for an entry at the open of bar ``e`` (at the close with
  ``fill="close"``). It needs the entry's bar only, never a later price.
- **size** below 1 spends that fraction of the cash at each entry, fees included
  (vectorbt's ``size_type="percent"``); flat, the cash is the equity. A position cannot
  be reversed by a fraction, so it needs ``direction="longonly"``.

The settings are checked by :func:`memlab.exits.check_exits`, which the paper trader shares.

Fill model
----------
``fill_model=`` (:class:`memlab.fills.FillModel`, off by default) applies the paper
broker's fill rules, so a paper session with them reconciles with its backtest to 1e-9:

- **Spread from the bar's range** (``range_spread=k``): vectorbt's ``slippage`` becomes a
  per-bar array, the fixed ``slippage`` plus ``k/2 x (High - Low) / Close`` of the bar
  **before** each bar (:func:`memlab.fills.slippage_per_bar`): a fill at bar ``t``'s open,
  or a stop-loss inside bar ``t``, never sees bar ``t``'s range. A take-profit pays none.
- **Latency** (``latency=N`` bars, long-only, ``fill="next_open"``): the signals move
  ``1 + N`` bars instead of 1, and the stops' reference is the close ``1 + N`` bars before
  the entry's fill (``val_price``, the close the order was sent at). It always runs the
  callbacks, which resolve each signal against the position held when it was **sent**,
  as the paper trader does: an exit for a position whose entry was still on its way is
  not sent, nor is an entry while the position's exit was on its way; an exit cancels the
  stops when it is sent, ``N`` bars before it fills; ``exit_after`` sends its exit after
  ``exit_after`` bars, so it fills ``N`` bars later.
- **Maker fee** (``maker_fees``): a take-profit is a resting limit order: the take-profit
  callback writes the maker fee into vectorbt's per-bar ``fees`` array at the bar it
  fills; entries, market exits and stop-losses pay ``fees`` (taker).
- **Volume cap**: refused (partial fills over several bars are the paper broker's only).

>>> from memlab.data import sample
>>> result = run(sample("GOOG"), "sma_cross", {"fast": 10, "slow": 30}, stop_loss=0.05, take_profit=0.1)
>>> result.stats["n_trades"] > 0
True
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from memlab.costs import DEFAULT_COSTS, CostModel
from memlab.data.validate import check_values, require_ohlcv
from memlab.errors import InvalidInputError
from memlab.exits import check_exits
from memlab.fills import NO_FILL_MODEL, FillModel, check_backtest_fill, slippage_per_bar
from memlab.strategies import check_params, get, load_params

Fill = Literal["next_open", "close"]
Direction = Literal["longonly", "both"]


@dataclass
class BacktestResult:
    """What a backtest produced: headline ``stats``, the ``trades``, the ``equity`` curve."""

    strategy: str
    params: dict[str, Any]
    stats: dict[str, float]
    trades: pd.DataFrame
    equity: pd.Series
    signals: pd.DataFrame
    portfolio: Any = field(repr=False)

    @property
    def drawdown(self) -> pd.Series:
        """Drawdown from the running peak, as a negative fraction."""
        return self.equity / self.equity.cummax() - 1.0

    def figure(self):  # type: ignore[no-untyped-def]
        """Plotly figure: equity curve above, drawdown below."""
        from memlab.backtest.figures import equity_figure

        return equity_figure(self.equity, title=f"{self.strategy} {self.params}")


def periods_per_year(index: pd.DatetimeIndex) -> float:
    """Bars per year implied by the median spacing (for annualising Sharpe)."""
    if len(index) < 2:
        return 252.0
    spacing = float(np.median(np.diff(index.as_unit("ns").asi8))) / 1e9
    if abs(spacing - 86400) < 1:
        weekdays_only = not (index.day_of_week >= 5).any()
        return 252.0 if weekdays_only else 365.0
    return 365.25 * 86400 / spacing


def _freq(index: pd.Index) -> pd.Timedelta:
    if isinstance(index, pd.DatetimeIndex):
        return pd.Timedelta(seconds=365.25 * 86400 / periods_per_year(index))
    return pd.Timedelta(days=1)  # a RangeIndex (sweeps): annualisation is done by the caller


def _orders(signals: pd.DataFrame, fill: Fill, latency: int = 0) -> dict[str, pd.DataFrame | pd.Series]:
    cols = {"entries": "entry", "exits": "exit", "short_entries": "short_entry", "short_exits": "short_exit"}
    out = {}
    for arg, col in cols.items():
        s = signals[col].astype(bool)
        out[arg] = s.shift(1 + latency, fill_value=False) if fill == "next_open" else s
    return out


def _delay(orders: dict[str, Any], latency: int) -> dict[str, Any]:
    """Prepared (already next-open) orders as 2-D or 1-D arrays, ``latency`` bars later."""
    if not latency:
        return orders
    out = {}
    for name, value in orders.items():
        a = np.asarray(value, dtype=bool)
        shifted = np.zeros_like(a)
        shifted[latency:] = a[:-latency]
        out[name] = shifted
    return out


def entries_first(entries: np.ndarray) -> np.ndarray:
    """vectorbt's call sequence for a group on shared cash: at each row the columns with an
    entry first, then the others, each in column order.

    >>> entries_first(np.array([[False, True, False], [True, False, True]])).tolist()
    [[1, 0, 2], [0, 2, 1]]
    """
    return np.argsort(~entries, axis=1, kind="stable").astype(np.int64)


def check_costs(*, fees: float, slippage: float, fill: str, direction: str) -> None:
    """Refuse settings no backtest can use, naming the one that is wrong."""
    if fill not in ("next_open", "close"):
        raise InvalidInputError(f"fill must be 'next_open' or 'close', not {fill!r}")
    if direction not in ("longonly", "both"):
        raise InvalidInputError(f"direction must be 'longonly' or 'both', not {direction!r}")
    CostModel(fees=fees, slippage=slippage)  # refuses either outside [0, 1), naming it


@functools.cache
def _exit_kernels() -> tuple[Any, Any, Any]:
    """The three callbacks vectorbt's ``from_signals`` runs at every bar when exits are set
    (compiled with the simulation, on first use: numba is imported only then)."""
    from numba import njit
    from vectorbt.base.reshape_fns import flex_select_auto_nb as at
    from vectorbt.portfolio.enums import StopExitPrice
    from vectorbt.portfolio.nb import get_stop_price_nb

    @njit
    def market_exit_nb(i, col, position, init_i, closes_long, closes_short, exit_after, latency, flex_2d):  # type: ignore[no-untyped-def]
        # A market order that closes the position at this bar's open comes before any
        # price inside the bar, so it cancels the stops (as the paper trader cancels them
        # when it sends the exit). With latency the exit filling at bar j was sent at the
        # close of bar j - 1 - latency: the stops are off from the bar after that, if the
        # position was held then (the trader sends no exit for an entry still on its way).
        last = closes_long.shape[0] - 1
        for j in range(i, min(i + latency, last) + 1):
            if j - 1 - latency < init_i:
                continue
            if position > 0 and at(closes_long, j, col, flex_2d):
                return True
            if position < 0 and at(closes_short, j, col, flex_2d):
                return True
        return exit_after > 0 and position != 0 and i - init_i >= exit_after

    @njit
    def signal_nb(c, long_entries, long_exits, short_entries, short_exits, entry_bar, exit_after, latency,  # type: ignore[no-untyped-def]
                  exit_bar):
        le = at(long_entries, c.i, c.col, c.flex_2d)
        lx = at(long_exits, c.i, c.col, c.flex_2d)
        se = at(short_entries, c.i, c.col, c.flex_2d)
        sx = at(short_exits, c.i, c.col, c.flex_2d)
        if exit_after > 0 and c.position_now != 0 and c.i - entry_bar[c.col] >= exit_after + latency:
            if c.position_now > 0:
                return False, True, se, sx
            return le, lx, False, True
        if latency > 0:
            # The signal filling now was decided at the close of bar i - 1 - latency, on the
            # position the paper trader held then: an exit for a position opened since (its
            # entry was still on its way) and an entry while the position closed since was
            # still held are not sent.
            if c.position_now != 0 and entry_bar[c.col] >= c.i - latency:
                lx = sx = False
            if c.position_now == 0 and exit_bar[c.col] >= c.i - latency:
                le = se = False
        return le, lx, se, sx

    @njit
    def adjust_sl_nb(c, sl_stop, sl_trail, closes_long, closes_short, exit_after, latency, flex_2d, entry_bar,  # type: ignore[no-untyped-def]
                     sl_now, exit_bar, held):
        entry_bar[c.col] = c.init_i  # for signal_nb, called later at this bar
        if held[c.col] != 0 and c.position_now == 0:
            exit_bar[c.col] = c.i - 1  # the bar that closed the position (a stop or an order)
        held[c.col] = c.position_now
        stop = sl_stop
        if market_exit_nb(c.i, c.col, c.position_now, c.init_i, closes_long, closes_short, exit_after, latency, flex_2d):
            stop = np.nan
        sl_now[c.col, 0] = c.curr_price
        sl_now[c.col, 1] = stop
        return stop, sl_trail

    @njit
    def adjust_tp_nb(c, tp_stop, closes_long, closes_short, exit_after, latency, flex_2d, sl_now,  # type: ignore[no-untyped-def]
                     open_, high, low, stop_exit_price, fees, maker):
        stop = tp_stop
        if market_exit_nb(c.i, c.col, c.position_now, c.init_i, closes_long, closes_short, exit_after, latency, flex_2d):
            stop = np.nan
        # vectorbt reads stop_exit_price after this call: a stop-loss hit at this bar fills
        # as a stop-market order (slippage applies), a take-profit as a limit (none).
        kind = StopExitPrice.StopMarket
        if c.position_now != 0 and not np.isnan(stop):
            o, h, lo = at(open_, c.i, c.col, flex_2d), at(high, c.i, c.col, flex_2d), at(low, c.i, c.col, flex_2d)
            sl_hit = np.nan
            if not np.isnan(sl_now[c.col, 1]):
                sl_hit = get_stop_price_nb(c.position_now, sl_now[c.col, 0], sl_now[c.col, 1], o, lo, h, True)
            if np.isnan(sl_hit) and not np.isnan(get_stop_price_nb(c.position_now, c.init_price, stop, o, lo, h, False)):
                kind = StopExitPrice.StopLimit
        if stop_exit_price.ndim == 1:
            stop_exit_price[c.i] = kind
        else:
            stop_exit_price[c.i, c.col] = kind
        if kind == StopExitPrice.StopLimit and maker >= 0:
            # A take-profit is a resting limit order: it pays the maker fee at this bar.
            if fees.ndim == 1:
                fees[c.i] = maker
            else:
                fees[c.i, c.col] = maker
        return stop

    return signal_nb, adjust_sl_nb, adjust_tp_nb


def _closing(le: np.ndarray, lx: np.ndarray, se: np.ndarray, sx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the signals close a long / a short position, as vectorbt resolves them with
    ``upon_*_conflict="ignore"`` and ``upon_opposite_entry="reverse"``: an entry and an exit
    of one side at the same bar cancel, so do a long and a short entry."""
    le, lx = le & ~(le & lx), lx & ~(le & lx)
    se, sx = se & ~(se & sx), sx & ~(se & sx)
    both = le & se
    le, se = le & ~both, se & ~both
    return lx | se, sx | le


def simulate(
    ohlcv: pd.DataFrame,
    signals: pd.DataFrame | dict[str, Any],
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
    fill_model: FillModel = NO_FILL_MODEL,
    cash_sharing: bool = False,
) -> Any:
    """The vectorbt Portfolio for prepared signals (1-D frame or 2-D arrays per column).

    ``ohlcv``'s prices are checked here too (NaN, inf, non-positive, High below Low), so
    every window a caller cuts is refused the same way; its index is the caller's. The
    exits, ``size`` and ``fill_model`` are :func:`run`'s; without exits or latency this is
    vectorbt's plain signal simulation, with them the callbacks of the module docstring.
    Prepared 2-D orders are already next-open orders: latency delays them further.
    ``cash_sharing``: the columns are markets on one cash balance (``ohlcv`` a panel with
    ``(field, symbol)`` columns; see :mod:`memlab.backtest.portfolio`)."""
    import vectorbt as vbt

    check_costs(fees=fees, slippage=slippage, fill=fill, direction=direction)
    if not isinstance(fill_model, FillModel):
        raise InvalidInputError(f"fill_model is a memlab.fills.FillModel, got {fill_model!r}")
    check_backtest_fill(fill_model, direction=direction, fill=fill)
    check_exits(stop_loss=stop_loss, take_profit=take_profit, trailing_stop=trailing_stop,
                exit_after=exit_after, size=size)
    if size < 1 and direction == "both":
        raise InvalidInputError(f"size below 1 needs direction='longonly' (vectorbt cannot reverse a position "
                                f"by a fraction of equity), got size={size!r} with direction='both'")
    if not isinstance(init_cash, (int, float, np.number)) or not 0 < init_cash < np.inf:
        raise InvalidInputError(f"init_cash must be a positive, finite amount, got {init_cash!r}")
    if cash_sharing:
        for symbol in ohlcv["Close"].columns:
            check_values(ohlcv.xs(symbol, axis=1, level=1), source=str(symbol))
    else:
        check_values(ohlcv, source=str(ohlcv.attrs.get("source") or "ohlcv"))
    latency = fill_model.latency
    orders = _orders(signals, fill, latency) if isinstance(signals, pd.DataFrame) else _delay(signals, latency)
    price = ohlcv["Open"] if fill == "next_open" else ohlcv["Close"]
    slip = slippage_per_bar(ohlcv, slippage, fill_model)  # the spread from the bar before each fill
    common: dict[str, Any] = {
        "fees": fees, "slippage": slip if np.ndim(slip) == 0 else pd.Series(slip, index=ohlcv.index),
        "init_cash": init_cash, "upon_opposite_entry": "reverse", "freq": _freq(ohlcv.index),
        **({"size": np.inf} if size >= 1 else {"size": float(size), "size_type": "percent"}),
    }
    if cash_sharing:
        # One cash balance; at each bar the entries go first, in column order, as the paper
        # trader sizes them at the close before (each on the cash the ones before left free).
        common.update(group_by=True, cash_sharing=True, size=float(min(size, 1.0)), size_type="percent",
                      call_seq=entries_first(np.asarray(orders["entries"], dtype=bool)))
    if stop_loss is None and take_profit is None and trailing_stop is None and exit_after is None and not latency:
        kwargs: dict[str, Any] = {"entries": orders["entries"], "exits": orders["exits"]}
        if direction == "both":
            kwargs.update(short_entries=orders["short_entries"], short_exits=orders["short_exits"])
        return vbt.Portfolio.from_signals(
            ohlcv["Close"], price=price, **({} if direction == "both" else {"direction": "longonly"}),
            **common, **kwargs,
        )

    def arr(name: str) -> np.ndarray:
        return np.asarray(orders[name], dtype=bool)

    le, lx = arr("entries"), arr("exits")
    se, sx = (arr("short_entries"), arr("short_exits")) if direction == "both" else (np.zeros_like(le),) * 2
    if fill == "next_open":
        closes_long, closes_short = _closing(le, lx, se, sx)
    else:  # filled at the close: a stop touched inside the bar came first
        closes_long = closes_short = np.zeros_like(le)
    n_cols = le.shape[1] if le.ndim == 2 else 1
    entry_bar = np.full(n_cols, -1, dtype=np.int64)
    exit_bar = np.full(n_cols, -(10**9), dtype=np.int64)  # the bar that last closed a position
    held = np.zeros(n_cols)
    sl_now = np.full((n_cols, 2), np.nan)
    lat = latency if fill == "next_open" else 0
    maker = fill_model.maker(fees)
    # A take-profit pays the maker fee: the callback writes it into this (full-shape) array.
    fees_at: float | np.ndarray = np.full(le.shape, float(fees)) if maker != fees and take_profit is not None else fees
    if fill == "next_open" and lat:
        # The stops' reference is the close the entry was decided at, 1 + latency bars before its fill.
        val_price: Any = ohlcv["Close"].shift(1 + lat)
    else:
        val_price = -np.inf if fill == "next_open" else np.inf
    after = int(exit_after or 0)
    sl = float(stop_loss if stop_loss is not None else trailing_stop if trailing_stop is not None else np.nan)
    tp = float(take_profit if take_profit is not None else np.nan)
    signal_nb, adjust_sl_nb, adjust_tp_nb = _exit_kernels()
    rep = vbt.Rep
    common["fees"] = fees_at
    return vbt.Portfolio.from_signals(
        ohlcv["Close"], price=price, open=ohlcv["Open"], high=ohlcv["High"], low=ohlcv["Low"], **common,
        signal_func_nb=signal_nb,
        signal_args=(rep("long_entries"), rep("long_exits"), rep("short_entries"), rep("short_exits"),
                     entry_bar, after, lat, exit_bar),
        broadcast_named_args={"long_entries": le, "long_exits": lx, "short_entries": se, "short_exits": sx,
                              "closes_long": closes_long, "closes_short": closes_short},
        sl_stop=sl, sl_trail=trailing_stop is not None, tp_stop=tp, use_stops=True,
        # The stops' reference: the close the entry was decided at.
        stop_entry_price="valprice" if fill == "next_open" else "close",
        val_price=val_price,
        stop_exit_price=np.full(le.shape, vbt.portfolio.enums.StopExitPrice.StopMarket, dtype=np.int64),
        adjust_sl_func_nb=adjust_sl_nb,
        adjust_sl_args=(sl, trailing_stop is not None, rep("closes_long"), rep("closes_short"),
                        after if fill == "next_open" else 0, lat, rep("flex_2d"), entry_bar, sl_now, exit_bar, held),
        adjust_tp_func_nb=adjust_tp_nb,
        adjust_tp_args=(tp, rep("closes_long"), rep("closes_short"), after if fill == "next_open" else 0, lat,
                        rep("flex_2d"), sl_now, rep("open"), rep("high"), rep("low"), rep("stop_exit_price"),
                        rep("fees") if isinstance(fees_at, np.ndarray) else np.zeros(1),
                        maker if isinstance(fees_at, np.ndarray) else -1.0),
    )


def portfolio_stats(pf: Any, ppy: float) -> dict[str, float]:
    """Headline numbers: total_return and max_drawdown as fractions (drawdown positive),
    n_trades (closed), win_rate (0-1, NaN without trades), annualised sharpe."""
    value = pf.value()
    returns = value.pct_change().dropna()
    std = returns.std()
    sharpe = float(returns.mean() / std * np.sqrt(ppy)) if std > 0 else float("nan")
    trades = pf.trades
    closed = trades.closed
    n = int(closed.count())
    wins = int((closed.pnl.values > 0).sum()) if n else 0
    return {
        "total_return": float(value.iloc[-1] / value.iloc[0] - 1.0),
        "n_trades": n,
        "win_rate": wins / n if n else float("nan"),
        "sharpe": sharpe,
        "max_drawdown": float(-(value / value.cummax() - 1.0).min()),
        "final_value": float(value.iloc[-1]),
        "open_trade": bool(trades.open.count() > 0),
    }


def trades_frame(pf: Any) -> pd.DataFrame:
    """One row per trade: entry/exit time and price, size, direction, pnl, return, status."""
    records = pf.trades.records_readable
    if not len(records):
        return pd.DataFrame(columns=["entry_time", "exit_time", "entry_price", "exit_price", "size",
                                     "direction", "pnl", "return_pct", "status"])
    out = pd.DataFrame({
        "entry_time": pd.to_datetime(records["Entry Timestamp"], utc=True),
        "exit_time": pd.to_datetime(records["Exit Timestamp"], utc=True),
        "entry_price": records["Avg Entry Price"].astype(float),
        "exit_price": records["Avg Exit Price"].astype(float),
        "size": records["Size"].astype(float),
        "direction": records["Direction"].astype(str),
        "pnl": records["PnL"].astype(float),
        "return_pct": records["Return"].astype(float) * 100.0,
        "status": records["Status"].astype(str),
    })
    return out.reset_index(drop=True)


def run(
    ohlcv: pd.DataFrame,
    strategy: str,
    params: Mapping[str, Any] | None = None,
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
    fill_model: FillModel = NO_FILL_MODEL,
) -> BacktestResult:
    """Backtest ``strategy`` on ``ohlcv``; parameters default to ``params/``.

    >>> from memlab.data import sample
    >>> result = run(sample("GOOG"), "sma_cross", {"fast": 10, "slow": 30}, fees=0.001)
    >>> sorted(result.stats)[:4]
    ['final_value', 'max_drawdown', 'n_trades', 'open_trade']

    Args:
        ohlcv: bars (a frame, checked by :func:`memlab.data.require_ohlcv`).
        strategy: a registered strategy's name; ``params`` override its stored parameters.
        fees, slippage: fractions of traded value in [0, 1).
        fill: ``"next_open"`` (default) or ``"close"``: when a signal's market order fills.
        direction: ``"longonly"`` or ``"both"`` (shorts allowed).
        init_cash: starting cash.
        stop_loss, take_profit, trailing_stop: fractions in (0, 1) below / above the
            entry's reference price (see the module docstring); at most one of
            ``stop_loss`` and ``trailing_stop``.
        exit_after: close a position this many bars after its entry (>= 1).
        size: fraction of equity each entry spends, in (0, 1].
        fill_model: the bar-range spread, order latency and maker fee
            (:class:`memlab.fills.FillModel`; the module docstring's "Fill model"). Off by
            default. Its volume cap is the paper broker's only: refused here.

    Raises:
        DataValidationError: ``ohlcv`` fails a check of :func:`memlab.data.require_ohlcv`.
        InvalidInputError: an unknown parameter, fees/slippage outside [0, 1), an exit
            or size outside its range (:func:`check_exits`), or a fill model the backtest
            does not simulate (a volume cap; latency with shorts or ``fill="close"``).
    """
    check_costs(fees=fees, slippage=slippage, fill=fill, direction=direction)
    check_exits(stop_loss=stop_loss, take_profit=take_profit, trailing_stop=trailing_stop,
                exit_after=exit_after, size=size)
    if not isinstance(fill_model, FillModel):
        raise InvalidInputError(f"fill_model is a memlab.fills.FillModel, got {fill_model!r}")
    check_backtest_fill(fill_model, direction=direction, fill=fill)
    ohlcv = require_ohlcv(ohlcv)
    chosen = check_params(strategy, {**load_params(strategy, ohlcv.attrs.get("symbol")), **(params or {})})
    signals = get(strategy)(ohlcv, **chosen)
    pf = simulate(ohlcv, signals, fees=fees, slippage=slippage, fill=fill, direction=direction, init_cash=init_cash,
                  stop_loss=stop_loss, take_profit=take_profit, trailing_stop=trailing_stop, exit_after=exit_after,
                  size=size, fill_model=fill_model)
    return BacktestResult(
        strategy=strategy, params=chosen, stats=portfolio_stats(pf, periods_per_year(ohlcv.index)),
        trades=trades_frame(pf), equity=pf.value().rename("equity"), signals=signals, portfolio=pf,
    )
