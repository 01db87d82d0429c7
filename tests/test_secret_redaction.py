"""Secrets stay secret at every log level: a real `memlab -v paper --mode live` process talks to
the loopback Binance, with ccxt logging every request (headers, signed URLs) at DEBUG, and
neither its stdout, its stderr nor its memory folder holds the key or the secret.

The only thing the test changes in the process is where Binance is (the emulator's address,
as a DNS entry would); a control run with the redaction switched off shows the same scan
finding the key, so the scan can fail.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from memlab import log_redaction
from memlab.credentials import CredentialManager
from memlab.log_redaction import MASK, RedactingFilter, redact, register_secret
from tests.support.exchange_emulator import BinanceEmulator

KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"  # Binance-shaped
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"

#: Runs `memlab` in this process with Binance's REST addresses pointing at the emulator.
LAUNCHER = '''
import json, sys
import ccxt.async_support as ccxt_async
settings = json.loads(sys.argv[1])

class Binance(ccxt_async.binance):
    def describe(self):
        described = super().describe()
        described["urls"]["api"] = dict.fromkeys(described["urls"]["api"], settings["api"])
        described["options"] = {**described["options"], **settings["options"]}
        return described

ccxt_async.binance = Binance
if settings["without_redaction"]:  # the control run: what a process without the filter prints
    import memlab.log_redaction
    memlab.log_redaction.install = lambda *a, **k: None
from memlab.cli import main
raise SystemExit(main(sys.argv[2:]))
'''


def live_session(tmp_path: Path, emu: BinanceEmulator, *, without_redaction: bool = False,
                 key: str = KEY, secret: str = SECRET) -> tuple[subprocess.CompletedProcess[str], Path]:
    launcher = tmp_path / "launch_memlab.py"
    launcher.write_text(LAUNCHER)
    memory = tmp_path / ("control" if without_redaction else "memory")
    cfg = emu.ccxt_config()
    settings = {"api": f"{emu.url}/api/v3", "options": cfg["options"], "without_redaction": without_redaction}
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_SECRET"))}
    env.update(BINANCE_API_KEY=key, BINANCE_API_SECRET=secret, MEM_MEMORY_PATH=str(memory))
    done = subprocess.run(
        [sys.executable, str(launcher), json.dumps(settings), "-v", "paper", "--mode", "live", "--confirm-live",
         "--symbol", "BTC/USDT", "--strategy", "sma_cross", "--param", "fast=3", "--param", "slow=8",
         "--synthetic", "400", "--max-bars", "120", "--sizing", "full"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    return done, memory


@pytest.fixture()
def emu() -> Any:
    # The venue's price sits below the replayed market's, so every full-size buy is affordable.
    with BinanceEmulator(balances={"USDT": 10_000.0}, markets={"BTC/USDT": 50.0}, api_key=KEY, api_secret=SECRET) as e:
        yield e


def test_a_verbose_live_session_never_shows_the_key_or_secret(tmp_path: Path, emu: BinanceEmulator) -> None:
    done, memory = live_session(tmp_path, emu)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    # It did talk to the venue, signed, at DEBUG: orders placed and requests logged.
    assert len(emu.orders) > 2 and "ccxt.base.exchange" in done.stderr
    assert "'X-MBX-APIKEY': '****'" in done.stderr and "signature=****" in done.stderr
    assert output.count(KEY) == 0 and output.count(SECRET) == 0
    assert "signature=" not in output.replace("signature=****", "")  # no request signature either
    for path in memory.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert KEY.encode() not in data and SECRET.encode() not in data, path


def test_the_scan_finds_the_key_when_redaction_is_off(tmp_path: Path, emu: BinanceEmulator) -> None:
    """The control: the same session with the filter switched off prints the key (ccxt's
    request headers), so the test above fails if redaction ever stops working."""
    done, _ = live_session(tmp_path, emu, without_redaction=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (done.stdout + done.stderr).count(KEY) > 2


def test_an_exchange_refusal_is_one_line_without_the_key(tmp_path: Path, emu: BinanceEmulator) -> None:
    done, _ = live_session(tmp_path, emu, key=KEY[::-1], secret=SECRET[::-1])  # keys the venue does not know
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("memlab: error: the exchange refused: AuthenticationError"), last
    assert "Traceback" not in done.stderr
    assert KEY[::-1] not in done.stdout + done.stderr and SECRET[::-1] not in done.stdout + done.stderr


# -- the shapes secrets take in logs ------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("GET https://api.binance.com/api/v3/account?timestamp=1&recvWindow=5000&signature=4f2a9c",
         "GET https://api.binance.com/api/v3/account?timestamp=1&recvWindow=5000&signature=****"),
        ("Request: {'X-MBX-APIKEY': 'abcdEFGH1234', 'User-Agent': 'python'}",
         "Request: {'X-MBX-APIKEY': '****', 'User-Agent': 'python'}"),
        ('{"apiKey": "abcdEFGH1234", "symbol": "BTCUSDT"}', '{"apiKey": "****", "symbol": "BTCUSDT"}'),
        ("Authorization: Bearer eyJhbGciOi.x.y", "Authorization: Bearer ****"),
        ("OK-ACCESS-KEY: k1234567 OK-ACCESS-SIGN: s1234567 OK-ACCESS-PASSPHRASE: p1234567",
         "OK-ACCESS-KEY: **** OK-ACCESS-SIGN: **** OK-ACCESS-PASSPHRASE: ****"),
        ("POST /order body=timestamp=1&apiKey=zz12345678&sign=ff00", "POST /order body=timestamp=1&apiKey=****&sign=****"),
        ("ccxt.binance({'apiKey': 'x', 'secret': 'y'}) and password='hunter22'",
         "ccxt.binance({'apiKey': '****', 'secret': '****'}) and password='****'"),
        ("fills 3, signals 7, memlab paper: equity 10,000.00", "fills 3, signals 7, memlab paper: equity 10,000.00"),
    ],
)
def test_credential_fields_are_masked_in_every_shape(line: str, shown: str) -> None:
    assert redact(line) == shown


def test_known_values_are_masked_anywhere_also_url_encoded() -> None:
    register_secret("s3cr+t/value==")
    assert redact("x s3cr+t/value== y s3cr%2Bt%2Fvalue%3D%3D z s3cr%2Bt%2Fvalue%3D%3D") == f"x {MASK} y {MASK} z {MASK}"


def test_credential_manager_values_are_masked_in_any_logger_any_handler(tmp_path: Path) -> None:
    """A handler the library adds after install (not the CLI's) still prints no secret:
    records are masked when they are made, traceback included."""
    env = tmp_path / ".env"
    env.write_text("KRAKEN_API_KEY=kraken-key-0123456789\nKRAKEN_API_SECRET=kraken-secret-abcdef\n")
    CredentialManager(env, environ={}, audit_path=None)  # loading registers the values
    log_redaction.uninstall()  # an earlier test may have run the CLI in this process, which installs it
    previous = logging.getLogRecordFactory()
    log_redaction.install()
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    third_party = logging.getLogger("some.library.added.later")
    handler = Collect()
    third_party.addHandler(handler)
    third_party.setLevel(logging.DEBUG)
    try:
        third_party.debug("headers %s", {"API-Key": "kraken-key-0123456789"})
        third_party.debug("raw kraken-secret-abcdef in a message")
        try:
            raise RuntimeError("request failed with kraken-secret-abcdef")
        except RuntimeError:
            third_party.exception("failed")
    finally:
        third_party.removeHandler(handler)
        log_redaction.uninstall()
        assert logging.getLogRecordFactory() is previous
    text = "\n".join(lines)
    assert "kraken-key-0123456789" not in text and "kraken-secret-abcdef" not in text
    assert "RuntimeError: request failed with ****" in text and text.count(MASK) >= 3


def test_the_cli_handler_and_third_party_loggers_carry_the_filter() -> None:
    root = logging.getLogger()
    added = logging.StreamHandler()
    root.addHandler(added)
    try:
        log_redaction.install()
        assert any(isinstance(f, RedactingFilter) for f in added.filters)
        assert any(isinstance(f, RedactingFilter) for f in logging.getLogger("ccxt.base.exchange").filters)
    finally:
        root.removeHandler(added)
        log_redaction.uninstall()
        assert not any(isinstance(f, RedactingFilter) for f in logging.getLogger("ccxt.base.exchange").filters)
