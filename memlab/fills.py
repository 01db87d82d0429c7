"""How orders fill: the bar-range spread, order latency, the volume cap and maker fees.

:class:`FillModel` holds the fill rules beyond :mod:`memlab.costs`' flat ``fees`` and
``slippage``. Everything is off by default, which is memlab's behaviour without it: a
market order sent at a bar's close fills whole at the next bar's open, moved by the fixed
``slippage``, and every order pays ``fees``. The paper broker
(:class:`memlab.connectors.PaperBroker`, ``fill_model=``), the backtest
(:func:`memlab.backtest.simulate`, ``fill_model=``) and the paper trader
(:class:`memlab.trader.TraderConfig`, ``fill_model=``) apply the same rules, so a paper
session reconciles with its backtest to 1e-9 (:func:`memlab.trader.reconcile_with_backtest`;
spot sessions: see there for what is refused).

- ``range_spread`` (k, >= 0; 0 = off): the bid-ask spread is estimated as ``k`` times the
  range of the **last completed bar**, ``(High - Low) / Close``, and a fill pays half of
  it on top of the fixed ``slippage`` (buys higher, sells lower, as ``slippage`` does).
  An order filling at the open of bar ``t``, or a stop triggered inside bar ``t``, uses
  bar ``t - 1``'s range: never the range of the bar it fills in (no look-ahead). The
  first bar has no previous bar: no spread. Limit and take-profit orders pay none (they
  rest on the book). ``k`` is a rough, venue-specific constant (the range mixes the
  spread with the bar's price moves, so ``k`` is usually well below 1): calibrate it
  against the venue's quoted spread; memlab ships no calibrated value.
- ``latency`` (whole bars >= 0; 0 = off): an order sent at the close of bar ``t`` fills
  at the open of bar ``t + 1 + latency`` (a limit order starts to rest there). Stops and
  take-profits attached to an entry live at the venue: they are placed when the entry
  fills and are watched from the next bar, whatever the latency. The paper trader
  decides on the position it holds when it sends an order: it sends no exit while the
  entry is on its way, no second exit (or entry) while one is, and cancels the stops when
  it sends the exit; the backtest resolves its delayed signals the same way.
- ``volume_cap`` (a share of a bar's volume in (0, 1]; None = off): one order takes at
  most ``volume_cap x Volume`` of any bar (base units; contracts x contract size on a
  swap). What is left stays open (ccxt's ``status="open"``, ``filled < amount``,
  ``remaining``) and fills at the next bars' opens, until it is ``"closed"``. A partially
  filled entry's stop-loss / take-profit cover what has filled (each fill adds its amount
  to them); when one of them fills, what is left of the entry is cancelled (the trade is
  over). Protective orders (stop-loss, take-profit, trailing stop) and liquidations fill
  whole. The paper broker's only: ``on_bar(..., volume=)`` gives it each bar's volume;
  the backtest (:func:`check_backtest_fill`) and trading sessions, whose bars carry no
  volume yet, refuse it.
- ``maker_fees`` (a fraction in [0, 1); None = ``fees``): resting orders, limit and
  take-profit, pay it; market, stop-loss and trailing-stop orders take liquidity and pay
  ``fees`` (the taker fee).

>>> FillModel(range_spread=0.5, latency=1, maker_fees=0.0002).active
True
>>> FillModel().active
False
>>> FillModel(latency=-1)
Traceback (most recent call last):
...
memlab.errors.InvalidInputError: latency is a whole number of bars >= 0, got -1
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from memlab.costs import check_fraction
from memlab.errors import InvalidInputError


def _number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.number))


@dataclass(frozen=True)
class FillModel:
    """The fill rules of the module docstring; the defaults are memlab's plain fills.

    Raises:
        InvalidInputError: ``range_spread`` negative or not finite, ``latency`` negative or
            not a whole number, ``volume_cap`` outside (0, 1], ``maker_fees`` outside [0, 1).
    """

    range_spread: float = 0.0
    latency: int = 0
    volume_cap: float | None = None
    maker_fees: float | None = None

    def __post_init__(self) -> None:
        k = self.range_spread
        if not _number(k) or not 0 <= k < np.inf:
            raise InvalidInputError(f"range_spread is a multiple of the last bar's range >= 0, got {k!r}")
        lat = self.latency
        if not _number(lat) or not lat >= 0 or float(lat) != int(lat):
            raise InvalidInputError(f"latency is a whole number of bars >= 0, got {lat!r}")
        object.__setattr__(self, "latency", int(lat))
        cap = self.volume_cap
        if cap is not None and (not _number(cap) or not 0 < cap <= 1):
            raise InvalidInputError(f"volume_cap is a share of a bar's volume in (0, 1], got {cap!r}")
        if self.maker_fees is not None:
            check_fraction("maker_fees", self.maker_fees)

    @property
    def active(self) -> bool:
        """Whether any rule is on (False: memlab's plain fills)."""
        return self != FillModel()

    def maker(self, fees: float) -> float:
        """The maker fee, given the taker fee ``fees``."""
        return float(fees if self.maker_fees is None else self.maker_fees)

    def fee_for(self, order_type: str, fees: float) -> float:
        """The fee an order of ``order_type`` pays: maker for ``limit`` and
        ``take_profit`` orders, the taker fee ``fees`` for the others."""
        return self.maker(fees) if order_type in MAKER_TYPES else float(fees)


#: Order types that rest on the book and pay the maker fee.
MAKER_TYPES = ("limit", "take_profit")

NO_FILL_MODEL = FillModel()


def bar_range(high: Any, low: Any, close: Any) -> Any:
    """A bar's range as a fraction of its close, ``(High - Low) / Close`` (arrays or numbers)."""
    return (high - low) / close


def half_spread(range_spread: float, last_range: float | None) -> float:
    """What a fill pays for the spread: half of ``range_spread`` x the last completed bar's
    range (0 without a previous bar)."""
    if not range_spread or last_range is None:
        return 0.0
    return 0.5 * float(range_spread) * float(last_range)


def slippage_per_bar(ohlcv: Any, slippage: float, model: FillModel) -> Any:
    """The slippage a market or stop-market fill at each bar pays: the fixed ``slippage``
    plus half the spread estimated from the **previous** bar's range (0 at the first bar).
    A scalar when ``range_spread`` is 0.

    >>> import pandas as pd
    >>> bars = pd.DataFrame({"High": [102.0, 110.0, 105.0], "Low": [98.0, 100.0, 95.0], "Close": [100.0, 100.0, 100.0]})
    >>> slippage_per_bar(bars, 0.001, FillModel(range_spread=0.5)).round(6).tolist()
    [0.001, 0.011, 0.026]
    """
    if not model.range_spread:
        return slippage
    rng = bar_range(np.asarray(ohlcv["High"], float), np.asarray(ohlcv["Low"], float), np.asarray(ohlcv["Close"], float))
    prev = np.concatenate([[0.0], rng[:-1]])
    return slippage + 0.5 * float(model.range_spread) * prev


def check_backtest_fill(model: FillModel, *, direction: str, fill: str) -> None:
    """Refuse the fill rules the backtest does not simulate, naming why."""
    if model.volume_cap is not None:
        raise InvalidInputError(f"volume_cap={model.volume_cap:g} is simulated by the paper broker only (partial fills "
                                "over several bars); the backtest fills each order whole")
    if model.latency and direction != "longonly":
        raise InvalidInputError(f"latency={model.latency} is simulated for direction='longonly' backtests only, "
                                f"got direction={direction!r}")
    if model.latency and fill != "next_open":
        raise InvalidInputError(f"latency={model.latency} delays next-open fills; fill={fill!r} has none")
