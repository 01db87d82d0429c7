"""Margin arithmetic of linear perpetual futures: pure functions, no state, no I/O.

One job: the numbers the paper broker (:mod:`memlab.connectors.paper_broker`) needs for
an isolated-margin position on a linear (USDT-settled) perpetual, with ccxt's names.
``qty`` is in the base asset (contracts × contractSize); ``side`` is ``+1`` for a long,
``-1`` for a short.

- **Initial margin** = notional / leverage, notional = qty × price.
- **Maintenance margin** at notional N = N × MMR − deduction, with MMR the
  ``maintenanceMarginRate`` of the leverage tier whose ``[minNotional, maxNotional]``
  holds N (ccxt's ``fetch_market_leverage_tiers`` structure) and the deduction by Bybit's
  recurrence ``deduction[n] = maxNotional[n-1] × (MMR[n] − MMR[n-1]) + deduction[n-1]``
  (Binance calls it the "maintenance amount", ``cum``). It makes the maintenance margin
  continuous across tiers.
- **Liquidation price** (isolated): the mark price P at which the position's equity,
  collateral C plus unrealised P&L, equals its maintenance margin::

      C + side·qty·(P − entry) = qty·P·MMR − deduction
      P = (side·qty·entry − C − deduction) / (qty·(side − MMR))

  i.e. long ``(qty·entry − C − d) / (qty·(1 − MMR))``, short
  ``(qty·entry + C + d) / (qty·(1 + MMR))``: Binance's published USDⓈ-M formula with
  the isolated wallet balance as C. MMR and d are those of the tier that holds the
  notional *at the liquidation price* (each tier is tried; the one whose range holds
  qty·P is the answer). A long whose P would be ≤ 0 cannot be liquidated (None).
- **Funding** of one interval = −side × qty × mark × rate (positive: received): longs
  pay shorts when the rate is positive.
- **Trailing stop** level = extreme × (1 − pct/100) for a long (extreme: the highest
  price seen), × (1 + pct/100) for a short (the lowest).

The tiers shipped for ``BTC/USDT:USDT`` (:data:`BYBIT_BTCUSDT_TIERS`) are Bybit's
published BTCUSDT USDT-perpetual margin parameters (isolated and cross); every other
linear perpetual gets :data:`ILLUSTRATIVE_TIERS`, which are made up for illustration.

>>> tiers = BYBIT_BTCUSDT_TIERS
>>> max_leverage(tiers)
100.0
>>> maintenance_deductions(tiers)[:3]
[0.0, 1200.0, 3020.0]
>>> round(liquidation_price(+1, 1.0, 50_000.0, 5_000.0, tiers), 2)   # 1 BTC long, 10x
45226.13
>>> round(liquidation_price(-1, 1.0, 50_000.0, 5_000.0, tiers), 2)   # 1 BTC short, 10x
54726.37
>>> liquidation_price(+1, 1.0, 50_000.0, 50_000.0, tiers) is None   # a 1x long is never liquidated
True
>>> funding_payment(+1, 2.0, 30_000.0, 0.0001)   # a long pays 6 USDT at +0.01 %
-6.0
>>> funding_times(0.0, 86_400.0, 28_800.0)
[28800.0, 57600.0, 86400.0]
>>> round(trailing_level(-1, 100.0, 5.0), 6)
105.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Bybit's margin parameters for the BTCUSDT USDT perpetual (isolated and cross margin),
#: tiers 1-20, as published on Bybit's "Margin Parameters" page (announcement-info/
#: margin-parameters, Perpetual / USDT-based / BTCUSDT), read from a stored copy of that
#: page in December 2026. Bybit revises them; the published maintenance-margin
#: deductions (0, 1,200, 3,020, 4,300, ...) are what :func:`maintenance_deductions`
#: computes from them. In ccxt's leverage-tier structure.
BYBIT_BTCUSDT_TIERS: tuple[dict[str, Any], ...] = tuple(
    {"tier": i + 1, "currency": "USDT", "minNotional": lo, "maxNotional": hi, "maintenanceMarginRate": mmr,
     "maxLeverage": lev, "info": {"source": "Bybit margin parameters, BTCUSDT perpetual"}}
    for i, (lo, hi, lev, mmr) in enumerate([
        (0.0, 2_000_000.0, 100.0, 0.005), (2_000_000.0, 2_600_000.0, 90.0, 0.0056),
        (2_600_000.0, 3_200_000.0, 80.0, 0.0063), (3_200_000.0, 3_800_000.0, 75.0, 0.0067),
        (3_800_000.0, 4_400_000.0, 70.0, 0.0071), (4_400_000.0, 5_000_000.0, 65.0, 0.0077),
        (5_000_000.0, 5_600_000.0, 55.0, 0.0091), (5_600_000.0, 8_500_000.0, 50.0, 0.01),
        (8_500_000.0, 10_000_000.0, 45.0, 0.013), (10_000_000.0, 14_000_000.0, 40.0, 0.015),
        (14_000_000.0, 20_000_000.0, 35.0, 0.016), (20_000_000.0, 28_000_000.0, 30.0, 0.02),
        (28_000_000.0, 38_000_000.0, 25.0, 0.025), (38_000_000.0, 50_000_000.0, 20.0, 0.029),
        (50_000_000.0, 55_000_000.0, 19.0, 0.03), (55_000_000.0, 60_000_000.0, 18.0, 0.035),
        (60_000_000.0, 65_000_000.0, 17.0, 0.036), (65_000_000.0, 70_000_000.0, 16.0, 0.038),
        (70_000_000.0, 75_000_000.0, 15.0, 0.04), (75_000_000.0, 80_000_000.0, 14.0, 0.045),
    ])
)

#: Tiers for linear perpetuals memlab has no published schedule for. ILLUSTRATIVE: made
#: up to have the usual shape (50x at 1 % maintenance for small positions), not any
#: venue's numbers. Pass a venue's tiers to ``PaperBroker.add_market`` to replace them.
ILLUSTRATIVE_TIERS: tuple[dict[str, Any], ...] = tuple(
    {"tier": i + 1, "currency": "USDT", "minNotional": lo, "maxNotional": hi, "maintenanceMarginRate": mmr,
     "maxLeverage": lev, "info": {"source": "illustrative (memlab), not a venue's schedule"}}
    for i, (lo, hi, lev, mmr) in enumerate([
        (0.0, 1_000_000.0, 50.0, 0.01), (1_000_000.0, 5_000_000.0, 20.0, 0.025),
        (5_000_000.0, 20_000_000.0, 10.0, 0.05),
    ])
)


def maintenance_deductions(tiers: Sequence[dict[str, Any]]) -> list[float]:
    """Each tier's maintenance-margin deduction (Bybit's recurrence, Binance's ``cum``)."""
    out = [0.0]
    for prev, tier in zip(tiers, tiers[1:], strict=False):
        out.append(float(prev["maxNotional"]) * (float(tier["maintenanceMarginRate"])
                                                 - float(prev["maintenanceMarginRate"])) + out[-1])
    return [round(d, 6) for d in out]  # the published deductions are whole USDT: no float dust


def max_leverage(tiers: Sequence[dict[str, Any]]) -> float:
    """The highest leverage any tier allows."""
    return max(float(t["maxLeverage"]) for t in tiers)


def max_notional(tiers: Sequence[dict[str, Any]], leverage: float) -> float:
    """The largest position notional ``leverage`` is allowed for (0 if none)."""
    return max((float(t["maxNotional"]) for t in tiers if float(t["maxLeverage"]) >= leverage), default=0.0)


def tier_index(tiers: Sequence[dict[str, Any]], notional: float) -> int:
    """Index of the tier holding ``notional`` (the last one beyond the schedule)."""
    for i, t in enumerate(tiers):
        if notional <= float(t["maxNotional"]):
            return i
    return len(tiers) - 1


def maintenance_margin(tiers: Sequence[dict[str, Any]], notional: float) -> float:
    """Maintenance margin of a position of ``notional``: notional × MMR − deduction.

    >>> maintenance_margin(BYBIT_BTCUSDT_TIERS, 2_300_000.0)   # tier 2: 0.56 % − 1,200
    11680.0
    """
    i = tier_index(tiers, notional)
    return round(notional * float(tiers[i]["maintenanceMarginRate"]) - maintenance_deductions(tiers)[i], 9)


def liquidation_price(side: int, qty: float, entry: float, collateral: float,
                      tiers: Sequence[dict[str, Any]]) -> float | None:
    """The mark price that liquidates an isolated position (see the module docstring);
    None when no positive price does (a long backed by its full notional or more)."""
    if qty <= 0:
        return None
    deductions = maintenance_deductions(tiers)
    fallback: float | None = None
    for i, tier in enumerate(tiers):
        mmr = float(tier["maintenanceMarginRate"])
        price = (side * qty * entry - collateral - deductions[i]) / (qty * (side - mmr))
        if price <= 0:
            continue
        notional = qty * price
        lo, hi = float(tier["minNotional"]), float(tier["maxNotional"])
        if lo <= notional <= hi:
            return price
        if i == len(tiers) - 1 and notional > hi:
            fallback = price  # beyond the schedule: the last tier's rate applies
    return fallback


def unrealized_pnl(side: int, qty: float, entry: float, mark: float) -> float:
    """side × qty × (mark − entry)."""
    return side * qty * (mark - entry)


def funding_payment(side: int, qty: float, mark: float, rate: float) -> float:
    """What one funding settles for the position: −side × qty × mark × rate (received > 0)."""
    return -side * qty * mark * rate


def funding_times(after: float, until: float, interval: float) -> list[float]:
    """Funding times in ``(after, until]``: the multiples of ``interval`` seconds since the
    epoch (with 8 h: 00:00, 08:00 and 16:00 UTC)."""
    first = (after // interval + 1) * interval
    out = []
    t = first
    while t <= until:
        out.append(float(t))
        t += interval
    return out


def trailing_level(side: int, extreme: float, pct: float) -> float:
    """The trailing stop of a long (``side`` +1: below the highest price) or a short (−1:
    above the lowest), ``pct`` in percent."""
    # Rounded so that a percentage computed as fraction × 100 (0.07 × 100 = 7.000000000000001)
    # gives back the fraction the backtest uses: the levels then agree to the last bit.
    frac = round(pct / 100, 12)
    return extreme * (1 - frac) if side > 0 else extreme * (1 + frac)
