"""Reconcile a paper session with the backtest of the same bars and rules.

The paper broker fills market orders at the next bar's open with the same fees and
slippage as :func:`memlab.backtest.simulate`; with ``sizing="full"`` (all free cash on
each entry, as a backtest sizes) the session's return must equal the backtest's. A
session's ``stop_loss`` / ``take_profit`` go to the backtest too: the paper broker's
children and :func:`memlab.backtest.simulate`'s stops follow the same rules (levels from
the signal bar's close, checked from the bar after the entry, a gap filled at the open).
A difference means a fill, a fee or a signal went differently: worth knowing before
trusting either.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from memlab.connectors.manager import replay_frames
from memlab.connectors.paper_broker import PaperBroker
from memlab.errors import InvalidInputError
from memlab.trader.config import TraderConfig
from memlab.trader.loop import strategy_params


def reconcile_with_backtest(config: TraderConfig) -> dict[str, Any]:
    """``{'paper_return', 'backtest_return', 'difference', 'paper_fills', 'backtest_trades'}``
    for the (finished) paper session of ``config`` in its memory folder."""
    from memlab import backtest
    from memlab.memory import MemoryStores
    from memlab.strategies import compute_signals

    if config.mode != "paper" or config.sizing != "full" or len(config.symbols) != 1:
        raise InvalidInputError("reconciling needs a one-symbol paper session with sizing='full'")
    settings = config.feed_settings()
    if settings.get("source", "replay") != "replay":
        raise InvalidInputError("reconciling needs a replayed session (stored bars)")
    symbol = config.symbols[0]
    bars = replay_frames("reconcile", [symbol], settings)[symbol]
    warmup = int(settings.get("warmup", 0))
    with MemoryStores(config.memory_path) as stores:
        params = strategy_params(config, symbol, stores)
    signals = compute_signals(config.strategy, bars, params).iloc[warmup:]
    pf = backtest.simulate(bars.iloc[warmup:], signals, fees=config.fees, slippage=config.slippage,
                           init_cash=config.balance, **config.exits.backtest_kwargs())
    broker = PaperBroker(config.memory_path)
    try:
        paper = broker.equity(config.quote_for(symbol)) / config.balance - 1
        fills = len(broker.fills(symbol))
    finally:
        broker.close()
    bt = float(pf.total_return())
    trades = backtest.engine.trades_frame(pf)
    return {"symbol": symbol, "params": params, "bars": len(bars) - warmup, "paper_return": paper,
            "backtest_return": bt, "difference": paper - bt, "paper_fills": fills,
            "backtest_trades": len(trades), "backtest_stats": backtest.engine.portfolio_stats(
                pf, backtest.engine.periods_per_year(pd.DatetimeIndex(bars.index)))}
