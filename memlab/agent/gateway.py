"""MemGPTConnector: the agent's JSON gateway (the seed's API) — envelopes in, envelopes out, events.

A thin adapter over the agent service (:class:`~memlab.agent.MemoryAgent`): programs that
speak JSON (another process, a notebook, the seed's trader) use it; memlab's own trader
calls the agent directly. It adds the envelope protocol, scoring of bare signals from its
``data_source``, and async calls.

Every message is an envelope ``{"id", "type", "time", "payload"}`` (see :class:`Envelope`).
A command is ``{"type": "command", "payload": {"command": NAME, "params": {...}}}``; the
answer is ``{"type": "response", "payload": {"reply_to": ID, "command": NAME, "result": ...}}``
or ``{"type": "error", "payload": {"reply_to": ID, "code": ..., "message": ...}}``. A bad
message or an unknown command gets an error response; it never stops the agent.

>>> import asyncio, tempfile
>>> async def demo():
...     connector = MemGPTConnector(agent_id="trader_001", memory_path=tempfile.mkdtemp())
...     await connector.initialize()
...     response = await connector.send_command("analyze_market", {"symbol": "BTCUSDT", "timeframe": "5m"})
...     await connector.close()
...     return response["type"], response["payload"]["code"]
>>> asyncio.run(demo())
('error', 'no_market_data')

Run it by hand (the seed's development mode)::

    memlab agent --agent-id dev_trader --verbose --memory-path data/mem_knowledge/
    memlab agent --command memory_status
    python -m memlab.connector ...     # the same, as the seed ran it
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import json
import logging
import math
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from memlab.errors import InvalidInputError, MemlabError
from memlab.events import EventBus

log = logging.getLogger(__name__)

#: Envelope types: what comes in, what goes out, and the events subscribers hear.
REQUEST_TYPES = frozenset({"command"})
RESPONSE_TYPES = frozenset({"response", "error"})
EVENT_TYPES = frozenset({"decision", "adaptation", "lesson", "error"})

#: ``data_source(symbol, timeframe) -> OHLCV DataFrame`` (may be async).
DataSource = Callable[[str, str], "pd.DataFrame | Awaitable[pd.DataFrame]"]
Subscriber = Callable[[dict[str, Any]], "None | Awaitable[None]"]


class EnvelopeError(InvalidInputError):
    """A message is not a valid envelope; the message names the field."""


class CommandError(MemlabError):
    """A command cannot be carried out; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Envelope:
    """One message: ``id`` (unique text), ``type``, ``time`` (UTC ISO-8601) and a ``payload`` dict."""

    type: str
    payload: dict[str, Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "time": self.time, "payload": self.payload}

    def to_json(self) -> str:
        """Serialised (NaN/inf become null: strict JSON every client can read)."""
        return json.dumps(_strict(self.to_dict()), allow_nan=False, default=str)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Envelope:
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EnvelopeError(f"message is not JSON ({exc})") from None
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: Any) -> Envelope:
        """Validate an envelope dict; raises :class:`EnvelopeError` naming the bad field."""
        if not isinstance(doc, Mapping):
            raise EnvelopeError(f"an envelope is a JSON object, got {type(doc).__name__}")
        extra = sorted(set(doc) - {"id", "type", "time", "payload"})
        if extra:
            raise EnvelopeError(f"unknown envelope fields {extra} (allowed: id, type, time, payload)")
        for name in ("id", "type", "time"):
            if not isinstance(doc.get(name), str) or not doc[name].strip():
                raise EnvelopeError(f"envelope field {name!r} must be non-empty text, got {doc.get(name)!r}")
        kind = doc["type"]
        if kind not in REQUEST_TYPES | RESPONSE_TYPES | EVENT_TYPES:
            raise EnvelopeError(
                f"envelope type {kind!r} is unknown (one of {sorted(REQUEST_TYPES | RESPONSE_TYPES | EVENT_TYPES)})"
            )
        try:
            ts = pd.Timestamp(doc["time"])
            if ts is pd.NaT or ts.tzinfo is None:
                raise ValueError
        except (ValueError, TypeError):
            raise EnvelopeError(f"envelope field 'time' must be ISO-8601 with a time zone, got {doc['time']!r}") from None
        payload = doc.get("payload")
        if not isinstance(payload, Mapping):
            raise EnvelopeError(f"envelope field 'payload' must be an object, got {type(payload).__name__}")
        if kind == "command":
            if not isinstance(payload.get("command"), str) or not payload["command"]:
                raise EnvelopeError("a command envelope needs payload.command (text)")
            if not isinstance(payload.get("params", {}), Mapping):
                raise EnvelopeError("payload.params must be an object")
        return cls(type=kind, payload=dict(payload), id=doc["id"], time=doc["time"])


def _strict(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return _strict(value.item())
        except (TypeError, ValueError):
            return str(value)
    return value


def bars_from_params(rows: Any) -> pd.DataFrame:
    """OHLCV bars sent in a command: a list of ``{"time", "Open", "High", "Low", "Close", "Volume"}``."""
    if not isinstance(rows, list) or not rows:
        raise CommandError("bad_params", "params.bars must be a non-empty list of {time, Open, High, Low, Close, Volume}")
    try:
        frame = pd.DataFrame(rows)
        frame.columns = [str(c).capitalize() for c in frame.columns]
        index = pd.to_datetime(frame.pop("Time"), utc=True)
        frame.index = pd.DatetimeIndex(index, name="time")
        frame = frame.astype(float)
    except (KeyError, ValueError, TypeError) as exc:
        raise CommandError("bad_params", f"params.bars is not OHLCV with a time per bar ({exc})") from None
    if "Close" not in frame.columns:
        raise CommandError("bad_params", "params.bars needs a Close price in every bar")
    return frame.sort_index()


class MemGPTConnector:
    """The agent behind the seed's connector API.

    ``data_source(symbol, timeframe)`` supplies bars for ``analyze_market`` when the
    command does not carry them; ``llm`` (an :class:`~memlab.agent.llm_brain.LLMBrain`)
    makes ``analyze_signal`` consult a model first.
    """

    def __init__(
        self,
        agent_id: str = "trader_001",
        memory_path: str | os.PathLike[str] | None = None,
        *,
        data_source: DataSource | None = None,
        llm: Any | None = None,
        config: Any | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.memory_path = memory_path
        self.data_source = data_source
        self._llm = llm
        self._config = config
        self.agent: Any = None
        #: The connector's events, as envelopes (the agent's events, wrapped; see :meth:`subscribe`).
        self.events = EventBus(f"connector {agent_id}")
        self._commands: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            "analyze_market": self._cmd_analyze_market,
            "analyze_signal": self._cmd_analyze_signal,
            "log_decision": self._cmd_log_decision,
            "close_position": self._cmd_close_position,
            "core_memory_append": self._cmd_core_append,
            "core_memory_replace": self._cmd_core_replace,
            "archival_memory_insert": self._cmd_archival_insert,
            "archival_memory_search": self._cmd_archival_search,
            "memory_status": self._cmd_status,
            "calibration": self._cmd_calibration,
        }

    def __repr__(self) -> str:
        return f"MemGPTConnector(agent_id={self.agent_id!r}, initialized={self.agent is not None})"

    @property
    def commands(self) -> list[str]:
        return sorted(self._commands)

    # -- life cycle --------------------------------------------------------------------
    async def initialize(self) -> None:
        """Open the agent's memory (creating it if new). Safe to call twice."""
        if self.agent is not None:
            return
        from memlab.agent import AgentConfig, MemoryAgent

        self.agent = await asyncio.to_thread(
            MemoryAgent,
            self.memory_path,
            agent_id=self.agent_id,
            config=self._config or AgentConfig(),
            llm=self._llm,
        )
        self.agent.add_listener(self._on_agent_event)
        log.info("connector %s ready on %s", self.agent_id, self.agent.path)

    async def close(self) -> None:
        await self.events.drain()  # async subscribers finish hearing what happened
        if self.agent is not None:
            self.agent.close()
            self.agent = None

    async def __aenter__(self) -> MemGPTConnector:
        await self.initialize()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _ensure(self) -> Any:
        """The agent, opened on first use (the seed's trader never calls ``initialize``)."""
        if self.agent is None:
            await self.initialize()
        return self.agent

    # -- the seed's calls ----------------------------------------------------------------
    async def analyze_signal(self, signal: Mapping[str, Any]) -> dict[str, Any]:
        """``{'confidence', 'reason', 'evidence', 'position_size'}`` for a signal (raises
        :class:`~memlab.agent.signal.InvalidSignalError` on a bad one).

        A bare signal (symbol, strategy, action or side, price, qty: no ``features`` and no
        ``bars``, as the seed's trader sends) is scored from recent bars of the connector's
        ``data_source``, cut at the signal's ``time`` when it has one. When none can be had
        (no data source, it failed, or too few bars) the answer is the prior alone, with a
        reason that says so: a missing market situation never fails the caller's trade."""
        agent = await self._ensure()
        situated, why = await self._situated(signal)
        if situated is None:
            return dict(agent.analyze_prior_only(signal, why))
        return dict(await agent.analyze_signal_async(situated))

    async def _situated(self, signal: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, str]:
        """``signal`` as it is when it carries ``features`` or ``bars`` (or is no mapping: the
        agent says what is wrong); a bare one with recent bars from ``data_source``; else
        None and why none could be had. A bad identity field is still the caller's error."""
        if not isinstance(signal, Mapping) or signal.get("features") is not None or signal.get("bars") is not None:
            return signal, ""
        from memlab.agent.signal import check_signal

        check_signal(signal)
        bars, why = await self._recent_bars(signal)
        return (None, why) if bars is None else ({**signal, "bars": bars}, "")

    async def _fetch_bars(self, symbol: str, timeframe: str) -> Any:
        """What ``data_source(symbol, timeframe)`` gives (awaited when it is async)."""
        assert self.data_source is not None
        got = self.data_source(symbol, timeframe)
        return await got if inspect.isawaitable(got) else got

    async def _recent_bars(self, signal: Mapping[str, Any]) -> tuple[pd.DataFrame | None, str]:
        """Bars for a bare signal from ``data_source``, none after its time; else None and why."""
        from memlab.agent.signal import WARMUP_BARS, signal_time

        symbol = str(signal["symbol"])
        timeframe = str(signal.get("timeframe", ""))
        if self.data_source is None:
            return None, "no features or bars given, and the connector has no data_source"
        try:
            bars = await self._fetch_bars(symbol, timeframe)
        except Exception as exc:  # a feed that failed is no reason to fail the trade
            log.warning("data_source failed for %s %s: %s", symbol, timeframe, exc)
            return None, f"the data source failed for {symbol}: {type(exc).__name__}: {exc}"
        if not isinstance(bars, pd.DataFrame) or "Close" not in bars.columns:
            return None, f"the data source gave no OHLCV bars for {symbol}"
        if signal.get("time") is not None and isinstance(bars.index, pd.DatetimeIndex) and len(bars):
            cut = pd.Timestamp(signal_time(signal))
            index = bars.index if bars.index.tz is not None else bars.index.tz_localize("UTC")
            bars = bars[index <= cut]  # nothing from after the decision time
        if len(bars) < WARMUP_BARS + 1:
            return None, f"the data source has {len(bars)} bars of {symbol} up to the signal, {WARMUP_BARS + 1} needed"
        return bars, ""

    async def log_decision(self, decision: Mapping[str, Any], result: Mapping[str, Any] | None = None) -> int | None:
        """Record what the trader did; returns the decision id (None for an order that never
        opened). A bare decision (no ``features``, no ``bars``) gets its market situation from
        ``data_source`` as :meth:`analyze_signal` does; without one it is journalled but not
        stored for recall (returns None), and a warning says why."""
        agent = await self._ensure()
        situated, why = await self._situated(decision)
        if situated is None:
            agent.journal_unsituated(decision, result, why)
            return None
        return agent.log_decision(situated, result)

    async def close_position(self, decision_id: int, *, pnl: float, return_pct: float | None = None,
                             closed_at: str | datetime | None = None) -> list[dict[str, Any]]:
        """Attach a closed position's outcome; returns the adaptations it caused."""
        changes = (await self._ensure()).close_position(decision_id, pnl=pnl, return_pct=return_pct, closed_at=closed_at)
        return [c.as_dict() for c in changes]

    async def send_command(self, command: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run ``command`` with ``params``; returns the response (or error) envelope as a dict."""
        request = Envelope("command", {"command": command, "params": dict(params or {})})
        return (await self.handle(request)).to_dict()

    async def handle_message(self, raw: str | bytes) -> str:
        """Serialised envelope in, serialised envelope out — what a socket or pipe carries."""
        try:
            request = Envelope.from_json(raw)
        except EnvelopeError as exc:
            reply_to = _peek_id(raw)
            return self._error(reply_to, None, "bad_envelope", str(exc)).to_json()
        return (await self.handle(request)).to_json()

    async def handle(self, request: Envelope) -> Envelope:
        """Dispatch one validated request envelope."""
        if request.type not in REQUEST_TYPES:
            return self._error(request.id, None, "bad_envelope", f"cannot handle a {request.type!r} envelope; send a 'command'")
        name = request.payload.get("command")
        params = request.payload.get("params") or {}
        handler = self._commands.get(str(name))
        if handler is None:
            return self._error(request.id, name, "unknown_command", f"unknown command {name!r}; known: {', '.join(self.commands)}")
        try:
            await self._ensure()
            result = await handler(dict(params))
        except CommandError as exc:
            return self._error(request.id, name, exc.code, str(exc))
        except (InvalidInputError, KeyError, TypeError, ValueError) as exc:
            return self._error(request.id, name, "bad_params", f"{name}: {exc}")
        except Exception as exc:  # the agent keeps running; the caller hears what failed
            log.exception("command %s failed", name)
            self._emit_nowait("error", {"command": name, "message": f"{type(exc).__name__}: {exc}"})
            return self._error(request.id, name, "internal_error", f"{name} failed: {type(exc).__name__}: {exc}")
        return Envelope("response", {"reply_to": request.id, "command": name, "result": _strict(result)})

    def _error(self, reply_to: str | None, command: Any, code: str, message: str) -> Envelope:
        return Envelope("error", {"reply_to": reply_to, "command": command, "code": code, "message": message})

    # -- commands ----------------------------------------------------------------------
    async def _cmd_analyze_market(self, p: dict[str, Any]) -> dict[str, Any]:
        from memlab.agent.brain import trend_label, volatility_label
        from memlab.agent.signal import situation

        symbol, timeframe = _text(p, "symbol"), str(p.get("timeframe", ""))
        if "bars" in p:
            bars = bars_from_params(p["bars"])
        elif self.data_source is not None:
            bars = await self._fetch_bars(symbol, timeframe)
        else:
            raise CommandError(
                "no_market_data",
                f"no bars for {symbol} {timeframe}: pass params.bars (a list of OHLCV bars) "
                "or give the connector a data_source",
            )
        features = situation({"bars": bars})
        strategy = p.get("strategy")
        agent = self.agent
        verdicts = {}
        for action in ("BUY", "SELL"):
            ev = agent.brain.evidence(strategy, action, features)
            verdicts[action] = dict(agent.brain.analysis(ev, strategy, action, features, base_size=agent.base_size()))
        return {
            "symbol": symbol,
            "timeframe": timeframe,
            "as_of": str(bars.index[-1]),
            "features": features,
            "regime": volatility_label(features),
            "trend": trend_label(features),
            "analysis": verdicts,
        }

    async def _cmd_analyze_signal(self, p: dict[str, Any]) -> Any:
        signal = p.get("signal", p)
        if isinstance(signal, Mapping) and "bars" in signal and isinstance(signal["bars"], list):
            signal = {**signal, "bars": bars_from_params(signal["bars"])}
        return await self.analyze_signal(signal)

    async def _cmd_log_decision(self, p: dict[str, Any]) -> Any:
        if not isinstance(p.get("decision"), Mapping):
            raise CommandError("bad_params", "log_decision needs params.decision (an object) and optionally params.result")
        return {"decision_id": await self.log_decision(p["decision"], p.get("result"))}

    async def _cmd_close_position(self, p: dict[str, Any]) -> Any:
        if "decision_id" not in p or "pnl" not in p:
            raise CommandError("bad_params", "close_position needs params.decision_id and params.pnl")
        return {"adaptations": await self.close_position(int(p["decision_id"]), pnl=float(p["pnl"]),
                                                         return_pct=p.get("return_pct"), closed_at=p.get("closed_at"))}

    async def _cmd_core_append(self, p: dict[str, Any]) -> Any:
        block = self.agent.core.append(_text(p, "label"), _text(p, "content"))
        return {"label": block.label, "value": block.value, "limit": block.limit}

    async def _cmd_core_replace(self, p: dict[str, Any]) -> Any:
        block = self.agent.core.replace(_text(p, "label"), _text(p, "old_content"), str(p.get("new_content", "")))
        return {"label": block.label, "value": block.value, "limit": block.limit}

    async def _cmd_archival_insert(self, p: dict[str, Any]) -> Any:
        return {"id": self.agent.remember(_text(p, "content"))}

    async def _cmd_archival_search(self, p: dict[str, Any]) -> Any:
        hits = self.agent.archival.search(_text(p, "query"), limit=int(p.get("limit", 10)))
        return [{"id": int(i), "text": t, "created_at": str(c)} for i, t, c in zip(hits.index, hits["text"], hits["created_at"], strict=True)]

    async def _cmd_status(self, p: dict[str, Any]) -> Any:
        return self.agent.status()

    async def _cmd_calibration(self, p: dict[str, Any]) -> Any:
        report = self.agent.calibration(all_agents=bool(p.get("all_agents", False)))
        return {"brier": report.brier, "baseline_brier": report.baseline_brier, "n": report.n,
                "summary": report.summary(), "table": report.table.reset_index().to_dict(orient="records")}

    # -- events --------------------------------------------------------------------------
    def subscribe(self, callback: Subscriber, types: Sequence[str] | None = None) -> Callable[[], None]:
        """Call ``callback(envelope_dict)`` on events (``decision``, ``adaptation``, ``lesson``,
        ``error``; all when ``types`` is None). Returns a function that unsubscribes.
        Callbacks may be async; one that raises is logged and the others still run
        (:attr:`events`, an :class:`~memlab.events.EventBus`, carries them)."""
        wanted = None if types is None else frozenset(types)
        if wanted is not None and not wanted <= EVENT_TYPES:
            raise InvalidInputError(f"unknown event types {sorted(wanted - EVENT_TYPES)} (known: {sorted(EVENT_TYPES)})")

        @functools.wraps(callback)  # the bus names the callback when it fails
        def deliver(kind: str, envelope: dict[str, Any]) -> None | Awaitable[None]:
            return callback(envelope)

        return self.events.subscribe(deliver, kinds=wanted)

    def _on_agent_event(self, kind: str, payload: dict[str, Any]) -> None:
        self._emit_nowait(kind, payload)

    def _emit_nowait(self, kind: str, payload: dict[str, Any]) -> None:
        self.events.publish(kind, Envelope(kind, {"agent_id": self.agent_id, **_strict(payload)}).to_dict())


def _text(p: Mapping[str, Any], name: str) -> str:
    value = p.get(name)
    if not isinstance(value, str) or not value.strip():
        raise CommandError("bad_params", f"params.{name} must be non-empty text, got {value!r}")
    return value


def _peek_id(raw: str | bytes) -> str | None:
    try:
        doc = json.loads(raw)
        return str(doc["id"]) if isinstance(doc, dict) and "id" in doc else None
    except (ValueError, TypeError):
        return None


# -- development mode: memlab agent (or python -m memlab.connector) --------------------------------
DESCRIPTION = "Talk to the memory agent: one command (--command) or interactive JSON lines on stdin."


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--agent-id", default="trader_001")
    parser.add_argument("--memory-path", default=None, help="memory folder (default $MEM_MEMORY_PATH or data/mem_knowledge/)")
    parser.add_argument("--verbose", action="store_true", help="log at DEBUG level and print events")
    parser.add_argument("--command", default=None, help="run one command and exit (e.g. memory_status)")
    parser.add_argument("--params", default="{}", help="the command's params as JSON")
    parser.add_argument("--llm-base-url", default=os.environ.get("MEM_LLM_BASE_URL"),
                        help="an OpenAI-compatible endpoint for the LLM brain (default $MEM_LLM_BASE_URL; none: default brain)")
    parser.add_argument("--llm-model", default=os.environ.get("MEM_LLM_MODEL", ""),
                        help="the model name (default $MEM_LLM_MODEL); the key is LLM_API_KEY via CredentialManager")
    return parser


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="python -m memlab.connector", description=DESCRIPTION))


def register(sub: Any) -> None:
    """``memlab agent``: the gateway's REPL (see :func:`main`)."""
    parser = sub.add_parser("agent", help="talk to the memory agent (JSON commands; the seed's development mode)",
                            description=DESCRIPTION)
    add_arguments(parser)
    parser.set_defaults(func=lambda args: asyncio.run(_run(args)))


async def _run(args: argparse.Namespace) -> int:
    llm = None
    if args.llm_base_url:
        from memlab.agent.llm_brain import LLMBrain, LLMConfig

        llm = LLMBrain(LLMConfig(base_url=args.llm_base_url, model=args.llm_model))
    connector = MemGPTConnector(agent_id=args.agent_id, memory_path=args.memory_path, llm=llm)
    await connector.initialize()
    if args.verbose:
        connector.subscribe(lambda e: print(json.dumps(e), file=sys.stderr))
    try:
        if args.command:
            try:
                params = json.loads(args.params)
            except json.JSONDecodeError as exc:
                print(f"--params is not JSON: {exc}", file=sys.stderr)
                return 2
            if not isinstance(params, dict):
                print("--params must be a JSON object", file=sys.stderr)
                return 2
            response = await connector.send_command(args.command, params)
            print(json.dumps(_strict(response), indent=2, default=str))
            return 0 if response["type"] == "response" else 1
        print(f"memlab connector {args.agent_id}: type `COMMAND {{json params}}` or a JSON envelope; "
              f"commands: {', '.join(connector.commands)}; Ctrl-D quits", file=sys.stderr)
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return 0
            line = line.strip()
            if not line:
                continue
            if line.startswith("{"):
                print(await connector.handle_message(line), flush=True)
                continue
            name, _, rest = line.partition(" ")
            try:
                params = json.loads(rest) if rest.strip() else {}
            except json.JSONDecodeError as exc:
                print(json.dumps({"type": "error", "payload": {"code": "bad_params", "message": f"params are not JSON: {exc}"}}), flush=True)
                continue
            if not isinstance(params, dict):
                params = {"value": params}
            print(json.dumps(await connector.send_command(name, params), default=str), flush=True)
    finally:
        await connector.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_run(args))
    except MemlabError as exc:
        print(f"memlab.connector: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
