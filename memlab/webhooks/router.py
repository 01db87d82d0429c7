"""From an authenticated alert to a paper order, through the agent like any strategy signal.

:class:`AlertRouter` is the handler a :class:`~memlab.webhooks.WebhookServer` calls: it
builds the signal from the alert and the symbol's recent bars, lets the agent score it
(``analyze_signal``), sizes it (the alert's ``qty`` if given, else the agent's
``position_size`` of equity), places a market order whose client id is the alert id (so
a retried alert can never be a second order), and logs the decision in memory.

An alert a killed process left half-handled is finished by :meth:`AlertRouter.recover`
(the server calls it before serving): the order is looked up by its client id, and its
decision logged if it was not; with no order, the alert is released for the retry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ccxt
import pandas as pd

from memlab.features import FEATURE_NAMES, WARMUP_BARS, market_features
from memlab.memory.durable import TickCommit, begin_group
from memlab.webhooks.alerts import AlertRejected, WebhookAlert, check_quantity

#: The paper broker's quantity step and minimum: 8 decimals, as on most spot venues.
PAPER_STEP = 1e-8


def market_rules(broker: Any, symbol: str) -> tuple[float | None, float | None]:
    """``(step, minimum)`` of order quantities on ``symbol``: from the exchange's market
    (ccxt ``precision.amount`` and ``limits.amount.min``), or :data:`PAPER_STEP` on paper."""
    exchange = getattr(broker, "exchange", None)
    if exchange is None:
        return PAPER_STEP, PAPER_STEP
    market = (exchange.markets or {}).get(symbol) or {}
    precision = (market.get("precision") or {}).get("amount")
    step = None
    if precision is not None:
        step = float(precision) if exchange.precisionMode == ccxt.TICK_SIZE else 10.0 ** -float(precision)
    minimum = ((market.get("limits") or {}).get("amount") or {}).get("min")
    return step, float(minimum) if minimum else step


class AlertRouter:
    """Score, size, place and log one alert; raises :class:`AlertRejected` (nothing placed)."""

    def __init__(self, agent: Any, broker: Any, bars: Callable[[str], pd.DataFrame], *, quote: str = "USDT") -> None:
        self.agent, self.broker, self.bars, self.quote = agent, broker, bars, quote
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
            return self._handle(alert)
        finally:
            await self._tick.durable()

    async def recover(self, alert: WebhookAlert) -> dict[str, Any] | None:
        """Finish an alert a stopped process left unfinished: its result when its order
        exists (the decision logged if it was not), None when nothing was placed."""
        begin_group()
        try:
            return self._complete(alert)
        finally:
            await self._tick.durable()

    @staticmethod
    def client_id(alert: WebhookAlert) -> str:
        return f"webhook:{alert.alert_id}"

    def _complete(self, alert: WebhookAlert) -> dict[str, Any] | None:
        try:
            order = self.broker.fetch_order(self.client_id(alert))
        except ccxt.OrderNotFound:
            return None
        decision_id = self.agent.stores.decisions.find_key(f"{self.agent.agent_id}:order:{order['id']}")
        if decision_id is not None:
            stored = self.agent.stores.decisions.get(decision_id)
            return {"status": "placed", "order_id": order["id"], "decision_id": decision_id,
                    "confidence": stored.confidence, "reason": stored.reason, "recovered": True}
        signal = self._signal(alert)
        return self._log(signal, self.agent.analyze_signal(signal), order) | {"recovered": True}

    def _signal(self, alert: WebhookAlert) -> dict[str, Any]:
        """The alert as a signal, in the situation of its symbol's latest bar."""
        features, close = self._situation(alert.symbol)
        return {"symbol": alert.symbol, "strategy": alert.strategy, "action": alert.action,
                "price": alert.price or close, "features": features, "time": alert.time}

    def _log(self, signal: dict[str, Any], analysis: dict[str, Any], order: dict[str, Any]) -> dict[str, Any]:
        decision = {**signal, "mem_confidence": analysis["confidence"], "mem_reason": analysis["reason"]}
        decision_id = self.agent.log_decision(decision, {"order_id": order["id"], "status": order["status"],
                                                         "price": signal["price"]})
        return {"status": "placed", "order_id": order["id"], "decision_id": decision_id,
                "confidence": analysis["confidence"], "reason": analysis["reason"]}

    def _handle(self, alert: WebhookAlert) -> dict[str, Any]:
        try:
            self.broker._market(alert.symbol)
        except ccxt.BadSymbol as exc:
            raise AlertRejected(422, str(exc)) from None
        if alert.retry:  # an earlier attempt may have placed the order: finish that one
            done = self._complete(alert)
            if done is not None:
                return done
        if alert.qty is not None:
            step, minimum = market_rules(self.broker, alert.symbol)
            check_quantity(alert.qty, symbol=alert.symbol, step=step, minimum=minimum)
        signal = self._signal(alert)
        analysis = self.agent.analyze_signal(signal)
        client_id = self.client_id(alert)
        base = alert.symbol.partition("/")[0]
        try:
            if alert.action == "BUY":
                if alert.qty is not None:
                    order = self.broker.create_order(alert.symbol, "market", "buy", alert.qty, params={"clientOrderId": client_id})
                else:
                    cost = analysis["position_size"] * self.broker.equity(self.quote)
                    if cost <= 0:
                        return self._skip(signal, analysis)
                    order = self.broker.create_order(alert.symbol, "market", "buy", None,
                                                     params={"clientOrderId": client_id, "cost": cost})
            else:
                held = self.broker.fetch_balance()["free"].get(base, 0.0)
                amount = min(alert.qty, held) if alert.qty is not None else held
                if amount <= 0:
                    raise AlertRejected(422, f"nothing to sell: no free {base}")
                order = self.broker.create_order(alert.symbol, "market", "sell", amount, params={"clientOrderId": client_id})
        except (ccxt.InvalidOrder, ccxt.InsufficientFunds) as exc:
            raise AlertRejected(422, str(exc)) from None
        return self._log(signal, analysis, order)

    def _skip(self, signal: dict[str, Any], analysis: dict[str, Any]) -> dict[str, Any]:
        # Not an order, so not a decision with an outcome: the journal says what happened.
        self.agent.stores.journal.append({"Webhook": signal["symbol"], "Decision": "SKIP",
                                          "Confidence": round(analysis["confidence"], 4), "Reason": analysis["reason"]})
        return {"status": "skipped", "confidence": analysis["confidence"], "reason": analysis["reason"]}
