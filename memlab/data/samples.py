"""Real market history that ships offline: the CSVs inside the ``backtesting`` package.

The files are found without importing that package: importing it loads Bokeh, which in a
notebook prints a warning and a "Loading BokehJS" block into every executed notebook.

- ``BTCUSD``: monthly Bitcoin index, 2012-2024
- ``EURUSD``: hourly EUR/USD, April 2017 - February 2018 (5,000 bars)
- ``GOOG``: daily Alphabet shares, 2004-2013
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from memlab.errors import InvalidInputError

SAMPLES = ("BTCUSD", "EURUSD", "GOOG")


def sample_path(name: str) -> Path:
    """Where the shipped CSV for ``name`` is."""
    key = name.upper()
    if key not in SAMPLES:
        raise InvalidInputError(f"no sample {name!r}; choose one of {', '.join(SAMPLES)}")
    spec = importlib.util.find_spec("backtesting")  # locates the package; does not run it
    if spec is None or not spec.submodule_search_locations:
        raise InvalidInputError("the shipped samples come with the backtesting package, which is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "test" / f"{key}.csv"


def sample(name: str) -> pd.DataFrame:
    """The validated OHLCV frame of a shipped sample (see the module docstring)."""
    from memlab.data.files import load_ohlcv

    return load_ohlcv(sample_path(name), symbol=name.upper())
