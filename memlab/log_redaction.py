"""Keeps secrets out of every log line: known secret values and credential-bearing fields are masked.

Two things are masked wherever they appear in a log record (message, arguments,
traceback, stack) and in the CLI's error lines:

- every secret value memlab knows: each value a
  :class:`~memlab.credentials.CredentialManager` loads (they register themselves), each
  environment variable whose name says it is a secret (``*_API_KEY``, ``*_SECRET``,
  ``*_PASSPHRASE``, ``*_TOKEN``, ``*_PASSWORD``, ``MEM_ENCRYPTION_KEY``…), and whatever
  :func:`register_secret` was given — also URL-encoded;
- the value of any field whose name says it carries a credential, in the shapes HTTP
  clients log them: headers (``'X-MBX-APIKEY': '…'``, ``Authorization: Bearer …``), query
  strings and form bodies (``apiKey=…&signature=…``) and JSON (``"secret": "…"``).

:func:`install` wires it in: a filter on every handler of the root logger, the same filter
on the loggers of the HTTP/exchange libraries memlab uses (ccxt logs request headers and
signed URLs at DEBUG), and a log-record factory that masks each record as it is made, so a
handler added later (a library's, a notebook's) cannot print a secret either.

>>> register_secret("k3y-0123456789")
>>> redact("GET /api/v3/account?timestamp=1&signature=9f86d08 {'X-MBX-APIKEY': 'k3y-0123456789'}")
"GET /api/v3/account?timestamp=1&signature=**** {'X-MBX-APIKEY': '****'}"
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "****"
#: Shorter values are not masked on their own: they would blank out ordinary words and numbers.
MIN_SECRET_LENGTH = 4
#: Settings, not secrets, though a secret-sounding variable may hold them (``*_TOKEN=true``).
_NOT_SECRETS = frozenset({"true", "false", "yes", "none", "null", "disabled", "enabled"})

#: Parts of a field or variable name that mark its value as a credential.
SECRET_NAME_PARTS: tuple[str, ...] = (
    "apikey", "api_key", "api-key", "secret", "signature", "passphrase", "password", "passwd",
    "token", "authorization", "access-key", "access_key", "accesskey", "private_key", "private-key",
    "encryption_key", "encryption-key", "credential", "session-id", "sessionid",
)
#: Exact field names that are credentials though no part says so (exchange signing headers).
SECRET_NAMES: frozenset[str] = frozenset({"sign", "x-api-key", "x-bapi-sign", "cb-access-sign", "ok-access-sign",
                                          "kc-api-sign", "key-id", "auth"})

#: Third-party loggers that log requests (headers, URLs, bodies) at DEBUG.
THIRD_PARTY_LOGGERS: tuple[str, ...] = (
    "ccxt", "ccxt.base.exchange", "ccxt.async_support.base.exchange", "ccxt.base.exchange.ws",
    "aiohttp", "aiohttp.client", "aiohttp.access", "aiohttp.server", "aiohttp.web",
    "urllib3", "urllib3.connectionpool", "requests", "websockets", "websockets.client", "httpx", "httpcore",
    "asyncio", "openai",
)

_values: set[str] = set()
_lock = threading.Lock()
_values_pattern: re.Pattern[str] | None = None

_NAME = r"[A-Za-z][\w.\-]*"
# 'name': 'value' / "name": "value" (Python reprs of header dicts, JSON bodies)
_QUOTED = re.compile(r"""(?P<q>['"])(?P<name>""" + _NAME + r""")(?P=q)(?P<sep>\s*:\s*)(?P<vq>['"])(?P<value>.*?)(?P=vq)""")
# name=value (query strings, form bodies, reprs of keyword arguments)
_ASSIGNED = re.compile(r"""(?P<name>""" + _NAME + r""")(?P<sep>=)(?P<vq>['"]?)(?P<value>[^&=\s'",;)\]}]+)""")
# Name: value (raw HTTP headers), with an optional auth scheme
_HEADER = re.compile(r"""(?P<name>""" + _NAME + r""")(?P<sep>:[ \t]*)(?P<scheme>(?:Bearer|Basic|Token|Digest)[ \t]+)?"""
                     r"""(?P<value>[^\s,;'"]+)""")


def is_secret_name(name: str) -> bool:
    """Whether a field or variable called ``name`` holds a credential."""
    lowered = name.lower()
    return (lowered in SECRET_NAMES or any(part in lowered for part in SECRET_NAME_PARTS)
            or lowered.endswith(("-sign", "_sign")))


def register_secret(*values: str | None) -> None:
    """Mask these values in every log record from now on (plain and URL-encoded)."""
    global _values_pattern
    fresh = set()
    for value in values:
        if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH and value.lower() not in _NOT_SECRETS:
            fresh |= {value, quote(value, safe=""), quote_plus(value)}
    with _lock:
        if fresh - _values:
            _values.update(fresh)
            ordered = sorted(_values, key=len, reverse=True)  # longest first: no half-masked values
            _values_pattern = re.compile("|".join(re.escape(v) for v in ordered))


def register_environment(environ: Mapping[str, str] | None = None) -> None:
    """Register the value of every environment variable whose name says it is a secret."""
    env = os.environ if environ is None else environ
    register_secret(*(value for name, value in env.items() if is_secret_name(name)))


def _mask_field(match: re.Match[str]) -> str:
    if not is_secret_name(match.group("name")) or match.group("value") == MASK:
        return match.group(0)
    start, end = match.span("value")
    whole = match.group(0)
    offset = match.start()
    return whole[: start - offset] + MASK + whole[end - offset :]


def redact(text: str) -> str:
    """``text`` with every known secret value and every credential field's value masked."""
    if not text:
        return text
    pattern = _values_pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for field in (_QUOTED, _ASSIGNED, _HEADER):
        text = field.sub(_mask_field, text)
    return text


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask ``record`` in place: its message (arguments merged in), traceback and stack."""
    if getattr(record, "_memlab_redacted", False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # a malformed record: leave it to logging's own error report
        return record
    record.msg, record.args = redact(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    record._memlab_redacted = True  # type: ignore[attr-defined]
    return record


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in every record it sees (and never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_FILTER = RedactingFilter()
_previous_factory: Any = None


def _attach(target: logging.Logger | logging.Handler) -> None:
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(_FILTER)


def install(extra_loggers: Iterable[str] = ()) -> None:
    """Mask secrets in everything logged in this process (see the module docstring).

    Idempotent; call it after the handlers are set up (the CLI does, after
    ``logging.basicConfig``)."""
    global _previous_factory
    register_environment()
    root = logging.getLogger()
    for handler in root.handlers:
        _attach(handler)
    for name in (*THIRD_PARTY_LOGGERS, *extra_loggers):
        logger = logging.getLogger(name)
        _attach(logger)
        for handler in logger.handlers:
            _attach(handler)
    with _lock:
        if _previous_factory is not None:
            return
        make_record = logging.getLogRecordFactory()

        def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return redact_record(make_record(*args, **kwargs))

        logging.setLogRecordFactory(redacting_factory)
        _previous_factory = make_record


def uninstall() -> None:
    """Undo :func:`install` (tests): the previous record factory, no filters."""
    global _previous_factory
    with _lock:
        if _previous_factory is not None:
            logging.setLogRecordFactory(_previous_factory)
            _previous_factory = None
    targets: list[logging.Logger | logging.Handler] = [*logging.getLogger().handlers]
    for name in THIRD_PARTY_LOGGERS:
        logger = logging.getLogger(name)
        targets += [logger, *logger.handlers]
    for target in targets:
        target.removeFilter(_FILTER)
