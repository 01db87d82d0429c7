"""The inbound alert: its JSON shape, validation and authentication.

The shape is the common charting-alert one (TradingView and friends)::

    {"id": "tv-8812", "symbol": "BTCUSDT", "side": "buy", "qty": 0.1, "price": 65000,
     "strategy": "momentum", "time": "2025-10-16T14:30:15Z", "passphrase": "..."}

``id`` (or ``alert_id``) and ``time`` (ISO 8601 or epoch seconds/milliseconds) are
required so that replays and stale alerts can be refused; ``qty``, ``price`` and
``strategy`` are optional. Authentication is either an HMAC-SHA256 of the raw body in
the ``X-Memlab-Signature: sha256=<hex>`` header, or, for tools that cannot sign, a
``passphrase`` field equal to the shared secret. Both are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SIGNATURE_HEADER = "X-Memlab-Signature"
_SIDES = {"buy": "BUY", "long": "BUY", "sell": "SELL", "short": "SELL", "close": "SELL"}


class AlertRejected(Exception):
    """An alert that is refused; ``status`` is the HTTP status, ``reason`` says why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class WebhookAlert:
    """A validated, authenticated alert."""

    alert_id: str
    symbol: str
    action: str  # BUY or SELL
    time: datetime
    qty: float | None = None
    price: float | None = None
    strategy: str = "webhook"
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id, "symbol": self.symbol, "action": self.action,
            "time": self.time.isoformat(), "qty": self.qty, "price": self.price,
            "strategy": self.strategy, "source": self.source,
        }


def sign(body: bytes, secret: str) -> str:
    """The signature header value for ``body`` (what a sender puts in X-Memlab-Signature)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _parse_time(value: Any) -> datetime:
    if isinstance(value, bool):
        raise AlertRejected(400, "'time' must be ISO 8601 or epoch seconds/milliseconds")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise AlertRejected(400, "'time' must be finite")
        seconds = value / 1000.0 if value > 1e11 else float(value)
        return datetime.fromtimestamp(seconds, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise AlertRejected(400, f"'time' {value[:40]!r} is not ISO 8601") from None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    raise AlertRejected(400, "'time' is required (ISO 8601 or epoch seconds/milliseconds)")


def _positive(payload: dict[str, Any], name: str) -> float | None:
    value = payload.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AlertRejected(400, f"'{name}' must be a number") from None
    if not math.isfinite(number) or number <= 0:
        raise AlertRejected(400, f"'{name}' must be a positive number")
    return number


def authenticate(body: bytes, payload: dict[str, Any], signature: str | None, secret: str) -> None:
    """Accept a valid HMAC signature header or a matching passphrase field, else 401."""
    if signature:
        if not hmac.compare_digest(signature.strip().encode(), sign(body, secret).encode()):
            raise AlertRejected(401, "bad signature")
        return
    passphrase = payload.get("passphrase")
    if isinstance(passphrase, str) and passphrase:
        if not hmac.compare_digest(passphrase.encode(), secret.encode()):
            raise AlertRejected(401, "bad passphrase")
        return
    raise AlertRejected(401, f"unsigned: send an {SIGNATURE_HEADER} header or a passphrase field")


def parse_alert(body: bytes, *, signature: str | None, secret: str, source: str = "") -> WebhookAlert:
    """Decode, authenticate and validate one alert body; raises :class:`AlertRejected`."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AlertRejected(400, f"body is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(payload, dict):
        raise AlertRejected(400, "body must be a JSON object")
    authenticate(body, payload, signature, secret)
    alert_id = payload.get("id", payload.get("alert_id"))
    if not isinstance(alert_id, (str, int)) or isinstance(alert_id, bool) or str(alert_id) == "":
        raise AlertRejected(400, "'id' (or 'alert_id') is required so replays can be refused")
    symbol = payload.get("symbol", payload.get("ticker"))
    if not isinstance(symbol, str) or not symbol.strip():
        raise AlertRejected(400, "'symbol' is required")
    side = payload.get("side", payload.get("action"))
    if not isinstance(side, str) or side.lower() not in _SIDES:
        raise AlertRejected(400, f"'side' must be one of {sorted(_SIDES)}")
    strategy = payload.get("strategy") or "webhook"
    if not isinstance(strategy, str):
        raise AlertRejected(400, "'strategy' must be text")
    return WebhookAlert(
        alert_id=str(alert_id)[:128],
        symbol=symbol.strip(),
        action=_SIDES[side.lower()],
        time=_parse_time(payload.get("time", payload.get("timestamp"))),
        qty=_positive(payload, "qty"),
        price=_positive(payload, "price"),
        strategy=strategy[:64],
        source=source,
    )
