"""Funding-rate histories: the synthetic sample, CSV round trips, gaps reported (never filled)."""

from __future__ import annotations

from pathlib import Path

import pytest

from memlab.connectors.paper_broker import Bar, PaperBroker
from memlab.data.funding import (
    SAMPLE_PATH,
    FundingGapError,
    FundingGapWarning,
    funding_gaps,
    funding_path,
    load_funding,
    record_funding,
    save_funding,
    synthetic_funding,
)
from memlab.errors import InvalidInputError

DAY_MS = 86_400_000


def test_the_shipped_sample_is_the_documented_synthetic_series_and_says_so() -> None:
    assert SAMPLE_PATH.read_text().startswith("# SYNTHETIC funding rates, not a venue's")
    shipped = load_funding("sample")
    assert [(r["timestamp"], r["fundingRate"]) for r in shipped] == \
        [(r["timestamp"], r["fundingRate"]) for r in synthetic_funding()]
    assert shipped[0]["timestamp"] == 1_704_067_200_000 and len(shipped) == 270
    assert shipped[-1]["timestamp"] - shipped[0]["timestamp"] == 269 * 8 * 3_600_000


def test_a_history_round_trips_through_csv(tmp_path: Path) -> None:
    rates = synthetic_funding("2024-03-01", 9, seed=1)
    path = save_funding(funding_path("bybit", "BTC/USDT:USDT", tmp_path), rates)
    assert path == tmp_path / "bybit" / "BTC_USDT_USDT.csv"
    again = load_funding(path)
    assert [(r["timestamp"], r["fundingRate"]) for r in again] == [(r["timestamp"], r["fundingRate"]) for r in rates]


def test_gaps_are_reported_with_the_first_missing_time_and_the_count_and_left_missing(tmp_path: Path) -> None:
    rates = synthetic_funding("2024-01-01", 12)
    holed = rates[:2] + rates[5:9] + rates[10:]  # 08:00 day 1 kept; 16:00 day 1, 00:00 and 08:00 day 2 gone; one more
    path = save_funding(tmp_path / "holed.csv", holed)
    with pytest.raises(FundingGapError, match=r"has 4 missing funding times \(every 8 h\); first missing: "
                                              r"2024-01-01T16:00:00\+00:00 \(left missing, not filled\)"):
        load_funding(path)
    with pytest.warns(FundingGapWarning, match="4 missing funding times"):
        kept = load_funding(path, on_gap="warn")
    assert len(kept) == len(holed)  # nothing was filled in
    assert funding_gaps([r["timestamp"] for r in rates]) == (0, None)
    # Missing at the ends of a requested range counts too; timestamps a few ms late are on time.
    late = [{"timestamp": r["timestamp"] + 3, "fundingRate": r["fundingRate"]} for r in rates]
    assert funding_gaps([r["timestamp"] for r in late], start="2023-12-31T16:00:00+00:00",
                        end=rates[-1]["timestamp"] + DAY_MS) == (4, 1_704_038_400_000)


def test_record_funding_refuses_what_it_cannot_ask_without_calling_anyone(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown ccxt exchange 'nowhere'"):
        record_funding("nowhere", "BTC/USDT:USDT", "2024-01-01", "2024-02-01", root=tmp_path)


def test_the_broker_charges_the_sample_history_bar_by_bar(tmp_path: Path) -> None:
    rates = load_funding("sample")
    b = PaperBroker(tmp_path, balances={"USDT": 10_000.0}, fees=0.0)
    b.add_market("BTC/USDT:USDT")
    assert b.set_funding_rates("BTC/USDT:USDT", rates) == 270
    b.set_leverage(5, "BTC/USDT:USDT")
    t0 = rates[0]["timestamp"] / 1000 - 7_200  # 2023-12-31 22:00 UTC
    b.on_bar("BTC/USDT:USDT", Bar(t0, 40_000, 40_000, 40_000, 40_000))
    b.create_order("BTC/USDT:USDT", "market", "sell", 0.5)
    closes = {}
    for k in range(1, 74):  # three days of hourly bars
        close = 40_000 + 25 * k
        b.on_bar("BTC/USDT:USDT", Bar(t0 + 3_600 * k, close - 25, close + 10, close - 35, close))
        closes[t0 + 3_600 * k] = close
    by_time = {r["timestamp"]: r["fundingRate"] for r in rates}
    history = b.fetch_funding_history("BTC/USDT:USDT")
    assert len(history) == 9 and not any(h["info"]["missing"] for h in history)
    for h in history:
        mark = closes[h["timestamp"] / 1000 - 3_600]
        assert h["amount"] == pytest.approx(0.5 * mark * by_time[h["timestamp"]], rel=1e-12)  # a short receives
    [pos] = b.fetch_positions()
    assert pos["info"]["fundingPaid"] == pytest.approx(-sum(h["amount"] for h in history))
