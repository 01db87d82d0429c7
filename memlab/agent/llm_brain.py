"""The optional LLM brain: any OpenAI-compatible chat-completions endpoint scores the signal.

The model sees the agent's core memory, the signal and the default brain's evidence;
it may call the memory tools (:mod:`memlab.agent.tools`) and must answer with JSON
``{"confidence": 0..1, "reason": "..."}``. Anything else — a timeout, an HTTP error, a
malformed or out-of-range answer, or no answer within ``max_steps`` tool rounds — falls
back to the default brain's analysis, and the reason says why::

    LLM brain fell back to the default brain (timed out after 5.0 s). 14 similar momentum BUYs ...

The key comes from :class:`~memlab.credentials.CredentialManager` (``LLM_API_KEY`` by
default) and never reaches a reason, the journal or a log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from memlab.agent.brain import Analysis
from memlab.agent.tools import MemoryTools
from memlab.credentials import CredentialManager

log = logging.getLogger(__name__)

#: The JSON schema the model's final answer must satisfy.
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "reason": {"type": "string", "minLength": 1, "maxLength": 1000},
    },
    "required": ["confidence", "reason"],
    "additionalProperties": False,
}

SYSTEM_PROMPT = """You are the decision brain of a trading agent with persistent memory.
Your core memory:
{core}

Score the trading signal the user gives: how likely is it to win? Use the evidence given,
and the tools to read or edit memory if useful. Answer ONLY with a JSON object
{{"confidence": <number 0..1>, "reason": "<one or two sentences citing evidence>"}}."""


class InvalidAnswer(ValueError):
    """The model's answer does not satisfy :data:`ANSWER_SCHEMA`."""


@dataclass(frozen=True)
class LLMConfig:
    """Where the model is and how long to wait.

    ``credential`` names the credentials (``<NAME>_API_KEY``) to read the key from;
    ``timeout`` bounds the whole analysis (all tool rounds), in seconds.
    """

    base_url: str
    model: str
    credential: str = "llm"
    timeout: float = 10.0
    max_steps: int = 4
    temperature: float = 0.0


def validate_answer(content: str | None) -> tuple[float, str]:
    """Parse and check the final answer; returns ``(confidence, reason)`` or raises :class:`InvalidAnswer`."""
    if not content or not content.strip():
        raise InvalidAnswer("empty answer")
    text = content.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.S)
    if fenced:
        text = fenced.group(1)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        raise InvalidAnswer("answer is not JSON") from None
    if not isinstance(doc, dict):
        raise InvalidAnswer("answer is not a JSON object")
    extra = sorted(set(doc) - set(ANSWER_SCHEMA["properties"]))
    if extra:
        raise InvalidAnswer(f"unexpected fields {extra}")
    conf, reason = doc.get("confidence"), doc.get("reason")
    if isinstance(conf, bool) or not isinstance(conf, (int, float)):
        raise InvalidAnswer(f"confidence must be a number, got {type(conf).__name__}")
    if not 0.0 <= float(conf) <= 1.0:
        raise InvalidAnswer(f"confidence {conf} is outside [0, 1]")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidAnswer("reason must be non-empty text")
    if len(reason) > ANSWER_SCHEMA["properties"]["reason"]["maxLength"]:
        raise InvalidAnswer("reason is longer than 1000 characters")
    return float(conf), reason.strip()


class LLMBrain:
    """Scores signals with a chat-completions model; falls back to the default brain on failure.

    ``credentials`` defaults to a fresh :class:`CredentialManager`; the key is read once here.
    """

    name = "llm"

    def __init__(self, config: LLMConfig, *, credentials: CredentialManager | None = None) -> None:
        from openai import AsyncOpenAI

        self.config = config
        manager = credentials if credentials is not None else CredentialManager()
        self._key = manager.get_broker_credentials(config.credential, require_secret=False).api_key
        self._client = AsyncOpenAI(
            base_url=config.base_url, api_key=self._key.reveal(), timeout=config.timeout, max_retries=0
        )

    def __repr__(self) -> str:
        return f"LLMBrain(base_url={self.config.base_url!r}, model={self.config.model!r})"

    async def analyze(self, signal: Mapping[str, Any], default: Analysis, tools: MemoryTools) -> Analysis:
        """The model's analysis of ``signal``, or ``default`` with the failure in its reason."""
        try:
            confidence, reason = await asyncio.wait_for(
                self._converse(signal, default, tools), timeout=self.config.timeout
            )
        except TimeoutError:
            return self._fallback(default, f"timed out after {self.config.timeout:g} s")
        except InvalidAnswer as exc:
            return self._fallback(default, f"invalid output: {exc}")
        except Exception as exc:  # any endpoint or transport failure
            if type(exc).__name__ == "APITimeoutError":
                return self._fallback(default, f"timed out after {self.config.timeout:g} s")
            return self._fallback(default, f"endpoint error: {_describe(exc)}")
        evidence = {**default["evidence"], "brain": self.name, "model": self.config.model, "tool_calls": tools.calls}
        evidence["default_confidence"] = default["confidence"]
        return Analysis(
            confidence=round(confidence, 6),
            reason=self._redact(reason),
            evidence=evidence,
            position_size=default["position_size"],
        )

    async def _converse(self, signal: Mapping[str, Any], default: Analysis, tools: MemoryTools) -> tuple[float, str]:
        facts = {k: v for k, v in signal.items() if k in ("symbol", "strategy", "action", "price", "time")}
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM_PROMPT.format(core=tools.agent.core.render())},
            {
                "role": "user",
                "content": json.dumps(
                    {
                        "signal": facts,
                        "evidence_from_similar_situations": default["evidence"],
                        "default_brain": {"confidence": default["confidence"], "reason": default["reason"]},
                    },
                    default=str,
                ),
            },
        ]
        for _ in range(self.config.max_steps):
            response = await self._client.chat.completions.create(
                model=self.config.model,
                messages=messages,  # type: ignore[arg-type]
                tools=tools.schemas,  # type: ignore[arg-type]
                temperature=self.config.temperature,
            )
            if not response.choices:
                raise InvalidAnswer("the response has no choices")
            message = response.choices[0].message
            calls = message.tool_calls or []
            if not calls:
                return validate_answer(message.content)
            messages.append(
                {
                    "role": "assistant",
                    "content": message.content,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.function.name, "arguments": c.function.arguments},
                        }
                        for c in calls
                    ],
                }
            )
            for c in calls:
                messages.append({"role": "tool", "tool_call_id": c.id, "content": tools.call(c.function.name, c.function.arguments)})
        raise InvalidAnswer(f"no answer after {self.config.max_steps} tool rounds")

    def _fallback(self, default: Analysis, why: str) -> Analysis:
        why = self._redact(why)
        log.warning("LLM brain fell back to the default brain: %s", why)
        evidence = {**default["evidence"], "brain": "default", "llm_error": why}
        return Analysis(
            confidence=default["confidence"],
            reason=f"LLM brain fell back to the default brain ({why}). {default['reason']}",
            evidence=evidence,
            position_size=default["position_size"],
        )

    def _redact(self, text: str) -> str:
        key = self._key.reveal()
        return text.replace(key, "****") if key and len(key) >= 4 else text


def _describe(exc: BaseException) -> str:
    """The failure's kind and HTTP status, never its body (which could echo a request)."""
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if status is not None else "")
