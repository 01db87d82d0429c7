"""Real market history that ships offline: the CSVs inside the ``backtesting`` package.

- ``BTCUSD``: monthly Bitcoin index, 2012-2024
- ``EURUSD``: hourly EUR/USD, April 2017 - February 2018 (5,000 bars)
- ``GOOG``: daily Alphabet shares, 2004-2013
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pandas as pd

from memlab.errors import InvalidInputError

SAMPLES = ("BTCUSD", "EURUSD", "GOOG")


def sample_path(name: str) -> Path:
    """Where the shipped CSV for ``name`` is."""
    key = name.upper()
    if key not in SAMPLES:
        raise InvalidInputError(f"no sample {name!r}; choose one of {', '.join(SAMPLES)}")
    return Path(str(files("backtesting") / "test" / f"{key}.csv"))


def sample(name: str) -> pd.DataFrame:
    """The validated OHLCV frame of a shipped sample (see the module docstring)."""
    from memlab.data.files import load_ohlcv

    return load_ohlcv(sample_path(name), symbol=name.upper())
