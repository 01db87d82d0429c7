"""Where memlab finds its settings: arguments first, then environment variables, then defaults."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from memlab.errors import ConfigurationError

#: Default memory folder, relative to the working directory.
DEFAULT_MEMORY_PATH = Path("data") / "mem_knowledge"

MEMORY_PATH_ENV = "MEM_MEMORY_PATH"
ENCRYPTION_KEY_ENV = "MEM_ENCRYPTION_KEY"
MARKET_DATA_ENV = "MEMLAB_MARKET_DATA"
STRATEGIES_ENV = "MEMLAB_STRATEGIES"

#: The public market-data venue (a ccxt exchange id) of feeds with no exchange connection:
#: its candles need no account or credentials.
DEFAULT_MARKET_DATA = "binance"


def memory_path(path: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the memory folder: ``path`` if given, else ``$MEM_MEMORY_PATH``, else
    ``data/mem_knowledge/``.

    >>> memory_path("/tmp/mem")
    PosixPath('/tmp/mem')
    """
    if path is not None and str(path) != "":
        return Path(path).expanduser()
    env = os.environ.get(MEMORY_PATH_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return DEFAULT_MEMORY_PATH


def strategy_sources(value: str | None = None) -> list[str]:
    """The strategy files and modules to load in every process: ``value`` if given, else
    ``$MEMLAB_STRATEGIES``; entries are separated by ``os.pathsep`` or commas, blanks ignored.

    >>> strategy_sources(f"my_strategies.py{os.pathsep}mypackage.strategies, other.py")
    ['my_strategies.py', 'mypackage.strategies', 'other.py']
    """
    text = os.environ.get(STRATEGIES_ENV, "") if value is None else value
    return [item.strip() for part in text.split(os.pathsep) for item in part.split(",") if item.strip()]


def market_data_venue(venue: str | None = None) -> str:
    """The ccxt exchange id a feed polls for public candles when it names no exchange
    connection: ``venue`` if given, else ``$MEMLAB_MARKET_DATA``, else ``binance``.

    >>> market_data_venue("Kraken")
    'kraken'
    >>> market_data_venue("binanse")
    Traceback (most recent call last):
    ...
    memlab.errors.ConfigurationError: venue='binanse' is not a ccxt exchange id; did you mean binance, binanceus?

    Raises:
        ConfigurationError: the id (from the argument or the variable, which the message
            names) is not one of ccxt's exchange ids.
    """
    import ccxt  # only when a feed needs it: ccxt is slow to import

    if venue is not None and str(venue).strip():
        value, where = str(venue).strip().lower(), "venue"
    else:
        value, where = os.environ.get(MARKET_DATA_ENV, "").strip().lower(), MARKET_DATA_ENV
        if not value:
            return DEFAULT_MARKET_DATA
    if value not in ccxt.exchanges:
        close = difflib.get_close_matches(value, ccxt.exchanges, n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else " (e.g. binance, kraken, coinbase)"
        raise ConfigurationError(f"{where}={value!r} is not a ccxt exchange id{hint}")
    return value
