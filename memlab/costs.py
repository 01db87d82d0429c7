"""What a trade costs: one fee and slippage model, and the one default every layer charges.

Fees and slippage are fractions of traded value charged on each side of a trade
(0.001 = 0.1 %): a buy pays ``price * (1 + slippage)`` and then ``fees`` on top, a sell
receives ``price * (1 - slippage)`` less ``fees``. Backtests, sweeps, walk-forward,
training, the memory evaluation, the demo and paper trading all default to
:data:`DEFAULT_COSTS`, so parameters are chosen under the costs paper trading charges.
A ``fees=`` or ``slippage=`` a caller passes wins over the default. ``fees`` is the taker
fee: a maker fee for resting orders, a spread estimated from each bar's range, order
latency and a volume cap are :mod:`memlab.fills`' :class:`~memlab.fills.FillModel`, off by
default.

>>> DEFAULT_COSTS
CostModel(fees=0.001, slippage=0.0)
>>> CostModel(fees=0.00075, slippage=0.0005).fees
0.00075
>>> CostModel(fees=0.1, slippage=1.5)
Traceback (most recent call last):
...
memlab.errors.InvalidInputError: slippage is a fraction of traded value in [0, 1), got 1.5
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memlab.errors import InvalidInputError


def check_fraction(name: str, value: object) -> None:
    """Refuse a cost that is not a fraction of traded value in [0, 1), naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 <= value < 1:
        raise InvalidInputError(f"{name} is a fraction of traded value in [0, 1), got {value}")


@dataclass(frozen=True)
class CostModel:
    """Fees and slippage per side, each a fraction of traded value in [0, 1).

    Raises:
        InvalidInputError: ``fees`` or ``slippage`` is not a number in [0, 1).
    """

    fees: float
    slippage: float

    def __post_init__(self) -> None:
        check_fraction("fees", self.fees)
        check_fraction("slippage", self.slippage)


#: What memlab charges when no one says otherwise: 0.1 % per side, a common spot taker fee
#: (Binance's base rate), and no slippage.
DEFAULT_COSTS = CostModel(fees=0.001, slippage=0.0)
