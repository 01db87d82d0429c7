"""The seed's connector calls, as its trader writes them (``shared/design/seed-MEM-tier.md``,
"Integration with Trading Engine"): a bare signal of symbol, side, price and qty goes to
``analyze_signal``, then ``{**signal, mem_confidence, mem_reason}`` to ``log_decision``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from memlab.agent.gateway import MemGPTConnector
from memlab.agent.signal import InvalidSignalError, situation
from memlab.data import synthetic_ohlcv
from memlab.memory import Decision, MemoryStores, Outcome

BARS = synthetic_ohlcv(400, freq="1h", seed=3)
SIGNAL = {"symbol": "BTCUSDT", "strategy": "momentum", "side": "buy", "price": 64000.0, "qty": 0.01}


def seed_trade(connector: MemGPTConnector, signal: dict[str, Any], result: dict[str, Any]) -> tuple[dict, Any]:
    """The seed's ``execute_trade``, with the broker's answer given."""
    async def execute_trade() -> tuple[dict, Any]:
        mem_analysis = await connector.analyze_signal(signal)
        final_decision = {**signal, "mem_confidence": mem_analysis["confidence"], "mem_reason": mem_analysis["reason"]}
        decision_id = await connector.log_decision(final_decision, result)
        await connector.close()
        return mem_analysis, decision_id

    return asyncio.run(execute_trade())


def test_a_bare_signal_without_market_data_gets_the_prior_and_says_so(memory_dir: Path) -> None:
    analysis, decision_id = seed_trade(MemGPTConnector(memory_path=memory_dir), SIGNAL,
                                       {"order_id": "p-1", "status": "open", "price": 64000.0})
    assert analysis["confidence"] == 0.5 and analysis["position_size"] > 0  # a cold start trades at the base size
    assert analysis["reason"].startswith("no market data for this signal (no features or bars given, and the "
                                         "connector has no data_source): prior only")
    assert decision_id is None  # nothing to recall it by
    with MemoryStores(memory_dir) as mem:
        last = str(mem.journal.tail(1)[0])
        assert "Strategy: momentum - Decision: BUY - Confidence: 0.5 - Order: p-1" in last
        assert mem.decisions.count() == 0


def test_the_prior_is_what_memory_knew_before_the_signals_time(memory_dir: Path) -> None:
    features = situation({"bars": BARS})
    with MemoryStores(memory_dir) as mem:
        for i in range(12):  # 9 of 12 momentum buys won, all closed by 2024-01-02
            mem.decisions.record(Decision("BTCUSDT", "momentum", "BUY", 0.6, features=features,
                                          decided_at=f"2024-01-01 0{i % 10}:00", outcome=Outcome(
                                              pnl=10.0 if i < 9 else -5.0, closed_at="2024-01-02")))
    connector = MemGPTConnector(memory_path=memory_dir)

    async def both() -> tuple[dict, dict]:
        later = await connector.analyze_signal({**SIGNAL, "time": "2024-02-01T00:00:00Z"})
        before = await connector.analyze_signal({**SIGNAL, "time": "2024-01-01T12:00:00Z"})
        await connector.close()
        return later, before

    later, before = asyncio.run(both())
    assert later["confidence"] > 0.5 and "prior only from 12 closed momentum BUYs" in later["reason"]
    assert before["confidence"] == 0.5 and "no closed momentum BUYs in memory yet" in before["reason"]


def test_a_data_source_gives_the_situation_and_nothing_after_the_signal(memory_dir: Path) -> None:
    at = BARS.index[300]
    asked: list[tuple[str, str]] = []

    def data_source(symbol: str, timeframe: str) -> pd.DataFrame:
        asked.append((symbol, timeframe))
        return BARS  # the whole history, future bars included: the connector must cut it

    signal = {**SIGNAL, "time": at.isoformat(), "timeframe": "1h"}
    analysis, decision_id = seed_trade(MemGPTConnector(memory_path=memory_dir, data_source=data_source), signal,
                                       {"order_id": "p-2", "status": "open", "price": 64000.0})
    expected = situation({"bars": BARS.loc[:at]})
    assert asked[0] == ("BTCUSDT", "1h")
    assert analysis["evidence"]["features"] == {k: round(v, 6) for k, v in expected.items()}
    assert "prior only" in analysis["reason"]  # memory is empty: a cold start, but with its situation
    with MemoryStores(memory_dir) as mem:
        stored = mem.decisions.get(decision_id)
    assert stored.features == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("source", [
    lambda symbol, timeframe: (_ for _ in ()).throw(ConnectionError("exchange unreachable")),
    lambda symbol, timeframe: BARS.iloc[:20],
])
def test_a_failing_or_short_data_source_never_fails_the_trade(memory_dir: Path, source: Any) -> None:
    analysis, decision_id = seed_trade(MemGPTConnector(memory_path=memory_dir, data_source=source), SIGNAL,
                                       {"order_id": "p-3", "status": "open"})
    assert analysis["confidence"] == 0.5 and "prior only" in analysis["reason"]
    assert ("ConnectionError: exchange unreachable" in analysis["reason"]
            or "has 20 bars of BTCUSDT up to the signal" in analysis["reason"]), analysis["reason"]
    assert decision_id is None


def test_a_bad_side_is_still_the_callers_error(memory_dir: Path) -> None:
    connector = MemGPTConnector(memory_path=memory_dir)

    async def go() -> None:
        try:
            await connector.analyze_signal({**SIGNAL, "side": "hold"})
        finally:
            await connector.close()

    with pytest.raises(InvalidSignalError, match="'action' must be 'BUY' or 'SELL', got 'hold'"):
        asyncio.run(go())


def test_the_seeds_data_feed_with_only_the_paper_broker_polls_a_public_venue(memory_dir: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed's ``ConnectionManager`` lines with the paper broker and no exchange account: the
    feed takes public candles from the market-data venue (binance by default; here the loopback
    Binance), and the next closed candle fills the seed's paper order."""
    from memlab.connectors import ConnectionManager
    from tests.support.exchange_emulator import BinanceEmulator

    monkeypatch.delenv("MEMLAB_MARKET_DATA", raising=False)
    bars = synthetic_ohlcv(9, freq="1min", start="2024-01-01", seed=3)
    rows = [(t.timestamp(), r) for t, r in zip(bars.index, bars.itertuples(), strict=True)]
    with BinanceEmulator(markets={"BTC/USDT": 100.0}) as emu:
        for t, r in rows[:8]:
            emu.push_bar("BTC/USDT", t, r.Open, r.High, r.Low, r.Close)

        async def seed() -> tuple[dict, list[dict], Any]:
            async with asyncio.timeout(60):
                manager = ConnectionManager(memory_dir, market_data=emu.manager_options())
                await manager.add_broker_connection('paper', balances={'USDT': 10_000}, markets=['BTC/USDT'])
                await manager.add_data_feed('crypto_feed', {'symbols': ['BTCUSDT']})
                result = await manager.execute_on_broker('paper', 'place_order', {
                    'symbol': 'BTCUSDT',
                    'qty': 0.1,
                    'side': 'BUY'
                })
                feed = manager.feed('crypto_feed')
                await feed.start_connecting()  # the public venue: markets, then the warm-up
                assert len(feed.history('BTC/USDT')) == 8
                t, r = rows[8]
                emu.push_bar("BTC/USDT", t, r.Open, r.High, r.Low, r.Close)  # a new candle closes
                async for symbol, bar in feed:
                    fills = manager.broker('paper').on_bar(symbol, bar)
                    break
                health = manager.status()
                await manager.close()
                return result, fills, health

        result, fills, health = asyncio.run(seed())
    assert result["status"] == "open" and result["symbol"] == "BTC/USDT"
    assert [f["price"] for f in fills] == [pytest.approx(rows[8][1].Open)]  # filled at the next bar's open
    assert health["market_data:binance"]["state"] == "up" and health["market_data:binance"]["kind"] == "market_data"
