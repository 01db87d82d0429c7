"""A webhook session that kills itself (SIGKILL) at one exact point of handling an alert.

The crash windows the issue observed, made exact instead of timed::

    python -m tests.faults.crash_points trader before-order -- <memlab paper arguments>
    python -m tests.faults.crash_points trader after-order -- <memlab paper arguments>
    python -m tests.faults.crash_points router before-order -- MEMORY PORT SECRET

    python -m tests.faults.crash_points exit N -- <memlab paper arguments>
    python -m tests.faults.crash_points halt N -- <memlab paper arguments>
    python -m tests.faults.crash_points halt-said N -- <memlab paper arguments>

``trader`` runs what ``memlab paper --webhook-port`` runs (the same CLI parsing and
session); ``router`` an :class:`~memlab.webhooks.AlertRouter` on a paper broker.
``before-order``: the alert's id is claimed, then the process dies as the order is about
to be placed. ``after-order``: the order is placed, then the process dies as the
decision is about to be logged. Nothing else is changed; a plain restart follows.
``exit N``: a ``memlab paper`` session with protections dies as the protections take its
N-th position exit: the book holds the fill and the protections' state has it, its
journal line (if the exit started a pause) is not written yet.
``halt N``: the same as the N-th drawdown halt starts: its state is written, its journal
line not. ``halt-said N``: just after that journal line, before the bar's group commit
ends (where an earlier version saved the state).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

#: The market the router crash tests trade: its last bar is the broker's price.
ROUTER_BARS = {"freq": "1min", "seed": 9}


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def trader(point: str, argv: list[str]) -> None:
    from memlab.cli import build_parser
    from memlab.connectors import ConnectionManager
    from memlab.trader import UnifiedMemGPTTrader
    from memlab.trader.cli import config_from_args

    args = build_parser().parse_args(["paper", *argv])
    config = config_from_args(args)
    manager = ConnectionManager(config.memory_path)
    server = await manager.add_webhook("alerts", {"port": args.webhook_port})
    print(f"taking signed alerts at {server.url}", flush=True)
    session = UnifiedMemGPTTrader(config, manager=manager)
    from memlab.agent import MemoryAgent
    from memlab.connectors import PaperConnection

    if point == "before-order":
        create_order = PaperConnection.create_order

        async def placing(self: Any, symbol: str, type: str, side: str, amount: Any, price: Any = None,
                          params: Any = None) -> Any:
            if str((params or {}).get("clientOrderId", "")).startswith("wh-"):
                die()
            return await create_order(self, symbol, type, side, amount, price, params)

        PaperConnection.create_order = placing  # type: ignore[method-assign]
    else:
        log_decision = MemoryAgent.log_decision

        def logged(self: Any, decision: Any, result: Any = None) -> Any:
            if str((result or {}).get("client_order_id", "")).startswith("wh-"):
                die()
            return log_decision(self, decision, result)

        MemoryAgent.log_decision = logged  # type: ignore[method-assign]
    await session.run(handle_signals=True)


def router_parts(root: Path) -> tuple[Any, Any, Any]:
    """The agent, paper broker and router a router test runs on ``root`` (before and after a crash)."""
    from memlab.agent import MemoryAgent
    from memlab.connectors import Bar, PaperBroker, PaperConnection
    from memlab.data import synthetic_ohlcv
    from memlab.webhooks import AlertRouter

    bars = synthetic_ohlcv(600, **ROUTER_BARS)  # type: ignore[arg-type]
    agent = MemoryAgent(root, agent_id="webhook_trader")
    broker = PaperBroker(root, balances={"USDT": 100_000.0}, fees=0.001)
    broker.add_market("BTC/USDT")
    last = bars.iloc[-1]
    broker.on_bar("BTC/USDT", Bar(bars.index[-1].timestamp(), last.Open, last.High, last.Low, last.Close))
    return agent, broker, AlertRouter(agent, PaperConnection("paper", broker), lambda symbol: bars)


def router(point: str, root: Path, port: int, secret: str) -> None:
    from memlab.webhooks import WebhookConfig, WebhookServer

    agent, broker, handler = router_parts(root)
    if point == "before-order":
        broker.create_order = lambda *a, **k: die()  # type: ignore[method-assign]
    else:
        agent.log_decision = lambda *a, **k: die()  # type: ignore[method-assign]
    server = WebhookServer(WebhookConfig(port=port), secret, handler, store_dir=root).start()
    print(f"taking signed alerts at {server.url}", flush=True)
    threading.Event().wait()


async def exit_crash(nth: int, argv: list[str]) -> None:
    from memlab.cli import build_parser
    from memlab.trader import UnifiedMemGPTTrader
    from memlab.trader.cli import config_from_args
    from memlab.trader.protections import ProtectionGuard

    config = config_from_args(build_parser().parse_args(["paper", *argv]))
    record_exit, seen = ProtectionGuard.record_exit, []

    def recording(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = record_exit(self, *args, **kwargs)
        seen.append(1)
        if len(seen) == nth:
            die()
        return out

    ProtectionGuard.record_exit = recording  # type: ignore[method-assign]
    await UnifiedMemGPTTrader(config).run()


async def halt_crash(nth: int, said: bool, argv: list[str]) -> None:
    from memlab.cli import build_parser
    from memlab.trader import UnifiedMemGPTTrader
    from memlab.trader.cli import config_from_args
    from memlab.trader.protections import ProtectionGuard

    config = config_from_args(build_parser().parse_args(["paper", *argv]))
    record_equity, announce, halts = ProtectionGuard.record_equity, UnifiedMemGPTTrader._announce, []

    def recording(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = record_equity(self, *args, **kwargs)
        halts.extend(out)
        if len(halts) == nth and out and not said:
            die()
        return out

    def announcing(self: Any, started: list[str], *args: Any) -> None:
        announce(self, started, *args)
        if len(halts) == nth and any(note.startswith("drawdown halt") for note in started):
            die()

    ProtectionGuard.record_equity = recording  # type: ignore[method-assign]
    UnifiedMemGPTTrader._announce = announcing  # type: ignore[method-assign]
    await UnifiedMemGPTTrader(config).run()


def main(argv: list[str]) -> None:
    kind, point, sep, *rest = argv
    if kind == "exit":
        assert sep == "--", argv
        asyncio.run(exit_crash(int(point), rest))
        return
    if kind in ("halt", "halt-said"):
        assert sep == "--", argv
        asyncio.run(halt_crash(int(point), kind == "halt-said", rest))
        return
    assert sep == "--" and point in ("before-order", "after-order"), argv
    if kind == "trader":
        asyncio.run(trader(point, rest))
    else:
        router(point, Path(rest[0]), int(rest[1]), rest[2])


if __name__ == "__main__":
    main(sys.argv[1:])
