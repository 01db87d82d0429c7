"""``ConnectionManager``: the one place a trading process gets its brokers, data feeds and webhooks.

The seed's API, with memlab's modules::

    manager = ConnectionManager()
    await manager.add_broker_connection("bybit", api_key, api_secret)      # any ccxt exchange id
    await manager.add_broker_connection("paper", balances={"USDT": 10_000})  # the paper broker
    await manager.add_data_feed("crypto_feed", {"symbols": ["BTCUSDT"], "broker": "bybit"})
    result = await manager.execute_on_broker("bybit", "place_order",
                                             {"symbol": "BTCUSDT", "qty": 0.1, "side": "BUY"})

Credentials not passed in come from :class:`~memlab.credentials.CredentialManager`
(``<NAME>_API_KEY`` / ``_API_SECRET`` in the environment or ``.env``); they go to ccxt
and nowhere else. Every connection's health (state, latency, errors) is on
:attr:`ConnectionManager.health` and in ``connections.json`` for the live monitor;
listeners added with :meth:`ConnectionManager.add_listener` hear ``connection_lost``
and ``connection_restored``.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import ccxt
import ccxt.async_support as ccxt_async
import pandas as pd

from memlab.config import memory_path as resolve_memory_path
from memlab.connectors.brokers import BrokerConnection, ExchangeConnection, PaperConnection
from memlab.connectors.feeds import PollingFeed, ReplayFeed, WatchFeed
from memlab.connectors.health import ConnectionHealth, HealthBoard
from memlab.connectors.paper_broker import PaperBroker
from memlab.connectors.retry import RetryPolicy
from memlab.credentials import CredentialManager, Secret
from memlab.errors import ConfigurationError, InvalidInputError

log = logging.getLogger(__name__)

Feed = ReplayFeed | PollingFeed | WatchFeed
Listener = Callable[[str, dict[str, Any]], None]

#: What :meth:`ConnectionManager.execute_on_broker` understands.
COMMANDS = ("place_order", "cancel_order", "fetch_order", "fetch_open_orders", "fetch_balance",
            "fetch_positions", "fetch_ticker")
_PAPER_OPTIONS = {"balances", "fees", "slippage", "root", "markets", "flush_interval"}


def _reveal(value: Secret | str | None) -> str | None:
    if value is None:
        return None
    return value.reveal() if isinstance(value, Secret) else str(value)


def replay_frames(name: str, symbols: list[str], cfg: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """The bars a replay feed's settings name (``data``, ``path``, ``sample`` or ``synthetic``;
    ``start``/``end`` slice them), by symbol."""
    from memlab.data import load_ohlcv, sample, synthetic_ohlcv

    if "data" in cfg:
        data = cfg["data"]
        frames = dict(data) if isinstance(data, Mapping) else {symbols[0]: data}
        if isinstance(data, pd.DataFrame) and len(symbols) > 1:
            raise InvalidInputError(f"feed {name!r}: one frame given for {len(symbols)} symbols; pass a dict")
    elif "path" in cfg:
        paths = cfg["path"] if isinstance(cfg["path"], Mapping) else {symbols[0]: cfg["path"]}
        frames = {s: load_ohlcv(p) for s, p in paths.items()}
    elif "sample" in cfg:
        frames = {symbols[0]: sample(str(cfg["sample"]))}
    else:
        spec = dict(cfg["synthetic"] or {})
        frames = {s: synthetic_ohlcv(int(spec.get("n", 5000)), freq=spec.get("freq", "1min"),
                                     seed=int(spec.get("seed", 1)) + k) for k, s in enumerate(symbols)}
    missing = [s for s in symbols if s not in frames]
    if missing:
        raise InvalidInputError(f"feed {name!r}: no data for {missing}")
    start, end = cfg.get("start"), cfg.get("end")
    return {s: frames[s].loc[start:end] for s in symbols}


def describe_event(event: str, p: Mapping[str, Any]) -> str | None:
    """One line a person reads in a chat tool; None for events that are not alerts."""
    if event == "fill":
        pnl = p.get("pnl")
        tail = "" if pnl is None else f", P&L {pnl:+,.2f}"
        return f"{p['side'].upper()} {p['amount']:.6g} {p['symbol']} filled at {p['price']:,.4f}{tail}"
    if event == "adaptation":
        return f"adapted ({p.get('trigger')}): {p.get('reason')}"
    if event == "lesson":
        return str(p.get("text"))
    if event == "drawdown":
        return f"drawdown {p['drawdown']:.1%}: equity {p['equity']:,.2f} against a peak of {p['peak']:,.2f}"
    if event == "connection_lost":
        return f"lost connection {p['name']} ({p['venue']}): {p.get('error')}"
    if event == "connection_restored":
        return f"connection {p['name']} ({p['venue']}) is back"
    if event == "error":
        return f"error in {p.get('source')}: {p.get('message')}"
    return None


class ConnectionManager:
    """Brokers, feeds and webhooks of one process; use as ``async with ConnectionManager() as m``.

    ``memory_path`` is where the paper broker keeps its book and where health is written
    (default: ``$MEM_MEMORY_PATH`` or ``data/mem_knowledge/``).
    """

    def __init__(self, memory_path: str | os.PathLike[str] | None = None, *,
                 credentials: CredentialManager | None = None, retry: RetryPolicy | None = None,
                 write_health: bool = True) -> None:
        self.memory_path = resolve_memory_path(memory_path)
        self._credentials = credentials
        self.retry = retry or RetryPolicy()
        self.health = HealthBoard(self.memory_path if write_health else None)
        self.health.add_listener(self._state_changed)
        self.brokers: dict[str, BrokerConnection] = {}
        self.feeds: dict[str, Feed] = {}
        self.webhooks: dict[str, Any] = {}
        self._listeners: list[Listener] = []
        #: Where webhook alerts go: the running trader's ``handle_alert`` (set by the trader).
        self.signal_handler: Callable[[Any], Awaitable[dict[str, Any]]] | None = None
        self.alert_sender: Any = None

    def __repr__(self) -> str:
        return f"ConnectionManager(brokers={list(self.brokers)}, feeds={list(self.feeds)}, webhooks={list(self.webhooks)})"

    async def __aenter__(self) -> ConnectionManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def credentials(self) -> CredentialManager:
        if self._credentials is None:
            self._credentials = CredentialManager()
        return self._credentials

    # -- events ----------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        """``listener(event, payload)`` for ``connection_lost`` / ``connection_restored`` (and
        whatever the trader and webhooks publish through :meth:`publish`)."""
        self._listeners.append(listener)

    def publish(self, event: str, payload: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(event, payload)
            except Exception:
                log.exception("listener failed on %s", event)

    def _state_changed(self, health: ConnectionHealth, previous: str) -> None:
        if health.state == "down":
            self.publish("connection_lost", {"name": health.name, "kind": health.kind, "venue": health.venue,
                                             "error": health.last_error, "errors": health.errors})
        elif health.state == "up" and previous in ("retrying", "down"):
            self.publish("connection_restored", {"name": health.name, "kind": health.kind, "venue": health.venue,
                                                 "previous": previous})

    # -- brokers ---------------------------------------------------------------------
    async def add_broker_connection(self, name: str, api_key: Secret | str | None = None,
                                    api_secret: Secret | str | None = None, **options: Any) -> BrokerConnection:
        """Connect a broker and load its markets.

        ``name`` is a ccxt exchange id (``binance``, ``bybit``, ``alpaca``...) or ``paper``;
        ``exchange=`` chooses the venue when the name is your own label. ccxt options:
        ``sandbox`` (testnet), ``password``, ``timeout`` (ms), ``urls`` (API URL overrides),
        ``options`` (ccxt's), ``rate_limit`` (ccxt's limiter, default on), ``retry`` (a
        :class:`RetryPolicy`). Paper options: ``balances``, ``fees``, ``slippage``,
        ``markets``, ``root`` (default: the memory path).
        """
        if not isinstance(name, str) or not name.strip():
            raise InvalidInputError(f"a connection name is non-empty text, got {name!r}")
        if name in self.brokers:
            raise InvalidInputError(f"a broker connection named {name!r} exists already")
        venue = str(options.pop("exchange", name)).lower()
        connection: BrokerConnection
        if venue == "paper":
            unknown = set(options) - _PAPER_OPTIONS
            if unknown:
                raise InvalidInputError(f"unknown paper broker options {sorted(unknown)}; known: {sorted(_PAPER_OPTIONS)}")
            broker = PaperBroker(Path(options.get("root") or self.memory_path), balances=options.get("balances"),
                                 fees=options.get("fees", 0.001), slippage=options.get("slippage", 0.0),
                                 flush_interval=options.get("flush_interval", 1.0))
            for symbol in options.get("markets") or ():
                broker.add_market(symbol)
            connection = PaperConnection(name, broker, self.health)
        else:
            connection = ExchangeConnection(name, self._exchange(name, venue, api_key, api_secret, options),
                                            self.health, options.pop("retry", None) or self.retry)
        self.brokers[name] = connection
        try:
            await connection.connect()
        except BaseException:
            del self.brokers[name]
            await connection.close(mark_closed=False)  # health keeps saying why it is down
            raise
        return connection

    def _exchange(self, name: str, venue: str, api_key: Secret | str | None, api_secret: Secret | str | None,
                  options: dict[str, Any]) -> Any:
        cls = getattr(ccxt_async, venue, None)
        if cls is None or venue not in ccxt.exchanges:
            close = difflib.get_close_matches(venue, ccxt.exchanges, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigurationError(f"{venue!r} is not a ccxt exchange id{hint}")
        sandbox = bool(options.pop("sandbox", False))
        config: dict[str, Any] = {"enableRateLimit": bool(options.pop("rate_limit", True))}
        if api_key is None and self.credentials.has_credentials(name):
            config.update(self.credentials.get_broker_credentials(name).ccxt_config())
        elif api_key is not None:
            config["apiKey"] = _reveal(api_key)
            if api_secret is not None:
                config["secret"] = _reveal(api_secret)
            if options.get("password") is not None:
                config["password"] = _reveal(options.pop("password"))
        else:
            log.info("broker %r: no credentials (%s_API_KEY); public data only", name, name.upper())
        options.pop("password", None)
        if "timeout" in options:
            config["timeout"] = int(options.pop("timeout"))
        if "options" in options:
            config["options"] = dict(options.pop("options"))
        urls = options.pop("urls", None)
        if options:
            config.update(options)  # any other ccxt constructor setting
        exchange = cls(config)
        if sandbox:
            try:
                exchange.set_sandbox_mode(True)
            except ccxt.NotSupported:
                raise ConfigurationError(f"{venue} has no sandbox/testnet in ccxt") from None
        if urls:
            exchange.urls["api"] = {**exchange.urls.get("api", {}), **urls}
        exchange.memlab_overrides = {"urls": urls or {}, "options": config.get("options", {}), "sandbox": sandbox}
        return exchange

    def broker(self, name: str) -> BrokerConnection:
        try:
            return self.brokers[name]
        except KeyError:
            raise InvalidInputError(f"no broker connection {name!r}; connected: {', '.join(self.brokers) or 'none'}") from None

    async def execute_on_broker(self, name: str, command: str, params: Mapping[str, Any] | None = None) -> Any:
        """Run ``command`` on broker ``name``; returns ccxt's structure (order, balance...).

        ``place_order``: ``symbol``, ``qty`` (or ``amount``), ``side`` (BUY/SELL), optional
        ``type`` (market | limit), ``price``, ``cost`` (market buy spending this much quote),
        ``client_order_id``, ``stop_loss``, ``take_profit``. ``cancel_order`` / ``fetch_order``:
        ``id`` (or ``client_order_id``) and ``symbol``. ``fetch_open_orders``: optional
        ``symbol``. ``fetch_ticker``: ``symbol``. ``fetch_balance`` / ``fetch_positions``: none.
        Raises ccxt's errors: ``ExchangeError`` subclasses mean the request is wrong
        (never retried), ``NetworkError`` means retries were exhausted.
        """
        connection = self.broker(name)
        p = dict(params or {})
        if command == "place_order":
            return await self._place_order(connection, p)
        if command in ("cancel_order", "fetch_order"):
            order_id = p.get("id") or p.get("order_id") or p.get("client_order_id")
            if not order_id:
                raise InvalidInputError(f"{command} needs 'id' (or 'client_order_id')")
            symbol = connection.market_symbol(p["symbol"]) if p.get("symbol") else None
            if command == "fetch_order" and not p.get("id") and p.get("client_order_id") and symbol:
                found = await connection.find_by_client_id(symbol, str(order_id))
                if found is None:
                    raise ccxt.OrderNotFound(f"{name}: no order with client id {order_id!r}")
                return found
            return await getattr(connection, command)(str(order_id), symbol)
        if command == "fetch_open_orders":
            return await connection.fetch_open_orders(connection.market_symbol(p["symbol"]) if p.get("symbol") else None)
        if command == "fetch_ticker":
            if not p.get("symbol"):
                raise InvalidInputError("fetch_ticker needs 'symbol'")
            return await connection.fetch_ticker(connection.market_symbol(p["symbol"]))
        if command in ("fetch_balance", "fetch_positions"):
            return await getattr(connection, command)()
        close = difflib.get_close_matches(str(command), COMMANDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InvalidInputError(f"unknown broker command {command!r}{hint}; known: {', '.join(COMMANDS)}")

    async def _place_order(self, connection: BrokerConnection, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("symbol"):
            raise InvalidInputError("place_order needs 'symbol'")
        side = str(p.get("side", "")).lower()
        if side not in ("buy", "sell"):
            raise InvalidInputError(f"place_order 'side' is BUY or SELL, got {p.get('side')!r}")
        type_ = str(p.get("type", "market")).lower()
        if type_ not in ("market", "limit"):
            raise InvalidInputError(f"place_order 'type' is market or limit, got {p.get('type')!r}")
        qty = p.get("qty", p.get("amount"))
        cost = p.get("cost")
        if cost is None:
            try:
                qty = float(qty)
            except (TypeError, ValueError):
                raise InvalidInputError(f"place_order needs a numeric 'qty', got {qty!r}") from None
            if not qty > 0:
                raise InvalidInputError(f"place_order 'qty' must be positive, got {qty}")
        price = p.get("price")
        if type_ == "limit" and price is None:
            raise InvalidInputError("a limit order needs 'price'")
        symbol = connection.market_symbol(str(p["symbol"]))
        extra: dict[str, Any] = dict(p.get("params") or {})
        if p.get("client_order_id"):
            extra["clientOrderId"] = str(p["client_order_id"])
        if connection.simulated:
            if cost is not None:
                extra["cost"] = float(cost)
            for key, ccxt_key in (("stop_loss", "stopLoss"), ("take_profit", "takeProfit")):
                if p.get(key) is not None:
                    extra[ccxt_key] = float(p[key])
            amount = None if cost is not None else qty
        else:
            if cost is not None:
                extra["cost"] = float(cost)
                amount = None
            else:
                amount = qty
            for key, ccxt_key in (("stop_loss", "stopLoss"), ("take_profit", "takeProfit")):
                if p.get(key) is not None:
                    extra[ccxt_key] = {"triggerPrice": float(p[key])}
        return await connection.create_order(symbol, type_, side, amount, None if price is None else float(price), extra)

    # -- feeds -------------------------------------------------------------------------
    async def add_data_feed(self, name: str, config: Mapping[str, Any]) -> Feed:
        """Add a feed of closed bars. ``config``: ``symbols`` (required), ``timeframe``
        (default ``1m``), ``source`` (``replay`` | ``poll`` | ``watch``; default ``replay``
        when data is given, else ``poll``). Replay data: ``data`` (a frame, or a dict of
        symbol → frame), ``path`` (CSV/Parquet), ``sample`` (a shipped market) or
        ``synthetic`` (``{'n': bars, 'seed': 1, 'freq': '1min'}``); ``speed`` paces it.
        Exchange feeds: ``broker`` (a connected broker's name; default the only
        exchange connection), ``interval`` (poll seconds), ``warmup`` (bars of history).
        Symbols of a replay are listed on the paper broker, if one is connected.
        """
        if name in self.feeds:
            raise InvalidInputError(f"a feed named {name!r} exists already")
        cfg = dict(config)
        symbols = cfg.pop("symbols", None)
        if isinstance(symbols, str):
            symbols = [symbols]
        if not symbols:
            raise InvalidInputError(f"feed {name!r} needs 'symbols', e.g. {{'symbols': ['BTC/USDT']}}")
        has_data = any(k in cfg for k in ("data", "path", "sample", "synthetic"))
        source = cfg.pop("source", "replay" if has_data else "poll")
        timeframe = cfg.pop("timeframe", "1m")
        feed: Feed
        if source == "replay":
            frames = replay_frames(name, list(symbols), cfg)
            feed = ReplayFeed(name, frames, speed=cfg.pop("speed", None), warmup=int(cfg.pop("warmup", 0)),
                              health=self.health)
            for connection in self.brokers.values():
                if isinstance(connection, PaperConnection):
                    for symbol in frames:
                        connection.broker.add_market(symbol)
        elif source in ("poll", "watch"):
            connection = self._exchange_for_feed(name, cfg.pop("broker", None))
            warmup = int(cfg.pop("warmup", 500))
            if source == "watch":
                feed = WatchFeed(name, connection, list(symbols), timeframe, warmup=warmup, health=self.health,
                                 pro_exchange=self._pro_exchange(connection))
            else:
                feed = PollingFeed(name, connection, list(symbols), timeframe, interval=cfg.pop("interval", None),
                                   warmup=warmup, health=self.health)
            await feed.start()
        else:
            raise InvalidInputError(f"feed 'source' is replay, poll or watch, got {source!r}")
        leftover = set(cfg) - {"data", "path", "sample", "synthetic", "start", "end", "interval", "speed"}
        if leftover:
            raise InvalidInputError(f"feed {name!r}: unknown options {sorted(leftover)}")
        self.feeds[name] = feed
        return feed

    def _exchange_for_feed(self, name: str, broker: str | None) -> ExchangeConnection:
        exchanges = {n: c for n, c in self.brokers.items() if isinstance(c, ExchangeConnection)}
        if broker is None:
            if len(exchanges) != 1:
                raise InvalidInputError(f"feed {name!r}: say which exchange with 'broker' (connected: {', '.join(exchanges) or 'none'})")
            return next(iter(exchanges.values()))
        connection = self.broker(broker)
        if not isinstance(connection, ExchangeConnection):
            raise InvalidInputError(f"feed {name!r}: {broker!r} is not an exchange connection")
        return connection

    @staticmethod
    def _pro_exchange(connection: ExchangeConnection) -> Any:
        import ccxt.pro as ccxt_pro

        ex = connection.exchange
        cls = getattr(ccxt_pro, ex.id, None)
        if cls is None or not cls().has.get("watchOHLCV"):
            raise ConfigurationError(f"{ex.id} has no websocket candles in ccxt; use source='poll'")
        overrides = getattr(ex, "memlab_overrides", {})
        pro = cls({"apiKey": ex.apiKey, "secret": ex.secret, "enableRateLimit": ex.enableRateLimit,
                   "options": dict(overrides.get("options") or {})})
        if overrides.get("sandbox"):
            pro.set_sandbox_mode(True)
        if overrides.get("urls"):
            pro.urls["api"] = {**pro.urls["api"], **overrides["urls"]}
        return pro

    def feed(self, name: str) -> Feed:
        try:
            return self.feeds[name]
        except KeyError:
            raise InvalidInputError(f"no feed {name!r}; added: {', '.join(self.feeds) or 'none'}") from None

    # -- webhooks and alerts -------------------------------------------------------------
    async def add_webhook(self, name: str, options: Mapping[str, Any] | None = None, *,
                          secret: Secret | str | None = None) -> Any:
        """Start an HTTP endpoint that takes signed trading alerts (``{'port': 5002, 'path':
        '/signal', ...}``, see :class:`~memlab.webhooks.WebhookConfig`).

        The shared secret is ``<NAME>_WEBHOOK_SECRET`` from :class:`CredentialManager` unless
        given. Each valid alert goes to the running trader (:attr:`signal_handler`) on this
        event loop: scored by the agent, sized, placed and remembered like a strategy signal.
        The endpoint has its own thread, so a burst of requests never stalls the trader.
        """
        import asyncio

        from memlab.webhooks import AlertRejected, WebhookConfig, WebhookServer

        if name in self.webhooks:
            raise InvalidInputError(f"a webhook named {name!r} exists already")
        config = WebhookConfig.from_mapping(name, dict(options or {}))
        shared = secret if secret is not None else self.credentials.get_webhook_secret(name)

        async def dispatch(alert: Any) -> dict[str, Any]:
            if self.signal_handler is None:
                raise AlertRejected(503, "no trader is running to take signals")
            return await self.signal_handler(alert)

        server = WebhookServer(config, shared, dispatch, store_dir=self.memory_path,
                               handler_loop=asyncio.get_running_loop())
        await asyncio.get_running_loop().run_in_executor(None, server.start)
        self.webhooks[name] = server
        health = self.health.register(name, "webhook", f"{config.host}:{server.port}{config.path}")
        self.health.success(health.name, 0.0)
        return server

    def add_alert_target(self, *targets: str, **options: Any) -> Any:
        """Post fills, adaptations, lessons, drawdowns and lost connections to these webhook
        URLs (Slack, Discord or plain JSON), in the background with retries; the delivery log
        is ``alert_deliveries.jsonl`` in the memory folder. Returns the :class:`AlertSender`."""
        from memlab.webhooks import AlertSender
        from memlab.webhooks.outbound import AlertTarget

        if self.alert_sender is not None:
            self.alert_sender.targets.extend(AlertTarget(t) for t in targets)
            return self.alert_sender
        self.alert_sender = AlertSender(list(targets), log_dir=self.memory_path, **options)
        self.add_listener(self._alert)
        return self.alert_sender

    def _alert(self, event: str, payload: dict[str, Any]) -> None:
        text = describe_event(event, payload)
        if text is not None:
            self.alert_sender.send("info" if event == "connection_restored" else event, text, payload)

    # -- lifecycle ---------------------------------------------------------------------
    def status(self) -> dict[str, dict[str, Any]]:
        """Every connection's health (state, latency, errors), by name."""
        return self.health.snapshot()

    async def close(self) -> None:
        """Stop webhooks, close every connection; health says ``closed``."""
        import asyncio

        for server in list(self.webhooks.values()):
            await asyncio.get_running_loop().run_in_executor(None, server.stop)
            self.health.closed(server.config.name)
        self.webhooks.clear()
        self.signal_handler = None
        for connection in list(self.brokers.values()):
            try:
                await connection.close()
            except Exception:
                log.exception("closing %r failed", connection)
        self.brokers.clear()
        for name in list(self.feeds):
            self.health.closed(name)
        self.feeds.clear()
        self.health.flush()
        if self.alert_sender is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.alert_sender.close)
            self.alert_sender = None
