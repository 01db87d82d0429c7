"""One decision path: every signal source goes through DecisionPipeline on a Broker.

The trader and a standalone webhook router place the same order for the same alert and
write the same journal lines; a venue is any class with the Broker protocol's verbs; the
code that decides never checks a connection's class or reaches into it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from memlab.agent import MemoryAgent
from memlab.connectors import Bar, PaperBroker, PaperConnection
from memlab.connectors.protocol import Broker
from memlab.data import synthetic_ohlcv
from memlab.errors import InvalidInputError
from memlab.features import FEATURE_NAMES, market_features
from memlab.trader.pipeline import (
    DecisionPipeline,
    Holdings,
    SizingRule,
    alert_client_id,
    bar_client_id,
)
from memlab.webhooks import AlertRouter
from memlab.webhooks.alerts import AlertRejected, WebhookAlert

ROOT = Path(__file__).resolve().parents[1]
BARS = synthetic_ohlcv(600, freq="1min", seed=9)


def paper(root: Path, **kw: Any) -> PaperConnection:
    broker = PaperBroker(root, balances={"USDT": 100_000.0}, fees=0.001, **kw)
    broker.add_market("BTC/USDT")
    last = BARS.iloc[-1]
    broker.on_bar("BTC/USDT", Bar(BARS.index[-1].timestamp(), last.Open, last.High, last.Low, last.Close))
    return PaperConnection("paper", broker)


class AmountOnlyVenue:
    """A venue memlab has no code for, written as one class: it takes amounts only (no
    spend-this-much orders, no attached stops) and rounds them to 0.001. It keeps its
    book in the paper broker, as a real venue keeps its own."""

    has = {"createOrder": True, "simulatedFills": True, "costOrders": False, "attachedStops": False}

    def __init__(self, inner: PaperConnection) -> None:
        self.name, self._inner = "amounts", inner

    def __getattr__(self, verb: str) -> Any:  # every other verb is the book's
        return getattr(self._inner, verb)

    def amount_rules(self, symbol: str) -> tuple[float, float]:
        return 0.001, 0.001

    def taker_fee(self, symbol: str) -> float:
        return 0.002

    def amount_to_precision(self, symbol: str, amount: float) -> float:
        return int(amount * 1000) / 1000

    async def create_order(self, symbol: str, type: str, side: str, amount: float | None, price: float | None = None,
                           params: Any = None) -> Any:
        params = dict(params or {})
        assert "cost" not in params and "stopLoss" not in params, params
        assert amount is not None and round(amount * 1000) == amount * 1000, amount
        return await self._inner.create_order(symbol, type, side, amount, price, params)


def situated(action: str = "BUY", strategy: str = "tv_breakout") -> dict[str, Any]:
    row = market_features(BARS.iloc[-200:]).iloc[-1]
    return {"symbol": "BTC/USDT", "strategy": strategy, "action": action, "price": float(BARS["Close"].iloc[-1]),
            "features": {n: float(row[n]) for n in FEATURE_NAMES}, "time": BARS.index[-1]}


def test_every_connection_is_a_broker() -> None:
    from memlab.connectors import ExchangeConnection

    for cls in (PaperConnection, ExchangeConnection):
        missing = [m for m in ("connect", "market_symbol", "amount_rules", "taker_fee", "amount_to_precision",
                               "create_order", "find_by_client_id", "cancel_order", "fetch_order", "fetch_open_orders",
                               "fetch_balance", "fetch_positions", "fetch_ticker", "on_bar", "flush", "book_state",
                               "fills_between", "close") if not callable(getattr(cls, m, None))]
        assert missing == [], (cls.__name__, missing)


def test_deciding_code_never_checks_a_connections_class_or_reaches_into_it() -> None:
    deciding = [ROOT / "memlab/trader/loop.py", ROOT / "memlab/trader/pipeline.py",
                ROOT / "memlab/webhooks/router.py", ROOT / "memlab/connectors/manager.py"]
    found = []
    for path in deciding:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"isinstance\([^)]*(PaperConnection|ExchangeConnection|PaperBroker)", line) \
                    or re.search(r"broker\.(broker|exchange)\b|\.simulated\b|hasattr\([^)]*\"exchange\"", line):
                found.append(f"{path.name}:{n}: {line.strip()}")
    assert found == []


def test_a_venue_memlab_has_no_code_for_is_one_class(tmp_path: Path) -> None:
    venue = AmountOnlyVenue(paper(tmp_path))
    assert isinstance(venue, Broker)
    agent = MemoryAgent(tmp_path, agent_id="venue_test")
    try:
        with pytest.raises(InvalidInputError, match="broker 'amounts' cannot attach a stop-loss or take-profit"):
            DecisionPipeline(agent, venue, SizingRule("full", stop_loss=0.02))
        pipeline = DecisionPipeline(agent, venue, SizingRule("full"))
        outcome = asyncio.run(pipeline.decide(situated(), Holdings(free=10_000.0, equity=10_000.0),
                                              client_id="c-1"))
        assert outcome.status == "placed" and outcome.order is not None
        price = float(BARS["Close"].iloc[-1])
        # Spend at most the free cash, leaving room for the venue's fee and the move to the fill.
        assert outcome.order["amount"] == pytest.approx(int(10_000 * 0.998 / (price * 1.002) * 1000) / 1000)
        assert agent.stores.decisions.get(outcome.decision_id).price == pytest.approx(price)
    finally:
        agent.close()


def test_sizing_rule() -> None:
    agent_rule, full = SizingRule("agent", stop_loss=0.05), SizingRule("full")
    assert full.cost(0.1, free=500.0, equity=1000.0, risk_per_trade=0.02) == 500.0
    # 10 % of equity, unless the 2 % risked over a 5 % stop is less; never more than free cash.
    assert agent_rule.cost(0.1, free=500.0, equity=1000.0, risk_per_trade=0.02) == pytest.approx(100.0)
    assert agent_rule.cost(0.5, free=500.0, equity=1000.0, risk_per_trade=0.02) == pytest.approx(400.0)
    assert agent_rule.cost(0.5, free=300.0, equity=1000.0, risk_per_trade=0.02) == pytest.approx(300.0)
    with pytest.raises(InvalidInputError, match="sizing is agent or full, got 'half'"):
        SizingRule("half")


def test_a_declined_entry_is_the_same_skip_line_whoever_sent_it(tmp_path: Path) -> None:
    agent = MemoryAgent(tmp_path, agent_id="skip_test")
    try:
        pipeline = DecisionPipeline(agent, paper(tmp_path), SizingRule(min_confidence=0.99))
        outcome = asyncio.run(pipeline.decide(situated(), Holdings(free=1e5, equity=1e5), client_id="c-2"))
        assert outcome.status == "skipped" and outcome.why == "confidence below min_confidence 0.99"
        [line] = [e for e in agent.stores.journal.entries() if e.fields.get("Decision") == "SKIP"]
        assert set(line.fields) == {"Strategy", "Decision", "Confidence", "Bar"}
        assert line.fields["Bar"] == BARS.index[-1].isoformat() and "min_confidence" in line.text
        # Replaying the same bar after a restart does not journal it twice.
        asyncio.run(pipeline.decide(situated(), Holdings(free=1e5, equity=1e5), client_id="c-2", replaying=True))
        assert sum(e.fields.get("Decision") == "SKIP" for e in agent.stores.journal.entries()) == 1
    finally:
        agent.close()


def test_an_alert_gets_the_same_client_id_on_a_trader_and_on_its_own(tmp_path: Path) -> None:
    """The standalone router and the trader derive an alert's order id the same way, so a
    sender's retry is the same order whichever of them takes it."""
    from memlab.trader import TraderConfig, UnifiedMemGPTTrader
    from memlab.trader.loop import FEED

    agent = MemoryAgent(tmp_path / "router", agent_id="trader_001")
    router = AlertRouter(agent, paper(tmp_path / "router"), lambda symbol: BARS)
    alert = WebhookAlert(alert_id="tv-9", symbol="BTC/USDT", action="BUY", strategy="tv", qty=0.5,
                         time=datetime.now(UTC), source="test")
    try:
        by_router = asyncio.run(router(alert))
        with pytest.raises(AlertRejected) as again:  # the same book, long already: refused as on a trader
            asyncio.run(router(dataclasses.replace(alert, alert_id="tv-10")))
        assert again.value.status == 409
    finally:
        agent.close()
    config = TraderConfig(symbols=("BTC/USDT",), strategy="sma_cross", params={"fast": 5, "slow": 20},
                          memory_path=tmp_path / "trader", feed={"data": BARS, "warmup": 590}, max_bars=1)

    async def on_trader() -> dict[str, Any]:
        trader = UnifiedMemGPTTrader(config)
        await trader.start()
        try:
            async for symbol, bar in trader.manager.feed(FEED):  # one bar: the market the alert is judged in
                await trader.on_bar(symbol, bar)
                break
            return await trader.handle_alert(alert)
        finally:
            await trader.close()

    by_trader = asyncio.run(on_trader())
    assert by_router["client_order_id"] == by_trader["client_order_id"] == alert_client_id("trader_001", "tv-9")
    assert bar_client_id("a", "BTC/USDT", 60.0, "buy") != bar_client_id("a", "BTC/USDT", 60.0, "sell")
