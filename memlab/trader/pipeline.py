"""One decision path: signal → agent → sizing → order → decision → journal.

:class:`DecisionPipeline` is the only code that turns a signal into an order and a memory
record. The trader's strategy signals, webhook alerts (on a running trader or on their
own, :class:`~memlab.webhooks.AlertRouter`) and notebooks all go through it, so they share
one client-id scheme, one sizing rule and one set of journal lines:

- an entry the agent or the sizing rule declines is a ``Decision: SKIP`` line, with why;
- an entry placed is a decision in memory (``log_decision``), once per order;
- an exit is a ``Decision: SELL`` line; its fill becomes the entry decision's outcome.

Client order ids are deterministic, so a repeat (a restarted bar, a retried alert) finds
the order already placed instead of placing a second one: :func:`bar_client_id` for a
strategy's signal at a bar, :func:`alert_client_id` for a webhook alert.

The pipeline talks to the agent through its service calls (``analyze_signal_async``,
``log_decision``, ``stores.journal``) and to the venue through the
:class:`~memlab.connectors.protocol.Broker` protocol; it keeps no position state of its
own. The caller says what is held and what cash there is (:class:`Holdings`).
"""

from __future__ import annotations

import hashlib
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from memlab.connectors.protocol import Broker, Order
from memlab.errors import InvalidInputError

#: Share of the intended spend a venue entry leaves unspent, for the move between signal and fill.
LIVE_PRICE_BUFFER = 0.002
SIZINGS = ("agent", "full")


def bar_client_id(agent_id: str, symbol: str, bar_time: float, side: str) -> str:
    """A strategy signal's order: the same agent, symbol, bar and side always give the same id."""
    digest = hashlib.sha1(f"{agent_id}|{symbol}|{bar_time!r}|{side}".encode()).hexdigest()[:24]
    return f"mt-{side[0]}-{digest}"


def alert_client_id(agent_id: str, alert_id: str) -> str:
    """A webhook alert's order: from the agent and the alert id alone (32 characters)."""
    return "wh-" + hashlib.sha1(f"{agent_id}|{alert_id}".encode()).hexdigest()[:28]


@dataclass(frozen=True)
class SizingRule:
    """How an entry is sized and guarded.

    - ``sizing="agent"``: spend the agent's ``position_size`` of equity, capped by
      ``risk_per_trade`` (an agent parameter) over the stop distance when ``stop_loss`` or
      ``trailing_stop`` is set, and by free cash; ``"full"``: ``size`` of the free cash (all of it by default),
      fees included, as a backtest with the same ``size`` does.
    - ``min_confidence``: entries scored below it are skipped.
    - ``stop_loss`` / ``take_profit`` / ``trailing_stop``: fractions of the signal's price
      (the bar's close) for protective children; a trailing stop is sent as ccxt's
      ``trailingPercent`` and ratchets on the venue (the paper broker: with each bar's high).
    """

    sizing: str = "agent"
    min_confidence: float = 0.0
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    size: float = 1.0

    def __post_init__(self) -> None:
        if self.sizing not in SIZINGS:
            raise InvalidInputError(f"sizing is agent or full, got {self.sizing!r}")

    def cost(self, position_size: float, *, free: float, equity: float, risk_per_trade: float) -> float:
        """Quote currency to spend on an entry."""
        if self.sizing == "full":
            return free * self.size
        cost = float(position_size) * equity
        stop = self.stop_loss or self.trailing_stop
        if stop:
            cost = min(cost, risk_per_trade * equity / stop)
        return min(cost, free)


@dataclass(frozen=True)
class Holdings:
    """What the caller holds of a symbol and its cash, when the signal arrives."""

    held: float = 0.0
    free: float = 0.0
    equity: float = 0.0


@dataclass
class Outcome:
    """What the pipeline did with one signal."""

    status: str  # "placed" | "skipped"
    analysis: dict[str, Any]
    client_id: str
    order: Order | None = None
    decision_id: int | None = None
    logged: bool = False  # whether this call stored a new decision (not a repeat's)
    why: str = ""  # for a skip
    recovered: bool = False
    stops: dict[str, float] = field(default_factory=dict)
    placed_at: float = 0.0  # time.perf_counter() when the broker took the order

    def answer(self) -> dict[str, Any]:
        """The reply a webhook sender gets."""
        out: dict[str, Any] = {"status": self.status, "confidence": self.analysis["confidence"],
                               "reason": self.analysis["reason"]}
        if self.order is not None:
            out |= {"order_id": self.order["id"], "client_order_id": self.client_id, "decision_id": self.decision_id}
        if self.recovered:
            out["recovered"] = True
        return out


class DecisionPipeline:
    """Score, size, place and remember signals for one agent on one broker."""

    def __init__(self, agent: Any, broker: Broker, rule: SizingRule | None = None) -> None:
        self.agent, self.broker, self.rule = agent, broker, rule or SizingRule()
        if (self.rule.stop_loss or self.rule.take_profit) and not broker.has.get("attachedStops"):
            raise InvalidInputError(f"broker {broker.name!r} cannot attach a stop-loss or take-profit to an entry; "
                                    "trade without stop_loss/take_profit there")
        if self.rule.trailing_stop and not broker.has.get("trailingStops"):
            raise InvalidInputError(f"broker {broker.name!r} cannot attach a trailing stop to an entry; "
                                    "trade without trailing_stop there")

    # -- the path ---------------------------------------------------------------------
    async def decide(self, signal: Mapping[str, Any], holdings: Holdings, *, client_id: str,
                     qty: float | None = None, replaying: bool = False, blocked: str = "") -> Outcome:
        """Run one signal (``symbol, strategy, action, price, features, time``) through the
        path. ``qty`` fixes the amount (an alert's); ``replaying`` is the last bar of a run
        that was stopped, re-run after a restart (nothing is journalled twice); ``blocked``
        is why no entry may open now (a protection's reason): an entry is then skipped,
        scored and journalled like any other skip, and an exit goes ahead."""
        self.broker.flush()  # the book is on disk before memory records anything about this bar
        analysis = dict(await self.agent.analyze_signal_async(signal))
        symbol, action = str(signal["symbol"]), str(signal["action"])
        price = float(signal["price"])
        amount: float | None
        params: dict[str, Any] = {"clientOrderId": client_id}
        stops: dict[str, float] = {}
        if action == "BUY":
            if qty is not None and not blocked:
                amount = float(qty)
            else:
                why = blocked or self._decline(analysis)
                risk = float(self.agent.parameters().get("risk_per_trade", 0.02))
                cost = 0.0 if why else self.rule.cost(analysis["position_size"], free=holdings.free,
                                                      equity=holdings.equity, risk_per_trade=risk)
                if not why and cost <= 0:
                    why = "no cash left to size it with"
                if why:
                    self._journal_skip(signal, analysis, why, replaying)
                    return Outcome("skipped", analysis, client_id, why=why)
                if self.broker.has.get("costOrders"):
                    amount, params["cost"] = None, cost
                else:
                    # A venue charges its fee on top and fills at its own price: leave room for both.
                    fee = self.broker.taker_fee(symbol)
                    amount = self.broker.amount_to_precision(symbol, cost * (1 - LIVE_PRICE_BUFFER) / (price * (1 + fee)))
            if self.rule.stop_loss:
                stops["stop_loss"] = price * (1 - self.rule.stop_loss)
            if self.rule.take_profit:
                stops["take_profit"] = price * (1 + self.rule.take_profit)
            if self.rule.trailing_stop:
                stops["trailing_stop"] = price * (1 - self.rule.trailing_stop)  # where it starts; it ratchets up
                params["trailingPercent"] = self.rule.trailing_stop * 100
            params |= {"stopLoss": stops.get("stop_loss"), "takeProfit": stops.get("take_profit")}
            params = {k: v for k, v in params.items() if v is not None}
        else:
            amount = holdings.held if qty is None else min(float(qty), holdings.held)
            await self.cancel_protection(symbol)
        order = await self.broker.create_order(self.broker.market_symbol(symbol), "market", action.lower(),
                                               amount, None, params)
        outcome = Outcome("placed", analysis, client_id, order=order, stops=stops, placed_at=time.perf_counter())
        self._remember(signal, outcome, replaying)
        return outcome

    async def recover(self, client_id: str, symbol: str,
                      signal_for: Callable[[Order], Mapping[str, Any] | Awaitable[Mapping[str, Any]]]) -> Outcome | None:
        """Finish a signal whose handling stopped half-way (a killed process): the outcome
        when its order exists, remembered now if it was not; None when nothing was placed."""
        order = await self.broker.find_by_client_id(self.broker.market_symbol(symbol), client_id)
        if order is None:
            return None
        decisions = self.agent.stores.decisions
        decision_id = decisions.find_key(self.order_key(order))
        if decision_id is not None:
            stored = decisions.get(decision_id)
            return Outcome("placed", {"confidence": stored.confidence, "reason": stored.reason}, client_id,
                           order=order, decision_id=decision_id, recovered=True)
        signal = signal_for(order)
        if inspect.isawaitable(signal):
            signal = await signal
        analysis = dict(await self.agent.analyze_signal_async(signal))
        outcome = Outcome("placed", analysis, client_id, order=order, recovered=True)
        self._remember(signal, outcome, replaying=True)
        return outcome

    async def cancel_protection(self, symbol: str) -> None:
        """Before an exit: cancel the position's stop-loss / take-profit orders, which would
        otherwise outlive it and sell a later position."""
        market = self.broker.market_symbol(symbol)
        for order in await self.broker.fetch_open_orders(market):
            if order.get("parentId") is not None or order.get("type") in ("stop_loss", "take_profit", "trailing_stop"):
                await self.broker.cancel_order(str(order["id"]), market)

    # -- memory -----------------------------------------------------------------------
    def order_key(self, order: Order) -> str:
        """The decision store's key of the decision an order made (one per order)."""
        return f"{self.agent.agent_id}:order:{order['id']}"

    def _decline(self, analysis: Mapping[str, Any]) -> str:
        if analysis["confidence"] < self.rule.min_confidence:
            return f"confidence below min_confidence {self.rule.min_confidence}"
        if self.rule.sizing == "agent" and float(analysis["position_size"]) <= 0:
            return "sized 0 by the agent (confidence 0.50 or less: no edge)"
        return ""

    def _remember(self, signal: Mapping[str, Any], outcome: Outcome, replaying: bool) -> None:
        order, analysis = outcome.order, outcome.analysis
        assert order is not None
        if order["side"] == "buy":
            decision: dict[str, Any] = {**signal, "mem_confidence": analysis["confidence"],
                                        "mem_reason": analysis["reason"]}
            if outcome.stops.get("stop_loss") or outcome.stops.get("trailing_stop"):
                decision["stop_loss"] = round(outcome.stops.get("stop_loss") or outcome.stops["trailing_stop"], 8)
            if outcome.stops.get("take_profit"):
                decision["target"] = round(outcome.stops["take_profit"], 8)
            known = self.agent.stores.decisions.find_key(self.order_key(order))
            result = {"order_id": order["id"], "status": order.get("status") or "open", "price": signal["price"],
                      "client_order_id": outcome.client_id}
            outcome.decision_id = self.agent.log_decision(decision, result)  # once per order
            outcome.logged = known is None
        elif not replaying or not self._journalled("Order", outcome.client_id):
            # An exit closes the entry's position: journalled, and its fill becomes the entry
            # decision's outcome (a long-only book has no separate SELL positions).
            self.agent.stores.journal.append(
                {"Strategy": signal["strategy"], "Decision": "SELL", "Confidence": round(analysis["confidence"], 4),
                 "Order": outcome.client_id}, note=f"exit {signal['symbol']}", at=_when(signal))

    def _journal_skip(self, signal: Mapping[str, Any], analysis: Mapping[str, Any], why: str, replaying: bool) -> None:
        # Not an order, so not a decision with an outcome: the journal says what happened.
        at = _when(signal)
        line = {"Strategy": signal["strategy"], "Decision": "SKIP", "Confidence": round(analysis["confidence"], 4),
                "Bar": at.isoformat()}
        if not replaying or not self._journalled("Bar", line["Bar"]):
            self.agent.stores.journal.append(
                line, at=at, note=f"{signal['symbol']} {signal['action']} not taken, {why}: {analysis['reason'][:160]}")

    def _journalled(self, name: str, value: str) -> bool:
        """Whether one of the journal's last lines has ``name: value`` (replaying a bar)."""
        return any(e.fields.get(name) == value for e in self.agent.stores.journal.tail(20))


def _when(signal: Mapping[str, Any]) -> pd.Timestamp:
    return pd.Timestamp(signal["time"]) if signal.get("time") is not None else pd.Timestamp.now(tz="UTC")
