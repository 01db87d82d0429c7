"""Broker credentials from the environment and an optional ``.env``, never shown.

Convention: ``<BROKER>_API_KEY``, ``<BROKER>_API_SECRET`` and optionally
``<BROKER>_PASSPHRASE`` (broker name upper-cased, non-alphanumerics as ``_``); a
webhook's shared secret is ``<NAME>_WEBHOOK_SECRET``.
Variables already in the environment win over ``.env``. Values come back wrapped in
:class:`Secret`, whose repr, str, format and pickling never show them; every access is
appended to an audit log (when, which broker, which caller) without the values.
Every value a manager loads is registered with :mod:`memlab.log_redaction`, so it is
masked in every log record of the process, whoever logs it.

>>> import os
>>> os.environ["DEMO_API_KEY"], os.environ["DEMO_API_SECRET"] = "AKIA0123456789abcd", "s3cr3t-value"
>>> creds = CredentialManager(env_file=None, audit_path=None).get_broker_credentials("demo")
>>> creds
BrokerCredentials(broker='demo', api_key=Secret('****abcd'), api_secret=Secret('****'), passphrase=None)
>>> creds.api_secret.reveal()
's3cr3t-value'
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from memlab.config import memory_path
from memlab.errors import ConfigurationError, InvalidInputError
from memlab.log_redaction import redact, register_secret
from memlab.memory.durable import append_durable, ensure_private_dir

log = logging.getLogger(__name__)

CREDENTIAL_AUDIT_FILE = "credential_access.log"
_SUFFIXES = ("_API_KEY", "_API_SECRET", "_PASSPHRASE", "_WEBHOOK_SECRET")


class Secret:
    """A secret string that does not show itself: use :meth:`reveal` at the point of use."""

    __slots__ = ("_value", "_hint")

    def __init__(self, value: str, *, hint_last: int = 0) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret holds text")
        self._value = value
        # A key id's last 4 characters help a person tell keys apart; secrets show nothing.
        self._hint = value[-hint_last:] if hint_last and len(value) >= 16 else ""

    def reveal(self) -> str:
        """The secret value. Pass it straight to the client that needs it; never print it."""
        return self._value

    def masked(self) -> str:
        return f"****{self._hint}"

    def __repr__(self) -> str:
        return f"Secret({self.masked()!r})"

    __str__ = masked

    def __format__(self, spec: str) -> str:
        return self.masked()

    def __eq__(self, other: object) -> bool:
        import hmac

        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled (it would write the value out)")

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self


@dataclass(frozen=True, repr=True)
class BrokerCredentials:
    """One broker's credentials; every value is a :class:`Secret`."""

    broker: str
    api_key: Secret
    api_secret: Secret | None
    passphrase: Secret | None = None

    def __reduce__(self) -> Any:
        raise TypeError("credentials cannot be pickled (they would write the secrets out)")

    def ccxt_config(self) -> dict[str, str]:
        """The ``apiKey``/``secret``/``password`` dict a ccxt exchange takes."""
        config = {"apiKey": self.api_key.reveal()}
        if self.api_secret is not None:
            config["secret"] = self.api_secret.reveal()
        if self.passphrase is not None:
            config["password"] = self.passphrase.reveal()
        return config


class MissingCredentialsError(ConfigurationError):
    """No (complete) credentials for a broker; the message names the variables to set."""


def env_prefix(broker: str) -> str:
    """``"bybit"`` → ``"BYBIT"``; ``"binance-us"`` → ``"BINANCE_US"``."""
    if not isinstance(broker, str) or not broker.strip():
        raise InvalidInputError(f"broker name must be non-empty text, got {broker!r}")
    return re.sub(r"[^A-Za-z0-9]", "_", broker.strip()).upper()


class CredentialManager:
    """Loads, hands out, rotates and audits broker credentials.

    ``env_file`` is the ``.env`` to read (default ``.env`` in the working directory;
    None for none). The file is re-read when it changes on disk, and :meth:`reload`
    re-reads it and the environment at once: rotated keys take effect without a restart.
    """

    def __init__(
        self,
        env_file: str | os.PathLike[str] | None = ".env",
        *,
        environ: Mapping[str, str] | None = None,
        audit_path: str | os.PathLike[str] | None | bool = True,
    ) -> None:
        self.env_file = Path(env_file) if env_file is not None else None
        self._environ = environ
        if audit_path is True:
            audit_path = memory_path() / CREDENTIAL_AUDIT_FILE
        self.audit_path = Path(audit_path) if audit_path else None
        self._lock = threading.Lock()
        self._values: dict[str, str] = {}
        self._env_mtime: float | None = None
        self.loaded_at: datetime | None = None
        self.reload()

    def __repr__(self) -> str:
        return f"CredentialManager(env_file={str(self.env_file) if self.env_file else None!r}, brokers={self.brokers()})"

    def __reduce__(self) -> Any:
        raise TypeError("a CredentialManager cannot be pickled (it holds secrets)")

    # -- loading -----------------------------------------------------------------
    def reload(self) -> None:
        """Re-read ``.env`` and the environment (credential rotation)."""
        with self._lock:
            values: dict[str, str] = {}
            mtime = None
            if self.env_file is not None and self.env_file.exists():
                mtime = self.env_file.stat().st_mtime_ns
                for key, value in dotenv_values(self.env_file).items():
                    if value is not None and key.endswith(_SUFFIXES):
                        values[key] = value
            env = os.environ if self._environ is None else self._environ
            for key, value in env.items():
                if key.endswith(_SUFFIXES) and value:
                    values[key] = value  # the environment wins over .env
            register_secret(*values.values())  # before any code can log them
            self._values = values
            self._env_mtime = mtime
            self.loaded_at = datetime.now(UTC)

    def _maybe_reload(self) -> None:
        if self.env_file is None:
            return
        try:
            mtime = self.env_file.stat().st_mtime_ns if self.env_file.exists() else None
        except OSError:
            return
        if mtime != self._env_mtime:
            log.info("credentials file %s changed; reloading", self.env_file)
            self.reload()

    # -- access ------------------------------------------------------------------
    def brokers(self) -> list[str]:
        """Brokers with at least an API key configured (lower-case names)."""
        names = {k[: -len("_API_KEY")].lower() for k in self._values if k.endswith("_API_KEY")}
        return sorted(names)

    def has_credentials(self, broker: str, *, require_secret: bool = True) -> bool:
        """Whether ``broker`` has an API key (and, by default, a secret)."""
        self._maybe_reload()
        prefix = env_prefix(broker)
        if not self._values.get(f"{prefix}_API_KEY"):
            return False
        return bool(self._values.get(f"{prefix}_API_SECRET")) or not require_secret

    def get_broker_credentials(
        self, broker: str, *, require_secret: bool = True
    ) -> BrokerCredentials:
        """The credentials of ``broker``; every call is audited."""
        self._maybe_reload()
        prefix = env_prefix(broker)
        key = self._values.get(f"{prefix}_API_KEY")
        secret = self._values.get(f"{prefix}_API_SECRET")
        passphrase = self._values.get(f"{prefix}_PASSPHRASE")
        ok = bool(key) and (bool(secret) or not require_secret)
        self._audit(broker, granted=ok)
        if not ok:
            needed = [f"{prefix}_API_KEY"] + ([f"{prefix}_API_SECRET"] if require_secret else [])
            missing = [name for name in needed if not self._values.get(name)]
            where = f" or in {self.env_file}" if self.env_file is not None else ""
            raise MissingCredentialsError(
                f"no credentials for {broker!r}: set {', '.join(missing)} in the environment{where}"
            )
        assert key is not None
        return BrokerCredentials(
            broker=broker,
            api_key=Secret(key, hint_last=4),
            api_secret=Secret(secret) if secret else None,
            passphrase=Secret(passphrase) if passphrase else None,
        )

    def get_webhook_secret(self, name: str) -> Secret:
        """The shared secret of webhook ``name`` (``<NAME>_WEBHOOK_SECRET``); audited."""
        self._maybe_reload()
        var = f"{env_prefix(name)}_WEBHOOK_SECRET"
        value = self._values.get(var)
        self._audit(f"webhook:{name}", granted=bool(value))
        if not value:
            where = f" or in {self.env_file}" if self.env_file is not None else ""
            raise MissingCredentialsError(f"no shared secret for webhook {name!r}: set {var} in the environment{where}")
        return Secret(value)

    def secret_values(self) -> list[str]:
        """Every loaded secret value, for redaction filters only (never log the result)."""
        return [v for v in self._values.values() if v]

    # -- audit -------------------------------------------------------------------
    def _audit(self, broker: str, *, granted: bool) -> None:
        if self.audit_path is None:
            return
        record = {
            "time": datetime.now(UTC).isoformat(timespec="microseconds"),
            "broker": broker,
            "granted": granted,
            "caller": _caller(),
            "pid": os.getpid(),
        }
        ensure_private_dir(self.audit_path.parent)
        append_durable(self.audit_path, (json.dumps(record) + "\n").encode())

    def access_log(self) -> list[dict[str, Any]]:
        """The audit records, oldest first."""
        if self.audit_path is None or not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines() if line]


def _caller() -> str:
    """``module:function:line`` of the first frame outside this module."""
    frame = inspect.currentframe()
    try:
        while frame is not None and frame.f_globals.get("__name__") == __name__:
            frame = frame.f_back
        if frame is None:
            return "unknown"
        return f"{frame.f_globals.get('__name__', '?')}:{frame.f_code.co_name}:{frame.f_lineno}"
    finally:
        del frame


class RedactSecrets(logging.Filter):
    """A logging filter that masks any loaded secret value (and any credential field, see
    :func:`memlab.log_redaction.redact`) that slips into a record. The CLI installs the
    same masking process-wide (:func:`memlab.log_redaction.install`)."""

    def __init__(self, manager: CredentialManager) -> None:
        super().__init__()
        self._manager = manager

    def filter(self, record: logging.LogRecord) -> bool:
        register_secret(*self._manager.secret_values())  # rotated values too
        message = record.getMessage()
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


# -- command line ------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "verify-credentials",
        help="list which brokers are configured (secrets masked)",
        description="List which brokers have credentials in the environment or .env; values are masked.",
    )
    parser.add_argument("--env-file", default=".env", help="the .env file to read (default: .env)")
    parser.add_argument(
        "brokers", nargs="*", help="brokers that must be configured (exit 1 if not)"
    )
    parser.set_defaults(func=_verify_command)


def _verify_command(args: argparse.Namespace) -> int:
    manager = CredentialManager(args.env_file, audit_path=True)
    names = sorted(set(manager.brokers()) | {b.lower() for b in args.brokers})
    if not names:
        print("no broker credentials configured (set <BROKER>_API_KEY and <BROKER>_API_SECRET)")
    missing = 0
    for name in names:
        prefix = env_prefix(name)
        if manager.has_credentials(name):
            creds = manager.get_broker_credentials(name)
            extra = ", passphrase set" if creds.passphrase else ""
            print(f"{name:<16} ok       key {creds.api_key.masked()}, secret ****{extra}")
        elif manager.has_credentials(name, require_secret=False):
            print(f"{name:<16} partial  {prefix}_API_SECRET missing")
            missing += name in {b.lower() for b in args.brokers}
        else:
            print(f"{name:<16} missing  set {prefix}_API_KEY and {prefix}_API_SECRET")
            missing += 1
    return 1 if missing else 0
