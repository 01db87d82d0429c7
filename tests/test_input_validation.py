"""One validation for every way market data comes in: files, frames handed to a backtest, a
sweep, training, the trader's replay feed, and candles polled from an exchange.

Each bad frame is refused the same way wherever it enters, with the column and the first
bad timestamp in the message; ccxt's and freqtrade's lowercase columns are accepted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from memlab import backtest
from memlab.connectors import ConnectionManager, ReplayFeed, RetryPolicy
from memlab.data import (
    DataValidationError,
    load_ohlcv,
    require_ohlcv,
    synthetic_ohlcv,
    validate_ohlcv,
)
from memlab.trader import TraderConfig, UnifiedMemGPTTrader
from memlab.training.walkforward import walk_forward
from tests.support.exchange_emulator import BinanceEmulator

BARS = synthetic_ohlcv(300, freq="1h", start="2024-01-01", seed=5)
T5 = "2024-01-01 05:00:00+00:00"


def damaged(kind: str) -> pd.DataFrame:
    """``BARS`` with one kind of damage at the sixth bar (2024-01-01 05:00 UTC)."""
    f = BARS.copy()
    if kind == "nan":
        f.iloc[5, f.columns.get_loc("Close")] = np.nan
    elif kind == "inf":
        f.iloc[5, f.columns.get_loc("High")] = np.inf
    elif kind == "-inf":
        f.iloc[5, f.columns.get_loc("Low")] = -np.inf
    elif kind == "zero":
        f.iloc[5, f.columns.get_loc("Open")] = 0.0
    elif kind == "high_below_low":
        f.iloc[5, f.columns.get_loc("High")] = f["Low"].iloc[5] - 1
    elif kind == "unsorted":
        f = f.iloc[[*range(5), 6, 5, *range(7, len(f))]]
    elif kind == "duplicate":
        f = f.iloc[[*range(6), 5, *range(6, len(f))]]
    elif kind == "naive":
        f = f.tz_localize(None)
    elif kind == "close_and_Close":
        f = f.assign(close=f["Close"])
    return f


#: damage -> what the message must say (the column and the first bad timestamp)
CASES = {
    "nan": f"NaN or non-numeric Close at {T5}",
    "inf": f"infinite High at {T5}",
    "-inf": f"infinite Low at {T5}",
    "zero": f"non-positive Open at {T5}",
    "high_below_low": f"High below Low at {T5}",
    "unsorted": "timestamps not sorted: 2024-01-01 05:00:00+00:00 comes after 2024-01-01 06:00:00+00:00",
    "duplicate": f"duplicate timestamps at {T5}",
    "naive": "has no time zone (first time 2024-01-01 00:00:00); memlab works in UTC: use frame.tz_localize('UTC')",
    "close_and_Close": "columns 'Close' and 'close' both give Close",
}


def _run(frame: pd.DataFrame) -> Any:
    return backtest.run(frame, "sma_cross", {"fast": 5, "slow": 20})


def _sweep(frame: pd.DataFrame) -> Any:
    return backtest.sweep(frame, "sma_cross", {"fast": [5], "slow": [20]}, progress=False)


def _sweep_vectorbt(frame: pd.DataFrame) -> Any:
    return backtest.sweep(frame, "momentum", {"lookback": [10]}, progress=False)


def _training(frame: pd.DataFrame) -> Any:
    return walk_forward(frame, "sma_cross", {"fast": [5], "slow": [20]}, train_bars=100, test_bars=50)


def _replay_feed(frame: pd.DataFrame) -> Any:
    return ReplayFeed("bars", {"BTC/USDT": frame})


def _trader(frame: pd.DataFrame, tmp_path: Path) -> Any:
    config = TraderConfig(symbols=("BTC/USDT",), strategy="sma_cross", memory_path=tmp_path, sizing="full",
                          feed={"data": frame, "warmup": 50})
    return asyncio.run(UnifiedMemGPTTrader(config).run())


ENTRIES: dict[str, Callable[..., Any]] = {
    "backtest.run": _run, "sweep (kernel)": _sweep, "sweep (vectorbt)": _sweep_vectorbt,
    "training walk_forward": _training, "replay feed": _replay_feed,
}


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize("kind", list(CASES))
def test_every_entry_point_refuses_bad_frames_naming_column_and_time(entry: str, kind: str) -> None:
    with pytest.raises(DataValidationError) as err:
        ENTRIES[entry](damaged(kind))
    assert CASES[kind] in str(err.value)


def test_the_trader_refuses_a_bad_frame_before_trading(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="NaN or non-numeric Close at 2024-01-01 05:00"):
        _trader(damaged("nan"), tmp_path)


def test_the_same_checks_as_load_ohlcv(tmp_path: Path) -> None:
    """What a file refuses, a frame refuses with the same words (less the file name)."""
    for kind in ("nan", "inf", "zero", "high_below_low", "duplicate", "close_and_Close"):
        path = tmp_path / f"{kind}.csv"
        damaged(kind).reset_index().to_csv(path, index=False)
        with pytest.raises(DataValidationError) as from_file:
            load_ohlcv(path)
        with pytest.raises(DataValidationError) as from_frame:
            _run(damaged(kind))
        assert str(from_file.value).removeprefix(f"{path}: ") == str(from_frame.value).removeprefix("ohlcv: ")


def test_lowercase_ccxt_and_freqtrade_columns_backtest_like_canonical_ones() -> None:
    canonical = _run(BARS)
    lower = _run(BARS.rename(columns=str.lower))
    assert lower.stats == canonical.stats and lower.stats["n_trades"] > 0
    # freqtrade's layout: a 'date' column and a row-number index
    freqtrade = BARS.rename(columns=str.lower).rename_axis("date").reset_index()
    assert _run(freqtrade).stats == canonical.stats
    table = _sweep(BARS.rename(columns=str.lower))
    assert table["n_trades"].iloc[0] == canonical.stats["n_trades"]


def test_a_valid_frame_is_used_as_it_is_not_copied() -> None:
    assert require_ohlcv(BARS) is BARS
    with pytest.raises(DataValidationError, match="row numbers, not times"):
        require_ohlcv(BARS.reset_index(drop=True))


def test_files_mixing_epoch_seconds_and_milliseconds_are_refused_naming_both(tmp_path: Path) -> None:
    raw = BARS.iloc[:10].reset_index()
    seconds = np.array([int(t.timestamp()) for t in raw["time"]])
    raw["time"] = np.where(np.arange(10) < 4, seconds, seconds * 1000)  # a ccxt download appended to a file in s
    raw.to_csv(tmp_path / "mixed.csv", index=False)
    with pytest.raises(DataValidationError) as err:
        load_ohlcv(tmp_path / "mixed.csv")
    message = str(err.value)
    assert "column 'time' mixes epoch units" in message
    assert f"row 0 ({seconds[0]}) is in seconds" in message and f"row 4 ({seconds[4] * 1000}) is in milliseconds" in message
    raw["time"] = seconds * 1000  # one unit: fine
    raw.to_csv(tmp_path / "ms.csv", index=False)
    assert load_ohlcv(tmp_path / "ms.csv").index[0] == BARS.index[0]


def test_files_with_inf_or_duplicate_columns_are_refused(tmp_path: Path) -> None:
    raw = BARS.iloc[:10].rename(columns=str.lower).reset_index()
    raw.loc[3, "high"] = np.inf  # written as "inf", read back as a float
    raw.to_csv(tmp_path / "inf.csv", index=False)
    with pytest.raises(DataValidationError, match="infinite High at 2024-01-01 03:00:00"):
        load_ohlcv(tmp_path / "inf.csv")
    with pytest.raises(DataValidationError, match="column 'Close' appears 2 times"):
        validate_ohlcv(pd.concat([BARS[["Close"]], BARS], axis=1))


def test_costs_are_checked_before_any_data_is_touched() -> None:
    for bad in (2.0, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="fees is a fraction of traded value in \\[0, 1\\)"):
            backtest.run(BARS, "sma_cross", fees=bad)


def test_a_polling_feed_drops_the_venues_bad_candles_and_says_why(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Candles the exchange sends get the same checks; a bad one is dropped with a warning
    (one odd candle must not stop a live session), the rest arrive in order."""
    bars = synthetic_ohlcv(12, freq="1min", start="2024-01-01", seed=3)
    times = [t.timestamp() for t in bars.index]
    broken = {6: "high_below_low", 8: "nan"}
    with BinanceEmulator(balances={"USDT": 1000.0}, markets={"BTC/USDT": 100.0}) as emu:
        for i, (t, row) in enumerate(zip(times, bars.itertuples(), strict=True)):
            o, h, low, c = row.Open, row.High, row.Low, row.Close
            if broken.get(i) == "high_below_low":
                h, low = low - 1, h
            elif broken.get(i) == "nan":
                c = float("nan")
            emu.push_bar("BTC/USDT", t, o, h, low, c)

        async def main() -> list[float]:
            manager = ConnectionManager(tmp_path, retry=RetryPolicy(attempts=3, base=0.02, cap=0.1))
            await manager.add_broker_connection("binance", emu.api_key, emu._secret, **emu.manager_options())
            try:
                feed = await manager.add_data_feed("candles", {"symbols": ["BTC/USDT"], "source": "poll",
                                                               "interval": 0.02, "warmup": 4})
                seen = []
                async for _symbol, bar in feed:
                    seen.append(bar.time)
                    if bar.time == times[-1]:
                        return seen
                return seen
            finally:
                await manager.close()

        with caplog.at_level(logging.WARNING, logger="memlab.connectors.feeds"):
            seen = asyncio.run(asyncio.wait_for(main(), 30))
    assert seen == [t for i, t in enumerate(times[4:], start=4) if i not in broken]
    warned = caplog.text
    assert "High below Low at 2024-01-01 00:06:00+00:00" in warned
    assert "NaN or non-numeric Close at 2024-01-01 00:08:00+00:00" in warned
