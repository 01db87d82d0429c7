"""The ``memlab`` command: one entry point whose subcommands live beside the code they run.

Each module in ``COMMAND_MODULES`` has ``register(subparsers)`` that adds its
subcommands and sets ``func`` (returning an exit code). Those modules keep heavy imports
inside their functions so that ``memlab --help`` stays quick.

A mistake or the machine's state never shows a traceback: one line on stderr names the
value or the file, and the exit code says which it was —

- **2**, a usage error: a bad option value (the argument types below check them as they
  are parsed), an unknown strategy or market, a missing setting
  (:class:`~memlab.errors.InvalidInputError`, :class:`~memlab.errors.ConfigurationError`);
- **1**, a failure: a full disk ("disk full while writing X"), a read-only folder ("X is
  read-only"), a file that cannot be read, a database error, an exchange's refusal, any
  other :class:`~memlab.errors.MemlabError`.

Anything else is a bug in memlab and still shows its traceback (with secrets masked, as
in every log line: see :mod:`memlab.log_redaction`).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import math
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import NoReturn

from memlab.errors import ConfigurationError, InvalidInputError, MemlabError

COMMAND_MODULES: tuple[str, ...] = (
    "memlab.memory.cli",
    "memlab.credentials",
    "memlab.strategies.cli",
    "memlab.training.cli",
    "memlab.trader.cli",
    "memlab.agent.gateway",
    "memlab.dashboard.cli",
    "memlab.demo",
    "memlab.evaluation.cli",
)

USAGE_ERROR, FAILURE = 2, 1


class MemlabArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error on one line (the option, the value, where to look)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- argument types: a bad value is a usage error naming it, before anything runs --------
def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A fraction of traded value in [0, 1): fees, slippage (0.001 = 0.1 %)."""
    value = _number(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"a fraction of traded value in [0, 1) (0.001 = 0.1 %), got {text!r}")
    return value


def open_fraction(text: str) -> float:
    """A fraction of a price in (0, 1): stop-loss, take-profit distances."""
    value = _number(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"a fraction of the entry price in (0, 1) (0.02 = 2 %), got {text!r}")
    return value


def equity_fraction(text: str) -> float:
    """A fraction of equity in (0, 1): a drawdown limit (0.15 = 15 %)."""
    value = _number(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"a fraction of equity in (0, 1) (0.15 = 15 %), got {text!r}")
    return value


def share(text: str) -> float:
    """A share in (0, 1]: the part of free cash an entry spends."""
    value = _number(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"a share of free cash in (0, 1] (0.5 = half), got {text!r}")
    return value


def probability(text: str) -> float:
    """A number in [0, 1]."""
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a number in [0, 1], got {text!r}")
    return value


def positive_number(text: str) -> float:
    """A finite number above 0 (an amount of money, a pace)."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive, finite number, got {text!r}")
    return value


def non_negative_number(text: str) -> float:
    """A finite number at or above 0 (seconds)."""
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def positive_int(text: str) -> int:
    """A whole number above 0 (bars, draws)."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number at or above 0 (warm-up bars, seeds)."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return value


def port(text: str) -> int:
    """A TCP port, 1-65535 (0: any free port)."""
    value = _integer(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 1-65535 (0 for any free one), got {text!r}")
    return value


def existing_file(text: str) -> str:
    """A path to a file that exists and can be read."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text}: permission denied (cannot be read)")
    return text


def timestamp(text: str) -> str:
    """A date or time pandas can read (2012-06-30, 2024-01-01T09:30Z); kept as given."""
    import pandas as pd

    try:
        pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError):
        raise argparse.ArgumentTypeError(f"not a date or time: {text!r} (use e.g. 2012-06-30)") from None
    return text


# -- the command ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = MemlabArgumentParser(
        prog="memlab",
        description="memlab: research and paper-trading workbench with a memory-driven agent.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level (secrets are masked)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def set_up_logging(verbose: bool) -> None:
    """Log to stderr (DEBUG with ``-v``, else INFO), every record masked of secrets."""
    from memlab import log_redaction

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log_redaction.install()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_up_logging(args.verbose)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return USAGE_ERROR
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("memlab: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from memlab.log_redaction import redact

        explained = explain(exc, args)
        if explained is None:  # a bug: its traceback is what a fix needs (secrets masked)
            sys.stderr.write(redact("".join(traceback.format_exception(exc))))
            return FAILURE
        code, line = explained
        print(f"memlab: error: {redact(line)}", file=sys.stderr)
        return code


# -- explaining an error in one line ------------------------------------------------------
_FULL = {errno.ENOSPC, errno.EDQUOT}
_READ_ONLY = {errno.EROFS}
_DENIED = {errno.EACCES, errno.EPERM}


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _sqlite_code(exc: BaseException) -> int | None:
    import sqlite3

    if not isinstance(exc, sqlite3.Error):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # older sqlite3 modules: from the message
        text = str(exc).lower()
        code = 13 if "disk is full" in text else 8 if "readonly" in text else 14 if "unable to open" in text else -1
    return int(code) & 0xFF  # the primary result code


def _path_in_traceback(tb: TracebackType | None) -> str | None:
    """The innermost file or folder path the failing code held (a store's ``path``), if any."""
    found = None
    while tb is not None:
        local = tb.tb_frame.f_locals
        for candidate in (local.get("path"), local.get("db_path"), local.get("filename"),
                          getattr(local.get("self"), "path", None), getattr(local.get("self"), "db_path", None)):
            if isinstance(candidate, (str, os.PathLike)) and str(candidate):
                found = os.fspath(candidate)
                break
        tb = tb.tb_next
    return found


def _place(exc: BaseException, args: argparse.Namespace) -> str:
    """The file an OSError or sqlite error was about, else the path the code held, else the
    memory folder."""
    filename = getattr(exc, "filename", None)
    if filename:
        return os.fspath(filename)
    held = _path_in_traceback(exc.__traceback__)
    if held:
        return str(held)
    from memlab.config import memory_path

    try:
        return f"the memory folder {memory_path(getattr(args, 'memory_path', None))}"
    except Exception:
        return "a file memlab writes"


def _folder_state(place: str) -> str | None:
    """``"read-only"`` or ``"full"`` when the folder holding ``place`` is either, else None."""
    folder = Path(place.removeprefix("the memory folder ")).expanduser()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if folder.is_file():
        folder = folder.parent
    try:
        stat = os.statvfs(folder)
    except OSError:
        return None
    if stat.f_flag & os.ST_RDONLY:
        return "read-only"
    if stat.f_bavail * stat.f_frsize < 1 << 20:  # under 1 MiB left
        return "full"
    import resource

    if resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY:  # `ulimit -f` in force
        return "size limit"
    return None


def _machine_state(exc: BaseException, args: argparse.Namespace) -> str | None:
    """One line for a full disk, a read-only or forbidden folder, or a database that cannot
    be written, found anywhere in ``exc``'s chain (a store may have wrapped it)."""
    for err in _chain(exc):
        code = err.errno if isinstance(err, OSError) else None
        sqlite = _sqlite_code(err)
        if code is None and sqlite is None:
            continue
        place = _place(err, args)
        if sqlite in (10, 14):  # SQLITE_IOERR, SQLITE_CANTOPEN: sqlite does not say why; the folder does
            state = _folder_state(place)
            sqlite = {"read-only": 8, "full": 13}.get(state or "", sqlite)
            code = errno.EFBIG if state == "size limit" else code
        if code == errno.EFBIG:
            return (f"the file size limit (ulimit -f) was reached while writing {place} ({_reason(err)}); "
                    "raise the limit and run it again")
        if code in _FULL or sqlite == 13:
            return f"disk full while writing {place} ({_reason(err)}); free some space and run it again"
        if code in _READ_ONLY or sqlite == 8:
            return f"{place} is read-only ({_reason(err)}); make it writable or choose another folder"
        if code in _DENIED:
            return (f"{place} is read-only or not yours: permission denied ({_reason(err)}); "
                    "check its owner and mode")
        if sqlite == 14:
            return f"cannot open the database in {place} ({_reason(err)}); check the folder exists and is writable"
    return None


def _reason(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__


def explain(exc: BaseException, args: argparse.Namespace) -> tuple[int, str] | None:
    """``(exit code, one line)`` for an error a person can act on; None for a bug."""
    import sqlite3

    state = _machine_state(exc, args)
    if state is not None:
        return FAILURE, state
    if isinstance(exc, (InvalidInputError, ConfigurationError)):
        return USAGE_ERROR, str(exc)
    if isinstance(exc, MemlabError):
        return FAILURE, str(exc)
    ccxt = sys.modules.get("ccxt")
    if ccxt is not None and isinstance(exc, ccxt.BaseError):
        retry = " (the venue or the network: try again later)" if isinstance(exc, ccxt.NetworkError) else ""
        return FAILURE, f"the exchange refused: {type(exc).__name__}: {exc}{retry}"
    if isinstance(exc, OSError):
        if exc.filename and exc.strerror:
            return FAILURE, f"{exc.filename}: {exc.strerror}"
        return FAILURE, str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.Error):
        return FAILURE, f"database error in {_place(exc, args)}: {exc}"
    return None


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
