"""The memory operations an LLM brain may call, as OpenAI chat-completions tools.

Names and arguments follow Letta/MemGPT: ``core_memory_append(label, content)``,
``core_memory_replace(label, old_content, new_content)``,
``archival_memory_insert(content)``, ``archival_memory_search(query, page)``, plus
``recall_memory_search(query)`` over past decisions and ``similar_situations()`` (the
default brain's evidence for the signal at hand). Every edit goes through the agent,
so each is a journal line like any other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from memlab.agent.signal import check_signal, situation
from memlab.errors import MemlabError

if TYPE_CHECKING:
    from memlab.agent.agent import MemoryAgent

PAGE_SIZE = 5


def _fn(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
    }


_TEXT = {"type": "string"}

TOOL_SCHEMAS: list[dict[str, Any]] = [
    _fn(
        "core_memory_append",
        "Append text to a core-memory block (persona, strategy_view, market_notes).",
        {"label": _TEXT, "content": _TEXT},
        ["label", "content"],
    ),
    _fn(
        "core_memory_replace",
        "Replace exact text in a core-memory block; an empty new_content deletes it.",
        {"label": _TEXT, "old_content": _TEXT, "new_content": _TEXT},
        ["label", "old_content", "new_content"],
    ),
    _fn("archival_memory_insert", "Store a lesson in archival memory.", {"content": _TEXT}, ["content"]),
    _fn(
        "archival_memory_search",
        "Search archival memory (lessons) by words; page 0 is the best matches.",
        {"query": _TEXT, "page": {"type": "integer", "minimum": 0}},
        ["query"],
    ),
    _fn(
        "recall_memory_search",
        "Search past decisions' reasons and outcome notes by words.",
        {"query": _TEXT},
        ["query"],
    ),
    _fn(
        "similar_situations",
        "Outcomes of the most similar past situations for the signal being scored.",
        {},
        [],
    ),
]


class MemoryTools:
    """Runs tool calls against one agent for one signal; results are JSON text for the model."""

    def __init__(self, agent: MemoryAgent, signal: Mapping[str, Any]) -> None:
        self.agent = agent
        self.signal = signal
        self.calls: list[str] = []

    @property
    def schemas(self) -> list[dict[str, Any]]:
        return TOOL_SCHEMAS

    def call(self, name: str, arguments: str) -> str:
        """Run one tool call; errors come back as ``{"error": ...}`` for the model to read."""
        self.calls.append(name)
        try:
            args = json.loads(arguments or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
            result = self._dispatch(name, args)
        except (MemlabError, ValueError, TypeError, KeyError) as exc:
            return json.dumps({"error": f"{name}: {exc}"})
        return json.dumps(result, default=str)

    def _dispatch(self, name: str, a: dict[str, Any]) -> Any:
        agent = self.agent
        if name == "core_memory_append":
            block = agent.core.append(str(a["label"]), str(a["content"]))
            return {"ok": True, "block": block.label, "characters": f"{len(block.value)}/{block.limit}"}
        if name == "core_memory_replace":
            block = agent.core.replace(str(a["label"]), str(a["old_content"]), str(a["new_content"]))
            return {"ok": True, "block": block.label, "characters": f"{len(block.value)}/{block.limit}"}
        if name == "archival_memory_insert":
            return {"ok": True, "id": agent.remember(str(a["content"]))}
        if name == "archival_memory_search":
            page = int(a.get("page", 0) or 0)
            hits = agent.archival.search(str(a["query"]), limit=PAGE_SIZE * (page + 1))
            rows = hits.iloc[PAGE_SIZE * page :]
            return [{"id": int(i), "text": t} for i, t in zip(rows.index, rows["text"], strict=True)]
        if name == "recall_memory_search":
            hits = agent.stores.decisions.search(str(a["query"]), limit=PAGE_SIZE)
            return [
                {"id": int(i), "action": r.action, "strategy": r.strategy, "reason": r.reason, "pnl": None if r.pnl != r.pnl else r.pnl}
                for i, r in zip(hits.index, hits.itertuples(), strict=True)
            ]
        if name == "similar_situations":
            _, strategy, action = check_signal(self.signal)
            ev = agent.brain.evidence(strategy, action, situation(self.signal))
            return ev.as_dict()
        raise ValueError(f"unknown tool {name!r} (tools: {[t['function']['name'] for t in TOOL_SCHEMAS]})")
