"""How positions are left and sized: one set of exit settings for backtests and paper trading.

A backtest (:func:`memlab.backtest.simulate`, ``sweep``) and a paper session
(:class:`memlab.trader.TraderConfig`) take the same settings, checked here once:

- ``stop_loss``, ``take_profit``, ``trailing_stop``: fractions in (0, 1) of the entry's
  reference price (the close of the bar whose signal made the entry); ``stop_loss`` and
  ``trailing_stop`` are each a stop-loss, so at most one of them;
- ``exit_after``: close a position this many bars after the bar it was entered on;
- ``size``: the fraction of free cash each entry spends, fees included, in (0, 1].

Their fill rules are the paper broker's, and the backtest follows them (see
:mod:`memlab.backtest.engine`), so a paper session reconciles with its backtest.

>>> ExitRules(trailing_stop=0.05, exit_after=20).active
True
>>> ExitRules(stop_loss=0.02, trailing_stop=0.05)
Traceback (most recent call last):
...
memlab.errors.InvalidInputError: stop_loss and trailing_stop are both a stop-loss: give one, got stop_loss=0.02 and trailing_stop=0.05
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memlab.errors import InvalidInputError


def check_exits(
    *,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    trailing_stop: float | None = None,
    exit_after: int | None = None,
    size: float = 1.0,
) -> None:
    """Refuse exit and sizing settings no backtest or session can use, naming the one that is wrong.

    Stops are fractions in (0, 1) (``None``: no such stop); ``stop_loss`` and
    ``trailing_stop`` are one stop-loss each, so at most one of them. ``exit_after`` is a
    whole number of bars >= 1 (``None``: no time exit); ``size`` is the fraction of free
    cash each entry spends, in (0, 1].

    >>> check_exits(stop_loss=0.02, take_profit=0.05, exit_after=10, size=0.5)
    >>> check_exits(stop_loss=1.5)
    Traceback (most recent call last):
    ...
    memlab.errors.InvalidInputError: stop_loss must be in (0, 1), got 1.5
    """
    for name, value in (("stop_loss", stop_loss), ("take_profit", take_profit),
                        ("trailing_stop", trailing_stop)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 < value < 1:
            raise InvalidInputError(f"{name} must be in (0, 1), got {value!r}")
    if stop_loss is not None and trailing_stop is not None:
        raise InvalidInputError(f"stop_loss and trailing_stop are both a stop-loss: give one, got "
                                f"stop_loss={stop_loss!r} and trailing_stop={trailing_stop!r}")
    if exit_after is not None and (isinstance(exit_after, bool) or not isinstance(exit_after, (int, np.integer))
                                   or exit_after < 1):
        raise InvalidInputError(f"exit_after must be a whole number of bars >= 1, got {exit_after!r}")
    if isinstance(size, bool) or not isinstance(size, (int, float, np.number)) or not 0 < size <= 1:
        raise InvalidInputError(f"size must be in (0, 1], got {size!r}")


@dataclass(frozen=True)
class ExitRules:
    """Exit and sizing settings, checked by :func:`check_exits` when made."""

    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    exit_after: int | None = None
    size: float = 1.0

    def __post_init__(self) -> None:
        check_exits(stop_loss=self.stop_loss, take_profit=self.take_profit, trailing_stop=self.trailing_stop,
                    exit_after=self.exit_after, size=self.size)

    @property
    def active(self) -> bool:
        """Whether any exit is set (``size`` alone is not an exit)."""
        return any(v is not None for v in (self.stop_loss, self.take_profit, self.trailing_stop, self.exit_after))

    def backtest_kwargs(self) -> dict[str, float | int | None]:
        """These settings as :func:`memlab.backtest.simulate`'s keyword arguments."""
        return {"stop_loss": self.stop_loss, "take_profit": self.take_profit, "trailing_stop": self.trailing_stop,
                "exit_after": self.exit_after, "size": self.size}
