"""``ConnectionManager``: the one place a trading process gets its brokers, data feeds and webhooks.

The seed's API, with memlab's modules::

    manager = ConnectionManager()
    await manager.add_broker_connection("bybit", api_key, api_secret)      # any ccxt exchange id
    await manager.add_broker_connection("paper", balances={"USDT": 10_000})  # the paper broker
    await manager.add_data_feed("crypto_feed", {"symbols": ["BTCUSDT"], "broker": "bybit"})
    result = await manager.execute_on_broker("bybit", "place_order",
                                             {"symbol": "BTCUSDT", "qty": 0.1, "side": "BUY"})

A feed that names no exchange connection, when there is none to take (only the paper
broker, say), polls a public market-data venue: no account, no credentials. The venue is
the feed's ``venue`` (a ccxt exchange id), else ``$MEMLAB_MARKET_DATA``, else ``binance``
(:func:`memlab.config.market_data_venue`); ``ConnectionManager(market_data={...})`` gives
its ccxt settings (``urls``, ``options``, ``timeout``)::

    await manager.add_broker_connection("paper", balances={"USDT": 10_000})
    feed = await manager.add_data_feed("crypto_feed", {"symbols": ["BTCUSDT"]})   # binance's public candles

The venue is a connection like the others (``market_data:binance`` in health and
``connections.json``). ``add_data_feed`` returns at once even when the venue cannot be
reached: the feed connects in the background — markets, then ``"BTCUSDT"`` →
``"BTC/USDT"``, then the warm-up — retrying with the manager's :class:`RetryPolicy`
backoff until the venue answers, and its bars start then. :meth:`close` stops it.

Credentials not passed in come from :class:`~memlab.credentials.CredentialManager`
(``<NAME>_API_KEY`` / ``_API_SECRET`` in the environment or ``.env``); they go to ccxt
and nowhere else. Every connection's health (state, latency, errors) is on
:attr:`ConnectionManager.health` and in ``connections.json`` for the live monitor.

Events go on one :class:`~memlab.events.EventBus`, :attr:`ConnectionManager.events`: the
health board's ``connection_lost`` / ``connection_restored`` and whatever the trader
publishes (``fill``, ``drawdown``, the agent's ``adaptation``, ``lesson``, ``error``).
The manager never formats them: :meth:`ConnectionManager.add_alert_target` subscribes the
outbound :class:`~memlab.webhooks.AlertSender`, which writes the chat text.
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

from memlab.config import market_data_venue
from memlab.config import memory_path as resolve_memory_path
from memlab.connectors.brokers import ExchangeConnection, PaperConnection
from memlab.connectors.feeds import PollingFeed, ReplayFeed, WatchFeed
from memlab.connectors.health import HealthBoard
from memlab.connectors.paper_broker import PaperBroker
from memlab.connectors.protocol import Broker, missing_verbs
from memlab.connectors.retry import RetryPolicy
from memlab.costs import DEFAULT_COSTS
from memlab.credentials import CredentialManager, Secret
from memlab.errors import ConfigurationError, InvalidInputError
from memlab.events import EventBus, Listener
from memlab.fills import NO_FILL_MODEL

log = logging.getLogger(__name__)

Feed = ReplayFeed | PollingFeed | WatchFeed

#: What :meth:`ConnectionManager.execute_on_broker` understands.
COMMANDS = ("place_order", "cancel_order", "fetch_order", "fetch_open_orders", "fetch_balance",
            "fetch_positions", "fetch_ticker")
_PAPER_OPTIONS = {"balances", "fees", "slippage", "root", "markets", "flush_interval", "fill_model"}


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


class ConnectionManager:
    """Brokers, feeds and webhooks of one process; use as ``async with ConnectionManager() as m``.

    ``memory_path`` is where the paper broker keeps its book and where health is written
    (default: ``$MEM_MEMORY_PATH`` or ``data/mem_knowledge/``). ``events`` is the bus its
    events go on (a new one if None; pass the agent's to hear both on one). ``market_data``
    is ccxt settings of the public market-data venue (``urls``, ``options``, ``timeout``,
    ``rate_limit``; see :meth:`add_data_feed`).
    """

    def __init__(self, memory_path: str | os.PathLike[str] | None = None, *,
                 credentials: CredentialManager | None = None, retry: RetryPolicy | None = None,
                 write_health: bool = True, events: EventBus | None = None,
                 market_data: Mapping[str, Any] | None = None) -> None:
        self.memory_path = resolve_memory_path(memory_path)
        self._credentials = credentials
        self.retry = retry or RetryPolicy()
        self.events = events if events is not None else EventBus("connections")
        self.health = HealthBoard(self.memory_path if write_health else None, events=self.events)
        self.brokers: dict[str, Broker] = {}
        #: Public market-data venues opened for feeds, by ccxt exchange id.
        self.market_data: dict[str, ExchangeConnection] = {}
        self._market_data_options = dict(market_data or {})
        self.feeds: dict[str, Feed] = {}
        self.webhooks: dict[str, Any] = {}
        self._stop_alerts: Callable[[], None] | None = None
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
    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """``listener(event, payload)`` for ``connection_lost`` / ``connection_restored`` and
        whatever the trader and webhooks publish; returns a function that removes it (an
        alias of ``manager.events.subscribe``)."""
        return self.events.subscribe(listener)

    def publish(self, event: str, payload: Mapping[str, Any]) -> None:
        """Put an event on :attr:`events`; a failing listener is logged, never raised here."""
        self.events.publish(event, payload)

    # -- brokers ---------------------------------------------------------------------
    async def add_broker_connection(self, name: str, api_key: Secret | str | None = None,
                                    api_secret: Secret | str | None = None, **options: Any) -> Broker:
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
        connection: Broker
        if venue == "paper":
            unknown = set(options) - _PAPER_OPTIONS
            if unknown:
                raise InvalidInputError(f"unknown paper broker options {sorted(unknown)}; known: {sorted(_PAPER_OPTIONS)}")
            broker = PaperBroker(Path(options.get("root") or self.memory_path), balances=options.get("balances"),
                                 fees=options.get("fees", DEFAULT_COSTS.fees), slippage=options.get("slippage", DEFAULT_COSTS.slippage),
                                 flush_interval=options.get("flush_interval", 1.0),
                                 fill_model=options.get("fill_model") or NO_FILL_MODEL)
            for symbol in options.get("markets") or ():
                broker.add_market(symbol)
            connection = PaperConnection(name, broker, self.health)
        else:
            connection = ExchangeConnection(name, self._exchange(name, venue, api_key, api_secret, options),
                                            self.health, options.pop("retry", None) or self.retry)
        return await self._connect(name, connection)

    async def attach_broker(self, name: str, broker: Broker) -> Broker:
        """Add a broker connection you built: any object with the
        :class:`~memlab.connectors.protocol.Broker` protocol's verbs (a venue ccxt does not
        cover is one such class). It is connected, then routed to like any other."""
        if not isinstance(name, str) or not name.strip():
            raise InvalidInputError(f"a connection name is non-empty text, got {name!r}")
        if name in self.brokers:
            raise InvalidInputError(f"a broker connection named {name!r} exists already")
        missing = missing_verbs(broker)
        if missing:
            raise InvalidInputError(f"broker {name!r} ({type(broker).__name__}) lacks the Broker verbs {missing}")
        return await self._connect(name, broker)

    async def _connect(self, name: str, connection: Broker) -> Broker:
        self.brokers[name] = connection
        try:
            await connection.connect()
        except BaseException:
            del self.brokers[name]
            await connection.close(mark_closed=False)  # health keeps saying why it is down
            raise
        return connection

    def _exchange(self, name: str, venue: str, api_key: Secret | str | None, api_secret: Secret | str | None,
                  options: dict[str, Any], *, public: bool = False) -> Any:
        cls = getattr(ccxt_async, venue, None)
        if cls is None or venue not in ccxt.exchanges:
            close = difflib.get_close_matches(venue, ccxt.exchanges, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigurationError(f"{venue!r} is not a ccxt exchange id{hint}")
        sandbox = bool(options.pop("sandbox", False))
        config: dict[str, Any] = {"enableRateLimit": bool(options.pop("rate_limit", True))}
        if public:
            pass  # market data only: no account, never anyone's keys
        elif api_key is None and self.credentials.has_credentials(name):
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

    def broker(self, name: str) -> Broker:
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

    async def _place_order(self, connection: Broker, p: dict[str, Any]) -> dict[str, Any]:
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
        if cost is not None:
            extra["cost"] = float(cost)
        for key, ccxt_key in (("stop_loss", "stopLoss"), ("take_profit", "takeProfit")):
            if p.get(key) is not None:
                extra[ccxt_key] = float(p[key])  # a trigger price; each connection puts it in its venue's form
        amount = None if cost is not None else qty
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
        Without ``broker`` and with no exchange connection to take (or with ``venue``),
        the feed polls a public market-data venue: ``venue`` (a ccxt exchange id), else
        ``$MEMLAB_MARKET_DATA``, else ``binance``; it is returned at once and connects in
        the background, retrying until the venue answers (see the module docstring).
        Symbols of a replay are listed on the paper broker, if one is connected.

        Raises:
            InvalidInputError: a missing or unknown option, a taken name, an unknown broker.
            ConfigurationError: ``venue`` / ``$MEMLAB_MARKET_DATA`` is not a ccxt exchange id,
                or has no candles.
            ccxt.BadSymbol: a broker's venue does not list a symbol (a public venue's
                answer comes later: iterating the feed raises it).
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
            for connection in self.brokers.values():  # a simulated venue lists what it is fed
                connection.add_markets(list(frames))
        elif source in ("poll", "watch"):
            connection = self._exchange_for_feed(name, cfg.pop("broker", None), cfg.pop("venue", None))
            warmup = int(cfg.pop("warmup", 500))
            if source == "watch":
                feed = WatchFeed(name, connection, list(symbols), timeframe, warmup=warmup, health=self.health,
                                 pro_exchange=self._pro_exchange(connection))
            else:
                feed = PollingFeed(name, connection, list(symbols), timeframe, interval=cfg.pop("interval", None),
                                   warmup=warmup, health=self.health)
        else:
            raise InvalidInputError(f"feed 'source' is replay, poll or watch, got {source!r}")
        leftover = set(cfg) - {"data", "path", "sample", "synthetic", "start", "end", "interval", "speed"}
        if leftover:
            raise InvalidInputError(f"feed {name!r}: unknown options {sorted(leftover)}")
        if isinstance(feed, PollingFeed):
            if feed.connection in self.market_data.values():
                feed.start_connecting()  # a public venue may be unreachable now: the feed waits for it
            else:
                await feed.start()
        self.feeds[name] = feed
        return feed

    def _exchange_for_feed(self, name: str, broker: str | None, venue: str | None) -> ExchangeConnection:
        if broker is not None and venue is not None:
            raise InvalidInputError(f"feed {name!r}: give 'broker' (a connection) or 'venue' (public market data), not both")
        exchanges = {n: c for n, c in self.brokers.items() if c.has.get("fetchOHLCV")}  # candles to poll
        if broker is None:
            if venue is not None or not exchanges:
                return self._market_data_connection(venue)
            if len(exchanges) > 1:
                raise InvalidInputError(f"feed {name!r}: say which exchange with 'broker' (connected: {', '.join(exchanges)}),"
                                        " or 'venue' for a public market-data venue")
            return next(iter(exchanges.values()))  # type: ignore[return-value]
        connection = self.broker(broker)
        if not connection.has.get("fetchOHLCV"):
            raise InvalidInputError(f"feed {name!r}: {broker!r} has no candles to poll (fetchOHLCV)")
        return connection  # type: ignore[return-value]

    def _market_data_connection(self, venue: str | None) -> ExchangeConnection:
        """The public venue's connection (one per venue, shared by its feeds): ccxt without
        credentials, in health as ``market_data:<venue>``; its markets load with the first feed."""
        venue_id = market_data_venue(venue)
        connection = self.market_data.get(venue_id)
        if connection is None:
            name = f"market_data:{venue_id}"
            exchange = self._exchange(name, venue_id, None, None, dict(self._market_data_options), public=True)
            if not exchange.has.get("fetchOHLCV"):
                raise ConfigurationError(f"{venue_id} has no candles (fetchOHLCV) in ccxt; choose another venue "
                                         "with the feed's 'venue' or MEMLAB_MARKET_DATA")
            connection = ExchangeConnection(name, exchange, self.health, self.retry)
            self.health.register(name, "market_data", venue_id)
            self.market_data[venue_id] = connection
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
        self._stop_alerts = self.events.subscribe(self.alert_sender.on_event)
        return self.alert_sender

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
        for name, feed in list(self.feeds.items()):
            if isinstance(feed, PollingFeed):
                await feed.close()  # stops a feed still connecting, before its venue closes
            self.health.closed(name)
        self.feeds.clear()
        for connection in [*self.brokers.values(), *self.market_data.values()]:
            try:
                await connection.close()
            except Exception:
                log.exception("closing %r failed", connection)
        self.brokers.clear()
        self.market_data.clear()
        self.health.flush()
        if self._stop_alerts is not None:
            self._stop_alerts()
            self._stop_alerts = None
        if self.alert_sender is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.alert_sender.close)
            self.alert_sender = None
