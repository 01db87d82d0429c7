"""``memlab paper`` (the seed's ``start_mem_pipeline``): run a trading session from the command line.

Settings come from flags, else the seed's environment (``TRADING_MODE``, ``SYMBOL``,
``STRATEGY``, ``MEM_MEMORY_PATH``), else defaults. SIGINT/SIGTERM stop it after the bar
in hand; running the same command again resumes where it stopped::

    SYMBOL=GOOG STRATEGY=sma_cross memlab paper --sample GOOG --sizing full
    memlab paper --symbol BTC/USDT --strategy momentum --synthetic 50000 --speed 600
    memlab paper --symbol GOOG --strategy bollinger --strategy-file my_strategies.py --sample GOOG
    memlab paper --symbol BTC/USDT:USDT --strategy sma_cross --synthetic 5000 --sizing full --leverage 3

A perpetual swap (``BTC/USDT:USDT``) trades long and short; ``--leverage`` is set on it at
start (the broker refuses one above the market's maximum, naming it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from typing import Any

from memlab.cli import (
    equity_fraction,
    existing_file,
    fraction,
    non_negative_int,
    non_negative_number,
    open_fraction,
    port,
    positive_int,
    positive_number,
    probability,
    share,
    timestamp,
)


def leverage(text: str) -> float:
    """A leverage: a finite number >= 1 (1 = none)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1):
        raise argparse.ArgumentTypeError(f"a leverage is a number >= 1 (3 = 3x), got {text!r}")
    return value


def exposure(text: str) -> float:
    """An exposure limit: a share of equity in (0, 100] (above 1 only with leverage)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 100):
        raise argparse.ArgumentTypeError(f"an exposure limit is a share of equity in (0, 100] (0.33 = a third), "
                                         f"got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from memlab.strategies.cli import add_strategy_file_argument

    p = sub.add_parser("paper", help="run a paper (or confirmed live) trading session: feed -> agent -> broker -> memory",
                       description=__doc__.split("\n")[0])
    p.add_argument("--symbol", default=None, help="market(s), comma-separated (default: $SYMBOL or BTC/USDT)")
    p.add_argument("--strategy", default=None, help="default: $STRATEGY or momentum")
    add_strategy_file_argument(p)
    p.add_argument("--mode", choices=("paper", "live"), default=None, help="default: $TRADING_MODE or paper")
    p.add_argument("--confirm-live", action="store_true", help="required for --mode live (real orders)")
    p.add_argument("--broker", default=None, help="live mode: ccxt exchange id (default: $BROKER or binance)")
    p.add_argument("--memory-path", default=None, help="default: $MEM_MEMORY_PATH or data/mem_knowledge/")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--sample", default=None, help="replay a shipped market (GOOG, EURUSD, BTCUSD)")
    src.add_argument("--data", type=existing_file, default=None, help="replay a CSV/Parquet OHLCV file")
    src.add_argument("--synthetic", type=positive_int, default=None, metavar="BARS", help="replay a seeded synthetic market")
    src.add_argument("--poll", action="store_true", help="live candles from the exchange (ccxt fetch_ohlcv)")
    p.add_argument("--seed", type=non_negative_int, default=7, help="seed of --synthetic")
    p.add_argument("--after", type=timestamp, default=None, metavar="TIME",
                   help="replay only bars after TIME (earlier ones are indicator warm-up); default for --sample/"
                        "--data: the last bar training saw for this market (params/trained.json), so the "
                        "session trades only bars training never saw")
    p.add_argument("--timeframe", default=None, help="candle size for exchange feeds (default 1m)")
    p.add_argument("--speed", type=positive_number, default=None, help="replay pace, market seconds per second (default: as fast as possible)")
    p.add_argument("--warmup", type=non_negative_int, default=None, help="replayed bars used only as indicator history (default 200)")
    p.add_argument("--sizing", choices=("agent", "full"), default=None)
    p.add_argument("--min-confidence", type=probability, default=None, help="skip entries the agent scores below this (0-1)")
    p.add_argument("--stop-loss", type=open_fraction, default=None, help="fraction below entry, e.g. 0.02")
    p.add_argument("--take-profit", type=open_fraction, default=None, help="fraction above entry")
    p.add_argument("--trailing-stop", type=open_fraction, default=None,
                   help="fraction below the highest price since entry (instead of --stop-loss)")
    p.add_argument("--exit-after", type=positive_int, default=None, metavar="BARS",
                   help="close a position this many bars after its entry (market order at the open)")
    p.add_argument("--size", type=share, default=None,
                   help="share of free cash each entry spends with --sizing full, in (0, 1] (default 1)")
    p.add_argument("--leverage", type=leverage, default=None, metavar="X",
                   help="perpetual swaps (BTC/USDT:USDT): margin leverage, up to the market's maximum (default 1)")
    x = p.add_argument_group("exposure limits (a session of several symbols shares one cash balance)")
    x.add_argument("--max-position", type=exposure, default=None, metavar="FRACTION",
                   help="one symbol's position at most this share of equity at entry, e.g. 0.33")
    x.add_argument("--max-exposure", type=exposure, default=None, metavar="FRACTION",
                   help="all positions together at most this share of equity (above 1 only with leverage)")
    g = p.add_argument_group("protections (each blocks new entries for a while; exits always go ahead)")
    g.add_argument("--max-stop-losses", type=positive_int, default=None, metavar="K",
                   help="after K stop-losses within --stop-loss-window bars, no entries for --pause bars")
    g.add_argument("--stop-loss-window", type=positive_int, default=60, metavar="BARS", help="(default 60)")
    g.add_argument("--max-drawdown", type=equity_fraction, default=None, metavar="FRACTION",
                   help="equity this far below its peak halts entries for --pause bars, e.g. 0.15")
    g.add_argument("--pause", type=positive_int, default=60, metavar="BARS",
                   help="how long the stop-loss guard and the drawdown halt last (default 60)")
    g.add_argument("--cooldown", type=positive_int, default=None, metavar="BARS",
                   help="bars a symbol waits after a position closes before it opens another")
    p.add_argument("--balance", type=positive_number, default=None, help="paper starting cash in the quote currency")
    p.add_argument("--fees", type=fraction, default=None, help="fraction of traded value in [0, 1), e.g. 0.001")
    p.add_argument("--slippage", type=fraction, default=None, help="fraction of traded value in [0, 1)")
    p.add_argument("--maker-fees", type=fraction, default=None,
                   help="fee of take-profit (resting) orders, in [0, 1) (default: --fees; see memlab.fills)")
    p.add_argument("--range-spread", type=non_negative_number, default=None, metavar="K",
                   help="pay half of K x the last bar's (High-Low)/Close as spread on each fill (default 0: off)")
    p.add_argument("--latency", type=non_negative_int, default=None, metavar="BARS",
                   help="orders fill this many bars after the next open (default 0)")
    p.add_argument("--agent-id", default=None)
    p.add_argument("--max-bars", type=positive_int, default=None)
    p.add_argument("--sync-interval", type=non_negative_number, default=None, help="seconds of bars per fsync group (default: every bar)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="strategy parameter (repeatable)")
    p.add_argument("--webhook-port", type=port, default=None, metavar="PORT",
                   help="take signed alerts on http://127.0.0.1:PORT/signal (secret: $ALERTS_WEBHOOK_SECRET)")
    p.add_argument("--alert-url", action="append", default=[], metavar="URL",
                   help="post fills, adaptations, lessons, drawdowns, lost connections here (Slack/Discord/JSON; repeatable)")
    p.add_argument("--json", action="store_true", help="print the session report as JSON")
    p.set_defaults(func=_command)


def config_from_args(args: argparse.Namespace) -> Any:
    from memlab.errors import InvalidInputError
    from memlab.strategies import use_strategy_files
    from memlab.trader import TraderConfig

    use_strategy_files(getattr(args, "strategy_file", None))
    for item in args.param:
        name, sep, _ = item.partition("=")
        if not sep or not name.strip():
            raise InvalidInputError(f"--param takes NAME=VALUE, got {item!r}")
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
        "take_profit": args.take_profit, "trailing_stop": args.trailing_stop, "exit_after": args.exit_after,
        "size": args.size, "leverage": args.leverage, "max_position": args.max_position,
        "max_exposure": args.max_exposure, "balance": args.balance, "fees": args.fees, "slippage": args.slippage,
        "agent_id": args.agent_id, "max_bars": args.max_bars, "sync_interval": args.sync_interval,
        "timeframe": args.timeframe, "feed": feed,
        "confirm_live": True if args.confirm_live else None,
    }
    if overrides["memory_path"] is not None:
        from pathlib import Path

        overrides["memory_path"] = Path(overrides["memory_path"])
    if args.max_stop_losses is not None or args.max_drawdown is not None or args.cooldown is not None:
        from memlab.trader.protections import ProtectionRules

        overrides["protections"] = ProtectionRules(
            max_stop_losses=args.max_stop_losses, stop_loss_window=args.stop_loss_window, pause=args.pause,
            max_drawdown=args.max_drawdown, cooldown=args.cooldown)
    if args.maker_fees is not None or args.range_spread is not None or args.latency is not None:
        from memlab.fills import FillModel

        overrides["fill_model"] = FillModel(range_spread=args.range_spread or 0.0, latency=args.latency or 0,
                                            maker_fees=args.maker_fees)
    config = TraderConfig.from_env(**overrides)
    if args.param:  # typed by the strategy's defaults: fast=abc is refused naming it
        from memlab.strategies.cli import parse_params

        config = config.with_(params=parse_params(config.strategy, args.param))
    if args.sample or args.data or args.after:
        from memlab.trader.holdout import hold_out

        config = hold_out(config, args.after)
    return config


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
        for symbol, n in report.get("short_signals_ignored", {}).items():
            print(f"{n} short signals not traded: {symbol} is a spot market")
    return 0
