"""Broker connections with one set of async verbs: a ccxt exchange, or the paper broker.

Both speak ccxt's verbs (``create_order``, ``cancel_order``, ``fetch_order``,
``fetch_open_orders``, ``fetch_balance``, ``fetch_positions``) and ccxt's errors, so the
trader runs the same code in paper and live mode (freqtrade's dry-run rule).

:class:`ExchangeConnection` retries ccxt's "try again" errors with backoff and jitter
and records every call in the :class:`~memlab.connectors.health.HealthBoard`. An order
carries a client order id; when placing it fails in a way that leaves its fate unknown
(a timeout, a dropped connection, a garbled answer), the connection looks the id up on
the exchange before sending again, so a retry never places the order twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import ccxt

from memlab.connectors.health import HealthBoard
from memlab.connectors.paper_broker import PaperBroker
from memlab.connectors.protocol import Balance, BookState, Broker, Fill, Order, Position
from memlab.connectors.retry import RetryPolicy, is_retryable
from memlab.costs import DEFAULT_COSTS
from memlab.data.bars import Bar

log = logging.getLogger(__name__)
T = TypeVar("T")


def new_client_order_id(prefix: str = "mlab") -> str:
    """A fresh client order id (32 characters, within every major exchange's limit)."""
    return f"{prefix}-{uuid.uuid4().hex[: 31 - len(prefix)]}"


def checked_answer(method: str, result: Any) -> Any:
    """``result``, unless it is a garbled answer ccxt parsed into an empty structure (a
    truncated body gives an order without id, a balance of nothing): then ``BadResponse``,
    which is retried (and, for an order, looked up by client id first)."""
    def garbled(item: Any) -> bool:
        return isinstance(item, dict) and "info" in item and not isinstance(item["info"], (dict, list))

    if isinstance(result, dict):
        bad = garbled(result) or (method in ("create_order", "fetch_order", "cancel_order") and result.get("id") is None)
    elif isinstance(result, list):
        bad = any(garbled(r) for r in result) or (method == "fetch_ohlcv" and not all(isinstance(r, list) for r in result))
    else:
        bad = method in ("create_order", "fetch_order", "cancel_order", "fetch_balance", "fetch_ticker")
    if bad:
        raise ccxt.BadResponse(f"{method}: the venue's answer was garbled ({str(result)[:120]!r})")
    return result


class ExchangeConnection:
    """A ccxt async exchange behind retries, health tracking and idempotent orders
    (a :class:`~memlab.connectors.protocol.Broker`)."""

    def __init__(self, name: str, exchange: Any, health: HealthBoard, policy: RetryPolicy | None = None,
                 *, seed: int | None = None) -> None:
        self.name, self.exchange, self.health = name, exchange, health
        self.policy = policy or RetryPolicy()
        self._rng = random.Random(seed)
        health.register(name, "broker", exchange.id)

    @property
    def has(self) -> dict[str, bool]:
        """ccxt's ``has`` for this exchange; bars do not fill here, the venue does."""
        # Stops go as ccxt's unified stopLoss / takeProfit order params; the venue refuses
        # them if it cannot take them.
        has = {k: bool(v) for k, v in self.exchange.has.items()}
        # trailingPercent goes to the venue as ccxt's unified param; shorts need a
        # derivatives market (ccxt's own flags say whether the venue lists them).
        return {**has, "simulatedFills": False, "costOrders": False, "attachedStops": True,
                "trailingStops": has.get("createTrailingPercentOrder", False),
                "shorts": has.get("swap", False) or has.get("future", False)}

    def __repr__(self) -> str:  # never the credentials
        return f"ExchangeConnection({self.name!r}, exchange={self.exchange.id!r}, sandbox={self.sandbox})"

    @property
    def sandbox(self) -> bool:
        return bool(getattr(self.exchange, "isSandboxModeEnabled", False))

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``exchange.<method>(*args, **kwargs)`` with retries on "try again" errors."""
        fn: Callable[..., Awaitable[Any]] = getattr(self.exchange, method)

        async def attempt() -> Any:
            return checked_answer(method, await fn(*args, **kwargs))

        return await self._retry(method, attempt)

    async def _retry(self, what: str, attempt: Callable[[], Awaitable[T]],
                     look_up: Callable[[], Awaitable[T | None]] | None = None) -> T:
        """Run ``attempt``, retrying "try again" errors with backoff. With ``look_up`` (an
        order), a failed attempt's fate is settled first: found means placed (returned, not
        sent again); only a confirmed absence lets the attempt be sent again."""
        tries, settle = 0, False
        while True:
            started = time.perf_counter()
            try:
                if settle:
                    assert look_up is not None
                    found = await look_up()
                    if found is not None:
                        self.health.success(self.name, time.perf_counter() - started)
                        return found
                    settle = False
                    started = time.perf_counter()
                result = await attempt()
            except Exception as exc:
                if isinstance(exc, ccxt.BaseError) and not is_retryable(exc):
                    self.health.success(self.name, time.perf_counter() - started)  # the venue answered: "you are wrong"
                    raise
                tries += 1
                last = tries >= self.policy.attempts
                self.health.failure(self.name, exc, retrying=is_retryable(exc) and not last)
                if not is_retryable(exc) or last:
                    raise
                wait = self.policy.delay(tries - 1, self._rng)
                if isinstance(exc, ccxt.DDoSProtection):  # rate limited: at least the venue's own pace
                    wait = max(wait, float(getattr(self.exchange, "rateLimit", 0) or 0) / 1000.0)
                log.warning("%s %s failed (%s: %s); retry %d/%d in %.2f s", self.name, what, type(exc).__name__,
                            str(exc)[:200], tries, self.policy.attempts - 1, wait)
                await asyncio.sleep(wait)
                settle = settle or look_up is not None
                continue
            self.health.success(self.name, time.perf_counter() - started)
            return result

    async def connect(self) -> None:
        await self.call("load_markets")

    def market_symbol(self, symbol: str) -> str:
        """``"BTCUSDT"`` or ``"BTC/USDT"`` → the exchange's unified symbol."""
        markets = self.exchange.markets or {}
        if symbol in markets:
            return symbol
        by_id = getattr(self.exchange, "markets_by_id", None) or {}
        found = by_id.get(symbol)
        if found:
            return str(found[0]["symbol"] if isinstance(found, list) else found["symbol"])
        raise ccxt.BadSymbol(f"{self.name}: unknown symbol {symbol!r}")

    def _market(self, symbol: str) -> dict[str, Any]:
        return dict((self.exchange.markets or {}).get(self.market_symbol(symbol)) or {})

    def amount_rules(self, symbol: str) -> tuple[float | None, float | None]:
        """From the market: ccxt ``precision.amount`` (in the exchange's precision mode) and
        ``limits.amount.min``."""
        market = self._market(symbol)
        precision = (market.get("precision") or {}).get("amount")
        step = None
        if precision is not None:
            step = float(precision) if self.exchange.precisionMode == ccxt.TICK_SIZE else 10.0 ** -float(precision)
        minimum = ((market.get("limits") or {}).get("amount") or {}).get("min")
        return step, float(minimum) if minimum else step

    def taker_fee(self, symbol: str) -> float:
        """The market's taker fee as ccxt describes it, else memlab's default cost."""
        return float(self._market(symbol).get("taker") or DEFAULT_COSTS.fees)

    def amount_to_precision(self, symbol: str, amount: float) -> float:
        return float(self.exchange.amount_to_precision(self.market_symbol(symbol), amount))

    def on_bar(self, symbol: str, bar: Bar) -> list[Fill]:
        return []  # the venue fills; the trader polls its pending orders

    def flush(self) -> None:
        return None  # the venue keeps its own book

    def book_state(self, symbol: str) -> BookState:
        return BookState()  # a venue does not know which bars a session processed

    def fills_between(self, symbol: str, since: float, until: float) -> list[Fill]:
        return []

    def add_markets(self, symbols: list[str]) -> None:
        return None  # the venue lists its own

    async def create_order(self, symbol: str, type: str, side: str, amount: float | None, price: float | None = None,
                           params: Mapping[str, Any] | None = None) -> Order:
        params = dict(params or {})
        for key in ("stopLoss", "takeProfit"):  # trigger prices, in ccxt's unified form
            if isinstance(params.get(key), (int, float)):
                params[key] = {"triggerPrice": float(params[key])}
        client_id = str(params.setdefault("clientOrderId", new_client_order_id()))
        fn = self.exchange.create_order

        async def place() -> Order:
            return checked_answer("create_order", await fn(symbol, type, side, amount, price, dict(params)))  # type: ignore[no-any-return]

        async def look_up() -> Order | None:
            # Did the failed attempt reach the exchange? Then it is the order: do not send it again.
            return await self.find_by_client_id(symbol, client_id)

        return await self._retry(f"create_order {client_id}", place, look_up)

    async def find_by_client_id(self, symbol: str, client_id: str) -> Order | None:
        """The order with this client order id, or None when the exchange has none."""
        ex = self.exchange
        try:
            if ex.id.startswith("binance"):
                return checked_answer("fetch_order", await ex.fetch_order(None, symbol, {"clientOrderId": client_id}))
            for method, capability in (("fetch_open_orders", "fetchOpenOrders"), ("fetch_closed_orders", "fetchClosedOrders")):
                if not ex.has.get(capability):
                    continue
                for order in await getattr(ex, method)(symbol):
                    if order.get("clientOrderId") == client_id:
                        return order  # type: ignore[no-any-return]
        except ccxt.OrderNotFound:
            return None
        except ccxt.OperationFailed:
            raise  # unknown again: the retry loop waits and asks once more
        return None

    async def cancel_order(self, id: str, symbol: str | None = None) -> Order:
        return await self.call("cancel_order", id, symbol)  # type: ignore[no-any-return]

    async def fetch_order(self, id: str, symbol: str | None = None) -> Order:
        return await self.call("fetch_order", id, symbol)  # type: ignore[no-any-return]

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        return await self.call("fetch_open_orders", symbol)  # type: ignore[no-any-return]

    async def order_fee(self, order: Order) -> float | None:
        """The fee the venue charged for ``order``: its own ``fee``, else the sum of its trades'
        (Binance futures order answers carry no commission); None when neither says."""
        fee = (order.get("fee") or {}).get("cost")
        if fee is not None:
            return float(fee)
        if not self.exchange.has.get("fetchMyTrades") or not order.get("id"):
            return None
        trades = await self.call("fetch_my_trades", order.get("symbol"), None, None, {"orderId": order["id"]})
        costs = [float(t["fee"]["cost"]) for t in trades
                 if str(t.get("order")) == str(order["id"]) and (t.get("fee") or {}).get("cost") is not None]
        return sum(costs) if costs else None

    async def fetch_balance(self) -> Balance:
        return self._wallet_totals(await self.call("fetch_balance"))

    def _wallet_totals(self, balance: Balance) -> Balance:
        """``total`` is the wallet balance (cash and margin; unrealised P&L is not in it), as
        the paper broker's. ccxt's Binance futures balance gives ``marginBalance`` (wallet
        plus unrealised P&L) as ``total``: the ``walletBalance`` its answer carries replaces it."""
        info = balance.get("info")  # type: ignore[typeddict-item]
        assets = info.get("assets") if isinstance(info, dict) else None
        for row in assets if isinstance(assets, list) else ():
            if not isinstance(row, dict) or row.get("walletBalance") is None:
                continue
            code = self.exchange.safe_currency_code(row.get("asset"))
            if code in balance["total"]:
                balance["total"][code] = float(row["walletBalance"])
                if isinstance(balance.get(code), dict):
                    balance[code]["total"] = balance["total"][code]  # type: ignore[literal-required]
        return balance

    async def fetch_ticker(self, symbol: str) -> dict[str, Any]:
        return await self.call("fetch_ticker", symbol)

    async def fetch_positions(self) -> list[Position]:
        """Derivative venues: ccxt's positions. Spot venues: each held base asset with a
        market in the quote currency, marked at its last price."""
        if self.exchange.has.get("fetchPositions") and self.exchange.options.get("defaultType", "spot") != "spot":
            return await self.call("fetch_positions")
        balance = await self.fetch_balance()
        out: list[Position] = []
        for asset, amount in (balance.get("total") or {}).items():
            if not amount:
                continue
            symbol = next((s for s, m in (self.exchange.markets or {}).items()
                           if m.get("base") == asset and m.get("spot") and m.get("quote") in ("USDT", "USD", "USDC")), None)
            if symbol is None:
                continue
            last = (await self.fetch_ticker(symbol)).get("last")
            out.append({"symbol": symbol, "side": "long", "contracts": amount, "entryPrice": None,
                        "markPrice": last, "unrealizedPnl": None, "realizedPnl": None})
        return out

    # -- derivatives (DerivativesBroker): ccxt's verbs, passed through -------------
    async def set_leverage(self, leverage: float, symbol: str, params: Mapping[str, Any] | None = None) -> Any:
        # A whole leverage goes as an integer: Binance's is an INT parameter and refuses "2.0".
        whole = isinstance(leverage, float) and leverage.is_integer()
        return await self.call("set_leverage", int(leverage) if whole else leverage, symbol, dict(params or {}))

    async def set_margin_mode(self, margin_mode: str, symbol: str, params: Mapping[str, Any] | None = None) -> Any:
        return await self.call("set_margin_mode", margin_mode, symbol, dict(params or {}))

    async def fetch_market_leverage_tiers(self, symbol: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return await self.call("fetch_market_leverage_tiers", symbol, dict(params or {}))  # type: ignore[no-any-return]

    async def fetch_funding_rate_history(self, symbol: str, since: int | None = None, limit: int | None = None,
                                         params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return await self.call("fetch_funding_rate_history", symbol, since, limit, dict(params or {}))  # type: ignore[no-any-return]

    async def fetch_funding_history(self, symbol: str | None = None) -> list[dict[str, Any]]:
        return await self.call("fetch_funding_history", symbol)  # type: ignore[no-any-return]

    async def close(self, *, mark_closed: bool = True) -> None:
        if mark_closed:
            self.health.closed(self.name)
        await self.exchange.close()


class PaperConnection:
    """The paper broker behind the same async verbs (a :class:`~memlab.connectors.protocol.Broker`);
    bars from a feed drive its fills."""

    #: ccxt-style capabilities (the paper broker: spot, and linear perpetuals with
    #: isolated margin, on a durable book; see :mod:`memlab.connectors.paper_broker`).
    has: dict[str, bool] = {"createOrder": True, "cancelOrder": True, "fetchOrder": True, "fetchOpenOrders": True,
                            "fetchBalance": True, "fetchPositions": True, "fetchTicker": True,
                            "spot": True, "swap": True, "future": False, "margin": False,
                            "setLeverage": True, "fetchLeverage": True, "setMarginMode": True,
                            "fetchMarketLeverageTiers": True, "fetchFundingRateHistory": True,
                            "fetchFundingHistory": True, "createTrailingPercentOrder": True,
                            "createReduceOnlyOrder": True,
                            "simulatedFills": True, "costOrders": True, "attachedStops": True,
                            "trailingStops": True, "shorts": True}

    def __init__(self, name: str, broker: PaperBroker, health: HealthBoard | None = None) -> None:
        self.name, self.broker = name, broker
        self.health = health if health is not None else HealthBoard()
        self.health.register(name, "broker", "paper")

    def __repr__(self) -> str:
        return f"PaperConnection({self.name!r}, book={str(self.broker.path)!r})"

    def _timed(self, fn: Callable[..., T], *args: Any) -> T:
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.health.success(self.name, time.perf_counter() - started)

    async def connect(self) -> None:
        self._timed(self.broker.markets)

    def market_symbol(self, symbol: str) -> str:
        markets = self.broker.markets()
        if symbol in markets:
            return symbol
        for m in markets:
            if m.replace("/", "") == symbol.replace("/", ""):
                return m
        raise ccxt.BadSymbol(f"paper broker: unknown symbol {symbol!r}; known: {', '.join(markets) or 'none'}")

    #: The paper broker's quantity step and minimum: 8 decimals, as on most spot venues.
    STEP = 1e-8

    def amount_rules(self, symbol: str) -> tuple[float | None, float | None]:
        market = self.broker.market(self.market_symbol(symbol))
        minimum = market["limits"]["amount"]["min"]  # a listed minimum (swaps); spot: none, the step
        return self.STEP, float(minimum) if minimum else self.STEP

    def taker_fee(self, symbol: str) -> float:
        return self.broker.fees

    def amount_to_precision(self, symbol: str, amount: float) -> float:
        return float(int(amount / self.STEP) * self.STEP)

    def on_bar(self, symbol: str, bar: Bar) -> list[Fill]:
        return self.broker.on_bar(symbol, bar)  # type: ignore[return-value]

    def flush(self) -> None:
        self.broker.flush()

    def book_state(self, symbol: str) -> BookState:
        position = next((p for p in self.broker.fetch_positions() if p["symbol"] == symbol), None)
        return BookState(last_bar_time=self.broker.last_bar_time(symbol), last_price=self.broker.last_price(symbol),
                         entry_cost=position["entryPrice"] * position["contracts"] if position else 0.0)

    def fills_between(self, symbol: str, since: float, until: float) -> list[Fill]:
        return [f for f in self.broker.fills(symbol) if since < f["bar_time"] <= until]  # type: ignore[misc]

    def add_markets(self, symbols: list[str]) -> None:
        for symbol in symbols:
            self.broker.add_market(symbol)

    async def create_order(self, symbol: str, type: str, side: str, amount: float | None, price: float | None = None,
                           params: Mapping[str, Any] | None = None) -> Order:
        params = dict(params or {})
        params.setdefault("clientOrderId", new_client_order_id())
        return self._timed(self.broker.create_order, symbol, type, side, amount, price, params)  # type: ignore[return-value]

    async def find_by_client_id(self, symbol: str, client_id: str) -> Order | None:
        try:
            return self.broker.fetch_order(client_id)  # type: ignore[return-value]
        except ccxt.OrderNotFound:
            return None

    async def cancel_order(self, id: str, symbol: str | None = None) -> Order:
        return self._timed(self.broker.cancel_order, id, symbol)  # type: ignore[return-value]

    async def fetch_order(self, id: str, symbol: str | None = None) -> Order:
        return self._timed(self.broker.fetch_order, id, symbol)  # type: ignore[return-value]

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        return self._timed(self.broker.fetch_open_orders, symbol)  # type: ignore[return-value]

    async def fetch_balance(self) -> Balance:
        return self._timed(self.broker.fetch_balance)  # type: ignore[return-value]

    async def fetch_positions(self) -> list[Position]:
        return self._timed(self.broker.fetch_positions)  # type: ignore[return-value]

    async def fetch_ticker(self, symbol: str) -> dict[str, Any]:
        last = self.broker.last_price(symbol)
        return {"symbol": symbol, "last": last, "close": last}

    # -- derivatives (DerivativesBroker) -------------------------------------------
    async def set_leverage(self, leverage: float, symbol: str, params: Mapping[str, Any] | None = None) -> Any:
        return self._timed(self.broker.set_leverage, leverage, symbol, params)

    async def set_margin_mode(self, margin_mode: str, symbol: str, params: Mapping[str, Any] | None = None) -> Any:
        return self._timed(self.broker.set_margin_mode, margin_mode, symbol, params)

    async def fetch_market_leverage_tiers(self, symbol: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._timed(self.broker.fetch_market_leverage_tiers, symbol, params)

    async def fetch_funding_rate_history(self, symbol: str, since: int | None = None, limit: int | None = None,
                                         params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._timed(self.broker.fetch_funding_rate_history, symbol, since, limit, params)

    async def fetch_funding_history(self, symbol: str | None = None) -> list[dict[str, Any]]:
        return self._timed(self.broker.fetch_funding_history, symbol)

    async def close(self, *, mark_closed: bool = True) -> None:
        if mark_closed:
            self.health.closed(self.name)
        self.broker.close()


#: Any broker connection (the protocol every connection implements).
BrokerConnection = Broker
