"""MemGPTConnector: the seed's API, JSON envelopes both ways, event routing, dev mode."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memlab.agent.gateway import Envelope, EnvelopeError, MemGPTConnector
from memlab.data import synthetic_ohlcv
from memlab.memory import Decision, Outcome

FEATS = {"ret_5": 1.0, "ret_20": 2.0, "volatility": 0.5, "vol_ratio": 1.0, "rsi": 60.0, "trend": 1.0}
SIGNAL = {"symbol": "BTCUSDT", "strategy": "momentum", "action": "BUY", "price": 65000.0, "features": FEATS}
ROOT = Path(__file__).resolve().parents[1]


def bars_payload(n: int = 300) -> list[dict[str, Any]]:
    bars = synthetic_ohlcv(n, seed=4, freq="5min")
    return [{"time": t.isoformat(), **row} for t, row in zip(bars.index, bars.to_dict(orient="records"), strict=True)]


def with_connector(memory_dir: Path, body, **kw):
    async def go():
        connector = MemGPTConnector(agent_id="trader_001", memory_path=str(memory_dir), **kw)
        await connector.initialize()
        try:
            return await body(connector)
        finally:
            await connector.close()

    return asyncio.run(go())


def test_the_seed_flow_analyze_log_close(memory_dir):
    async def body(c: MemGPTConnector):
        analysis = await c.analyze_signal(SIGNAL)
        decision = {**SIGNAL, "mem_confidence": analysis["confidence"], "mem_reason": analysis["reason"]}
        did = await c.log_decision(decision, {"order_id": "b-1", "status": "filled", "price": 65010.0})
        adaptations = await c.close_position(did, pnl=500.0, return_pct=0.77)
        return analysis, did, adaptations, c.agent.stores.decisions.get(did)

    analysis, did, adaptations, stored = with_connector(memory_dir, body)
    assert set(analysis) == {"confidence", "reason", "evidence", "position_size"}
    assert did == 1 and adaptations == [] and stored.outcome.pnl == 500.0 and stored.price == 65010.0


def test_the_seed_trader_needs_no_initialize_and_may_pass_order_objects(memory_dir):
    from dataclasses import dataclass

    @dataclass
    class Order:
        order_id: str
        status: str
        price: float

    async def go():
        connector = MemGPTConnector(agent_id="trader_001", memory_path=str(memory_dir))
        analysis = await connector.analyze_signal(SIGNAL)
        did = await connector.log_decision({**SIGNAL, "mem_confidence": analysis["confidence"]}, Order("x1", "filled", 65001.0))
        stored = connector.agent.stores.decisions.get(did)
        await connector.close()
        return stored

    stored = asyncio.run(go())
    assert stored.price == 65001.0 and stored.meta["order"]["order_id"] == "x1"


def test_analyze_market_with_bars_in_the_params(memory_dir):
    async def body(c):
        return await c.send_command("analyze_market", {"symbol": "BTCUSDT", "timeframe": "5m", "bars": bars_payload()})

    response = with_connector(memory_dir, body)
    assert response["type"] == "response", response
    result = response["payload"]["result"]
    assert set(result["features"]) == set(FEATS) and set(result["analysis"]) == {"BUY", "SELL"}
    assert result["regime"].endswith("volatility")


def test_analyze_market_from_a_data_source_or_a_clear_error_without_one(memory_dir):
    asked = []

    def source(symbol: str, timeframe: str):
        asked.append((symbol, timeframe))
        return synthetic_ohlcv(300, seed=4, freq="5min")

    async def body(c):
        return await c.send_command("analyze_market", {"symbol": "BTCUSDT", "timeframe": "5m"})

    assert with_connector(memory_dir, body, data_source=source)["type"] == "response"
    assert asked == [("BTCUSDT", "5m")]
    response = with_connector(memory_dir, body)
    assert response["type"] == "error" and response["payload"]["code"] == "no_market_data"
    assert "params.bars" in response["payload"]["message"]


def test_envelopes_round_trip_and_are_validated():
    env = Envelope("command", {"command": "memory_status", "params": {"x": float("nan")}})
    back = Envelope.from_json(env.to_json())
    assert back.id == env.id and back.time == env.time and back.payload["params"] == {"x": None}
    good = json.loads(env.to_json())
    for bad, field in [
        ({**good, "id": ""}, "'id'"),
        ({**good, "type": "shout"}, "unknown"),
        ({**good, "time": "yesterday"}, "'time'"),
        ({**good, "time": "2025-10-16T14:30:15"}, "time zone"),
        ({**good, "payload": []}, "'payload'"),
        ({**good, "payload": {"params": {}}}, "payload.command"),
        ({**good, "extra": 1}, "unknown envelope fields"),
    ]:
        with pytest.raises(EnvelopeError, match=field):
            Envelope.from_dict(bad)


@pytest.mark.parametrize(
    ("raw", "code", "text"),
    [
        ("not json", "bad_envelope", "not JSON"),
        (json.dumps({"id": "m1", "type": "command", "time": "2025-10-16T14:30:15Z", "payload": {}}), "bad_envelope", "payload.command"),
        (json.dumps({"id": "m2", "type": "command", "time": "2025-10-16T14:30:15Z",
                     "payload": {"command": "sell_everything"}}), "unknown_command", "known: analyze_market"),
        (json.dumps({"id": "m3", "type": "command", "time": "2025-10-16T14:30:15Z",
                     "payload": {"command": "analyze_signal", "params": {"signal": {**SIGNAL, "action": "HOLD"}}}}),
         "bad_params", "'BUY' or 'SELL'"),
        (json.dumps({"id": "m4", "type": "command", "time": "2025-10-16T14:30:15Z",
                     "payload": {"command": "log_decision", "params": {}}}), "bad_params", "params.decision"),
        (json.dumps({"id": "m5", "type": "command", "time": "2025-10-16T14:30:15Z",
                     "payload": {"command": "core_memory_append", "params": {"label": "persona", "content": "x" * 9000}}}),
         "bad_params", "over its limit"),
    ],
)
def test_bad_messages_get_clear_error_responses_and_the_agent_keeps_serving(memory_dir, raw, code, text):
    async def body(c):
        reply = Envelope.from_json(await c.handle_message(raw))
        after = Envelope.from_json(await c.handle_message(Envelope("command", {"command": "memory_status"}).to_json()))
        return reply, after

    reply, after = with_connector(memory_dir, body)
    assert reply.type == "error" and reply.payload["code"] == code and text in reply.payload["message"]
    if raw.startswith("{"):
        assert reply.payload["reply_to"] == json.loads(raw)["id"]
    assert after.type == "response" and after.payload["result"]["agent_id"] == "trader_001"


def test_subscribers_hear_decision_adaptation_and_lesson_events_and_a_broken_one_harms_nothing(memory_dir):
    heard: list[dict[str, Any]] = []

    async def body(c: MemGPTConnector):
        def broken(event):
            raise RuntimeError("subscriber bug")

        async def async_sub(event):
            heard.append(event)

        rng = np.random.default_rng(2)  # a trained history that wins 60 % of the time
        c.agent.stores.decisions.record_many(
            Decision("BTCUSDT", "momentum", "BUY", 0.6, features={k: float(rng.normal()) for k in FEATS},
                     agent_id="trainer", outcome=Outcome(pnl=1.0 if rng.random() < 0.6 else -1.0))
            for _ in range(200)
        )
        c.subscribe(broken)
        c.subscribe(async_sub, types=["decision", "adaptation", "lesson"])
        for i in range(20):  # then this situation loses every time
            did = await c.log_decision({**SIGNAL, "mem_confidence": 0.6}, {"order_id": f"o{i}"})
            await c.close_position(did, pnl=-10.0, return_pct=-0.1)
        await asyncio.sleep(0)

    with_connector(memory_dir, body)
    kinds = {e["type"] for e in heard}
    assert {"decision", "adaptation", "lesson"} <= kinds
    adaptation = next(e for e in heard if e["type"] == "adaptation")
    assert adaptation["payload"]["trigger"] == "win_rate" and adaptation["payload"]["agent_id"] == "trader_001"
    lesson = next(e for e in heard if e["type"] == "lesson")
    assert lesson["payload"]["text"].startswith("Learned: momentum BUYs")
    for event in heard:
        Envelope.from_dict(event)  # every event is a valid envelope


def test_unknown_event_types_are_refused(memory_dir):
    async def body(c):
        with pytest.raises(ValueError, match="unknown event types"):
            c.subscribe(print, types=["gossip"])

    with_connector(memory_dir, body)


def test_dev_mode_one_shot_and_interactive(memory_dir):
    base = [sys.executable, "-m", "memlab.connector", "--agent-id", "dev_trader", "--memory-path", str(memory_dir)]
    one = subprocess.run([*base, "--command", "core_memory_append", "--params",
                          json.dumps({"label": "market_notes", "content": "Support at 64500 is strong"})],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["payload"]["result"]["value"] == "Support at 64500 is strong"
    bad = subprocess.run([*base, "--command", "nope"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 1 and json.loads(bad.stdout)["payload"]["code"] == "unknown_command"
    session = "memory_status\n" + "archival_memory_search {\"query\": \"support\"}\n" + "garbage {\n"
    inter = subprocess.run([*base, "--verbose"], input=session, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert inter.returncode == 0, inter.stderr
    replies = [json.loads(line) for line in inter.stdout.splitlines()]
    assert [r["type"] for r in replies] == ["response", "response", "error"]
    assert replies[0]["payload"]["result"]["agent_id"] == "dev_trader"


def test_dev_mode_is_a_memlab_subcommand(memory_dir):
    script = Path(sys.executable).parent / "memlab"
    memlab = [str(script)] if script.exists() else [sys.executable, "-m", "memlab.cli"]
    run = subprocess.run([*memlab, "agent", "--agent-id", "dev_trader", "--memory-path", str(memory_dir),
                          "--command", "memory_status"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["payload"]["result"]["agent_id"] == "dev_trader"
    bad = subprocess.run([*memlab, "agent", "--memory-path", str(memory_dir), "--command", "memory_status",
                          "--params", "[1"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "--params is not JSON" in bad.stderr and "Traceback" not in bad.stderr
