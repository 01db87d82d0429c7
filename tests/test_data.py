"""Market data: one validated shape, clear errors, gap reports, real and synthetic sources."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from aiohttp import web

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


class BinanceSpot:
    """The subset of Binance's spot REST API that ccxt's fetch_ohlcv uses, on loopback."""

    def __init__(self, frame: pd.DataFrame, fail_first: int = 0) -> None:
        self.frame, self.fail_first = frame, fail_first
        self.kline_calls: list[dict[str, str]] = []
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_get("/api/v3/exchangeInfo", self._info)
        app.router.add_get("/api/v3/klines", self._klines)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _info(self, request: web.Request) -> web.Response:
        return web.json_response({"timezone": "UTC", "serverTime": 0, "symbols": [{
            "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
            "baseAssetPrecision": 8, "quotePrecision": 8, "quoteAssetPrecision": 8,
            "orderTypes": ["LIMIT", "MARKET"], "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
            "permissions": ["SPOT"], "permissionSets": [["SPOT"]],
            "filters": [{"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000", "tickSize": "0.01"},
                        {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000", "stepSize": "0.00001"}]}]})

    async def _klines(self, request: web.Request) -> web.Response:
        self.kline_calls.append(dict(request.query))
        if len(self.kline_calls) <= self.fail_first:
            return web.json_response({"code": -1003, "msg": "Too many requests"}, status=429)
        start = int(request.query.get("startTime", 0))
        limit = int(request.query.get("limit", 500))
        ms = self.frame.index.as_unit("ns").asi8 // 10**6
        rows = self.frame[ms >= start].iloc[:limit]
        out = [[int(t.value // 10**6), str(r.Open), str(r.High), str(r.Low), str(r.Close), str(r.Volume),
                int(t.value // 10**6) + 3_599_999, "0", 1, "0", "0", "0"] for t, r in rows.iterrows()]
        return web.json_response(out)

    def exchange(self):  # type: ignore[no-untyped-def]
        import ccxt

        ex = ccxt.binance({"enableRateLimit": False, "options": {"fetchMarkets": {"types": ["spot"]}}})
        ex.urls["api"]["public"] = f"http://127.0.0.1:{self.port}/api/v3"
        return ex

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_ccxt_download_paginates_caches_and_resumes(tmp_path: Path) -> None:
    history = synthetic_ohlcv(250, freq="1h", start="2024-01-01", seed=5).round(6)
    server = BinanceSpot(history, fail_first=1)  # the first page is rate-limited once
    try:
        first = download_ohlcv(server.exchange(), "BTC/USDT", "1h", since="2024-01-01", until="2024-01-06",
                               cache_dir=tmp_path, limit=50, backoff=0.01, progress=False)
        assert len(first) == 120 and first.index[0] == pd.Timestamp("2024-01-01", tz="UTC")
        assert np.allclose(first["Close"], history["Close"].iloc[:120])
        pages = len(server.kline_calls)
        assert pages >= 4  # 120 bars in pages of 50, plus the retried 429
        cache = tmp_path / "binance" / "BTC_USDT" / "1h.parquet"
        assert cache.exists()
        again = download_ohlcv(server.exchange(), "BTC/USDT", "1h", since="2024-01-01", until="2024-01-09",
                               cache_dir=tmp_path, limit=50, progress=False)
        assert len(again) == 192
        resumed = server.kline_calls[pages:]
        assert int(resumed[0]["startTime"]) == int(pd.Timestamp("2024-01-06", tz="UTC").value // 10**6)
    finally:
        server.close()
