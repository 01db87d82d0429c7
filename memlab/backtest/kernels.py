"""The fused sweep kernel: signal rules, fills, exits and statistics in one numba pass.

vectorbt's general simulation costs tens of nanoseconds per bar and set and keeps
bar-by-set matrices and order records; a sweep of thousands of sets over a year of
minute bars needs a few and no more memory than its inputs. This kernel
simulates long-only parameter sets in parallel from compiled signal rules
(:mod:`memlab.backtest.rules`): each set's entry and exit are ORs of ANDs of terms such
as "line a above line b", "line a crossed above a number" or "flag row r is set", read
from a matrix of indicator lines computed once per sweep. It reproduces vectorbt's
``from_signals`` (as :func:`memlab.backtest.engine.simulate` calls it) exactly: all-in or
fractional sizing ``spend / (1 + fees) / price``, slippage on market fills, an entry and
an exit at the same bar ignored, stops from each bar's open, high and low. Tests hold it
to vectorbt set by set.

It walks each set from event to event rather than bar by bar: a tight scan finds the
next bar where the entry (when flat) or the exit or a stop (when holding) fires, and the
bars in between are accounted at once. An all-in position's equity is units times the
close, so its bar returns are the close's, summed from prefix sums; only its drawdown
and the marks need the bars themselves. Sets run in groups, one thread per group; a
group walks the bars in blocks, every set of it advancing through a block while the
block's prices and lines are in cache. Each set's equity is recorded at chosen bars
(``marks_at``): the sub-period returns the selection statistics of
:mod:`memlab.backtest.selection` need, without a bars-by-sets matrix.
"""

from __future__ import annotations

import numba
import numpy as np

#: Term operators (``terms[u, 0]``): compare line ``a`` with line ``b`` (or the term's
#: constant when ``b < 0``), or read flag row ``a``.
GT, GE, LT, LE, CROSSED_ABOVE, CROSSED_BELOW, FLAG = 0, 1, 2, 3, 4, 5, 6
#: Signals per set (``signals[j, k]``), in the signal frame's order.
ENTRY, EXIT = 0, 1

# Per-set state carried from one block of bars to the next.
_CASH, _UNITS, _COST, _PREV, _PEAK, _MAXDD, _SUM, _SUMSQ, _VALUE0, _REF, _TRAIL = range(11)
_PENDING, _TRADES, _WINS, _MARK, _ENTRY_BAR = range(5)


@numba.njit(inline="always")
def _term_at(op: int, a: int, b: int, c: float, neg: bool, t: int, lines: np.ndarray, flags: np.ndarray) -> bool:
    """Term ``(op, a, b, c, neg)`` at bar ``t`` (``b < 0``: compare with ``c``)."""
    if op == FLAG:
        value = flags[a, t] != 0
    else:
        x = lines[a, t]
        y = c if b < 0 else lines[b, t]
        if op == GT:
            value = x > y
        elif op == GE:
            value = x >= y
        elif op == LT:
            value = x < y
        elif op == LE:
            value = x <= y
        elif t == 0:
            value = False  # a crossing needs the bar before (NaN there in pandas: False)
        else:
            x0 = lines[a, t - 1]
            y0 = c if b < 0 else lines[b, t - 1]
            value = (x > y and x0 <= y0) if op == CROSSED_ABOVE else (x < y and x0 >= y0)
    return value != neg


@numba.njit(inline="always")
def _scan_term(op: int, a: int, b: int, c: float, neg: bool, lo: int, hi: int, lines: np.ndarray,
               flags: np.ndarray) -> int:
    """The first bar in ``[lo, hi)`` where the term holds, else ``hi``. The common terms
    (a line above or below a number, above another line, crossed above another line; the
    rules compiler turns "below" and "crossed below" between lines into these) get a
    tight loop each; the rest are read bar by bar."""
    if not neg and op != FLAG:
        x = lines[a]
        if b < 0 and op == GT:
            for t in range(lo, hi):
                if x[t] > c:
                    return t
            return hi
        if b < 0 and op == LT:
            for t in range(lo, hi):
                if x[t] < c:
                    return t
            return hi
        if b >= 0 and op == GT:
            y = lines[b]
            for t in range(lo, hi):
                if x[t] > y[t]:
                    return t
            return hi
        if b >= 0 and op == CROSSED_ABOVE:
            y = lines[b]
            for t in range(max(lo, 1), hi):
                if x[t] > y[t] and x[t - 1] <= y[t - 1]:
                    return t
            return hi
    for t in range(lo, hi):
        if _term_at(op, a, b, c, neg, t, lines, flags):
            return t
    return hi


@numba.njit(inline="always")
def _signal_at(j: int, k: int, t: int, signals: np.ndarray, clauses: np.ndarray, terms: np.ndarray,
               consts: np.ndarray, lines: np.ndarray, flags: np.ndarray) -> bool:
    """Signal ``k`` of set ``j`` at bar ``t``: any clause whose terms all hold (no clause: never)."""
    for cl in range(signals[j, k, 0], signals[j, k, 1]):
        holds = True
        for u in range(clauses[cl, 0], clauses[cl, 1]):
            if not _term_at(terms[u, 0], terms[u, 1], terms[u, 2], consts[u], terms[u, 3] != 0, t, lines, flags):
                holds = False
                break
        if holds:
            return True
    return False


@numba.njit(inline="always")
def _next_signal(j: int, k: int, lo: int, hi: int, signals: np.ndarray, clauses: np.ndarray, terms: np.ndarray,
                 consts: np.ndarray, lines: np.ndarray, flags: np.ndarray) -> int:
    """The first bar in ``[lo, hi)`` where signal ``k`` of set ``j`` holds and the other one
    (entry or exit) does not: vectorbt ignores an entry and an exit together. Else ``hi``."""
    other = 1 - k
    if signals[j, k, 1] == signals[j, k, 0]:
        return hi  # no clause: never
    if signals[j, k, 1] - signals[j, k, 0] == 1:
        # One clause: scan for its first term, check the rest where it holds.
        u0 = clauses[signals[j, k, 0], 0]
        u1 = clauses[signals[j, k, 0], 1]
        t = lo
        while t < hi:
            t = _scan_term(terms[u0, 0], terms[u0, 1], terms[u0, 2], consts[u0], terms[u0, 3] != 0, t, hi, lines, flags)
            if t >= hi:
                break
            holds = True
            for u in range(u0 + 1, u1):
                if not _term_at(terms[u, 0], terms[u, 1], terms[u, 2], consts[u], terms[u, 3] != 0, t, lines, flags):
                    holds = False
                    break
            if holds and not _signal_at(j, other, t, signals, clauses, terms, consts, lines, flags):
                return t
            t += 1
        return hi
    for t in range(lo, hi):
        if _signal_at(j, k, t, signals, clauses, terms, consts, lines, flags) and not _signal_at(
                j, other, t, signals, clauses, terms, consts, lines, flags):
            return t
    return hi


@numba.njit(inline="always")
def _stop_hit(level: float, open_: float, high: float, low: float, below: bool) -> float:
    """Where a stop at ``level`` fills in this bar: at the open if the bar gapped through it,
    at the level if the bar touched it, else NaN (vectorbt's ``get_stop_price_nb``)."""
    if below:
        if open_ <= level:
            return open_
    elif level <= open_:
        return open_
    if low <= level <= high:
        return level
    return np.nan


@numba.njit(inline="always")
def _next_stop(lo: int, hi: int, open_: np.ndarray, high: np.ndarray, low: np.ndarray, ref: float, trail: float,
               stop_loss: float, trailing_stop: float, take_profit: float) -> tuple[int, float, bool, float]:
    """The first bar in ``[lo, hi)`` where a stop fires (else ``hi``): (bar, fill price, whether
    it is the take-profit, the trailing high after it). The stop-loss is checked before
    the take-profit, the trailing high updated after both (vectorbt's order)."""
    has_sl = not np.isnan(stop_loss)
    has_ts = not np.isnan(trailing_stop)
    has_tp = not np.isnan(take_profit)
    sl_level = ref * (1.0 - stop_loss)
    tp_level = ref * (1.0 + take_profit)
    for t in range(lo, hi):
        o = open_[t]
        h = high[t]
        lo_ = low[t]
        if has_sl:
            fill = _stop_hit(sl_level, o, h, lo_, True)
            if not np.isnan(fill):
                return t, fill, False, max(trail, h)
        if has_ts:
            fill = _stop_hit(trail * (1.0 - trailing_stop), o, h, lo_, True)
            if not np.isnan(fill):
                return t, fill, False, max(trail, h)
        if has_tp:
            fill = _stop_hit(tp_level, o, h, lo_, False)
            if not np.isnan(fill):
                return t, fill, True, max(trail, h)
        if has_ts and h > trail:
            trail = h
    return hi, np.nan, False, trail


@numba.njit(inline="always")
def _buy(cash: float, price: float, size: float, fees: float, slippage: float) -> tuple[float, float, float]:
    """vectorbt's buy of ``size`` of the cash: (cash left, units bought, cash spent)."""
    spend = size * cash
    return cash - spend, spend / (1.0 + fees) / (price * (1.0 + slippage)), spend


@numba.njit(inline="always")
def _sell(units: float, price: float, fees: float, slippage: float) -> float:
    """vectorbt's sale of every unit: the cash received after fees."""
    received = units * (price * (1.0 - slippage))
    return received - received * fees


@numba.njit(inline="always")
def _mark_drawdown(value: float, peak: float, max_dd: float, keep: float) -> tuple[float, float, float]:
    """(peak, max drawdown, 1 - max drawdown) after one more equity value."""
    peak = max(peak, value)
    if value < peak * keep:  # a deeper drawdown (rare once one is known): divide only then
        dd = 1.0 - value / peak
        if dd > max_dd:
            return peak, dd, 1.0 - dd
    return peak, max_dd, keep


@numba.njit(inline="always")
def _account(a: int, b: int, j: int, cash: float, units: float, close: np.ndarray, cum: np.ndarray,
             cum_sq: np.ndarray, acc: np.ndarray, marks_at: np.ndarray, marks: np.ndarray, q: int) -> int:
    """Record bars ``a..b``, whose closes all see ``cash`` and ``units``: their returns, the
    drawdown, the marks. ``acc`` = [prev value, peak, max drawdown, sum, sum of squares,
    value at bar 0]; returns the next mark."""
    if b < a:
        return q
    prev, peak, max_dd, total, total_sq = acc[0], acc[1], acc[2], acc[3], acc[4]
    keep = 1.0 - max_dd
    value = cash + units * close[a] if units != 0.0 else cash
    if a == 0:
        acc[5] = value
        peak = value
    elif value != prev:
        r = value / prev - 1.0
        total += r
        total_sq += r * r
    peak, max_dd, keep = _mark_drawdown(value, peak, max_dd, keep)
    if units != 0.0:
        if cash == 0.0:
            # units * close: the close's own returns, and drawdowns from the closes.
            total += cum[b] - cum[a]
            total_sq += cum_sq[b] - cum_sq[a]
            for t in range(a + 1, b + 1):
                peak, max_dd, keep = _mark_drawdown(units * close[t], peak, max_dd, keep)
            value = units * close[b] if b > a else value
        else:
            for t in range(a + 1, b + 1):
                v = cash + units * close[t]
                r = v / value - 1.0
                total += r
                total_sq += r * r
                peak, max_dd, keep = _mark_drawdown(v, peak, max_dd, keep)
                value = v
    n_marks = marks_at.shape[0]
    while q < n_marks and marks_at[q] <= b:
        t = marks_at[q]
        marks[j, q] = cash + units * close[t] if units != 0.0 else cash
        q += 1
    acc[0], acc[1], acc[2], acc[3], acc[4] = value, peak, max_dd, total, total_sq
    return q


@numba.njit(error_model="numpy")
def _advance(j: int, t0: int, t1: int, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
             cum: np.ndarray, cum_sq: np.ndarray, lines: np.ndarray, flags: np.ndarray, terms: np.ndarray,
             consts: np.ndarray, clauses: np.ndarray, signals: np.ndarray, next_open: bool, fees: float,
             slippage: float, size: float, stop_loss: float, trailing_stop: float, take_profit: float,
             exit_after: int, marks_at: np.ndarray, fs: np.ndarray, st: np.ndarray, marks: np.ndarray,
             acc: np.ndarray) -> None:
    """Set ``j`` through bars ``t0..t1-1``, from event to event (state in ``fs``/``st``;
    ``acc`` is scratch for :func:`_account`)."""
    stops = not (np.isnan(stop_loss) and np.isnan(trailing_stop) and np.isnan(take_profit))
    time_exit = exit_after - 1 if next_open else exit_after  # bars from the fill to the exit's decision
    cash, units, cost = fs[j, _CASH], fs[j, _UNITS], fs[j, _COST]
    ref, trail = fs[j, _REF], fs[j, _TRAIL]  # the close the entry was decided at; the trailing high
    pending, trades, wins = st[j, _PENDING], st[j, _TRADES], st[j, _WINS]
    q, entry_bar = st[j, _MARK], st[j, _ENTRY_BAR]
    acc[0], acc[1], acc[2], acc[5] = fs[j, _PREV], fs[j, _PEAK], fs[j, _MAXDD], fs[j, _VALUE0]
    acc[3] = acc[4] = 0.0  # this block's sums: a two-level sum keeps rounding small
    t = t0  # bars before t are recorded; the state holds from bar t's close on
    sig_from = t0  # the first bar whose signals are still to be read
    while t < t1:
        if pending > 0:  # a market order decided at the previous close fills at this open
            cash, units, cost = _buy(cash, open_[t], size, fees, slippage)
            entry_bar = t
            ref = trail = close[t - 1]
        elif pending < 0:
            proceeds = _sell(units, open_[t], fees, slippage)
            cash += proceeds
            trades += 1
            wins += proceeds > cost
            units = 0.0
        pending = 0
        # The next event: the signal to act on (an entry when flat, an exit or the time exit
        # when holding) and, when holding, a stop before it.
        holding = units != 0.0
        timed = entry_bar + time_exit if holding and exit_after > 0 else t1  # the time exit's decision bar
        hi = min(t1, timed + 1)
        d = _next_signal(j, EXIT if holding else ENTRY, max(sig_from, t), hi, signals, clauses, terms, consts,
                         lines, flags)
        if d == hi and timed < t1:
            d = timed
        stop = min(d + 1, t1)  # a stop at the decision bar comes first; at the next open, the exit does
        fill, take = np.nan, False
        if holding and stops:
            stop, fill, take, trail = _next_stop(max(t, entry_bar + 1), stop, open_, high, low, ref, trail,
                                                 stop_loss, trailing_stop, take_profit)
        stopped = stop < min(d + 1, t1)
        if stopped:
            last = stop - 1  # the stop fills inside bar `stop`
        elif d >= t1:
            last = t1 - 1  # nothing happens in this block
        else:
            last = d if next_open else d - 1  # filled at the next open, or at this close
        q = _account(t, last, j, cash, units, close, cum, cum_sq, acc, marks_at, marks, q)
        if stopped or (d < t1 and not next_open):
            at = stop if stopped else d
            if holding:
                proceeds = _sell(units, fill if stopped else close[d], fees, 0.0 if take else slippage)
                cash += proceeds
                trades += 1
                wins += proceeds > cost
                units = 0.0
            else:
                cash, units, cost = _buy(cash, close[d], size, fees, slippage)
                entry_bar = d
                ref = trail = close[d]
            # Filled at the close, the bar's signals are spent (a stop voids them); a stop
            # filled inside the bar leaves its close's signals to read when orders go next open.
            t, sig_from = at, (at if stopped and next_open else at + 1)
        elif d < t1:
            pending = -1 if holding else 1
            t = sig_from = d + 1
        else:
            break
    fs[j, _CASH], fs[j, _UNITS], fs[j, _COST] = cash, units, cost
    fs[j, _REF], fs[j, _TRAIL] = ref, trail
    fs[j, _PREV], fs[j, _PEAK], fs[j, _MAXDD], fs[j, _VALUE0] = acc[0], acc[1], acc[2], acc[5]
    fs[j, _SUM] += acc[3]
    fs[j, _SUMSQ] += acc[4]
    st[j, _PENDING], st[j, _TRADES], st[j, _WINS] = pending, trades, wins
    st[j, _MARK], st[j, _ENTRY_BAR] = q, entry_bar


# Functions of their own, not inlined into the parallel loop or into each other: numba's
# parallel passes over one body this size take minutes to compile, and a call per set and
# block costs nothing next to the block's bars.
@numba.njit(error_model="numpy")
def _run_group(j0: int, j1: int, block: int, open_: np.ndarray, high: np.ndarray, low: np.ndarray,
               close: np.ndarray, cum: np.ndarray, cum_sq: np.ndarray, lines: np.ndarray, flags: np.ndarray,
               terms: np.ndarray, consts: np.ndarray, clauses: np.ndarray, signals: np.ndarray, next_open: bool,
               fees: float, slippage: float, size: float, stop_loss: float, trailing_stop: float, take_profit: float,
               exit_after: int, marks_at: np.ndarray, fs: np.ndarray, st: np.ndarray, marks: np.ndarray) -> None:
    """Sets ``j0..j1-1`` through every bar, ``block`` bars at a time."""
    n = close.shape[0]
    acc = np.empty(6)
    for t0 in range(0, n, block):
        for j in range(j0, j1):
            _advance(j, t0, min(n, t0 + block), open_, high, low, close, cum, cum_sq, lines, flags, terms, consts,
                     clauses, signals, next_open, fees, slippage, size, stop_loss, trailing_stop, take_profit,
                     exit_after, marks_at, fs, st, marks, acc)


@numba.njit(cache=True, parallel=True, error_model="numpy")
def fused_sweep_nb(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    lines: np.ndarray,
    flags: np.ndarray,
    terms: np.ndarray,
    consts: np.ndarray,
    clauses: np.ndarray,
    signals: np.ndarray,
    next_open: bool,
    fees: float,
    slippage: float,
    init_cash: float,
    size: float,
    stop_loss: float,
    trailing_stop: float,
    take_profit: float,
    exit_after: int,
    marks_at: np.ndarray,
    block: int,
    group: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate every set of ``signals``: per set total_return, n_trades (closed), wins,
    sum and sum of squares of bar returns, max drawdown; and the equity at ``marks_at``.

    Set ``j``'s signal ``k`` (entry 0, exit 1) holds at a bar when one of clauses
    ``signals[j, k, 0]:signals[j, k, 1]`` holds, a clause when all its terms
    ``clauses[c, 0]:clauses[c, 1]`` hold; term ``u`` is ``terms[u] = (op, a, b, negate)``
    with ``consts[u]``. Signals at bar t fill at bar t+1's open (``next_open``) or at bar
    t's close. ``size`` is the fraction of cash spent on an entry.

    Exits are :func:`memlab.backtest.engine.simulate`'s. Stops (NaN for none) are fractions
    of the close the entry was decided at, checked from the bar after the entry fills:
    ``stop_loss`` below it, ``trailing_stop`` below the highest high since (the entry bar
    excluded), ``take_profit`` above it. A stop touched inside a bar fills at its level,
    or at the open if the bar gapped through it; a stop-loss pays slippage (a stop-market
    order), a take-profit does not (a limit). A stop comes before the bar's signals,
    except that a market exit due at the bar's open (``next_open``) comes before the
    stops. ``exit_after`` (0 for none) closes a position at market ``exit_after`` bars
    after its entry fill, at that bar's open (``next_open``) or close.
    ``marks[j, q]`` is set j's equity at the close of bar ``marks_at[q]`` (increasing
    positions).

    Sets run in groups of ``group``, a thread per group as threads free up; a group walks
    the bars ``block`` at a time.
    """
    n = close.shape[0]
    m = signals.shape[0]
    cum = np.zeros(n)
    cum_sq = np.zeros(n)
    for t in range(1, n):
        r = close[t] / close[t - 1] - 1.0
        cum[t] = cum[t - 1] + r
        cum_sq[t] = cum_sq[t - 1] + r * r
    fs = np.zeros((m, 11))
    st = np.zeros((m, 5), dtype=np.int64)
    marks = np.empty((m, marks_at.shape[0]))
    fs[:, _CASH] = init_cash
    fs[:, _PREV] = init_cash
    fs[:, _PEAK] = init_cash
    fs[:, _VALUE0] = init_cash
    for g in numba.prange((m + group - 1) // group):
        _run_group(g * group, min(m, (g + 1) * group), block, open_, high, low, close, cum, cum_sq, lines, flags,
                   terms, consts, clauses, signals, next_open, fees, slippage, size, stop_loss, trailing_stop,
                   take_profit, exit_after, marks_at, fs, st, marks)
    out = np.empty((m, 6))
    for j in range(m):
        out[j, 0] = fs[j, _PREV] / fs[j, _VALUE0] - 1.0
        out[j, 1] = st[j, _TRADES]
        out[j, 2] = st[j, _WINS]
        out[j, 3] = fs[j, _SUM]
        out[j, 4] = fs[j, _SUMSQ]
        out[j, 5] = fs[j, _MAXDD]
    return out, marks
