"""The `memlab` command never answers a person's mistake or the machine's state with a traceback.

Each case checks what a person sees: one line on stderr naming the value or the file, exit 2
for a usage error and 1 for a failure. Argument checks run through ``memlab.cli.main`` (what
the installed script calls), a sample of them and every failure in a process of its own. The
machine's states are real ones:

- a **full disk** is a 64 KiB tmpfs mounted as the memory folder in a private mount
  namespace (``unshare -m``: the mount disappears with the process); a **file size limit**
  (``RLIMIT_FSIZE``, SIGXFSZ ignored) is the same failure for users who cannot mount;
- a **read-only folder** is a read-only bind mount of a healthy memory folder, in a private
  mount namespace too — chmod would not do, as the tests run as root and root ignores modes.

A bug (any other exception) still shows its traceback, with secrets masked.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from memlab import log_redaction
from tests.support.cli import one_line

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "memlab"
MEMLAB = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "memlab.cli"]
PAPER = ["paper", "--symbol", "BTC/USDT", "--strategy", "sma_cross", "--synthetic", "3000"]


def memlab(*args: str, memory: Path | None = None, wrap: list[str] | None = None,
           preexec_fn=None) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = dict(os.environ)
    if memory is not None:
        env["MEM_MEMORY_PATH"] = str(memory)
    return subprocess.run([*(wrap or []), *MEMLAB, *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=env, preexec_fn=preexec_fn)


def in_process(args: list[str], memory: Path, monkeypatch: pytest.MonkeyPatch,
               capsys: pytest.CaptureFixture[str]) -> subprocess.CompletedProcess[str]:
    """``memlab ARGS`` through :func:`memlab.cli.main` in this process (what the script runs),
    for the many argument checks that need no process of their own."""
    from memlab.cli import main

    monkeypatch.setenv("MEM_MEMORY_PATH", str(memory))
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    finally:
        log_redaction.uninstall()
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--fees", "2"], "argument --fees: a fraction of traded value in [0, 1) (0.001 = 0.1 %), got '2'"),
        (["--fees", "-0.1"], "argument --fees: a fraction of traded value in [0, 1) (0.001 = 0.1 %), got '-0.1'"),
        (["--slippage", "nan"], "argument --slippage: must be a finite number, got 'nan'"),
        (["--balance", "inf"], "argument --balance: must be a finite number, got 'inf'"),
        (["--balance", "0"], "argument --balance: must be a positive, finite number, got '0'"),
        (["--param", "fast=abc"], "--param 'fast=abc': fast takes a whole number (default 10)"),
        (["--param", "fastest=3"], "sma_cross has no parameter 'fastest'"),
        (["--webhook-port", "99999"], "argument --webhook-port: a TCP port is 1-65535 (0 for any free one), got '99999'"),
        (["--data", "no/such/prices.csv"], "argument --data: no/such/prices.csv: no such file"),
        (["--stop-loss", "1.5"], "argument --stop-loss: a fraction of the entry price in (0, 1)"),
        (["--trailing-stop", "0"], "argument --trailing-stop: a fraction of the entry price in (0, 1)"),
        (["--stop-loss", "0.02", "--trailing-stop", "0.05"],
         "stop_loss and trailing_stop are both a stop-loss: give one, got stop_loss=0.02 and trailing_stop=0.05"),
        (["--exit-after", "0"], "argument --exit-after: must be a whole number >= 1, got '0'"),
        (["--size", "1.5"], "argument --size: a share of free cash in (0, 1] (0.5 = half), got '1.5'"),
        (["--size", "0.5", "--sizing", "agent"], "with sizing='agent' the agent sizes each entry"),
        (["--min-confidence", "2"], "argument --min-confidence: a number in [0, 1], got '2'"),
        (["--max-bars", "0"], "argument --max-bars: must be a whole number >= 1, got '0'"),
        (["--after", "yesterday-ish"], "argument --after: not a date or time: 'yesterday-ish'"),
    ],
)
def test_paper_usage_errors_exit_2_naming_the_value(tmp_path: Path, args: list[str], named: str,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    base = [a for a in PAPER if a not in ("--synthetic", "3000")] if "--data" in args else PAPER
    done = in_process([*base, *args], tmp_path, monkeypatch, capsys)
    assert done.returncode == 2, done.stderr
    assert named in one_line(done)
    assert not (tmp_path / "paper_broker.sqlite").exists()  # refused before anything ran


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["train", "--symbols", "synthetic:x"], "'synthetic:x': synthetic:SEED[:BARS] takes whole numbers"),
        (["train", "--symbols", "no/such.csv"], "argument --symbols: no/such.csv: no such file"),
        (["train", "--start", "31/31/2020"], "argument --start: not a date or time: '31/31/2020'"),
        (["nightly", "--min-dsr", "7"], "a deflated Sharpe ratio bar is in [0, 1], got 7"),
        (["evaluate", "--draws", "0"], "argument --draws: must be a whole number >= 1, got '0'"),
        (["evaluate", "--seed", "-1"], "argument --seed: must be a whole number >= 0, got '-1'"),
        (["dashboard", "--port", "70000"], "argument --port: a TCP port is 1-65535"),
    ],
)
def test_other_commands_refuse_bad_values_the_same_way(tmp_path: Path, args: list[str], named: str,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    done = in_process(args, tmp_path, monkeypatch, capsys)
    assert done.returncode == 2, done.stderr
    assert named in one_line(done)


@pytest.mark.parametrize("args", [["--fees", "2"], ["--webhook-port", "99999"], ["--param", "fast=abc"]])
def test_the_installed_command_answers_the_same_one_line(tmp_path: Path, args: list[str]) -> None:
    done = memlab(*PAPER, *args, memory=tmp_path)
    assert done.returncode == 2, done.stderr
    assert args[-1] in one_line(done)


def test_bad_data_in_a_file_is_a_usage_error_naming_file_column_and_time(tmp_path: Path) -> None:
    from memlab.data import synthetic_ohlcv

    bars = synthetic_ohlcv(500, freq="1min", start="2024-01-01", seed=2)
    bars.iloc[300, 3] = float("inf")  # Close
    path = tmp_path / "prices.csv"
    bars.reset_index().to_csv(path, index=False)
    done = memlab("paper", "--symbol", "BTC/USDT", "--strategy", "sma_cross", "--data", str(path),
                  memory=tmp_path / "memory")
    assert done.returncode == 2, done.stderr
    assert one_line(done).endswith(f"{path}: infinite Close at 2024-01-01 05:00:00+00:00")


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "tmpfs", "/mnt"],
                           capture_output=True)
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(not _namespaces_work(), reason="needs a private mount namespace (root, unshare)")


def in_namespace(setup: str) -> list[str]:
    """A wrapper running the command after ``setup`` in a private mount namespace."""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", f'{setup} && exec "$@"', "memlab-test"]


@needs_mounts
@pytest.mark.parametrize("size", ["64k", "400k"])  # full in a database, full in a JSON status file
def test_a_full_disk_is_named_as_such(tmp_path: Path, size: str) -> None:
    memory = tmp_path / "memory"
    memory.mkdir()
    done = memlab(*PAPER, "--memory-path", str(memory), memory=memory,
                  wrap=in_namespace(f"mount -t tmpfs -o size={size} tmpfs {memory}"))
    assert done.returncode == 1, done.stderr
    line = one_line(done)
    assert line.startswith(f"memlab: error: disk full while writing {memory}/"), line
    assert "quarantine" not in line


@needs_mounts
def test_a_read_only_memory_folder_is_named_as_such_not_called_damaged(tmp_path: Path) -> None:
    memory = tmp_path / "memory"
    first = memlab(*PAPER[:-1], "300", "--memory-path", str(memory), memory=memory)
    assert first.returncode == 0, first.stderr  # a healthy memory folder
    assert (memory / "archival.sqlite").exists()
    done = memlab(*PAPER, "--memory-path", str(memory), memory=memory,
                  wrap=in_namespace(f"mount --bind {memory} {memory} && mount -o remount,bind,ro {memory}"))
    assert done.returncode == 1, done.stderr
    line = one_line(done)
    assert line.startswith(f"memlab: error: {memory}/") and " is read-only (" in line, line
    assert "quarantine" not in line and "damaged" not in line
    assert memlab("memory", "verify", memory=memory).returncode == 0  # and it is as healthy as before


def test_a_file_size_limit_is_named_as_such(tmp_path: Path) -> None:
    """What a full disk looks like to a process that cannot mount one: writes fail (EFBIG)."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    memory = tmp_path / "memory"
    done = memlab(*PAPER, "--memory-path", str(memory), memory=memory, preexec_fn=limit)
    assert done.returncode == 1, done.stderr
    line = one_line(done)
    assert line.startswith("memlab: error: the file size limit (ulimit -f) was reached while writing "
                           f"{memory}/"), line
    assert "quarantine" not in line


def test_a_bug_still_shows_its_traceback_with_secrets_masked(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import memlab.trader.cli
    from memlab.cli import main

    def broken(args: object) -> int:
        raise RuntimeError("unexpected state; key was sk-live-0123456789abcdef")

    monkeypatch.setattr(memlab.trader.cli, "_command", broken)
    monkeypatch.setenv("DEMO_API_KEY", "sk-live-0123456789abcdef")
    try:
        assert main(["paper"]) == 1
    finally:
        log_redaction.uninstall()
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError: unexpected state; key was ****" in err
    assert "sk-live-0123456789abcdef" not in err
