"""``memlab paper`` (the seed's ``start_mem_pipeline``): run a trading session from the command line.

Settings come from flags, else the seed's environment (``TRADING_MODE``, ``SYMBOL``,
``STRATEGY``, ``MEM_MEMORY_PATH``), else defaults. SIGINT/SIGTERM stop it after the bar
in hand; running the same command again resumes where it stopped::

    SYMBOL=GOOG STRATEGY=sma_cross memlab paper --sample GOOG --sizing full
    memlab paper --symbol BTC/USDT --strategy momentum --synthetic 50000 --speed 600
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("paper", help="run a paper (or confirmed live) trading session: feed -> agent -> broker -> memory",
                       description=__doc__.split("\n")[0])
    p.add_argument("--symbol", default=None, help="market(s), comma-separated (default: $SYMBOL or BTC/USDT)")
    p.add_argument("--strategy", default=None, help="default: $STRATEGY or momentum")
    p.add_argument("--mode", choices=("paper", "live"), default=None, help="default: $TRADING_MODE or paper")
    p.add_argument("--confirm-live", action="store_true", help="required for --mode live (real orders)")
    p.add_argument("--broker", default=None, help="live mode: ccxt exchange id (default: $BROKER or binance)")
    p.add_argument("--memory-path", default=None, help="default: $MEM_MEMORY_PATH or data/mem_knowledge/")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--sample", default=None, help="replay a shipped market (GOOG, EURUSD, BTCUSD)")
    src.add_argument("--data", default=None, help="replay a CSV/Parquet OHLCV file")
    src.add_argument("--synthetic", type=int, default=None, metavar="BARS", help="replay a seeded synthetic market")
    src.add_argument("--poll", action="store_true", help="live candles from the exchange (ccxt fetch_ohlcv)")
    p.add_argument("--seed", type=int, default=7, help="seed of --synthetic")
    p.add_argument("--after", default=None, metavar="TIME",
                   help="replay only bars after TIME (earlier ones are indicator warm-up); default for --sample/"
                        "--data: the last bar training saw for this market (params/trained.json), so the "
                        "session trades only bars training never saw")
    p.add_argument("--timeframe", default=None, help="candle size for exchange feeds (default 1m)")
    p.add_argument("--speed", type=float, default=None, help="replay pace, market seconds per second (default: as fast as possible)")
    p.add_argument("--warmup", type=int, default=None, help="replayed bars used only as indicator history (default 200)")
    p.add_argument("--sizing", choices=("agent", "full"), default=None)
    p.add_argument("--min-confidence", type=float, default=None)
    p.add_argument("--stop-loss", type=float, default=None, help="fraction below entry, e.g. 0.02")
    p.add_argument("--take-profit", type=float, default=None, help="fraction above entry")
    p.add_argument("--balance", type=float, default=None, help="paper starting cash in the quote currency")
    p.add_argument("--fees", type=float, default=None)
    p.add_argument("--slippage", type=float, default=None)
    p.add_argument("--agent-id", default=None)
    p.add_argument("--max-bars", type=int, default=None)
    p.add_argument("--sync-interval", type=float, default=None, help="seconds of bars per fsync group (default: every bar)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="strategy parameter (repeatable)")
    p.add_argument("--webhook-port", type=int, default=None, metavar="PORT",
                   help="take signed alerts on http://127.0.0.1:PORT/signal (secret: $ALERTS_WEBHOOK_SECRET)")
    p.add_argument("--alert-url", action="append", default=[], metavar="URL",
                   help="post fills, adaptations, lessons, drawdowns, lost connections here (Slack/Discord/JSON; repeatable)")
    p.add_argument("--json", action="store_true", help="print the session report as JSON")
    p.set_defaults(func=_command)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def config_from_args(args: argparse.Namespace) -> Any:
    from memlab.errors import InvalidInputError
    from memlab.trader import TraderConfig

    params = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InvalidInputError(f"--param takes NAME=VALUE, got {item!r}")
        params[name] = _value(value)
    feed: dict[str, Any] | None = None
    if args.sample:
        feed = {"sample": args.sample}
    elif args.data:
        feed = {"path": args.data}
    elif args.synthetic:
        feed = {"synthetic": {"n": args.synthetic, "seed": args.seed}}
    elif args.poll:
        feed = {"source": "poll"}
    if feed is not None:
        if args.speed is not None:
            feed["speed"] = args.speed
        if args.warmup is not None and "source" not in feed:
            feed["warmup"] = args.warmup
    overrides = {
        "symbols": tuple(s.strip() for s in args.symbol.split(",")) if args.symbol else None,
        "strategy": args.strategy, "mode": args.mode, "broker": args.broker, "memory_path": args.memory_path,
        "sizing": args.sizing, "min_confidence": args.min_confidence, "stop_loss": args.stop_loss,
        "take_profit": args.take_profit, "balance": args.balance, "fees": args.fees, "slippage": args.slippage,
        "agent_id": args.agent_id, "max_bars": args.max_bars, "sync_interval": args.sync_interval,
        "timeframe": args.timeframe, "params": params or None, "feed": feed,
        "confirm_live": True if args.confirm_live else None,
    }
    if overrides["memory_path"] is not None:
        from pathlib import Path

        overrides["memory_path"] = Path(overrides["memory_path"])
    config = TraderConfig.from_env(**overrides)
    if args.sample or args.data or args.after:
        config = hold_out(config, args.after)
    return config


def hold_out(config: Any, after: str | None = None) -> Any:
    """``config`` with its replay cut so that only bars after ``after`` are traded (the bars
    before it serve as indicator warm-up). Without ``after``: after the last bar training saw
    for the market and strategy, when it was trained. Says what it did."""
    import pandas as pd

    from memlab.connectors.manager import replay_frames
    from memlab.errors import InvalidInputError
    from memlab.strategies.params import trained_until

    feed = config.feed_settings()
    if feed.get("source", "replay") != "replay":
        raise InvalidInputError("--after needs replayed data (--sample, --data or --synthetic)")
    symbol = config.symbols[0]
    seen = trained_until(symbol, config.strategy)
    when = after or seen
    if when is None:
        print(f"memlab paper: {config.strategy} was never trained on {symbol}; replaying all of it")
        return config
    try:
        cut = pd.Timestamp(when)
    except (TypeError, ValueError):
        raise InvalidInputError(f"--after must be a time such as 2012-06-30, got {when!r}") from None
    cut = cut.tz_localize("UTC") if cut.tzinfo is None else cut.tz_convert("UTC")
    frame = replay_frames("paper", [symbol], {k: v for k, v in feed.items() if k in ("data", "path", "sample", "synthetic")})[symbol]
    first = int(frame.index.searchsorted(cut, side="right"))
    if first >= len(frame):
        raise InvalidInputError(f"no bars of {symbol} after {cut:%Y-%m-%d %H:%M} (its data ends {frame.index[-1]:%Y-%m-%d %H:%M})")
    warmup = int(feed.get("warmup", config.warmup))
    start = frame.index[max(0, first - warmup)]
    print(f"memlab paper: paper-trading {symbol} only after {cut:%Y-%m-%d %H:%M} "
          f"({len(frame) - first} bars from {frame.index[first]:%Y-%m-%d %H:%M}; {min(first, warmup)} bars before as warm-up)"
          + (f"; training saw it up to {pd.Timestamp(seen):%Y-%m-%d %H:%M}" if seen else ""))
    if seen is not None and cut < pd.Timestamp(seen):
        print(f"memlab paper: warning: bars up to {pd.Timestamp(seen):%Y-%m-%d %H:%M} were seen by training; "
              "results on them are in-sample")
    kept = {k: v for k, v in feed.items() if k not in ("symbols", "timeframe")}
    return config.with_(feed={**kept, "start": start, "warmup": min(first, warmup)})


async def _session(args: argparse.Namespace, config: Any) -> dict[str, Any]:
    from memlab.connectors import ConnectionManager
    from memlab.trader import UnifiedMemGPTTrader

    manager = ConnectionManager(config.memory_path)
    if args.webhook_port is not None:
        server = await manager.add_webhook("alerts", {"port": args.webhook_port})
        print(f"memlab paper: taking signed alerts at {server.url}")
    if args.alert_url:
        manager.add_alert_target(*args.alert_url)
    trader = UnifiedMemGPTTrader(config, manager=manager)
    print(f"memlab paper: {trader!r}; memory in {config.memory_path}")
    return await trader.run(handle_signals=True)


def _command(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    report = asyncio.run(_session(args, config))
    if args.json:
        print(json.dumps(report, default=str))
    else:
        p99 = report["bar_to_order_ms_p99"]
        print(f"{report['state']}: {report['bars']} bars, {report['orders']} orders, {report['fills']} fills, "
              f"{report['decisions']} decisions, {report['outcomes']} outcomes; equity {report['equity']:,.2f}"
              + (f" ({report['return']:+.2%})" if report["return"] is not None else "")
              + (f"; bar->order p99 {p99:.2f} ms" if p99 is not None else ""))
        print(f"{report['signals']} entry/exit signals scored; {report['skipped']} entries skipped"
              + "".join(f"\n  {n} {why}" for why, n in sorted(report["skip_reasons"].items(), key=lambda x: -x[1])))
    return 0
