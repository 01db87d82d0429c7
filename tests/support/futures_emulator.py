"""A Binance USDⓈ-M futures exchange on loopback, with faults on demand: ccxt's real
``binanceusdm`` client trades linear perpetuals against it over HTTP.

It serves the part of Binance's futures REST API (``/fapi``) that ccxt's ``binanceusdm``
calls for ``load_markets``, ``fetch_ticker``, ``fetch_ohlcv``, ``create_order``,
``fetch_order``, ``fetch_open_orders``, ``cancel_order``, ``fetch_my_trades``,
``fetch_balance``, ``fetch_positions``, ``set_leverage``, ``set_margin_mode``,
``fetch_market_leverage_tiers``, ``fetch_funding_rate_history`` and
``fetch_funding_history``: ``v1/exchangeInfo`` (perpetuals with ``LOT_SIZE``,
``MARKET_LOT_SIZE``, ``PRICE_FILTER`` and ``MIN_NOTIONAL`` filters), ``v1/time``,
``v1/ticker/24hr``, ``v1/premiumIndex``, ``v1/klines``, ``v1/fundingRate``, and signed:
``v1/order`` (POST, GET, DELETE), ``v1/openOrders``, ``v1/userTrades``, ``v1/income``,
``v2|v3/account``, ``v2|v3/balance``, ``v2|v3/positionRisk`` (v2 with ``leverage`` and
``marginType``, v3 without, as Binance does), ``v1/leverage``, ``v1/marginType`` and
``v1/leverageBracket``. Signatures, error codes and shapes are Binance's; the faults,
the HTTP server and the signature check are :class:`~tests.support.exchange_emulator.LoopbackVenue`'s
(the spot emulator's), armed the same way (``path="/fapi/v1/order"``).

The account is one-way mode (``positionSide`` ``BOTH``), in one settle asset per market:

- a position is a signed ``positionAmt`` (negative: short) at an averaged ``entryPrice``;
  an order against it closes what it closes (realised P&L into the wallet) and opens the
  rest on the other side (a reversal is one order);
- margin is ``cross`` (Binance's default) or ``isolated`` per symbol
  (:meth:`BinanceFuturesEmulator.set_margin_type`, or ``v1/marginType``): isolated moves
  ``notional / leverage`` from the cross wallet into the position's ``isolatedWallet``
  when it opens, and back in proportion when it closes;
- an order that opens must be paid for: ``qty x price x (1/leverage + fee)`` of
  ``availableBalance`` (after what it closes), else ``-2019 Margin is insufficient.``
  and nothing happens; ``reduceOnly`` orders only reduce (``-2022`` when there is
  nothing to reduce) and are capped at the position;
- market orders fill at the current price (taker fee); a limit order that crosses it
  fills at once at that price (taker), otherwise it rests until
  :meth:`BinanceFuturesEmulator.set_price` / :meth:`push_bar` reach its price (maker fee);
- the wallet is what was deposited plus realised P&L less fees; ``marginBalance`` adds
  unrealised P&L at the mark (the last price); the liquidation price is Binance's
  isolated formula with the leverage bracket of the notional; positions are never
  liquidated here, and funding rates are served as history, never settled.

Leverage brackets (:data:`BRACKETS`) have the shape of Binance's BTCUSDT schedule; the
numbers are illustrative.

>>> import ccxt
>>> with BinanceFuturesEmulator(balances={"USDT": 1000.0}, markets={"BTC/USDT:USDT": 100.0}) as emu:
...     ex = ccxt.binanceusdm(emu.ccxt_config())
...     _ = ex.set_leverage(2, "BTC/USDT:USDT")
...     short = ex.create_order("BTC/USDT:USDT", "market", "sell", 3.0)
...     emu.set_price("BTC/USDT:USDT", 90.0)
...     [(p["side"], p["contracts"], p["entryPrice"], p["unrealizedPnl"]) for p in ex.fetch_positions()]
[('short', 3.0, 100.0, 30.0)]
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tests.support.exchange_emulator import LoopbackVenue, Route

FAPI = "/fapi"

#: Leverage brackets for every market: (notional floor, cap, max leverage, maintenance
#: margin ratio), the shape of Binance's BTCUSDT schedule (illustrative numbers).
BRACKETS: tuple[tuple[float, float, int, float], ...] = (
    (0.0, 50_000.0, 125, 0.004), (50_000.0, 600_000.0, 100, 0.005), (600_000.0, 3_000_000.0, 75, 0.0065),
    (3_000_000.0, 12_000_000.0, 50, 0.01), (12_000_000.0, 70_000_000.0, 25, 0.02),
    (70_000_000.0, 100_000_000.0, 20, 0.025), (100_000_000.0, 230_000_000.0, 10, 0.05),
    (230_000_000.0, 480_000_000.0, 5, 0.1), (480_000_000.0, 600_000_000.0, 4, 0.125),
    (600_000_000.0, 800_000_000.0, 3, 0.15), (800_000_000.0, 1_200_000_000.0, 2, 0.25),
    (1_200_000_000.0, 1_800_000_000.0, 1, 0.5),
)


def _cum(brackets: tuple[tuple[float, float, int, float], ...]) -> list[float]:
    """Each bracket's maintenance amount (Binance's ``cum``): continuous across brackets."""
    out = [0.0]
    for prev, cur in zip(brackets, brackets[1:], strict=False):
        out.append(out[-1] + prev[1] * (cur[3] - prev[3]))
    return out


CUM = _cum(BRACKETS)


def _f(x: float, places: int = 8) -> str:
    return f"{x:.{places}f}"


@dataclass
class _Position:
    amt: float = 0.0  # signed contracts (base units): < 0 short
    entry: float = 0.0
    isolated_wallet: float = 0.0  # margin moved in from the cross wallet (isolated mode)
    update_ms: int = 0


class BinanceFuturesEmulator(LoopbackVenue):
    """Binance USDⓈ-M futures REST on ``127.0.0.1:<free port>`` (see the module docstring).

    ``markets``: perpetual symbol (``BTC/USDT:USDT``) -> price; ``balances``: the futures
    wallet; ``fees`` / ``maker_fees``: taker / maker fee rates (ccxt's defaults for the
    market, so its ``taker`` is what is charged); ``leverage`` and ``margin_type`` are
    every symbol's initial settings (Binance: 20x, cross); ``step`` / ``min_notional``:
    the quantity step (also the minimum) and the minimum notional of an order.
    """

    thread_name = "binance-futures-emulator"

    def __init__(self, *, balances: Mapping[str, float] | None = None, markets: Mapping[str, float] | None = None,
                 fees: float = 0.0005, maker_fees: float = 0.0002, leverage: int = 20, margin_type: str = "cross",
                 step: float = 0.001, min_notional: float = 5.0, api_key: str = "emulator-key",
                 api_secret: str = "emulator-secret", port: int = 0) -> None:
        super().__init__(api_key=api_key, api_secret=api_secret, port=port)
        self.fees, self.maker_fees = float(fees), float(maker_fees)
        self.step, self.min_notional = float(step), float(min_notional)
        self.wallet: dict[str, float] = {a: float(v) for a, v in (balances or {"USDT": 100_000.0}).items()}
        self.prices: dict[str, float] = dict(markets or {"BTC/USDT:USDT": 50_000.0})
        for symbol in self.prices:
            if ":" not in symbol:
                raise ValueError(f"a perpetual's symbol is BASE/QUOTE:SETTLE, got {symbol!r}")
        self.klines: dict[str, list[list[float]]] = {s: [] for s in self.prices}
        self.leverage: dict[str, int] = dict.fromkeys(self.prices, int(leverage))
        self.margin_types: dict[str, str] = dict.fromkeys(self.prices, self._margin_type(margin_type))
        self.positions: dict[str, _Position] = {s: _Position() for s in self.prices}
        self.orders: list[dict[str, Any]] = []
        self.trades: list[dict[str, Any]] = []
        self.incomes: list[dict[str, Any]] = []
        self.funding_rates: dict[str, list[tuple[int, float]]] = {s: [] for s in self.prices}

    @staticmethod
    def _margin_type(value: str) -> str:
        kind = {"cross": "cross", "crossed": "cross", "isolated": "isolated"}.get(str(value).lower())
        if kind is None:
            raise ValueError(f"margin type is cross or isolated, got {value!r}")
        return kind

    # -- ccxt ------------------------------------------------------------------------------
    def ccxt_config(self, **extra: Any) -> dict[str, Any]:
        """Settings for a ccxt ``binanceusdm`` (sync or async) that talk to this emulator only.

        ccxt chooses its USDⓈ-M error table by the URL (``https://fapi.binance.com/``), which a
        loopback URL is not; the table is given here so Binance's codes map as they do there
        (``-2019`` is ``InsufficientFunds``, ``-2022`` ``InvalidOrder``...)."""
        import ccxt

        versions = {"fapiPublic": "v1", "fapiPublicV2": "v2", "fapiPublicV3": "v3", "fapiPrivate": "v1",
                    "fapiPrivateV2": "v2", "fapiPrivateV3": "v3"}
        urls: dict[str, Any] = {}
        for key in ccxt.binanceusdm().urls["api"]:
            if key in versions:
                urls[key] = f"{self.url}{FAPI}/{versions[key]}"
            elif key == "fapiData":
                urls[key] = f"{self.url}/futures/data"
            else:  # spot, margin, options... are not served: a 404 here, never the internet
                urls[key] = f"{self.url}/not-served/{key}"
        linear = ccxt.binanceusdm().exceptions["linear"]["exact"]
        return {"apiKey": self.api_key, "secret": self._secret, "enableRateLimit": False, "urls": {"api": urls},
                "options": {"fetchMarkets": {"types": ["linear"]}, "fetchCurrencies": False, "fetchMargins": False},
                "exceptions": {"exact": dict(linear)}, **extra}

    def manager_options(self) -> dict[str, Any]:
        """Options for :meth:`ConnectionManager.add_broker_connection` (with
        ``exchange="binanceusdm"``) to reach this emulator."""
        cfg = self.ccxt_config()
        return {"urls": cfg["urls"]["api"], "options": cfg["options"], "exceptions": cfg["exceptions"],
                "rate_limit": False}

    # -- the market --------------------------------------------------------------------------
    def load_bars(self, symbol: str, frame: Any) -> None:
        """Serve ``frame``'s bars (an OHLCV frame with a UTC index) as the symbol's candles."""
        for t, row in zip(frame.index, frame.itertuples(), strict=True):
            self.push_bar(symbol, t.timestamp(), row.Open, row.High, row.Low, row.Close, row.Volume)

    def set_price(self, symbol: str, price: float) -> None:
        self.push_bar(symbol, None, price, price, price, price)

    def push_bar(self, symbol: str, time_s: float | None, o: float, h: float, low: float, c: float, v: float = 1.0) -> None:
        """A new candle (``time_s`` None: price only); resting limit orders it reaches fill at their price."""
        with self._lock:
            if time_s is not None:
                self.klines[symbol].append([int(time_s * 1000), o, h, low, c, v])
            self.prices[symbol] = c
            for order in self.orders:
                if order["symbol"] == symbol and order["status"] == "NEW":
                    limit = float(order["price"])
                    if (order["side"] == "BUY" and low <= limit) or (order["side"] == "SELL" and h >= limit):
                        self._execute(order, limit, maker=True)

    def set_funding_rates(self, symbol: str, rates: Iterable[tuple[float, float]]) -> None:
        """Funding rates ``(time in seconds, rate)`` served by ``v1/fundingRate``."""
        with self._lock:
            self.funding_rates[symbol] = sorted((int(t * 1000), float(r)) for t, r in rates)

    def set_margin_type(self, symbol: str, margin_type: str) -> None:
        with self._lock:
            self.margin_types[symbol] = self._margin_type(margin_type)

    def position(self, symbol: str) -> tuple[float, float]:
        """``(signed positionAmt, entryPrice)`` of ``symbol``."""
        with self._lock:
            pos = self.positions[symbol]
            return pos.amt, pos.entry

    def orders_with_client_id(self, client_id: str) -> list[dict[str, Any]]:
        return [o for o in self.orders if o["clientOrderId"] == client_id]

    # -- routes ----------------------------------------------------------------------------------
    def _routes(self) -> list[Route]:
        public = [("GET", "v1/exchangeInfo", self._exchange_info), ("GET", "v1/time", self._time),
                  ("GET", "v1/ping", lambda _: (200, {})), ("GET", "v1/ticker/24hr", self._ticker),
                  ("GET", "v1/premiumIndex", self._premium_index), ("GET", "v1/klines", self._klines),
                  ("GET", "v1/fundingRate", self._funding_rate)]
        private = [("POST", "v1/order", self._new_order), ("GET", "v1/order", self._get_order),
                   ("DELETE", "v1/order", self._cancel_order), ("GET", "v1/openOrders", self._open_orders),
                   ("GET", "v1/allOrders", self._all_orders), ("GET", "v1/userTrades", self._user_trades),
                   ("GET", "v1/income", self._income), ("POST", "v1/leverage", self._set_leverage),
                   ("POST", "v1/marginType", self._set_margin_type), ("GET", "v1/leverageBracket", self._brackets),
                   ("GET", "v2/account", self._account), ("GET", "v3/account", self._account),
                   ("GET", "v2/balance", self._balance), ("GET", "v3/balance", self._balance),
                   ("GET", "v2/positionRisk", lambda p: self._position_risk(p, v3=False)),
                   ("GET", "v3/positionRisk", lambda p: self._position_risk(p, v3=True))]
        return ([(m, f"{FAPI}/{path}", h, False) for m, path, h in public]
                + [(m, f"{FAPI}/{path}", h, True) for m, path, h in private])

    # -- helpers (under the lock) -------------------------------------------------------------------
    @staticmethod
    def _id(symbol: str) -> str:
        return symbol.partition(":")[0].replace("/", "")

    def _symbol(self, market_id: str | None) -> str | None:
        return next((s for s in self.prices if self._id(s) == market_id), None)

    @staticmethod
    def _settle(symbol: str) -> str:
        return symbol.partition(":")[2]

    @staticmethod
    def _now() -> int:
        return int(time.time() * 1000)

    @staticmethod
    def _bracket(notional: float) -> int:
        return next((i for i, b in enumerate(BRACKETS) if notional < b[1]), len(BRACKETS) - 1)

    def _max_notional(self, leverage: int) -> float:
        return max((b[1] for b in BRACKETS if b[2] >= leverage), default=0.0)

    def _upnl(self, symbol: str) -> float:
        pos = self.positions[symbol]
        return pos.amt * (self.prices[symbol] - pos.entry) if pos.amt else 0.0

    def _position_im(self, symbol: str) -> float:
        pos = self.positions[symbol]
        return abs(pos.amt) * self.prices[symbol] / self.leverage[symbol]

    def _order_im(self, symbol: str) -> float:
        """Initial margin resting orders hold (what they would open)."""
        return sum(float(o["origQty"]) * float(o["price"]) / self.leverage[symbol] for o in self.orders
                   if o["symbol"] == symbol and o["status"] == "NEW" and not o["reduceOnly"])

    def _available(self, asset: str) -> float:
        """``availableBalance``: the cross wallet with cross positions' unrealised P&L, less
        the initial margin of cross positions and of resting orders."""
        out = self.wallet.get(asset, 0.0)
        for s in self.prices:
            if self._settle(s) != asset:
                continue
            if self.margin_types[s] == "cross":
                out += self._upnl(s) - self._position_im(s)
            out -= self._order_im(s)
        return out

    def _liquidation_price(self, symbol: str) -> float:
        """Binance's formula for a one-way position: (WB + cum - side*qty*entry) / (qty*MMR - side*qty),
        WB the isolated wallet (cross: the cross wallet); 0 when none."""
        pos = self.positions[symbol]
        if not pos.amt:
            return 0.0
        qty, side = abs(pos.amt), 1.0 if pos.amt > 0 else -1.0
        i = self._bracket(qty * self.prices[symbol])
        wallet = pos.isolated_wallet if self.margin_types[symbol] == "isolated" else self.wallet[self._settle(symbol)]
        price = (wallet + CUM[i] - side * qty * pos.entry) / (qty * BRACKETS[i][3] - side * qty)
        return max(price, 0.0)

    # -- public endpoints -----------------------------------------------------------------------------
    def _exchange_info(self, _: dict[str, str]) -> tuple[int, Any]:
        places = max(len(f"{self.step:.10f}".rstrip("0").partition(".")[2]), 0)
        symbols = []
        for s in self.prices:
            base, _, rest = s.partition("/")
            quote, _, settle = rest.partition(":")
            symbols.append({
                "symbol": self._id(s), "pair": self._id(s), "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
                "onboardDate": 1569398400000, "status": "TRADING", "maintMarginPercent": "2.5000",
                "requiredMarginPercent": "5.0000", "baseAsset": base, "quoteAsset": quote, "marginAsset": settle,
                "pricePrecision": 2, "quantityPrecision": places, "baseAssetPrecision": 8, "quotePrecision": 8,
                "underlyingType": "COIN", "underlyingSubType": [], "triggerProtect": "0.0500", "liquidationFee": "0.012500",
                "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "4529764", "tickSize": "0.01"},
                    {"filterType": "LOT_SIZE", "minQty": _f(self.step, places), "maxQty": "1000",
                     "stepSize": _f(self.step, places)},
                    {"filterType": "MARKET_LOT_SIZE", "minQty": _f(self.step, places), "maxQty": "120",
                     "stepSize": _f(self.step, places)},
                    {"filterType": "MAX_NUM_ORDERS", "limit": 200}, {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                    {"filterType": "MIN_NOTIONAL", "notional": f"{self.min_notional:g}"},
                    {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                     "multiplierDecimal": "4"}],
                "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                               "TRAILING_STOP_MARKET"],
                "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"]})
        return 200, {"timezone": "UTC", "serverTime": self._now(), "futuresType": "U_MARGINED", "rateLimits": [],
                     "exchangeFilters": [], "assets": [{"asset": a, "marginAvailable": True} for a in self.wallet],
                     "symbols": symbols}

    def _ticker(self, p: dict[str, str]) -> tuple[int, Any]:
        def one(s: str) -> dict[str, Any]:
            price = _f(self.prices[s], 2)
            return {"symbol": self._id(s), "priceChange": "0", "priceChangePercent": "0", "weightedAvgPrice": price,
                    "lastPrice": price, "lastQty": "0", "openPrice": price, "highPrice": price, "lowPrice": price,
                    "volume": "0", "quoteVolume": "0", "openTime": 0, "closeTime": self._now(), "firstId": 0,
                    "lastId": 0, "count": 0}

        if "symbol" in p:
            s = self._symbol(p["symbol"])
            return (200, one(s)) if s else self._error(-1121, "Invalid symbol.")
        return 200, [one(s) for s in self.prices]

    def _premium_index(self, p: dict[str, str]) -> tuple[int, Any]:
        def one(s: str) -> dict[str, Any]:
            rates = self.funding_rates[s]
            return {"symbol": self._id(s), "markPrice": _f(self.prices[s]), "indexPrice": _f(self.prices[s]),
                    "estimatedSettlePrice": _f(self.prices[s]), "lastFundingRate": _f(rates[-1][1] if rates else 0.0),
                    "interestRate": "0.00010000", "nextFundingTime": (self._now() // 28_800_000 + 1) * 28_800_000,
                    "time": self._now()}

        if "symbol" in p:
            s = self._symbol(p["symbol"])
            return (200, one(s)) if s else self._error(-1121, "Invalid symbol.")
        return 200, [one(s) for s in self.prices]

    def _klines(self, p: dict[str, str]) -> tuple[int, Any]:
        s = self._symbol(p.get("symbol"))
        if s is None:
            return self._error(-1121, "Invalid symbol.")
        start, end = int(p.get("startTime", 0)), int(p.get("endTime", 2**62))
        rows = [k for k in self.klines[s] if start <= k[0] <= end][: int(p.get("limit", 500))]
        return 200, [[k[0], *(str(x) for x in k[1:6]), k[0] + 59_999, "0", 1, "0", "0", "0"] for k in rows]

    def _funding_rate(self, p: dict[str, str]) -> tuple[int, Any]:
        s = self._symbol(p.get("symbol")) if p.get("symbol") else None
        if p.get("symbol") and s is None:
            return self._error(-1121, "Invalid symbol.")
        start, end = int(p.get("startTime", 0)), int(p.get("endTime", 2**62))
        rows = [{"symbol": self._id(sym), "fundingTime": t, "fundingRate": _f(r), "markPrice": _f(self.prices[sym])}
                for sym in ([s] if s else list(self.prices)) for t, r in self.funding_rates[sym] if start <= t <= end]
        rows.sort(key=lambda r: r["fundingTime"])
        return 200, rows[: int(p.get("limit", 100))]

    # -- orders ----------------------------------------------------------------------------------------
    def _new_order(self, p: dict[str, str]) -> tuple[int, Any]:
        s = self._symbol(p.get("symbol"))
        if s is None:
            return self._error(-1121, "Invalid symbol.")
        side, type_ = p.get("side", ""), p.get("type", "")
        if side not in ("BUY", "SELL"):
            return self._error(-1117, "Invalid side.")
        if type_ not in ("MARKET", "LIMIT"):
            return self._error(-1116, "Invalid orderType.")
        if p.get("positionSide", "BOTH") != "BOTH":
            return self._error(-4061, "Order's position side does not match user's setting.")
        cid = p.get("newClientOrderId") or f"emu-{next(self._ids)}"
        if any(o["clientOrderId"] == cid and o["status"] == "NEW" for o in self.orders):
            return self._error(-4116, "ClientOrderId is duplicated.")
        try:
            qty = float(p.get("quantity") or 0)
        except ValueError:
            return self._error(-1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
        if qty <= 0:
            return self._error(-4003, "Quantity less than or equal to zero.")
        if abs(round(qty / self.step) * self.step - qty) > 1e-9:
            return self._error(-1111, "Precision is over the maximum defined for this asset.")
        if qty < self.step - 1e-12:
            return self._error(-4003, "Quantity less than or equal to zero.")
        reduce_only = p.get("reduceOnly", "false").lower() == "true"
        price = self.prices[s]
        if type_ == "LIMIT":
            if not p.get("price"):
                return self._error(-1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")
            limit = float(p["price"])
            crosses = (side == "BUY" and limit >= price) or (side == "SELL" and limit <= price)
        else:
            limit, crosses = 0.0, True
        pos = self.positions[s]
        sign = 1.0 if side == "BUY" else -1.0
        if reduce_only and pos.amt * sign >= 0:
            return self._error(-2022, "ReduceOnly Order is rejected.")
        at = price if crosses else limit
        if not reduce_only and qty * at < self.min_notional:
            return self._error(-4164, f"Order's notional must be no smaller than {self.min_notional:g} (unless you "
                                      "choose reduce only).")
        order = {"symbol": s, "orderId": next(self._ids), "clientOrderId": cid, "side": side, "type": type_,
                 "origType": type_, "price": _f(limit) if type_ == "LIMIT" else "0", "avgPrice": "0.00",
                 "origQty": _f(qty, 3), "executedQty": "0", "cumQty": "0", "cumQuote": "0", "status": "NEW",
                 "timeInForce": p.get("timeInForce", "GTC") if type_ == "LIMIT" else "GTC",
                 "reduceOnly": reduce_only, "closePosition": False, "positionSide": "BOTH", "stopPrice": "0",
                 "workingType": "CONTRACT_PRICE", "priceProtect": False, "priceMatch": "NONE",
                 "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0, "time": self._now(),
                 "updateTime": self._now()}
        if crosses:
            refused = self._execute(order, price, maker=False, placing=True)
            if refused is not None:
                return refused
        else:
            need = 0.0 if reduce_only else qty * limit / self.leverage[s]
            if need > self._available(self._settle(s)) + 1e-9:
                return self._error(-2019, "Margin is insufficient.")
        self.orders.append(order)
        return 200, self._view(order, placed=True)

    def _execute(self, order: dict[str, Any], price: float, *, maker: bool,
                 placing: bool = False) -> tuple[int, Any] | None:
        """Fill ``order`` at ``price``: close what it closes, open the rest. A refusal (margin,
        reduce-only, the leverage's maximum position) is returned when ``placing`` (nothing
        happened); a resting order that can no longer fill expires."""
        s = order["symbol"]
        asset, pos, lev = self._settle(s), self.positions[s], self.leverage[s]
        sign = 1.0 if order["side"] == "BUY" else -1.0
        qty = float(order["origQty"])
        closing = min(qty, abs(pos.amt)) if pos.amt * sign < 0 else 0.0
        opening = 0.0 if order["reduceOnly"] else round(qty - closing, 9)
        rate = self.maker_fees if maker else self.fees
        refusal: tuple[int, Any] | None = None
        if order["reduceOnly"] and closing <= 0:
            refusal = self._error(-2022, "ReduceOnly Order is rejected.")
        elif opening > 0:
            realized = closing * (price - pos.entry) * (1.0 if pos.amt > 0 else -1.0) if closing else 0.0
            released = 0.0
            if closing and self.margin_types[s] == "isolated":
                released = pos.isolated_wallet * closing / abs(pos.amt)
            elif closing:
                released = closing * self.prices[s] / lev - closing * (self.prices[s] - pos.entry) * \
                    (1.0 if pos.amt > 0 else -1.0)  # cross: its margin and unrealised P&L leave the available
            available = self._available(asset) + released + realized - closing * price * rate
            if not order["reduceOnly"] and order["status"] == "NEW" and order["type"] == "LIMIT" and not placing:
                available += opening * float(order["price"]) / lev  # the margin it held while resting
            if opening * price * (1 / lev + rate) > available + 1e-9:
                refusal = self._error(-2019, "Margin is insufficient.")
            elif (abs(pos.amt) - closing + opening) * price > self._max_notional(lev):
                refusal = self._error(-2027, "Exceeded the maximum allowable position at current leverage.")
        if refusal is not None:
            if placing:
                return refusal
            order.update(status="EXPIRED", updateTime=self._now())
            return None
        filled = closing + opening
        fee = filled * price * rate
        realized = 0.0
        if closing:
            long_ = pos.amt > 0
            realized = closing * (price - pos.entry) * (1.0 if long_ else -1.0)
            if self.margin_types[s] == "isolated":
                released = pos.isolated_wallet * closing / abs(pos.amt)
                pos.isolated_wallet -= released
                self.wallet[asset] += released
            pos.amt = round(pos.amt + sign * closing, 9)
            if not pos.amt:
                pos.amt, pos.entry, pos.isolated_wallet = 0.0, 0.0, 0.0
        if opening:
            size = abs(pos.amt) + opening
            pos.entry = (abs(pos.amt) * pos.entry + opening * price) / size
            pos.amt = round(sign * size, 9)
            if self.margin_types[s] == "isolated":
                margin = opening * price / lev
                pos.isolated_wallet += margin
                self.wallet[asset] -= margin
        self.wallet[asset] += realized - fee
        pos.update_ms = self._now()
        trade_id = next(self._ids)
        self.trades.append({"symbol": self._id(s), "id": trade_id, "orderId": order["orderId"], "side": order["side"],
                            "price": _f(price), "qty": _f(filled, 3), "realizedPnl": _f(realized),
                            "marginAsset": asset, "quoteQty": _f(filled * price), "commission": _f(fee),
                            "commissionAsset": asset, "time": pos.update_ms, "positionSide": "BOTH",
                            "buyer": order["side"] == "BUY", "maker": maker})
        for kind, amount in (("REALIZED_PNL", realized if closing else None), ("COMMISSION", -fee)):
            if amount is not None:
                self.incomes.append({"symbol": self._id(s), "incomeType": kind, "income": _f(amount), "asset": asset,
                                     "info": "", "time": pos.update_ms, "tranId": next(self._ids),
                                     "tradeId": str(trade_id)})
        order.update(status="FILLED", executedQty=_f(filled, 3), cumQty=_f(filled, 3), cumQuote=_f(filled * price),
                     avgPrice=_f(price), updateTime=pos.update_ms)
        if not pos.amt:  # reduce-only orders left with nothing to reduce go, as on Binance
            for other in self.orders:
                if other["symbol"] == s and other["status"] == "NEW" and other["reduceOnly"]:
                    other.update(status="EXPIRED", updateTime=pos.update_ms)
        return None

    def _view(self, order: dict[str, Any], *, placed: bool = False) -> dict[str, Any]:
        out = {**order, "symbol": self._id(order["symbol"])}
        if placed:
            out.pop("time")  # the POST answer has updateTime only
        return out

    def _find(self, p: dict[str, str]) -> dict[str, Any] | None:
        s = self._symbol(p.get("symbol"))
        for o in self.orders:
            if o["symbol"] == s and (str(o["orderId"]) == p.get("orderId") or o["clientOrderId"] == p.get("origClientOrderId")):
                return o
        return None

    def _get_order(self, p: dict[str, str]) -> tuple[int, Any]:
        if self._symbol(p.get("symbol")) is None:
            return self._error(-1121, "Invalid symbol.")
        order = self._find(p)
        return (200, self._view(order)) if order else self._error(-2013, "Order does not exist.")

    def _cancel_order(self, p: dict[str, str]) -> tuple[int, Any]:
        order = self._find(p)
        if order is None or order["status"] != "NEW":
            return self._error(-2011, "Unknown order sent.")
        order.update(status="CANCELED", updateTime=self._now())
        return 200, self._view(order, placed=True)

    def _open_orders(self, p: dict[str, str]) -> tuple[int, Any]:
        s = self._symbol(p.get("symbol")) if p.get("symbol") else None
        return 200, [self._view(o) for o in self.orders if o["status"] == "NEW" and (s is None or o["symbol"] == s)]

    def _all_orders(self, p: dict[str, str]) -> tuple[int, Any]:
        s = self._symbol(p.get("symbol"))
        if s is None:
            return self._error(-1121, "Invalid symbol.")
        return 200, [self._view(o) for o in self.orders if o["symbol"] == s][-int(p.get("limit", 500)):]

    def _user_trades(self, p: dict[str, str]) -> tuple[int, Any]:
        s = self._symbol(p.get("symbol"))
        if s is None:
            return self._error(-1121, "Invalid symbol.")
        rows = [t for t in self.trades if t["symbol"] == self._id(s)
                and (not p.get("orderId") or str(t["orderId"]) == p["orderId"])]
        return 200, rows[-int(p.get("limit", 500)):]

    def _income(self, p: dict[str, str]) -> tuple[int, Any]:
        rows = [i for i in self.incomes if (not p.get("symbol") or i["symbol"] == p["symbol"])
                and (not p.get("incomeType") or i["incomeType"] == p["incomeType"])
                and int(p.get("startTime", 0)) <= i["time"] <= int(p.get("endTime", 2**62))]
        return 200, rows[: int(p.get("limit", 100))]

    # -- account settings -----------------------------------------------------------------------------
    def _set_leverage(self, p: dict[str, str]) -> tuple[int, Any]:
        s = self._symbol(p.get("symbol"))
        if s is None:
            return self._error(-1121, "Invalid symbol.")
        if not p.get("leverage"):
            return self._error(-1102, "Mandatory parameter 'leverage' was not sent, was empty/null, or malformed.")
        if not p["leverage"].isdigit():  # an INT parameter: "2.0" is refused
            return self._error(-1100, "Illegal characters found in parameter 'leverage'; legal range is '^[0-9]{1,20}$'.")
        leverage = int(p["leverage"])
        if not 1 <= leverage <= BRACKETS[0][2]:
            return self._error(-4028, f"Leverage {leverage} is not valid")
        pos = self.positions[s]
        if abs(pos.amt) * self.prices[s] > self._max_notional(leverage):
            return self._error(-2027, "Exceeded the maximum allowable position at current leverage.")
        if pos.amt and self.margin_types[s] == "isolated" and leverage < self.leverage[s]:
            return self._error(-4161, "Leverage reduction is not supported in Isolated Margin Mode with open positions.")
        self.leverage[s] = leverage
        return 200, {"symbol": self._id(s), "leverage": leverage, "maxNotionalValue": f"{self._max_notional(leverage):.0f}"}

    def _set_margin_type(self, p: dict[str, str]) -> tuple[int, Any]:
        s = self._symbol(p.get("symbol"))
        if s is None:
            return self._error(-1121, "Invalid symbol.")
        wanted = {"ISOLATED": "isolated", "CROSSED": "cross"}.get(p.get("marginType", ""))
        if wanted is None:
            return self._error(-1116, "Invalid marginType.")
        if wanted == self.margin_types[s]:
            return self._error(-4046, "No need to change margin type.")
        if self.positions[s].amt:
            return self._error(-4048, "Margin type cannot be changed if there exists position.")
        if any(o["symbol"] == s and o["status"] == "NEW" for o in self.orders):
            return self._error(-4047, "Margin type cannot be changed if there exists open orders.")
        self.margin_types[s] = wanted
        return 200, {"code": 200, "msg": "success"}

    def _brackets(self, p: dict[str, str]) -> tuple[int, Any]:
        def one(s: str) -> dict[str, Any]:
            return {"symbol": self._id(s), "notionalCoef": 1.0, "brackets": [
                {"bracket": i + 1, "initialLeverage": lev, "notionalCap": cap, "notionalFloor": floor,
                 "maintMarginRatio": mmr, "cum": CUM[i]} for i, (floor, cap, lev, mmr) in enumerate(BRACKETS)]}

        if p.get("symbol"):
            s = self._symbol(p["symbol"])
            return (200, [one(s)]) if s else self._error(-1121, "Invalid symbol.")
        return 200, [one(s) for s in self.prices]

    # -- account ------------------------------------------------------------------------------------------
    def _asset(self, asset: str) -> dict[str, Any]:
        mine = [s for s in self.prices if self._settle(s) == asset]
        isolated = sum(self.positions[s].isolated_wallet for s in mine)
        upnl = sum(self._upnl(s) for s in mine)
        cross_upnl = sum(self._upnl(s) for s in mine if self.margin_types[s] == "cross")
        position_im = sum(self._position_im(s) for s in mine)
        order_im = sum(self._order_im(s) for s in mine)
        maint = 0.0
        for s in mine:
            notional = abs(self.positions[s].amt) * self.prices[s]
            if notional:
                i = self._bracket(notional)
                maint += notional * BRACKETS[i][3] - CUM[i]
        wallet = self.wallet.get(asset, 0.0) + isolated
        available = self._available(asset)
        return {"asset": asset, "walletBalance": _f(wallet), "unrealizedProfit": _f(upnl),
                "marginBalance": _f(wallet + upnl), "maintMargin": _f(maint), "initialMargin": _f(position_im + order_im),
                "positionInitialMargin": _f(position_im), "openOrderInitialMargin": _f(order_im),
                "crossWalletBalance": _f(self.wallet.get(asset, 0.0)), "crossUnPnl": _f(cross_upnl),
                "availableBalance": _f(available), "maxWithdrawAmount": _f(max(available, 0.0)),
                "marginAvailable": True, "updateTime": self._now()}

    def _account(self, _: dict[str, str]) -> tuple[int, Any]:
        assets = [self._asset(a) for a in self.wallet]

        def total(key: str) -> str:
            return _f(sum(float(a[key]) for a in assets))

        return 200, {"feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True, "updateTime": 0,
                     "multiAssetsMargin": False, "totalInitialMargin": total("initialMargin"),
                     "totalMaintMargin": total("maintMargin"), "totalWalletBalance": total("walletBalance"),
                     "totalUnrealizedProfit": total("unrealizedProfit"), "totalMarginBalance": total("marginBalance"),
                     "totalPositionInitialMargin": total("positionInitialMargin"),
                     "totalOpenOrderInitialMargin": total("openOrderInitialMargin"),
                     "totalCrossWalletBalance": total("crossWalletBalance"), "totalCrossUnPnl": total("crossUnPnl"),
                     "availableBalance": total("availableBalance"), "maxWithdrawAmount": total("maxWithdrawAmount"),
                     "assets": assets,
                     "positions": [{"symbol": self._id(s), "positionSide": "BOTH", "positionAmt": _f(pos.amt, 3),
                                    "unrealizedProfit": _f(self._upnl(s)), "isolatedMargin": _f(
                                        pos.isolated_wallet + self._upnl(s) if self.margin_types[s] == "isolated" else 0),
                                    "notional": _f(pos.amt * self.prices[s]), "isolatedWallet": _f(pos.isolated_wallet),
                                    "initialMargin": _f(self._position_im(s)), "maintMargin": "0",
                                    "updateTime": pos.update_ms} for s, pos in self.positions.items() if pos.amt]}

    def _balance(self, _: dict[str, str]) -> tuple[int, Any]:
        out = []
        for a in self.wallet:
            row = self._asset(a)
            out.append({"accountAlias": "emulator", "asset": a, "balance": row["walletBalance"],
                        "crossWalletBalance": row["crossWalletBalance"], "crossUnPnl": row["crossUnPnl"],
                        "availableBalance": row["availableBalance"], "maxWithdrawAmount": row["maxWithdrawAmount"],
                        "marginAvailable": True, "updateTime": row["updateTime"]})
        return 200, out

    def _position_risk(self, p: dict[str, str], *, v3: bool) -> tuple[int, Any]:
        wanted = self._symbol(p.get("symbol")) if p.get("symbol") else None
        if p.get("symbol") and wanted is None:
            return self._error(-1121, "Invalid symbol.")
        rows = []
        for s, pos in self.positions.items():
            if (wanted is not None and s != wanted) or (v3 and not pos.amt):
                continue  # v3 lists open positions only; v2 every symbol
            mark, upnl = self.prices[s], self._upnl(s)
            isolated = self.margin_types[s] == "isolated"
            notional = pos.amt * mark
            row: dict[str, Any] = {
                "symbol": self._id(s), "positionSide": "BOTH", "positionAmt": _f(pos.amt, 3),
                "entryPrice": _f(pos.entry), "breakEvenPrice": _f(pos.entry), "markPrice": _f(mark),
                "unRealizedProfit": _f(upnl), "liquidationPrice": _f(self._liquidation_price(s)),
                "isolatedMargin": _f(pos.isolated_wallet + upnl if isolated and pos.amt else 0.0),
                "notional": _f(notional), "isolatedWallet": _f(pos.isolated_wallet), "updateTime": pos.update_ms}
            if v3:
                i = self._bracket(abs(notional))
                row |= {"marginAsset": self._settle(s), "initialMargin": _f(self._position_im(s)),
                        "maintMargin": _f(abs(notional) * BRACKETS[i][3] - CUM[i] if pos.amt else 0.0),
                        "positionInitialMargin": _f(self._position_im(s)), "openOrderInitialMargin": _f(self._order_im(s)),
                        "adl": 1, "bidNotional": "0", "askNotional": "0"}
            else:
                row |= {"leverage": str(self.leverage[s]), "marginType": "isolated" if isolated else "cross",
                        "isAutoAddMargin": "false", "maxNotionalValue": f"{self._max_notional(self.leverage[s]):.0f}"}
            rows.append(row)
        return 200, rows
