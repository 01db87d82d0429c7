"""Credentials: loaded from the environment and .env, never shown, rotated, audited."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memlab import CredentialManager, MemoryStores
from memlab.credentials import MissingCredentialsError, RedactSecrets, Secret

KEY = "BYBITKEY0123456789wxyz"
SECRET = "bybit-secret-DO-NOT-LEAK-5f3a9c"
PASS = "passphrase-DO-NOT-LEAK-77"


@pytest.fixture
def env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.endswith(("_API_KEY", "_API_SECRET", "_PASSPHRASE")):
            monkeypatch.delenv(name)
    path = tmp_path / ".env"
    path.write_text(f"BYBIT_API_KEY={KEY}\nBYBIT_API_SECRET={SECRET}\nBYBIT_PASSPHRASE={PASS}\n")
    return path


def manager(env_file: Path, **kw: object) -> CredentialManager:
    return CredentialManager(env_file, audit_path=env_file.parent / "access.log", **kw)  # type: ignore[arg-type]


def test_loads_from_env_file_and_environment_wins(
    env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALPACA_API_KEY", "alpaca-key-0123456789")
    monkeypatch.setenv("ALPACA_API_SECRET", "alpaca-secret")
    monkeypatch.setenv("BYBIT_API_SECRET", "from-environment")
    creds = manager(env_file)
    assert creds.brokers() == ["alpaca", "bybit"]
    assert creds.has_credentials("bybit") and creds.has_credentials("ALPACA")
    assert not creds.has_credentials("binance")
    bybit = creds.get_broker_credentials("bybit")
    assert bybit.api_key.reveal() == KEY
    assert bybit.api_secret is not None and bybit.api_secret.reveal() == "from-environment"
    assert bybit.ccxt_config() == {"apiKey": KEY, "secret": "from-environment", "password": PASS}


def test_missing_credentials_name_the_variables(env_file: Path) -> None:
    with pytest.raises(MissingCredentialsError, match="BINANCE_US_API_KEY, BINANCE_US_API_SECRET"):
        manager(env_file).get_broker_credentials("binance-us")


def test_secrets_never_show_in_repr_str_format_pickle_or_logs(
    env_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    creds = manager(env_file)
    bybit = creds.get_broker_credentials("bybit")
    log = logging.getLogger("memlab.test")
    log.addFilter(RedactSecrets(creds))
    with caplog.at_level(logging.DEBUG):
        log.info("credentials %r %s", bybit, bybit.api_secret)
        log.info(f"f-string {bybit.api_secret} {bybit.passphrase!r} {bybit}")
        log.info("raw value slipped in: %s", SECRET)  # redacted by the filter
        try:
            creds.get_broker_credentials("kraken")
        except MissingCredentialsError as exc:
            log.exception("lookup failed: %s", exc)
    shown = caplog.text + repr(creds) + repr(bybit) + str(bybit) + f"{bybit.api_key}"
    for secret in (SECRET, PASS, KEY):
        assert secret not in shown
    assert "****wxyz" in repr(bybit)  # enough to tell keys apart
    for thing in (bybit, bybit.api_secret, creds):
        with pytest.raises(TypeError):
            pickle.dumps(thing)


def test_every_access_is_audited_without_values(env_file: Path) -> None:
    creds = manager(env_file)
    creds.get_broker_credentials("bybit")
    with pytest.raises(MissingCredentialsError):
        creds.get_broker_credentials("kraken")
    records = creds.access_log()
    assert [(r["broker"], r["granted"]) for r in records] == [("bybit", True), ("kraken", False)]
    assert "test_credentials:test_every_access_is_audited" in records[0]["caller"]
    text = (env_file.parent / "access.log").read_text()
    assert SECRET not in text and KEY not in text and PASS not in text
    assert oct((env_file.parent / "access.log").stat().st_mode & 0o777) == "0o600"


def test_rotation_takes_effect_without_restart(env_file: Path) -> None:
    creds = manager(env_file)
    assert creds.get_broker_credentials("bybit").api_secret.reveal() == SECRET  # type: ignore[union-attr]
    time.sleep(0.01)
    env_file.write_text(f"BYBIT_API_KEY={KEY}\nBYBIT_API_SECRET=rotated-secret-2\n")
    os.utime(env_file, ns=(time.time_ns(), time.time_ns()))
    assert creds.get_broker_credentials("bybit").api_secret.reveal() == "rotated-secret-2"  # type: ignore[union-attr]
    assert creds.get_broker_credentials("bybit").passphrase is None


def test_secrets_stay_out_of_memory_files(env_file: Path, memory_dir: Path) -> None:
    creds = manager(env_file)
    bybit = creds.get_broker_credentials("bybit")
    with MemoryStores(memory_dir) as mem:
        mem.journal.append({"Broker": "bybit", "Key": bybit.api_key, "Secret": bybit.api_secret})
        mem.parameters.set("broker", str(bybit), reason=f"connected with {bybit.api_secret}")
    for path in memory_dir.iterdir():
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data and KEY.encode() not in data, path


def test_secret_equality_does_not_leak(env_file: Path) -> None:
    assert Secret("abc") == Secret("abc") and Secret("abc") != Secret("abd")
    assert Secret("abc") != "abc"


def test_verify_credentials_command_masks_secrets(env_file: Path, tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("_API_KEY", "_API_SECRET", "_PASSPHRASE"))
    }
    env["MEM_MEMORY_PATH"] = str(tmp_path / "mem")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "memlab.cli",
            "verify-credentials",
            "--env-file",
            str(env_file),
            "bybit",
            "kraken",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1  # kraken is required and missing
    assert "bybit" in done.stdout and "ok" in done.stdout and "KRAKEN_API_KEY" in done.stdout
    for secret in (SECRET, PASS, KEY):
        assert secret not in done.stdout + done.stderr
