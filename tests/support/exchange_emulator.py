"""A Binance spot exchange on loopback, with faults on demand: ccxt's real client talks to it over HTTP.

It serves the part of Binance's REST API (v3) that ccxt's ``binance`` calls for spot
trading (and the kline market stream ccxt.pro's ``watch_ohlcv`` subscribes to) — ``exchangeInfo``, ``ticker/24hr``, ``klines``, signed ``order`` (POST, GET,
DELETE), ``openOrders``, ``myTrades`` and ``account`` — with Binance's HMAC-SHA256 request signatures,
error codes and response shapes, so connection code is tested against the protocol
rather than a mock. Matching is simple and deterministic: market orders fill at the
current price, limit orders rest (locking funds) until :meth:`BinanceEmulator.set_price`
or :meth:`BinanceEmulator.push_bar` crosses them; fees are a fraction of quote value.

Faults, armed for the next ``times`` matching requests with :meth:`BinanceEmulator.fault`:

- ``drop``: the TCP connection is closed without an answer (ccxt: ``NetworkError``);
- ``delay``: the request is carried out, then the answer waits ``delay`` seconds, past the
  client's timeout (ccxt: ``RequestTimeout`` — and the order exists: the duplicate trap);
- ``stall``: the answer waits before anything is done; nothing is done if the client left;
- ``429``: rate limited, with ``Retry-After`` (ccxt: ``DDoSProtection``), nothing done;
- ``500``: an outage page (ccxt: ``ExchangeNotAvailable``), nothing done;
- ``malformed``: HTTP 200 with truncated JSON, nothing done.

The HTTP server, the signature check and the faults are :class:`LoopbackVenue`'s, which
the USDⓈ-M futures emulator (:mod:`tests.support.futures_emulator`) shares.

>>> import ccxt
>>> with BinanceEmulator(balances={"USDT": 1000.0}, markets={"BTC/USDT": 100.0}) as emu:
...     ex = ccxt.binance(emu.ccxt_config())
...     order = ex.create_order("BTC/USDT", "market", "buy", 1.0)
...     (order["status"], order["average"], ex.fetch_balance()["total"]["BTC"])
('closed', 100.0, 1.0)
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import parse_qsl

from aiohttp import web

API = "/api/v3"
FAULTS = ("drop", "delay", "stall", "429", "500", "malformed")


@dataclass
class _Fault:
    kind: str
    path: str | None
    method: str | None
    times: int
    delay: float


#: A route: HTTP method, path, ``handler(params) -> (status, body)`` (called under the
#: venue's lock), and whether the request must be signed.
Route = tuple[str, str, Callable[[dict[str, str]], tuple[int, Any]], bool]


class LoopbackVenue:
    """A Binance-style REST venue on ``127.0.0.1:<free port>`` (or ``port``), on its own
    thread: the aiohttp server, HMAC-SHA256 signatures (``X-MBX-APIKEY`` and
    ``signature=``), Binance's error shape and the faults of the module docstring.
    Subclasses say what they serve (:meth:`_routes`) and keep their book under ``_lock``."""

    thread_name = "loopback-venue"

    def __init__(self, *, api_key: str = "emulator-key", api_secret: str = "emulator-secret", port: int = 0) -> None:
        self.api_key, self._secret = api_key, api_secret
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status); 0: no answer was sent
        self.queries: list[tuple[str, dict[str, str]]] = []  # (path, parameters) of every request, faulted ones too
        self._faults: list[_Fault] = []
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = port or None

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name=self.thread_name, daemon=True).start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def _routes(self) -> list[Route]:
        raise NotImplementedError

    def _more_routes(self, app: web.Application) -> None:
        """Routes outside the signed REST API (a websocket, say)."""

    async def _start(self) -> int:
        app = web.Application()
        for method, path, handler, private in self._routes():
            app.router.add_route(method, path, self._guard(handler, private=private))
        self._more_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port or 0)
        await site.start()
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)  # type: ignore[union-attr]
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults ------------------------------------------------------------------------
    def fault(self, kind: str, *, path: str | None = None, method: str | None = None, times: int = 1,
              delay: float = 2.0) -> None:
        """Arm ``kind`` (see the module docstring) for the next ``times`` requests matching
        ``path`` (e.g. ``/api/v3/order``) and ``method``."""
        if kind not in FAULTS:
            raise ValueError(f"fault is one of {FAULTS}, got {kind!r}")
        with self._lock:
            self._faults.append(_Fault(kind, path, method, times, delay))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def served(self, method: str, path: str) -> list[int]:
        """The statuses of the requests ``method path`` finished (0: no answer was sent:
        dropped, or stalled until the client left)."""
        return [status for m, p, status in list(self.requests) if m == method and p == path]

    # -- request plumbing ------------------------------------------------------------------
    def _take_fault(self, request: web.Request) -> _Fault | None:
        with self._lock:
            for f in self._faults:
                if (f.path is None or f.path == request.path) and (f.method is None or f.method == request.method):
                    f.times -= 1
                    if f.times <= 0:
                        self._faults.remove(f)
                    return f
        return None

    def _guard(self, handler: Any, *, private: bool) -> Any:
        async def serve(request: web.Request) -> web.StreamResponse:
            params = dict(request.query)
            raw = request.query_string
            if request.method == "POST":
                raw = await request.text()
                params.update(dict(parse_qsl(raw)))
            self.queries.append((request.path, params))
            fault = self._take_fault(request)
            response: web.StreamResponse
            if fault is not None and fault.kind == "drop":
                self.requests.append((request.method, request.path, 0))
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=499)  # never reaches the client
            if fault is not None and fault.kind in ("429", "500", "malformed"):
                response = {
                    "429": lambda: web.json_response({"code": -1003, "msg": "Too many requests; please use the websocket."},
                                                     status=429, headers={"Retry-After": "1"}),
                    "500": lambda: web.Response(status=500, text="<html><body>502 Bad Gateway</body></html>",
                                                content_type="text/html"),
                    "malformed": lambda: web.Response(status=200, text='{"symbol": "BTCUSDT", "orderId": 1',
                                                      content_type="application/json"),
                }[fault.kind]()
                self.requests.append((request.method, request.path, response.status))
                return response
            if fault is not None and fault.kind == "stall":
                await asyncio.sleep(fault.delay)
                if request.transport is None or request.transport.is_closing():
                    self.requests.append((request.method, request.path, 0))
                    return web.Response(status=499)
            if private:
                denied = self._check_signature(request, params, raw)
                if denied is not None:
                    self.requests.append((request.method, request.path, denied.status))
                    return denied
            with self._lock:
                status, body = handler(params)
            response = web.json_response(body, status=status)
            self.requests.append((request.method, request.path, status))
            if fault is not None and fault.kind == "delay":
                await asyncio.sleep(fault.delay)
            return response

        return serve

    def _check_signature(self, request: web.Request, params: dict[str, str], raw: str) -> web.Response | None:
        if request.headers.get("X-MBX-APIKEY") != self.api_key:
            return web.json_response({"code": -2014, "msg": "API-key format invalid."}, status=401)
        unsigned, _, signature = raw.rpartition("&signature=")
        expected = hmac.new(self._secret.encode(), unsigned.encode(), hashlib.sha256).hexdigest()
        if not signature or not hmac.compare_digest(signature, expected):
            return web.json_response({"code": -1022, "msg": "Signature for this request is not valid."}, status=400)
        return None

    @staticmethod
    def _error(code: int, msg: str, status: int = 400) -> tuple[int, dict[str, Any]]:
        return status, {"code": code, "msg": msg}

    def _time(self, _: dict[str, str]) -> tuple[int, Any]:
        return 200, {"serverTime": int(time.time() * 1000)}


class BinanceEmulator(LoopbackVenue):
    """Binance spot REST on ``127.0.0.1:<free port>`` (or ``port``: a venue that comes up
    where clients already look), on its own thread (see the module docstring)."""

    thread_name = "binance-emulator"

    def __init__(self, *, balances: Mapping[str, float] | None = None, markets: Mapping[str, float] | None = None,
                 fees: float = 0.001, api_key: str = "emulator-key", api_secret: str = "emulator-secret",
                 port: int = 0) -> None:
        super().__init__(api_key=api_key, api_secret=api_secret, port=port)
        self.fees = float(fees)
        self.balances: dict[str, list[float]] = {a: [float(v), 0.0] for a, v in (balances or {"USDT": 100_000.0}).items()}
        self.prices: dict[str, float] = dict(markets or {"BTC/USDT": 50_000.0})
        self.klines: dict[str, list[list[float]]] = {s: [] for s in self.prices}
        self.orders: list[dict[str, Any]] = []
        self._sockets: list[tuple[web.WebSocketResponse, set[str]]] = []

    def _routes(self) -> list[Route]:
        private = ("order", "openOrders", "account")
        return [(method, f"{API}/{path}", handler, path in private) for method, path, handler in (
            ("GET", "exchangeInfo", self._exchange_info), ("GET", "ticker/24hr", self._ticker),
            ("GET", "klines", self._klines), ("GET", "time", self._time), ("POST", "order", self._new_order),
            ("GET", "order", self._get_order), ("DELETE", "order", self._cancel_order),
            ("GET", "openOrders", self._open_orders), ("GET", "account", self._account),
            ("GET", "myTrades", self._my_trades),
        )]

    def _more_routes(self, app: web.Application) -> None:
        app.router.add_get("/ws/{stream}", self._websocket)

    def ccxt_config(self, **extra: Any) -> dict[str, Any]:
        """Settings for a ccxt ``binance`` (sync or async) that talk to this emulator only."""
        import ccxt

        api = f"{self.url}{API}"
        # Every API family ccxt knows points here: anything not served is a 404, never the internet.
        urls: dict[str, Any] = dict.fromkeys(ccxt.binance().urls["api"], api)
        urls["ws"] = {"spot": f"ws://127.0.0.1:{self.port}/ws"}
        return {"apiKey": self.api_key, "secret": self._secret, "enableRateLimit": False, "urls": {"api": urls},
                "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False},
                **extra}

    def manager_options(self) -> dict[str, Any]:
        """Options for :meth:`ConnectionManager.add_broker_connection` to reach this emulator
        (REST and the websocket streams)."""
        cfg = self.ccxt_config()
        return {"urls": cfg["urls"]["api"], "options": cfg["options"], "rate_limit": False}

    # -- the market ----------------------------------------------------------------------
    def load_bars(self, symbol: str, frame: Any) -> None:
        """Serve ``frame``'s bars (an OHLCV frame with a UTC index) as the symbol's candles."""
        for t, row in zip(frame.index, frame.itertuples(), strict=True):
            self.push_bar(symbol, t.timestamp(), row.Open, row.High, row.Low, row.Close, row.Volume)

    def set_price(self, symbol: str, price: float) -> None:
        self.push_bar(symbol, None, price, price, price, price)

    def push_bar(self, symbol: str, time_s: float | None, o: float, h: float, low: float, c: float, v: float = 1.0) -> None:
        """A new candle (``time_s`` None: price only); resting limit orders it crosses fill."""
        with self._lock:
            if time_s is not None:
                self.klines[symbol].append([int(time_s * 1000), o, h, low, c, v])
                self._broadcast(symbol, self.klines[symbol][-1])
            self.prices[symbol] = c
            for order in self.orders:
                if order["symbol"] == symbol and order["status"] == "NEW":
                    limit = float(order["price"])
                    if (order["side"] == "BUY" and low <= limit) or (order["side"] == "SELL" and h >= limit):
                        self._fill(order, limit)

    def _broadcast(self, symbol: str, k: list[float]) -> None:
        """Send a kline event (Binance's stream shape) to the sockets subscribed to the symbol."""
        stream = f"{self._id(symbol).lower()}@kline_1m"
        event = {"e": "kline", "E": int(time.time() * 1000), "s": self._id(symbol),
                 "k": {"t": k[0], "T": k[0] + 59_999, "s": self._id(symbol), "i": "1m", "f": 0, "L": 0,
                       "o": str(k[1]), "h": str(k[2]), "l": str(k[3]), "c": str(k[4]), "v": str(k[5]), "n": 1,
                       "x": True, "q": "0", "V": "0", "Q": "0", "B": "0"}}
        for ws, streams in list(self._sockets):
            if stream in streams and self._loop is not None:
                asyncio.run_coroutine_threadsafe(ws.send_json(event), self._loop)

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        """Binance's market streams: ``{"method": "SUBSCRIBE", "params": [...], "id": n}``."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        streams: set[str] = set()
        self._sockets.append((ws, streams))
        try:
            async for msg in ws:
                request_doc = msg.json()
                if request_doc.get("method") == "SUBSCRIBE":
                    streams.update(request_doc.get("params", []))
                    await ws.send_json({"result": None, "id": request_doc.get("id")})
        finally:
            self._sockets.remove((ws, streams))
        return ws

    def orders_with_client_id(self, client_id: str) -> list[dict[str, Any]]:
        return [o for o in self.orders if o["clientOrderId"] == client_id]

    # -- endpoints (under the lock) ------------------------------------------------------------
    @staticmethod
    def _id(symbol: str) -> str:
        return symbol.replace("/", "")

    def _symbol(self, market_id: str | None) -> str | None:
        return next((s for s in self.prices if self._id(s) == market_id), None)

    def _exchange_info(self, _: dict[str, str]) -> tuple[int, Any]:
        symbols = []
        for s in self.prices:
            base, quote = s.split("/")
            symbols.append({
                "symbol": self._id(s), "status": "TRADING", "baseAsset": base, "quoteAsset": quote,
                "baseAssetPrecision": 8, "quotePrecision": 8, "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "MARKET"], "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
                "permissions": ["SPOT"], "permissionSets": [["SPOT"]],
                "filters": [{"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000", "tickSize": "0.01"},
                            {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000", "stepSize": "0.00001"},
                            {"filterType": "NOTIONAL", "minNotional": "1", "maxNotional": "9000000"}]})
        return 200, {"timezone": "UTC", "serverTime": int(time.time() * 1000), "rateLimits": [], "symbols": symbols}

    def _ticker(self, p: dict[str, str]) -> tuple[int, Any]:
        def one(s: str) -> dict[str, Any]:
            price = str(self.prices[s])
            return {"symbol": self._id(s), "lastPrice": price, "bidPrice": price, "askPrice": price, "openPrice": price,
                    "highPrice": price, "lowPrice": price, "volume": "0", "quoteVolume": "0",
                    "openTime": 0, "closeTime": int(time.time() * 1000), "count": 0}

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

    def _account(self, _: dict[str, str]) -> tuple[int, Any]:
        return 200, {"makerCommission": 10, "takerCommission": 10, "canTrade": True, "accountType": "SPOT",
                     "updateTime": int(time.time() * 1000), "permissions": ["SPOT"],
                     "balances": [{"asset": a, "free": f"{v[0]:.8f}", "locked": f"{v[1]:.8f}"} for a, v in self.balances.items()]}

    def _bal(self, asset: str) -> list[float]:
        return self.balances.setdefault(asset, [0.0, 0.0])

    def _new_order(self, p: dict[str, str]) -> tuple[int, Any]:
        s = self._symbol(p.get("symbol"))
        if s is None:
            return self._error(-1121, "Invalid symbol.")
        base, quote = s.split("/")
        cid = p.get("newClientOrderId") or f"emu-{next(self._ids)}"
        if any(o["clientOrderId"] == cid and o["status"] == "NEW" for o in self.orders):
            return self._error(-2010, "Duplicate order sent.")
        side, type_ = p.get("side", ""), p.get("type", "")
        qty = float(p.get("quantity") or 0)
        if p.get("quoteOrderQty"):
            qty = float(p["quoteOrderQty"]) / self.prices[s] / (1 + self.fees)
        if qty <= 0:
            return self._error(-1013, "Filter failure: LOT_SIZE")
        price = float(p["price"]) if type_ == "LIMIT" else self.prices[s]
        need = qty * price * (1 + self.fees) if side == "BUY" else qty
        wallet = self._bal(quote if side == "BUY" else base)
        if need > wallet[0] + 1e-9:
            return self._error(-2010, "Account has insufficient balance for requested action.")
        order = {"symbol": s, "orderId": next(self._ids), "clientOrderId": cid, "side": side, "type": type_,
                 "price": f"{price:.8f}" if type_ == "LIMIT" else "0.00000000", "origQty": f"{qty:.8f}",
                 "executedQty": "0.00000000", "cummulativeQuoteQty": "0.00000000", "status": "NEW",
                 "timeInForce": p.get("timeInForce", "GTC"), "transactTime": int(time.time() * 1000), "fills": []}
        self.orders.append(order)
        if type_ == "MARKET":
            self._fill(order, price)
        else:
            wallet[0] -= need
            wallet[1] += need
        return 200, self._view(order, full=True)

    def _fill(self, order: dict[str, Any], price: float) -> None:
        base, quote = order["symbol"].split("/")
        qty = float(order["origQty"])
        value, fee = qty * price, qty * price * self.fees
        resting = order["status"] == "NEW" and order["type"] == "LIMIT"
        if order["side"] == "BUY":
            q = self._bal(quote)
            if resting:
                q[1] -= qty * float(order["price"]) * (1 + self.fees)
                q[0] += qty * float(order["price"]) * (1 + self.fees)
            q[0] -= value + fee
            self._bal(base)[0] += qty
        else:
            b = self._bal(base)
            if resting:
                b[1] -= qty
                b[0] += qty
            b[0] -= qty
            self._bal(quote)[0] += value - fee
        order.update(status="FILLED", executedQty=f"{qty:.8f}", cummulativeQuoteQty=f"{value:.8f}",
                     fills=[{"price": f"{price:.8f}", "qty": f"{qty:.8f}", "commission": f"{fee:.8f}",
                             "commissionAsset": quote, "tradeId": next(self._ids)}])

    def _view(self, order: dict[str, Any], *, full: bool = False) -> dict[str, Any]:
        out = {**order, "symbol": self._id(order["symbol"]), "time": order["transactTime"],
               "updateTime": int(time.time() * 1000), "isWorking": order["status"] == "NEW"}
        if not full:
            out.pop("fills")
        return out

    def _find(self, p: dict[str, str]) -> dict[str, Any] | None:
        s = self._symbol(p.get("symbol"))
        for o in self.orders:
            if o["symbol"] == s and (str(o["orderId"]) == p.get("orderId") or o["clientOrderId"] == p.get("origClientOrderId")):
                return o
        return None

    def _get_order(self, p: dict[str, str]) -> tuple[int, Any]:
        order = self._find(p)
        return (200, self._view(order)) if order else self._error(-2013, "Order does not exist.")

    def _cancel_order(self, p: dict[str, str]) -> tuple[int, Any]:
        order = self._find(p)
        if order is None or order["status"] != "NEW":
            return self._error(-2011, "Unknown order sent.")
        base, quote = order["symbol"].split("/")
        qty = float(order["origQty"])
        held = qty * float(order["price"]) * (1 + self.fees) if order["side"] == "BUY" else qty
        wallet = self._bal(quote if order["side"] == "BUY" else base)
        wallet[1] -= held
        wallet[0] += held
        order["status"] = "CANCELED"
        return 200, self._view(order)

    def _my_trades(self, p: dict[str, str]) -> tuple[int, Any]:
        """The account's trades in a symbol (Binance's ``myTrades``), of one order with ``orderId``:
        where an order's commission is, since its ``GET order`` answer has none."""
        s = self._symbol(p.get("symbol"))
        out = []
        for o in self.orders:
            if o["symbol"] != s or (p.get("orderId") and str(o["orderId"]) != p["orderId"]):
                continue
            for f in o["fills"]:
                out.append({"symbol": self._id(s), "id": f["tradeId"], "orderId": o["orderId"], "price": f["price"],
                            "qty": f["qty"], "quoteQty": f"{float(f['price']) * float(f['qty']):.8f}",
                            "commission": f["commission"], "commissionAsset": f["commissionAsset"],
                            "time": o["transactTime"], "isBuyer": o["side"] == "BUY", "isMaker": False,
                            "isBestMatch": True})
        return 200, out

    def _open_orders(self, p: dict[str, str]) -> tuple[int, Any]:
        s = self._symbol(p.get("symbol")) if p.get("symbol") else None
        return 200, [self._view(o) for o in self.orders if o["status"] == "NEW" and (s is None or o["symbol"] == s)]
