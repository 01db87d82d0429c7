"""``Broker``: what the trader, the decision pipeline and the manager need of a venue.

Every broker connection (:class:`~memlab.connectors.brokers.ExchangeConnection` for a ccxt
exchange, :class:`~memlab.connectors.brokers.PaperConnection` for the paper broker)
implements this protocol, and callers use nothing else: no ``isinstance`` checks, no
reaching into a connection's exchange or book. The verbs are ccxt's, with ccxt's shapes
(:class:`Order`, :class:`Balance`, :class:`Position`) and ccxt's errors. What a venue can do
is in :attr:`Broker.has`, in the manner of ccxt's ``exchange.has``. A broker with
``has['shorts']`` trades perpetual swaps and also has :class:`DerivativesBroker`'s verbs
(``set_leverage``, ``fetch_market_leverage_tiers``, funding histories).

A venue ccxt does not cover is one class with these methods (see ``docs/extending.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict, runtime_checkable

from memlab.data.bars import Bar


class Fee(TypedDict, total=False):
    cost: float
    currency: str


class Order(TypedDict, total=False):
    """ccxt's order structure (the keys memlab reads)."""

    id: str
    clientOrderId: str
    timestamp: float
    symbol: str
    type: str
    side: str
    price: float | None
    amount: float | None
    cost: float | None
    average: float | None
    filled: float
    remaining: float | None
    status: str
    fee: Fee | None
    parentId: str | None
    info: Any


class Balance(TypedDict):
    """ccxt's balance structure: per asset what is ``free``, ``used`` and the ``total``."""

    free: dict[str, float]
    used: dict[str, float]
    total: dict[str, float]


class Position(TypedDict, total=False):
    """ccxt's position structure (spot holdings are long positions; a swap position is
    ``long`` or ``short`` and has the margin keys)."""

    symbol: str
    side: str
    contracts: float
    contractSize: float | None
    entryPrice: float | None
    markPrice: float | None
    notional: float | None
    unrealizedPnl: float | None
    realizedPnl: float | None
    leverage: float | None
    marginMode: str | None
    collateral: float | None
    initialMargin: float | None
    maintenanceMargin: float | None
    liquidationPrice: float | None
    info: Any


class Fill(TypedDict, total=False):
    """One execution of an order: a paper fill, or a venue's filled order averaged."""

    order_id: str
    side: str
    amount: float
    price: float
    fee: float
    pnl: float | None
    bar_time: float


@dataclass(frozen=True)
class BookState:
    """Where a broker's book stands for one symbol, for a session that resumes on it:
    the last bar it processed (None when unknown or never), that bar's close, and what
    the open position cost (0 when flat or unknown)."""

    last_bar_time: float | None = None
    last_price: float | None = None
    entry_cost: float = 0.0


#: The capability flags memlab adds to ccxt's (ccxt's own, e.g. ``fetchPositions``, ``swap``,
#: ``setLeverage``, ``fetchFundingRateHistory``, keep their meaning):
#: ``simulatedFills`` — bars drive fills (:meth:`Broker.on_bar`), and the book survives restarts;
#: ``costOrders`` — a market buy may give the quote to spend (``params['cost']``) instead of an amount;
#: ``attachedStops`` — a buy may carry ``stopLoss`` / ``takeProfit`` prices as child orders;
#: ``trailingStops`` — an order may carry ccxt's ``trailingPercent`` (on an entry: a child
#: trailing stop; on a reduce-only order: the trailing stop itself);
#: ``shorts`` — a short position can be opened (a sell without holdings, on a swap market:
#: ``BTC/USDT:USDT``), with :class:`DerivativesBroker`'s verbs and ``params['reduceOnly']``.
MEMLAB_CAPABILITIES = ("simulatedFills", "costOrders", "attachedStops", "trailingStops", "shorts")


@runtime_checkable
class Broker(Protocol):
    """A broker connection. All order verbs are async and raise ccxt's errors."""

    name: str
    #: ccxt's ``has`` plus :data:`MEMLAB_CAPABILITIES`.
    has: Mapping[str, bool]

    async def connect(self) -> None: ...

    def market_symbol(self, symbol: str) -> str:
        """``"BTCUSDT"`` or ``"BTC/USDT"`` → the venue's unified symbol (``BadSymbol`` if unknown)."""
        ...

    def amount_rules(self, symbol: str) -> tuple[float | None, float | None]:
        """``(step, minimum)`` of order quantities on ``symbol``; None where the venue sets none."""
        ...

    def taker_fee(self, symbol: str) -> float:
        """The fee a market order pays on ``symbol``, as a fraction of its value."""
        ...

    def amount_to_precision(self, symbol: str, amount: float) -> float:
        """``amount`` rounded down to what the venue accepts."""
        ...

    async def create_order(self, symbol: str, type: str, side: str, amount: float | None, price: float | None = None,
                           params: Mapping[str, Any] | None = None) -> Order:
        """Place an order; ``params['clientOrderId']`` makes a repeat return the same order.
        ``stopLoss`` / ``takeProfit`` are trigger prices (see ``attachedStops``)."""
        ...

    async def find_by_client_id(self, symbol: str, client_id: str) -> Order | None: ...

    async def cancel_order(self, id: str, symbol: str | None = None) -> Order: ...

    async def fetch_order(self, id: str, symbol: str | None = None) -> Order: ...

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]: ...

    async def fetch_balance(self) -> Balance: ...

    async def fetch_positions(self) -> list[Position]: ...

    async def fetch_ticker(self, symbol: str) -> dict[str, Any]: ...

    def on_bar(self, symbol: str, bar: Bar) -> list[Fill]:
        """The fills a closed bar causes (``simulatedFills``); a live venue fills on its own: []."""
        ...

    def flush(self) -> None:
        """Make the book durable up to the last bar (before memory records anything about it)."""
        ...

    def book_state(self, symbol: str) -> BookState:
        """Where the book stands for ``symbol`` (what a restarted session resumes from)."""
        ...

    def fills_between(self, symbol: str, since: float, until: float) -> list[Fill]:
        """Fills of ``symbol`` in bars ``(since, until]`` that the book recorded (a venue: [])."""
        ...

    def add_markets(self, symbols: list[str]) -> None:
        """Symbols a replay feeds: a simulated venue lists them; a real venue has its own."""
        ...

    async def close(self, *, mark_closed: bool = True) -> None: ...


@runtime_checkable
class DerivativesBroker(Protocol):
    """The verbs of a broker with ``has['shorts']`` (perpetual swaps), ccxt's names and
    shapes. Optional: a spot-only broker need not have them (see :data:`BROKER_VERBS`)."""

    async def set_leverage(self, leverage: float, symbol: str, params: Mapping[str, Any] | None = None) -> Any:
        """Above the market's maximum: ``ccxt.BadRequest`` naming it."""
        ...

    async def set_margin_mode(self, margin_mode: str, symbol: str, params: Mapping[str, Any] | None = None) -> Any: ...

    async def fetch_market_leverage_tiers(self, symbol: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """ccxt's tiers: ``tier``, ``minNotional``, ``maxNotional``, ``maintenanceMarginRate``, ``maxLeverage``."""
        ...

    async def fetch_funding_rate_history(self, symbol: str, since: int | None = None, limit: int | None = None,
                                         params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]: ...

    async def fetch_funding_history(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Funding the account paid (negative ``amount``) or received (positive)."""
        ...


#: The verbs of :class:`DerivativesBroker` (present when ``has['shorts']``).
DERIVATIVE_VERBS = ("set_leverage", "set_margin_mode", "fetch_market_leverage_tiers", "fetch_funding_rate_history",
                    "fetch_funding_history")


#: The methods a broker needs (what :meth:`ConnectionManager.attach_broker` checks).
BROKER_VERBS = ("connect", "market_symbol", "amount_rules", "taker_fee", "amount_to_precision", "create_order",
                "find_by_client_id", "cancel_order", "fetch_order", "fetch_open_orders", "fetch_balance",
                "fetch_positions", "fetch_ticker", "on_bar", "flush", "book_state", "fills_between", "add_markets",
                "close")


def missing_verbs(broker: object) -> list[str]:
    """The :data:`BROKER_VERBS` ``broker`` lacks, and ``has`` / ``name`` if it has none."""
    missing = [verb for verb in BROKER_VERBS if not callable(getattr(broker, verb, None))]
    return missing + [attr for attr in ("has", "name") if not hasattr(broker, attr)]
