"""One decision path: signal → agent → sizing → order → decision → journal.

:class:`DecisionPipeline` is the only code that turns a signal into an order and a memory
record. The trader's strategy signals, webhook alerts (on a running trader or on their
own, :class:`~memlab.webhooks.AlertRouter`) and notebooks all go through it, so they share
one client-id scheme, one sizing rule and one set of journal lines:

- an entry the agent or the sizing rule declines is a ``Decision: SKIP`` line, with why;
- an entry placed is a decision in memory (``log_decision``), once per order;
- an exit is a ``Decision: SELL`` line; its fill becomes the entry decision's outcome.

On a perpetual swap (``BTC/USDT:USDT``, a broker with ``has['shorts']``) the pipeline also
takes ``SHORT`` (open a short, or reverse a long into one) and ``COVER`` (close the short).
The agent sees a short entry as a ``SELL`` signal (scored from the memory of its own
``SELL`` decisions) and stores it as a ``SELL`` decision, whose outcome is the short's
P&L; a cover is a ``Decision: BUY`` exit line. A ``BUY`` while short reverses it. Swap
orders are amounts in contracts (see :meth:`DecisionPipeline.swap_amount`); exits are
reduce-only, and stops sit on the side that protects the position (above a short).

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

import ccxt
import pandas as pd

from memlab.connectors.protocol import Broker, Order
from memlab.errors import InvalidInputError

#: Share of the intended spend a venue entry leaves unspent, for the move between signal and fill.
LIVE_PRICE_BUFFER = 0.002
SIZINGS = ("agent", "full")
#: The pipeline's actions: entries (order side) and exits (order side), and how the agent
#: sees each (a short entry is a SELL decision; a cover is a BUY exit).
ENTRY_SIDES = {"BUY": "buy", "SHORT": "sell"}
EXIT_SIDES = {"SELL": "sell", "COVER": "buy"}
AGENT_ACTIONS = {"BUY": "BUY", "SELL": "SELL", "SHORT": "SELL", "COVER": "BUY"}


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
    - ``leverage`` and ``slippage`` (swaps): an entry's spend is margin at ``leverage``; its
      amount is priced at the signal's close moved by ``slippage`` (where a market order
      fills when the next bar opens at that close).
    """

    sizing: str = "agent"
    min_confidence: float = 0.0
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    size: float = 1.0
    leverage: float = 1.0
    slippage: float = 0.0

    def __post_init__(self) -> None:
        if self.sizing not in SIZINGS:
            raise InvalidInputError(f"sizing is agent or full, got {self.sizing!r}")

    def cost(self, position_size: float, *, free: float, equity: float, risk_per_trade: float,
             leverage: float = 1.0) -> float:
        """Quote currency to spend on an entry (as margin at ``leverage`` on a swap: the
        risk cap then allows ``1/leverage`` of the spend, the notional being ``leverage``×)."""
        if self.sizing == "full":
            return free * self.size
        cost = float(position_size) * equity
        stop = self.stop_loss or self.trailing_stop
        if stop:
            cost = min(cost, risk_per_trade * equity / stop / leverage)
        return min(cost, free)


@dataclass(frozen=True)
class Holdings:
    """What the caller holds of a symbol and its cash, when the signal arrives."""

    held: float = 0.0  # signed on a swap: contracts, negative when short
    free: float = 0.0  # cash; on a swap the settle currency's total, the position's margin included
    equity: float = 0.0
    entry: float = 0.0  # a swap position's entry price (to size a reversal)
    room: float = float("inf")  # the most notional an entry may add (exposure limits); <= 0: none
    room_why: str = ""  # which limit leaves no room, for the journal


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
        action = str(signal["action"])
        scored = {**signal, "action": AGENT_ACTIONS.get(action.upper(), action)}
        analysis = dict(await self.agent.analyze_signal_async(scored))
        symbol = str(signal["symbol"])
        price = float(signal["price"])
        swap = self.is_swap(symbol)
        if action in ("SHORT", "COVER") and not swap:
            raise InvalidInputError(f"{symbol} is a spot market: no shorts; trade {_swap_of(symbol)}")
        amount: float | None
        params: dict[str, Any] = {"clientOrderId": client_id}
        stops: dict[str, float] = {}
        entry = action in ENTRY_SIDES
        if entry:
            sign = 1 if action == "BUY" else -1
            reversing = swap and holdings.held * sign < -1e-12
            if qty is not None and not blocked:
                amount = float(qty) + (abs(holdings.held) if reversing else 0.0)
            else:
                why = blocked or self._decline(analysis)
                risk = float(self.agent.parameters().get("risk_per_trade", 0.02))
                opening = 0.0
                if swap:
                    opening, why_not = self.swap_amount(symbol, sign, price, holdings, analysis, risk) if not why \
                        else (0.0, "")
                    why = why or why_not
                    cost = opening
                else:
                    why = why or (holdings.room_why if holdings.room <= 0 else "")
                    cost = 0.0 if why else min(holdings.room, self.rule.cost(
                        analysis["position_size"], free=holdings.free, equity=holdings.equity, risk_per_trade=risk))
                if not why and cost <= 0:
                    why = "no cash left to size it with"
                if why and reversing:
                    # The position is closed all the same (the signal closes it); no new one opens.
                    return await self._exit(signal, scored, analysis, "SELL" if sign < 0 else "COVER", holdings,
                                            client_id, None, replaying)
                if why:
                    self._journal_skip(signal, analysis, why, replaying)
                    return Outcome("skipped", analysis, client_id, why=why)
                if swap:
                    amount = opening + (abs(holdings.held) if reversing else 0.0)
                elif self.broker.has.get("costOrders"):
                    amount, params["cost"] = None, cost
                else:
                    # A venue charges its fee on top and fills at its own price: leave room for both.
                    fee = self.broker.taker_fee(symbol)
                    amount = self.broker.amount_to_precision(symbol, cost * (1 - LIVE_PRICE_BUFFER) / (price * (1 + fee)))
            if self.rule.stop_loss:
                stops["stop_loss"] = price * (1 - sign * self.rule.stop_loss)
            if self.rule.take_profit:
                stops["take_profit"] = price * (1 + sign * self.rule.take_profit)
            if self.rule.trailing_stop:
                # Where it starts; it ratchets with the highs (a long) or the lows (a short).
                stops["trailing_stop"] = price * (1 - sign * self.rule.trailing_stop)
                params["trailingPercent"] = self.rule.trailing_stop * 100
            params |= {"stopLoss": stops.get("stop_loss"), "takeProfit": stops.get("take_profit")}
            params = {k: v for k, v in params.items() if v is not None}
            if reversing:
                await self.cancel_protection(symbol)  # the old position's stops go with it
            side = ENTRY_SIDES[action]
        else:
            return await self._exit(signal, scored, analysis, action, holdings, client_id, qty, replaying)
        try:
            order = await self.broker.create_order(self.broker.market_symbol(symbol), "market", side, amount, None,
                                                   params)
        except ccxt.InvalidOrder as exc:  # below the market's minimum notional, say: not this entry, not the session
            why = f"the broker refused it: {str(exc).removeprefix('paper broker: ')}"
            self._journal_skip(signal, analysis, why, replaying)
            return Outcome("skipped", analysis, client_id, why=why)
        outcome = Outcome("placed", analysis, client_id, order=order, stops=stops, placed_at=time.perf_counter())
        self._remember(scored, outcome, replaying, entry=True)
        return outcome

    async def _exit(self, signal: Mapping[str, Any], scored: Mapping[str, Any], analysis: dict[str, Any], action: str,
                    holdings: Holdings, client_id: str, qty: float | None, replaying: bool) -> Outcome:
        """Close what is held (a long with SELL, a short with COVER; reduce-only on a swap),
        after cancelling the position's protective orders."""
        symbol = str(signal["symbol"])
        held = abs(holdings.held)
        amount = held if qty is None else min(float(qty), held)
        params: dict[str, Any] = {"clientOrderId": client_id}
        if self.is_swap(symbol):
            params["reduceOnly"] = True
        await self.cancel_protection(symbol)
        order = await self.broker.create_order(self.broker.market_symbol(symbol), "market", EXIT_SIDES[action],
                                               amount, None, params)
        outcome = Outcome("placed", analysis, client_id, order=order, placed_at=time.perf_counter())
        exit_scored = {**scored, "action": AGENT_ACTIONS[action]}
        self._remember(exit_scored, outcome, replaying, entry=False, short=action == "COVER")
        return outcome

    def is_swap(self, symbol: str) -> bool:
        """Whether ``symbol`` trades as a perpetual swap here: a broker that can short, and
        ccxt's swap symbol (``BASE/QUOTE:SETTLE``)."""
        return bool(self.broker.has.get("shorts")) and ":" in self.broker.market_symbol(symbol)

    def swap_amount(self, symbol: str, sign: int, price: float, holdings: Holdings, analysis: Mapping[str, Any],
                    risk: float) -> tuple[float, str]:
        """The contracts a swap entry opens (``sign`` +1 long, -1 short) and why none (""
        when some): the spend (:meth:`SizingRule.cost`; with ``sizing="full"`` ``size`` of
        the cash) as margin at the rule's leverage, fees included, at the price the order
        fills if the next bar opens at ``price`` (slippage against it). A reversal first
        closes the position held, so its cash is counted after that close. The amount is
        rounded down by the broker's ``amount_to_precision``; contract size 1 (linear
        perpetuals quoted per base unit). At leverage 1 this is what vectorbt's
        ``from_signals(direction="both", size=np.inf)`` buys or sells at that price."""
        rule, fee = self.rule, self.broker.taker_fee(symbol)
        fill = price * (1 + sign * rule.slippage)
        free = holdings.free
        if holdings.held * sign < -1e-12:  # reversing: the close releases margin and P&L, less its fee
            free += holdings.held * (fill - holdings.entry) - abs(holdings.held) * fill * fee
        if holdings.room <= 0:
            return 0.0, holdings.room_why
        spend = rule.cost(analysis["position_size"], free=free, equity=holdings.equity, risk_per_trade=risk,
                          leverage=rule.leverage)
        spend = min(spend, holdings.room / rule.leverage)  # the limits count the notional; the spend is margin
        if not self.broker.has.get("simulatedFills"):
            spend *= 1 - LIVE_PRICE_BUFFER  # a venue fills at its own price: leave room
        if spend <= 0:
            return 0.0, "no cash left to size it with"
        amount = self.broker.amount_to_precision(symbol, spend / (fill * (1 / rule.leverage + fee)))
        _, minimum = self.broker.amount_rules(symbol)
        if minimum and amount < minimum:
            return 0.0, f"{amount:g} contracts is below the market's minimum amount {minimum:g}"
        return amount, ""

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

    def _remember(self, signal: Mapping[str, Any], outcome: Outcome, replaying: bool, *, entry: bool | None = None,
                  short: bool = False) -> None:
        """Log an entry as a decision (once per order) or journal an exit (``short``: a cover)."""
        order, analysis = outcome.order, outcome.analysis
        assert order is not None
        if entry if entry is not None else order["side"] == "buy":
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
            # decision's outcome (an exit is no position of its own).
            self.agent.stores.journal.append(
                {"Strategy": signal["strategy"], "Decision": "BUY" if short else "SELL",
                 "Confidence": round(analysis["confidence"], 4), "Order": outcome.client_id},
                note=f"exit {signal['symbol']}" + (" short" if short else ""), at=_when(signal))

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


def _swap_of(symbol: str) -> str:
    head = symbol.partition(":")[0]
    return f"{head}:{head.partition('/')[2] or 'USD'}"


def _when(signal: Mapping[str, Any]) -> pd.Timestamp:
    return pd.Timestamp(signal["time"]) if signal.get("time") is not None else pd.Timestamp.now(tz="UTC")
