"""Market data: one validated shape, clear errors, gap reports, real and synthetic sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memlab.data import (
    DataValidationError,
    download_ohlcv,
    load_ohlcv,
    sample,
    save_ohlcv,
    synthetic_ohlcv,
    validate_ohlcv,
)


def bars(n: int = 5, freq: str = "h") -> pd.DataFrame:
    idx = pd.date_range("2024-01-01", periods=n, freq=freq)
    close = np.linspace(100, 104, n)
    return pd.DataFrame({"open": close - 0.5, "HIGH": close + 1, "low": close - 1, "Close": close, "volume": 10.0}, index=idx)


@pytest.mark.parametrize(("name", "rows", "first"), [("BTCUSD", 156, "2012-01-31"), ("EURUSD", 5000, "2017-04-19 09:00"), ("GOOG", 2148, "2004-08-19")])
def test_shipped_samples_load_validated(name: str, rows: int, first: str) -> None:
    frame = sample(name)
    assert list(frame.columns) == ["Open", "High", "Low", "Close", "Volume"]
    assert str(frame.index.tz) == "UTC" and frame.index.is_monotonic_increasing
    assert len(frame) == rows and frame.index[0] == pd.Timestamp(first, tz="UTC")
    assert frame.attrs["symbol"] == name


def test_gaps_are_reported_in_business_days_for_daily_shares() -> None:
    report = sample("GOOG").attrs["gaps"]
    assert report.business_days and report.n_gaps > 0  # market holidays
    assert (report.gaps["missing"] >= 1).all()
    eurusd = sample("EURUSD").attrs["gaps"]
    assert eurusd.spacing == pd.Timedelta(hours=1) and eurusd.n_gaps == 42  # weekends


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: f.assign(Close=f["Close"].where(f.index != f.index[2])), "NaN or non-numeric Close at 2024-01-01 02:00"),
        (lambda f: f.iloc[[0, 2, 1, 3, 4]], "not sorted: 2024-01-01 01:00:00+00:00 comes after 2024-01-01 02:00"),
        (lambda f: f.iloc[[0, 1, 1, 2, 3]], "duplicate timestamps at 2024-01-01 01:00"),
        (lambda f: f.assign(low=-f["low"]), "non-positive Low at 2024-01-01 00:00:00+00:00 and 4 more rows"),
        (lambda f: f.assign(HIGH=f["low"] - 1), "High below Low"),
        (lambda f: f.drop(columns="volume"), "missing column(s) ['Volume']"),
    ],
)
def test_bad_data_names_what_and_where(damage, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataValidationError) as err:
        validate_ohlcv(damage(bars()), source="prices.csv")
    assert message in str(err.value) and "prices.csv" in str(err.value)


def test_gap_policies() -> None:
    frame = bars(10).drop(index=bars(10).index[[3, 4, 7]])
    report = validate_ohlcv(frame).attrs["gaps"]
    assert (report.n_gaps, report.missing_bars) == (2, 3)
    filled = validate_ohlcv(frame, gaps="ffill")
    assert len(filled) == 10 and filled.loc["2024-01-01 03:00", "Volume"] == 0
    assert filled.loc["2024-01-01 04:00", "Close"] == frame.loc["2024-01-01 02:00", "Close"]
    with pytest.raises(DataValidationError, match="2 gaps"):
        validate_ohlcv(frame, gaps="error")


def test_csv_and_parquet_round_trip_with_epoch_times(tmp_path: Path) -> None:
    frame = validate_ohlcv(bars())
    raw = frame.reset_index()
    raw["time"] = raw["time"].astype("int64") // 10**6  # epoch milliseconds, as ccxt gives
    raw.to_csv(tmp_path / "BTCUSDT.csv", index=False)
    loaded = load_ohlcv(tmp_path / "BTCUSDT.csv")
    assert loaded.attrs["symbol"] == "BTCUSDT"
    pd.testing.assert_frame_equal(loaded, frame, check_freq=False, check_index_type=False, check_exact=False)
    save_ohlcv(frame, tmp_path / "x.parquet")
    assert np.allclose(load_ohlcv(tmp_path / "x.parquet")["Close"], frame["Close"])
    with pytest.raises(DataValidationError, match="unknown file type"):
        (tmp_path / "x.txt").write_text("x")
        load_ohlcv(tmp_path / "x.txt")


def test_synthetic_market_is_seeded_and_valid() -> None:
    a = synthetic_ohlcv(5000, seed=3, with_regimes=True)
    b = synthetic_ohlcv(5000, seed=3, with_regimes=True)
    pd.testing.assert_frame_equal(a, b)
    assert not synthetic_ohlcv(5000, seed=4).equals(a.drop(columns="regime"))
    validate_ohlcv(a.drop(columns="regime"), gaps="error")
    assert set(a["regime"].unique()) == {"calm_up", "calm_down", "storm"}
    storm = a["Close"].pct_change()[a["regime"] == "storm"].std()
    calm = a["Close"].pct_change()[a["regime"] == "calm_up"].std()
    assert storm > 2 * calm


def test_ccxt_download_paginates_caches_and_resumes(tmp_path: Path) -> None:
    import ccxt

    from tests.support.exchange_emulator import BinanceEmulator

    history = synthetic_ohlcv(250, freq="1h", start="2024-01-01", seed=5).round(6)
    with BinanceEmulator() as server:
        server.load_bars("BTC/USDT", history)
        server.fault("429", path="/api/v3/klines")  # the first page is rate-limited once

        def kline_calls() -> list[dict[str, str]]:
            return [q for path, q in server.queries if path.endswith("/klines")]

        first = download_ohlcv(ccxt.binance(server.ccxt_config()), "BTC/USDT", "1h", since="2024-01-01",
                               until="2024-01-06", cache_dir=tmp_path, limit=50, backoff=0.01, progress=False)
        assert len(first) == 120 and first.index[0] == pd.Timestamp("2024-01-01", tz="UTC")
        assert np.allclose(first["Close"], history["Close"].iloc[:120])
        pages = len(kline_calls())
        assert pages >= 4  # 120 bars in pages of 50, plus the retried 429
        cache = tmp_path / "binance" / "BTC_USDT" / "1h.parquet"
        assert cache.exists()
        again = download_ohlcv(ccxt.binance(server.ccxt_config()), "BTC/USDT", "1h", since="2024-01-01",
                               until="2024-01-09", cache_dir=tmp_path, limit=50, progress=False)
        assert len(again) == 192
        resumed = kline_calls()[pages:]
        assert int(resumed[0]["startTime"]) == int(pd.Timestamp("2024-01-06", tz="UTC").value // 10**6)


def test_samples_load_without_importing_bokeh() -> None:
    """Importing backtesting.py loads Bokeh, which prints a warning and a loader block into
    every executed notebook; the samples are its files, read without importing it."""
    import subprocess
    import sys

    code = ("import sys; from memlab.data import sample; n = len(sample('GOOG')) + len(sample('EURUSD')); "
            "print(n, 'bokeh' in sys.modules, 'backtesting' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["7148", "False", "False"], out.stdout + out.stderr
