"""From an authenticated alert to an order, without a running trader.

:class:`AlertRouter` is the handler a :class:`~memlab.webhooks.WebhookServer` calls when
no trader session runs: it builds the signal from the alert and the symbol's recent bars
and hands it to the same :class:`~memlab.trader.pipeline.DecisionPipeline` a trader uses
(score, size, place with the alert's client id, log), so a retried alert is never a
second order and its journal lines are a trader's.

An alert a killed process left half-handled is finished by :meth:`AlertRouter.recover`
(the server calls it before serving): the order is looked up by its client id, and its
decision logged if it was not; with no order, the alert is released for the retry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ccxt
import pandas as pd

from memlab.connectors.protocol import Broker
from memlab.features import FEATURE_NAMES, WARMUP_BARS, market_features
from memlab.memory.durable import TickCommit, begin_group
from memlab.trader.pipeline import DecisionPipeline, Holdings, SizingRule, alert_client_id
from memlab.webhooks.alerts import AlertRejected, WebhookAlert, check_alert_position, check_quantity


class AlertRouter:
    """Score, size, place and log one alert; raises :class:`AlertRejected` (nothing placed).

    ``broker`` is any :class:`~memlab.connectors.protocol.Broker` (e.g.
    ``PaperConnection("paper", PaperBroker(folder))``); ``bars(symbol)`` gives the symbol's
    recent bars, the last one being the market the alert is judged in.
    """

    def __init__(self, agent: Any, broker: Broker, bars: Callable[[str], pd.DataFrame], *, quote: str = "USDT",
                 rule: SizingRule | None = None) -> None:
        self.agent, self.broker, self.bars, self.quote = agent, broker, bars, quote
        self.pipeline = DecisionPipeline(agent, broker, rule)
        self._features: dict[str, tuple[pd.Timestamp, dict[str, float], float]] = {}
        self._tick = TickCommit()

    def _situation(self, symbol: str) -> tuple[dict[str, float], float]:
        """Features of the symbol's latest bar (computed once per new bar) and its close."""
        window = self.bars(symbol)
        if window is None or len(window) <= WARMUP_BARS:
            raise AlertRejected(422, f"not enough market data for {symbol!r} yet to judge the alert", retryable=True)
        last = window.index[-1]
        cached = self._features.get(symbol)
        if cached is None or cached[0] != last:
            row = market_features(window.iloc[-(WARMUP_BARS * 5):]).iloc[-1]
            cached = (last, {name: float(row[name]) for name in FEATURE_NAMES}, float(window["Close"].iloc[-1]))
            self._features[symbol] = cached
        return cached[1], cached[2]

    async def __call__(self, alert: WebhookAlert) -> dict[str, Any]:
        # The order and the memory writes of every alert handled in this loop tick are
        # fsynced together before any of them is answered (group commit).
        begin_group()
        try:
            return await self._handle(alert)
        finally:
            await self._tick.durable()

    async def recover(self, alert: WebhookAlert) -> dict[str, Any] | None:
        """Finish an alert a stopped process left unfinished: its result when its order
        exists (the decision logged if it was not), None when nothing was placed."""
        begin_group()
        try:
            return await self._complete(alert)
        finally:
            await self._tick.durable()

    def client_id(self, alert: WebhookAlert) -> str:
        return alert_client_id(self.agent.agent_id, alert.alert_id)

    async def _complete(self, alert: WebhookAlert) -> dict[str, Any] | None:
        outcome = await self.pipeline.recover(self.client_id(alert), alert.symbol, lambda order: self._signal(alert))
        return None if outcome is None else outcome.answer()

    def _signal(self, alert: WebhookAlert) -> dict[str, Any]:
        """The alert as a signal, in the situation of its symbol's latest bar."""
        features, close = self._situation(alert.symbol)
        return {"symbol": alert.symbol, "strategy": alert.strategy, "action": alert.action,
                "price": alert.price or close, "features": features, "time": alert.time}

    async def _holdings(self, symbol: str) -> tuple[Holdings, bool]:
        """What is held of ``symbol``'s base, free cash and equity; and whether a buy is open."""
        base = symbol.partition("/")[0]
        balance = await self.broker.fetch_balance()
        positions = await self.broker.fetch_positions()
        cash = float(balance["total"].get(self.quote, 0.0))
        equity = cash + sum(float(p.get("contracts") or 0.0) * float(p.get("markPrice") or 0.0) for p in positions)
        buying = any(o.get("side") == "buy" and o.get("parentId") is None
                     for o in await self.broker.fetch_open_orders(symbol))
        return Holdings(held=float(balance["free"].get(base, 0.0)), free=float(balance["free"].get(self.quote, 0.0)),
                        equity=equity), buying

    async def _handle(self, alert: WebhookAlert) -> dict[str, Any]:
        try:
            symbol = self.broker.market_symbol(alert.symbol)
        except ccxt.BadSymbol as exc:
            raise AlertRejected(422, str(exc)) from None
        if alert.retry:  # an earlier attempt may have placed the order: finish that one
            done = await self._complete(alert)
            if done is not None:
                return done
        if alert.qty is not None:
            step, minimum = self.broker.amount_rules(symbol)
            check_quantity(alert.qty, symbol=alert.symbol, step=step, minimum=minimum)
        signal = self._signal(alert)
        holdings, buying = await self._holdings(symbol)
        check_alert_position(alert.action, alert.symbol, held=holdings.held, buying=buying)
        try:
            outcome = await self.pipeline.decide(signal, holdings, client_id=self.client_id(alert), qty=alert.qty)
        except (ccxt.InvalidOrder, ccxt.InsufficientFunds) as exc:
            raise AlertRejected(422, str(exc)) from None
        return outcome.answer()
