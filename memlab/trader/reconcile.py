"""Reconcile a paper session with the backtest of the same bars and rules.

The paper broker fills market orders at the next bar's open with the same fees and
slippage as :func:`memlab.backtest.simulate`; with ``sizing="full"`` (all free cash on
each entry, as a backtest sizes) the session's return must equal the backtest's. A
session's ``stop_loss`` / ``take_profit`` go to the backtest too: the paper broker's
children and :func:`memlab.backtest.simulate`'s stops follow the same rules (levels from
the signal bar's close, checked from the bar after the entry, a gap filled at the open).
A difference means a fill, a fee or a signal went differently: worth knowing before
trusting either.

A session on a perpetual swap (``BTC/USDT:USDT``) trades long and short: at leverage 1
without funding it is a ``direction="both"`` backtest (vectorbt reverses a position on an
opposite entry as the session does). Its entries are amounts in contracts priced at the
signal bar's close (the paper broker takes no ``cost`` for swaps), so the two agree to
1e-9 when each bar opens at the previous close, as a 24/7 market's bars do; a bar that
gaps makes the session spend a little more or less than vectorbt, which sizes at the
open. A leveraged session, or one that paid or received funding, has no vectorbt
backtest: it is reconciled with :func:`memlab.backtest.perp.simulate_perp` (isolated
margin, liquidation, the funding rates and leverage tiers in the session's book), which
sizes at the signal close as the session does, so they agree on gapped bars too. That
backtest has no stops: a leveraged or funded session with stops is refused, naming why.

A session's ``fill_model`` (:class:`memlab.fills.FillModel`) goes to the backtest too:
the bar-range spread is the same per-bar slippage (from the bar before each fill), the
latency delays the backtest's orders by as many bars and resolves a signal against the
position the session held when it sent it (an exit for an entry still on its way, or an
entry while an exit is, is not sent), and a take-profit pays the maker fee in both. A
spot session with all of it reconciles to 1e-9. Refused, naming why: a volume cap (the
backtest fills orders whole), and a spread or latency on a perpetual swap (the session
sizes a swap entry at the signal close with the fixed slippage, so the two would differ).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from memlab.connectors.manager import replay_frames
from memlab.connectors.paper_broker import PaperBroker
from memlab.errors import InvalidInputError
from memlab.trader.config import TraderConfig, is_swap_symbol
from memlab.trader.loop import strategy_params


def reconcile_with_backtest(config: TraderConfig) -> dict[str, Any]:
    """``{'paper_return', 'backtest_return', 'difference', 'paper_fills', 'backtest_trades'}``
    for the (finished) paper session of ``config`` in its memory folder."""
    from memlab import backtest
    from memlab.memory import MemoryStores
    from memlab.strategies import compute_signals

    if config.mode == "paper" and config.sizing == "full" and len(config.symbols) > 1:
        return _reconcile_portfolio(config)
    if config.mode != "paper" or config.sizing != "full" or len(config.symbols) != 1:
        raise InvalidInputError("reconciling needs a paper session with sizing='full'")
    settings = config.feed_settings()
    if settings.get("source", "replay") != "replay":
        raise InvalidInputError("reconciling needs a replayed session (stored bars)")
    symbol = config.symbols[0]
    swap = is_swap_symbol(symbol)
    fill_model = config.fill_model
    if fill_model.volume_cap is not None:
        raise InvalidInputError(f"reconciling a session with volume_cap={fill_model.volume_cap:g} is not done: the "
                                "backtest fills each order whole")
    if swap and (fill_model.range_spread or fill_model.latency):
        raise InvalidInputError("reconciling a perpetual-swap session with a range spread or latency is not done: "
                                "the session sizes swap entries at the signal close with the fixed slippage")
    bars = replay_frames("reconcile", [symbol], settings)[symbol]
    warmup = int(settings.get("warmup", 0))
    with MemoryStores(config.memory_path) as stores:
        params = strategy_params(config, symbol, stores)
    signals = compute_signals(config.strategy, bars, params).iloc[warmup:]
    broker = PaperBroker(config.memory_path)
    try:
        paper = broker.equity(config.quote_for(symbol)) / config.balance - 1
        fills = len(broker.fills(symbol))
        funded = swap and any(f["amount"] for f in broker.fetch_funding_history(symbol))
        if swap and (funded or config.leverage != 1):
            market = broker.market(symbol)
            perp_book = {"funding": broker.fetch_funding_rate_history(symbol),
                         "tiers": broker.fetch_market_leverage_tiers(symbol),
                         "funding_interval": float(market["fundingInterval"]),
                         "min_amount": market["limits"]["amount"]["min"]}
    finally:
        broker.close()
    if swap and (funded or config.leverage != 1):
        if fill_model.active:
            raise InvalidInputError("reconciling a leveraged or funded session with a fill model is not done: "
                                    "memlab.backtest.perp simulates none")
        return _reconcile_perp(config, bars.iloc[warmup:], signals, params, paper, fills, perp_book)
    pf = backtest.simulate(bars.iloc[warmup:], signals, fees=config.fees, slippage=config.slippage,
                           init_cash=config.balance, direction="both" if swap else "longonly",
                           fill_model=fill_model, **config.exits.backtest_kwargs())
    bt = float(pf.total_return())
    trades = backtest.engine.trades_frame(pf)
    return {"symbol": symbol, "direction": "both" if swap else "longonly", "params": params, "bars": len(bars) - warmup, "paper_return": paper,
            "backtest_return": bt, "difference": paper - bt, "paper_fills": fills,
            "backtest_trades": len(trades), "backtest_stats": backtest.engine.portfolio_stats(
                pf, backtest.engine.periods_per_year(pd.DatetimeIndex(bars.index)))}


def _reconcile_perp(config: TraderConfig, bars: pd.DataFrame, signals: pd.DataFrame, params: dict[str, Any],
                    paper: float, fills: int, book: dict[str, Any]) -> dict[str, Any]:
    """A leveraged or funded swap session against :func:`memlab.backtest.perp.simulate_perp`."""
    from memlab.backtest.perp import simulate_perp

    if config.stop_loss or config.take_profit or config.trailing_stop:
        raise InvalidInputError("reconciling a leveraged or funded session with stops is not done: "
                                "memlab.backtest.perp simulates no stops")
    result = simulate_perp(bars, signals, init_cash=config.balance, fees=config.fees, slippage=config.slippage,
                           leverage=config.leverage, size=config.size, exit_after=config.exit_after, **book)
    bt = result.total_return
    return {"symbol": config.symbols[0], "direction": "both", "backtest": "perp", "params": params,
            "bars": len(bars), "paper_return": paper, "backtest_return": bt, "difference": paper - bt,
            "paper_fills": fills, "backtest_fills": len(result.fills), "backtest_funding": result.funding,
            "backtest_liquidations": result.liquidations}


def _reconcile_portfolio(config: TraderConfig) -> dict[str, Any]:
    """A session of several spot symbols on shared cash against
    :func:`memlab.backtest.portfolio.run_portfolio` on the same bars and rules."""
    from memlab.backtest.portfolio import run_portfolio
    from memlab.memory import MemoryStores

    if any(is_swap_symbol(s) for s in config.symbols):
        raise InvalidInputError(f"reconciling a portfolio needs spot symbols; {', '.join(config.symbols)} include "
                                "a perpetual swap (reconcile each swap in a session of its own)")
    for name in ("max_position", "max_exposure"):
        if getattr(config, name) is not None:
            raise InvalidInputError(f"{name} has no backtest twin: reconcile a session without exposure limits")
    if config.protections.active:
        raise InvalidInputError("protections have no backtest twin: reconcile a session without them")
    if config.fill_model.active:
        raise InvalidInputError("a portfolio backtest takes fixed fees and slippage only: reconcile a session "
                                "without a fill model")
    settings = config.feed_settings()
    if settings.get("source", "replay") != "replay":
        raise InvalidInputError("reconciling needs a replayed session (stored bars)")
    bars = replay_frames("reconcile", list(config.symbols), settings)
    warmup = int(settings.get("warmup", 0))
    with MemoryStores(config.memory_path) as stores:
        params = {s: strategy_params(config, s, stores) for s in config.symbols}
    quote = config.quote_for(config.symbols[0])
    broker = PaperBroker(config.memory_path)
    try:
        paper = broker.equity(quote) / config.balance - 1
        fills = sum(len(broker.fills(s)) for s in config.symbols)
    finally:
        broker.close()
    result = run_portfolio(bars, config.strategy, params, fees=config.fees,
                           slippage=config.slippage, init_cash=config.balance, warmup=warmup,
                           **config.exits.backtest_kwargs())
    backtest_return = float(result.stats["total_return"])
    return {"symbols": list(config.symbols), "direction": "longonly", "params": params,
            "bars": len(result.equity), "paper_return": paper, "backtest_return": backtest_return,
            "difference": paper - backtest_return, "paper_fills": fills, "backtest_trades": len(result.trades),
            "period": result.period}
