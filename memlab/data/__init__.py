"""Market history in one validated shape: UTC index, Open/High/Low/Close/Volume.

- :func:`load_ohlcv` — CSV or Parquet files; :func:`save_ohlcv` — atomic Parquet.
- :func:`sample` — real history shipped offline (BTCUSD monthly, EURUSD hourly, GOOG daily).
- :func:`synthetic_ohlcv` — a seeded regime-switching market of any size.
- :func:`download_ohlcv` — ccxt candles, paginated and rate-limited, cached as Parquet.
- :func:`validate_ohlcv` — the checks every loader applies, with gap reports.
- :func:`require_ohlcv` — the same checks for a frame handed over in code (backtests,
  sweeps, training, feeds), without a copy when it is already valid.
"""

from memlab.data.download import download_ohlcv
from memlab.data.files import load_ohlcv, save_ohlcv
from memlab.data.samples import SAMPLES, sample, sample_path
from memlab.data.synthetic import DEFAULT_REGIMES, Regime, synthetic_ohlcv
from memlab.data.validate import (
    OHLCV_COLUMNS,
    DataValidationError,
    GapReport,
    find_gaps,
    require_ohlcv,
    validate_ohlcv,
)

__all__ = [
    "DEFAULT_REGIMES",
    "OHLCV_COLUMNS",
    "SAMPLES",
    "DataValidationError",
    "GapReport",
    "Regime",
    "download_ohlcv",
    "find_gaps",
    "load_ohlcv",
    "require_ohlcv",
    "sample",
    "sample_path",
    "save_ohlcv",
    "synthetic_ohlcv",
    "validate_ohlcv",
]
