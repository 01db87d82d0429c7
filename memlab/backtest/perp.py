"""A bar-loop backtest of a linear perpetual: leverage, isolated margin, liquidation, funding.

vectorbt has no margin and no funding, so a paper session on a perpetual swap at a
leverage above 1, or one that paid funding, is reconciled with this instead
(:func:`memlab.trader.reconcile_with_backtest`). It runs the same signals through the
paper trader's rules and the paper broker's fill rules, bar by bar, with the pure
margin functions of :mod:`memlab.connectors.margin` (the broker itself is not used):

- **Signals** are decided at a bar's close and resolved as vectorbt's ``from_signals``
  (``direction="both"``, ``upon_*_conflict="ignore"``, ``upon_opposite_entry="reverse"``)
  and the trader resolve them: an entry and an exit of one side at the same bar cancel,
  so do a long and a short entry; an opposite entry reverses the position; ``exit_after``
  closes a position that many bars after the bar whose open filled it.
- **Sizing** (the trader's ``sizing="full"``): an entry spends ``size`` of the settle
  currency's total (cash and margin) as margin at ``leverage``, fees included, priced at
  the signal close moved by slippage (where the order fills if the next bar opens at that
  close); a reversal counts the cash its close releases. The amount in contracts is
  rounded down to ``step`` (the paper connection's ``amount_to_precision``); an entry
  below ``min_amount`` is not taken (a reversal then only closes). One order per signal,
  a market order filled at the next bar's open with slippage; an exit is reduce-only.
- **Fills** are the broker's: the closing part releases its share of the collateral plus
  the P&L, less the fee; the opening part moves ``notional / leverage`` into the
  collateral and pays its fee, capped by what the cash still pays for at the fill price
  (nothing opens when that is below ``min_amount``).
- **Each bar**, in the broker's order: (1) funding due at the funding times since the
  previous bar, at the previous close, into the collateral (``-side × qty × mark ×
  rate``; a time without a rate charges nothing); (2) liquidation at the open when the
  open is through the liquidation price; (3) the pending order; (4) liquidation inside
  the bar, at the liquidation price. A liquidation loses the collateral, nothing more.
- **Equity** at each close: cash + collateral + unrealised P&L at the close.

Stops (``stop_loss`` / ``take_profit`` / ``trailing_stop``) are not simulated here.
Plain Python, fast enough: 100,000 bars of ``sma_cross`` take 0.15 s with 877 fills and
0.9 s with 4,962 (each fill recomputes the liquidation price over the tiers), measured
on a shared 2-core machine.

>>> import pandas as pd
>>> from memlab.strategies import signal_frame
>>> idx = pd.date_range("2024-01-01", periods=4, freq="8h", tz="UTC")
>>> bars = pd.DataFrame({"Open": [100.0, 100, 90, 90], "High": [100.0, 100, 90, 90],
...                      "Low": [100.0, 100, 90, 90], "Close": [100.0, 100, 90, 90]}, index=idx)
>>> sig = signal_frame(idx, [False] * 4, [False] * 4, [True, False, False, False], [False] * 4)
>>> r = simulate_perp(bars, sig, init_cash=1_000.0, fees=0.0, slippage=0.0, leverage=2.0,
...                   funding=[(idx[2].timestamp(), 0.001)])
>>> r.fills[0]["amount"], round(r.funding, 6), round(r.final_equity, 6)   # 20 short, +2 funding, +200
(20.0, 2.0, 1202.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from memlab.connectors import margin
from memlab.errors import InvalidInputError
from memlab.strategies.signal_frame import resolve_signals

#: The paper connection's quantity step (``PaperConnection.STEP``).
STEP = 1e-8


@dataclass
class PerpResult:
    """What :func:`simulate_perp` produced: equity at each close, the fills (``bar``,
    ``side``, ``price``, ``amount``, ``fee``, ``pnl``, ``kind``: market/liquidation), the
    funding received (negative: paid) and the liquidations."""

    equity: pd.Series
    fills: list[dict[str, Any]] = field(default_factory=list)
    funding: float = 0.0
    liquidations: int = 0
    init_cash: float = 0.0

    @property
    def final_equity(self) -> float:
        return float(self.equity.iloc[-1]) if len(self.equity) else self.init_cash

    @property
    def total_return(self) -> float:
        return self.final_equity / self.init_cash - 1


def _rates(funding: Iterable[Mapping[str, Any] | tuple[float, float]] | None) -> dict[float, float]:
    """Funding rates by time (epoch seconds, rounded as the broker rounds them)."""
    out: dict[float, float] = {}
    for r in funding or ():
        if isinstance(r, Mapping):
            t, rate = float(r["timestamp"]) / 1000.0, float(r["fundingRate"])
        else:
            t, rate = float(r[0]), float(r[1])
        out[float(round(t))] = rate
    return out


def simulate_perp(ohlcv: pd.DataFrame, signals: pd.DataFrame, *, init_cash: float, fees: float, slippage: float,
                  leverage: float = 1.0, size: float = 1.0, exit_after: int | None = None,
                  funding: Iterable[Mapping[str, Any] | tuple[float, float]] | None = None,
                  tiers: Sequence[Mapping[str, Any]] = margin.BYBIT_BTCUSDT_TIERS,
                  funding_interval: float = 8 * 3600.0, min_amount: float | None = 0.001,
                  step: float = STEP) -> PerpResult:
    """Backtest ``signals`` (a signal frame on ``ohlcv``'s index) on a linear perpetual of
    contract size 1 with the paper broker's rules (module docstring). ``funding``: ccxt's
    funding-rate entries or ``(epoch seconds, rate)`` pairs; ``tiers``: ccxt's leverage
    tiers (Bybit's BTCUSDT by default, as the paper broker's ``BTC/USDT:USDT``).

    Raises:
        InvalidInputError: a leverage outside 1..the tiers' maximum, ``size`` outside
            (0, 1], or fees / slippage outside [0, 1), naming it.
    """
    top = margin.max_leverage(tiers)  # type: ignore[arg-type]
    if isinstance(leverage, bool) or not 1 <= float(leverage) <= top:
        raise InvalidInputError(f"leverage {leverage!r} is outside 1..{top:g}; the maximum leverage is {top:g}x")
    if not 0 < size <= 1:
        raise InvalidInputError(f"size must be in (0, 1], got {size!r}")
    if not 0 <= fees < 1 or not 0 <= slippage < 1:
        raise InvalidInputError(f"fees and slippage are fractions in [0, 1), got {fees!r} and {slippage!r}")
    lev, tiers_ = float(leverage), list(tiers)
    # Python lists: a plain loop reads them faster than arrays, and as Python floats.
    times: list[float] = (ohlcv.index.as_unit("ns").asi8 / 1e9).tolist()
    o, h, lo, c = (ohlcv[k].to_numpy(dtype=float).tolist() for k in ("Open", "High", "Low", "Close"))
    le_, lx_, se_, sx_ = (signals[k].to_numpy(dtype=bool).tolist()
                          for k in ("entry", "exit", "short_entry", "short_exit"))
    rates = _rates(funding)
    n = len(times)
    equity = np.empty(n)
    fills: list[dict[str, Any]] = []
    cash, pos, entry, coll = float(init_cash), 0.0, 0.0, 0.0
    liq: float | None = None  # the liquidation price of the position as it stands
    order: tuple[str, float, bool] | None = None  # (side, amount, reduce_only), placed at the last close
    entry_bar = -1
    received, liquidations = 0.0, 0

    def liq_price() -> float | None:
        return margin.liquidation_price(1 if pos > 0 else -1, abs(pos), entry, coll, tiers_) if pos else None

    def liquidate(i: int, at_open: bool) -> bool:
        nonlocal pos, entry, coll, liq, liquidations
        if liq is None:
            return False
        if pos > 0:
            hit, price = (o[i] <= liq) if at_open else (lo[i] <= liq), min(o[i], liq)
        else:
            hit, price = (o[i] >= liq) if at_open else (h[i] >= liq), max(o[i], liq)
        if not hit:
            return False
        left = coll + (1 if pos > 0 else -1) * abs(pos) * (price - entry)
        fills.append({"bar": i, "side": "sell" if pos > 0 else "buy", "price": price, "amount": abs(pos),
                      "fee": max(left, 0.0), "pnl": -coll, "kind": "liquidation"})
        pos, entry, coll, liq = 0.0, 0.0, 0.0, None
        liquidations += 1
        return True

    for i in range(n):
        t = times[i]
        # (1) funding since the previous bar, at the previous close
        if pos and i > 0 and (times[i - 1] // funding_interval + 1) * funding_interval <= t:
            for ft in margin.funding_times(times[i - 1], t, funding_interval):
                rate = rates.get(ft)
                if rate is not None:
                    amount = margin.funding_payment(1 if pos > 0 else -1, abs(pos), c[i - 1], rate)
                    coll += amount
                    received += amount
            liq = liq_price()
        # (2) liquidation at the open
        if pos and liquidate(i, True):
            entry_bar = -1
            if order is not None and order[2]:
                order = None  # its reduce-only order goes with the position
        # (3) the pending market order, at this open
        if order is not None:
            side, amount, reduce_only = order
            order = None
            sign = 1.0 if side == "buy" else -1.0
            price = o[i] * (1 + sign * slippage)
            contracts = amount
            if reduce_only:
                contracts = min(contracts, abs(pos)) if pos * sign < 0 else 0.0
            closing = min(contracts, abs(pos)) if pos * sign < 0 else 0.0
            fee, pnl = 0.0, None
            if closing > 0:
                full = closing >= abs(pos) - 1e-12
                released = coll if full else coll * closing / abs(pos)
                gain = (1 if pos > 0 else -1) * closing * (price - entry)
                close_fee = closing * price * fees
                cash += released + gain - close_fee
                fee += close_fee
                pnl = gain - close_fee
                remaining = 0.0 if full else round(pos + sign * closing, 12)
                pos, entry, coll = remaining, entry if remaining else 0.0, 0.0 if full else coll - released
                if not pos:
                    entry_bar = -1
            opening = 0.0 if reduce_only else round(contracts - closing, 12)
            if opening > 1e-15:
                affordable = max(cash, 0.0) / (price * (1 / lev + fees))
                if affordable < opening and min_amount is not None and affordable < min_amount:
                    affordable = 0.0  # the broker opens no position below the minimum
                opening = min(opening, affordable)
            if opening > 1e-15:
                open_fee = opening * price * fees
                cash -= opening * price / lev + open_fee
                fee += open_fee
                new_size = round(abs(pos) + opening, 12)
                entry = (abs(pos) * entry + opening * price) / new_size if pos else price
                if not pos:
                    entry_bar = i
                pos = sign * new_size
                coll += opening * price / lev
            else:
                opening = 0.0
            if closing + opening > 0:
                fills.append({"bar": i, "side": side, "price": price, "amount": closing + opening, "fee": fee,
                              "pnl": pnl, "kind": "market"})
            liq = liq_price()
        # (4) liquidation inside the bar
        if pos and liquidate(i, False):
            entry_bar = -1
        equity[i] = cash + coll + pos * (c[i] - entry)
        # The trader at this close: its signal, resolved, becomes the next open's order.
        side_now = 0 if abs(pos) <= 1e-12 else (1 if pos > 0 else -1)
        due = bool(exit_after and side_now and entry_bar >= 0 and i - entry_bar + 1 >= exit_after)
        action = resolve_signals(side_now, bool(le_[i]), bool(lx_[i]), bool(se_[i]), bool(sx_[i]), time_exit=due)
        want = 1 if action == "BUY" else -1 if action == "SHORT" else 0  # an entry's side
        if want:
            fill = c[i] * (1 + want * slippage)
            free = cash + coll
            if side_now == -want:  # reversing: the close releases margin and P&L, less its fee
                free += pos * (fill - entry) - abs(pos) * fill * fees
            opening = float(int(free * size / (fill * (1 / lev + fees)) / step) * step) if free * size > 0 else 0.0
            if min_amount and opening < min_amount:
                opening = 0.0
            if opening > 0:
                order = ("buy" if want > 0 else "sell", opening + (abs(pos) if side_now == -want else 0.0), False)
            elif side_now == -want:
                order = ("buy" if pos < 0 else "sell", abs(pos), True)
        elif action in ("SELL", "COVER"):
            order = ("sell" if pos > 0 else "buy", abs(pos), True)
    return PerpResult(pd.Series(equity, index=ohlcv.index, name="equity"), fills, received, liquidations,
                      float(init_cash))
