"""The optional LLM brain, against a real chat-completions server on 127.0.0.1.

The server speaks the OpenAI protocol (tool calls included) and the real ``openai`` SDK
talks to it; each test scripts what the "model" answers.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from memlab.agent import MemoryAgent
from memlab.agent.gateway import MemGPTConnector
from memlab.agent.llm_brain import LLMBrain, LLMConfig
from memlab.credentials import CredentialManager

KEY = "sk-test-0123456789abcdefSECRET"
FEATS = {"ret_5": 1.0, "ret_20": 2.0, "volatility": 0.5, "vol_ratio": 1.0, "rsi": 60.0, "trend": 1.0}
SIGNAL = {"symbol": "BTCUSDT", "strategy": "momentum", "action": "BUY", "price": 65000.0, "features": FEATS}


def tool_call(name: str, args: dict[str, Any], n: int = 1) -> dict[str, Any]:
    return {"tool_calls": [{"id": f"call_{name}_{n}", "type": "function",
                            "function": {"name": name, "arguments": json.dumps(args)}}]}


class ChatServer:
    """A scripted chat-completions endpoint: each request takes the next step of ``script``."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str] = []
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.auth.append(request.headers.get("Authorization", ""))
        step = self.script.pop(0) if self.script else {"content": "{}"}
        if "status" in step:
            return web.json_response({"error": {"message": "boom", "type": "server_error"}}, status=step["status"])
        if "hang" in step:
            await self.release.wait()
            step = {"content": json.dumps({"confidence": 0.9, "reason": "too late"})}
        message = {"role": "assistant", "content": step.get("content")}
        if "tool_calls" in step:
            message["tool_calls"] = step["tool_calls"]
        return web.json_response({
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if "tool_calls" in step else "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        })


async def serve(script: list[Any]) -> tuple[ChatServer, web.AppRunner, str]:
    server = ChatServer(script)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return server, runner, f"http://127.0.0.1:{port}/v1"


def brain(base_url: str, **kw: Any) -> LLMBrain:
    creds = CredentialManager(env_file=None, environ={"LLM_API_KEY": KEY}, audit_path=None)
    return LLMBrain(LLMConfig(base_url=base_url, model="test-model", **kw), credentials=creds)


def run(memory_dir: Path, script: list[Any], **kw: Any) -> tuple[dict[str, Any], ChatServer, MemoryAgent]:
    async def go():
        server, runner, url = await serve(script)
        agent = MemoryAgent(memory_dir, llm=brain(url, **kw))
        try:
            result = await agent.analyze_signal_async(SIGNAL)
        finally:
            server.release.set()
            await runner.cleanup()
        return result, server, agent

    return asyncio.run(go())


def no_key_anywhere(result: dict[str, Any], memory_dir: Path) -> None:
    assert KEY not in json.dumps(result)
    for path in memory_dir.iterdir():
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_the_model_reads_and_edits_memory_with_tools_then_answers(memory_dir):
    script = [
        tool_call("archival_memory_search", {"query": "momentum"}),
        tool_call("core_memory_append", {"label": "strategy_view", "content": "momentum BUYs: no history yet"}, 2),
        {"content": json.dumps({"confidence": 0.62, "reason": "no history; modest trend"})},
    ]
    result, server, agent = run(memory_dir, script)
    assert result["confidence"] == 0.62 and result["reason"] == "no history; modest trend"
    assert result["evidence"]["brain"] == "llm"
    assert result["evidence"]["tool_calls"] == ["archival_memory_search", "core_memory_append"]
    assert agent.core.get("strategy_view").value == "momentum BUYs: no history yet"
    assert agent.stores.journal.entries(key="Core Memory")[-1].fields["Block"] == "strategy_view"
    # The protocol: tools offered, the key sent as a bearer token, tool results returned by id.
    first, last = server.requests[0], server.requests[-1]
    assert {t["function"]["name"] for t in first["tools"]} >= {
        "core_memory_append", "core_memory_replace", "archival_memory_insert", "archival_memory_search"}
    assert server.auth == [f"Bearer {KEY}"] * 3
    tool_msgs = [m for m in last["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_msgs] == ["call_archival_memory_search_1", "call_core_memory_append_2"]
    assert json.loads(tool_msgs[1]["content"])["ok"] is True
    assert result["position_size"] == pytest.approx(agent.brain.size_for(0.62, 0.1))
    no_key_anywhere(result, memory_dir)
    agent.close()


def test_a_tool_error_goes_back_to_the_model_not_to_the_caller(memory_dir):
    script = [tool_call("core_memory_append", {"label": "market_notes", "content": "x" * 5000}),
              {"content": json.dumps({"confidence": 0.5, "reason": "note was too long"})}]
    result, server, agent = run(memory_dir, script)
    tool_msg = [m for m in server.requests[1]["messages"] if m["role"] == "tool"][0]
    assert "over its limit" in json.loads(tool_msg["content"])["error"]
    assert result["evidence"]["brain"] == "llm" and agent.core.get("market_notes").value == ""
    agent.close()


@pytest.mark.parametrize(
    ("script", "why"),
    [
        ([{"content": "I think it will go up!"}], "invalid output: answer is not JSON"),
        ([{"content": json.dumps({"confidence": 1.7, "reason": "sure"})}], "invalid output: confidence 1.7 is outside [0, 1]"),
        ([{"content": json.dumps({"confidence": 0.7})}], "invalid output: reason must be non-empty text"),
        ([{"content": json.dumps({"confidence": 0.7, "reason": "r", "size": 5})}], "invalid output: unexpected fields ['size']"),
        ([{"status": 500}], "endpoint error: InternalServerError (HTTP 500)"),
        ([tool_call("archival_memory_search", {"query": "a"}, n) for n in range(5)], "invalid output: no answer after 2 tool rounds"),
    ],
)
def test_failures_fall_back_to_the_default_brain_and_say_why(memory_dir, script, why):
    result, _, agent = run(memory_dir, script, max_steps=2)
    default = agent.analyze_signal(SIGNAL)
    assert result["confidence"] == default["confidence"]
    assert result["reason"] == f"LLM brain fell back to the default brain ({why}). {default['reason']}"
    assert result["evidence"]["brain"] == "default" and result["evidence"]["llm_error"] == why
    no_key_anywhere(result, memory_dir)
    agent.close()


def test_a_model_that_does_not_answer_in_time_falls_back(memory_dir):
    result, _, agent = run(memory_dir, [{"hang": True}], timeout=0.3)
    assert result["reason"].startswith("LLM brain fell back to the default brain (timed out after 0.3 s).")
    agent.close()


def test_an_unreachable_endpoint_falls_back_and_the_connector_reports_an_error_event(memory_dir):
    async def go():
        server, runner, url = await serve([])
        await runner.cleanup()  # nothing listens there any more
        connector = MemGPTConnector(agent_id="llm_trader", memory_path=memory_dir, llm=brain(url))
        await connector.initialize()
        events: list[dict[str, Any]] = []
        connector.subscribe(events.append, types=["error"])
        result = await connector.analyze_signal(SIGNAL)
        await connector.close()
        return result, events

    result, events = asyncio.run(go())
    assert result["reason"].startswith("LLM brain fell back to the default brain (endpoint error: APIConnectionError)")
    assert [e["type"] for e in events] == ["error"] and events[0]["payload"]["source"] == "llm_brain"
    assert KEY not in json.dumps(events)


def test_the_key_never_reaches_the_logs_even_at_debug_level(memory_dir, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    script = [tool_call("archival_memory_insert", {"content": "Learned: calm up-trends favour momentum"}),
              {"content": "not json"}]
    result, server, agent = run(memory_dir, script)
    assert result["evidence"]["llm_error"] == "invalid output: answer is not JSON"
    assert agent.archival.search("calm")["text"].tolist() == ["Learned: calm up-trends favour momentum"]
    assert "fell back" in caplog.text and KEY not in caplog.text
    no_key_anywhere(result, memory_dir)
    agent.close()
