"""The inbound alert: its JSON shape, validation and authentication.

The shape is the common charting-alert one (TradingView and friends)::

    {"id": "tv-8812", "symbol": "BTCUSDT", "side": "buy", "qty": 0.1, "price": 65000,
     "strategy": "momentum", "time": "2025-10-16T14:30:15Z", "passphrase": "..."}

``id`` (or ``alert_id``) and ``time`` (ISO 8601 or epoch seconds/milliseconds) are
required so that replays and stale alerts can be refused; ``qty``, ``price`` and
``strategy`` are optional. Authentication is either an HMAC-SHA256 of the raw body in
the ``X-Memlab-Signature: sha256=<hex>`` header, or, for tools that cannot sign, a
``passphrase`` field equal to the shared secret. Both are compared in constant time.

Fields are strict, and a field that is wrong is refused (400), never coerced or cut:

- ``id``: text (or an integer) of 1 to :data:`MAX_ID` printable characters; a longer
  one is refused, not cut, so two distinct ids can never collide.
- ``qty`` / ``price``: finite, positive JSON numbers; ``true``, ``"0.01"`` or ``1e999``
  are refused. Whether ``qty`` fits the market (its step and minimum, see
  :func:`check_quantity`) is the handler's check, a 422.
- ``time``: between 2000 and 2100 (epoch values above 1e11 are milliseconds); how
  old or early it may be is :class:`~memlab.webhooks.WebhookConfig`'s ``max_age`` /
  ``max_skew`` (5 minutes old, 30 seconds ahead by default).
- ``symbol`` and ``strategy``: at most 64 characters.
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
#: Longest alert id accepted (characters); longer ones are refused, never cut.
MAX_ID = 128
MAX_NAME = 64
#: Plausible alert times, epoch seconds: 2000-01-01 to 2100-01-01 (UTC).
_EARLIEST, _LATEST = 946_684_800.0, 4_102_444_800.0


class AlertRejected(Exception):
    """An alert that is refused; ``status`` is the HTTP status, ``reason`` says why.

    ``retryable`` says whether sending the same alert again can succeed (429, 5xx, or a
    refusal raised with ``retryable=True`` such as "not enough market data yet"): such a
    refusal does not use up the alert's id. The others are final, and the id is spent.
    """

    def __init__(self, status: int, reason: str, *, retryable: bool | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retryable = (status == 429 or status >= 500) if retryable is None else retryable


@dataclass(frozen=True)
class WebhookAlert:
    """A validated, authenticated alert.

    ``retry`` is set by the server when this id was claimed before and not finished (a
    crash, a temporary refusal, a handler error): the handler then looks for the order
    an earlier attempt may have placed (its client id comes from the alert id) before
    placing one.
    """

    alert_id: str
    symbol: str
    action: str  # BUY or SELL
    time: datetime
    qty: float | None = None
    price: float | None = None
    strategy: str = "webhook"
    source: str = ""
    retry: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id, "symbol": self.symbol, "action": self.action,
            "time": self.time.isoformat(), "qty": self.qty, "price": self.price,
            "strategy": self.strategy, "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, retry: bool = False) -> WebhookAlert:
        """Back from :meth:`to_dict` (what the server keeps with a claim)."""
        return cls(alert_id=str(data["alert_id"]), symbol=str(data["symbol"]), action=str(data["action"]),
                   time=datetime.fromisoformat(str(data["time"])), qty=data.get("qty"), price=data.get("price"),
                   strategy=str(data.get("strategy") or "webhook"), source=str(data.get("source") or ""),
                   retry=retry)


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
        if not _EARLIEST <= seconds < _LATEST:
            raise AlertRejected(400, f"'time' {value!r} is not a plausible time (epoch seconds or milliseconds, "
                                     "years 2000-2099)")
        return datetime.fromtimestamp(seconds, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            raise AlertRejected(400, f"'time' {value[:40]!r} is not ISO 8601") from None
        if not _EARLIEST <= parsed.timestamp() < _LATEST:
            raise AlertRejected(400, f"'time' {value[:40]!r} is not a plausible time (years 2000-2099)")
        return parsed
    raise AlertRejected(400, "'time' is required (ISO 8601 or epoch seconds/milliseconds)")


def _positive(payload: dict[str, Any], name: str) -> float | None:
    """A finite, positive JSON number, or None when absent; text and booleans are refused."""
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AlertRejected(400, f"'{name}' must be a JSON number, got {type(value).__name__} {str(value)[:20]!r}")
    number = float(value) if abs(value) < 1e308 else math.inf  # an int too big for a float is not finite
    if not math.isfinite(number) or number <= 0:
        raise AlertRejected(400, f"'{name}' must be a finite positive number, got {str(value)[:24]}")
    return number


def _text(payload: dict[str, Any], *names: str, limit: int = MAX_NAME) -> Any:
    value = next((payload[n] for n in names if n in payload), None)
    if isinstance(value, str) and len(value) > limit:
        raise AlertRejected(400, f"'{names[0]}' is longer than {limit} characters ({len(value)}); it is refused, not cut")
    return value


def check_quantity(qty: float, *, symbol: str, step: float | None, minimum: float | None) -> None:
    """Refuse (422) a quantity finer than the market's ``step`` or below its ``minimum``.

    A dust quantity (1e-300) would be placed and could then never be sold; one finer than
    the step would be rounded by the venue into a different order than the alert asked.
    """
    if minimum is not None and qty < minimum * (1 - 1e-9):
        raise AlertRejected(422, f"'qty' {qty:g} is below {symbol}'s minimum order size {minimum:g}")
    if step:
        units = qty / step  # a whole number of steps, up to float rounding
        if abs(units - round(units)) > max(1e-9, units * 1e-12):
            raise AlertRejected(422, f"'qty' {qty!r} is finer than {symbol}'s precision: a multiple of {step:g}")


def check_alert_position(action: str, symbol: str, *, held: float, buying: bool) -> None:
    """Refuse an alert a spot book cannot take: a BUY while long (or buying), 409; a SELL
    with nothing held, 422."""
    if action == "BUY" and (held > 1e-12 or buying):
        raise AlertRejected(409, f"already long {symbol} (or buying): a spot book holds one position")
    if action == "SELL" and held <= 1e-12:
        raise AlertRejected(422, f"nothing to sell: no {symbol.partition('/')[0]} held")


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
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise AlertRejected(400, f"body is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(payload, dict):
        raise AlertRejected(400, "body must be a JSON object")
    authenticate(body, payload, signature, secret)
    alert_id = _text(payload, "id", "alert_id", limit=MAX_ID)
    if isinstance(alert_id, int) and not isinstance(alert_id, bool):
        alert_id = str(alert_id)
    if not isinstance(alert_id, str) or alert_id == "" or len(alert_id) > MAX_ID:
        raise AlertRejected(400, f"'id' (or 'alert_id') is required, text of 1-{MAX_ID} characters, so replays "
                                 "can be refused")
    if not alert_id.isprintable():
        raise AlertRejected(400, "'id' must be printable text")
    symbol = _text(payload, "symbol", "ticker")
    if not isinstance(symbol, str) or not symbol.strip():
        raise AlertRejected(400, "'symbol' is required")
    side = payload.get("side", payload.get("action"))
    if not isinstance(side, str) or side.lower() not in _SIDES:
        raise AlertRejected(400, f"'side' must be one of {sorted(_SIDES)}")
    strategy = _text(payload, "strategy") or "webhook"
    if not isinstance(strategy, str):
        raise AlertRejected(400, "'strategy' must be text")
    return WebhookAlert(
        alert_id=alert_id,
        symbol=symbol.strip(),
        action=_SIDES[side.lower()],
        time=_parse_time(payload.get("time", payload.get("timestamp"))),
        qty=_positive(payload, "qty"),
        price=_positive(payload, "price"),
        strategy=strategy,
        source=source,
    )
