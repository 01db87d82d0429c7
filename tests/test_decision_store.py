"""The decision store: durable records, outcomes, full-text search, similar situations."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from memlab.errors import InvalidInputError
from memlab.features import FEATURE_NAMES
from memlab.memory import CorruptMemoryError, Decision, DecisionStore, Outcome

T0 = datetime(2025, 10, 16, 14, 30, tzinfo=UTC)


def make(i: int, vector: np.ndarray, **kw: object) -> Decision:
    base = dict(
        symbol="BTCUSDT",
        strategy="momentum",
        action="BUY",
        confidence=0.7,
        reason=f"decision {i}",
        features=dict(zip(FEATURE_NAMES, map(float, vector), strict=True)),
        decided_at=T0 + timedelta(minutes=i),
    )
    base.update(kw)
    return Decision(**base)  # type: ignore[arg-type]


def test_round_trip_with_outcome(memory_dir: Path) -> None:
    store = DecisionStore(memory_dir)
    feats = np.arange(len(FEATURE_NAMES), dtype=float)
    i = store.record(make(0, feats, price=65000.0, notes="first", meta={"order_id": "abc"}))
    store.close_outcome(
        i, pnl=500.0, return_pct=0.77, closed_at=T0 + timedelta(hours=1), notes="target hit"
    )
    got = store.get(i)
    assert (got.symbol, got.action, got.price, got.meta) == (
        "BTCUSDT",
        "BUY",
        65000.0,
        {"order_id": "abc"},
    )
    assert got.features == dict(zip(FEATURE_NAMES, feats, strict=True))
    assert got.decided_at == T0
    assert got.outcome is not None and (got.outcome.pnl, got.outcome.return_pct) == (500.0, 0.77)
    assert got.outcome.closed_at == T0 + timedelta(hours=1)
    frame = store.frame()
    assert str(frame.index.tz) == "UTC" and frame.iloc[0]["pnl"] == 500.0


def test_outcomes_are_not_overwritten_but_repeats_are_harmless(memory_dir: Path) -> None:
    store = DecisionStore(memory_dir)
    i = store.record(make(0, np.zeros(6)))
    store.close_outcome(i, pnl=10.0, return_pct=1.0)
    store.close_outcome(i, pnl=10.0, return_pct=1.0)  # a retried close
    with pytest.raises(InvalidInputError, match="already has an outcome"):
        store.close_outcome(i, pnl=-10.0, return_pct=-1.0)
    with pytest.raises(KeyError):
        store.close_outcome(999, pnl=1.0)
    assert store.get(i).outcome.pnl == 10.0  # type: ignore[union-attr]


def test_keys_make_recording_idempotent(memory_dir: Path) -> None:
    store = DecisionStore(memory_dir)
    first = store.record_many([make(i, np.full(6, i), key=f"train:{i}") for i in range(3)])
    again = store.record_many([make(i, np.full(6, i), key=f"train:{i}") for i in range(4)])
    assert again[:3] == first and store.count() == 4


def test_one_invalid_decision_writes_nothing(memory_dir: Path) -> None:
    store = DecisionStore(memory_dir)
    batch = [make(0, np.zeros(6)), make(1, np.zeros(6), confidence=1.5)]
    with pytest.raises(InvalidInputError, match="confidence"):
        store.record_many(batch)
    assert store.count() == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"symbol": ""}, "symbol"),
        ({"confidence": float("nan")}, "confidence"),
        ({"features": {"ret_5": 1.0}}, "differ"),
        ({"features": dict.fromkeys(FEATURE_NAMES, float("inf"))}, "finite"),
        ({"meta": {"x": object()}}, "meta"),
    ],
)
def test_bad_decisions_name_the_problem(
    memory_dir: Path, change: dict[str, object], message: str
) -> None:
    store = DecisionStore(memory_dir)
    store.record(make(0, np.zeros(6)))
    with pytest.raises(InvalidInputError, match=message):
        store.record(make(1, np.zeros(6), **change))


def test_full_text_search_over_reasons_and_outcome_notes(memory_dir: Path) -> None:
    store = DecisionStore(memory_dir)
    ids = store.record_many(
        [
            make(0, np.zeros(6), reason="breakout above resistance on volume"),
            make(1, np.zeros(6), reason="fading the rally into resistance"),
            make(2, np.zeros(6), reason="support bounce"),
        ]
    )
    store.close_outcome(ids[2], pnl=-5.0, notes="stopped out: support broke on news")
    assert list(store.search("resistance").index) == [ids[1], ids[0]]  # newest first
    assert list(store.search("breakouts volume").index) == [ids[0]]  # stemming, all words
    assert list(store.search("news").index) == [ids[2]]  # outcome notes are searchable
    assert set(store.search("support OR volume", raw=True).index) == {ids[0], ids[2]}
    assert len(store.search("resistance", order="relevance")) == 2
    with pytest.raises(InvalidInputError):
        store.search("???")


def brute_force(x: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    mean, std = x.mean(axis=0), x.std(axis=0)
    d = np.sqrt((((x - mean) / std - (q - mean) / std) ** 2).sum(axis=1))
    return list(np.argsort(d, kind="stable")[:k] + 1)


def test_nearest_matches_a_brute_force_scan_with_filters(memory_dir: Path) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 6)) * [1, 5, 0.1, 1, 20, 3]  # very different units
    x = x.astype(np.float32).astype(np.float64)
    strategies = rng.choice(["momentum", "sma_cross"], size=len(x))
    store = DecisionStore(memory_dir)
    store.record_many(
        [make(i, x[i], strategy=str(strategies[i])) for i in range(len(x))], batch_size=1000
    )
    closed = [i + 1 for i in range(0, len(x), 3)]
    for i in closed:
        store.close_outcome(i, pnl=1.0)
    q = rng.normal(size=6) * [1, 5, 0.1, 1, 20, 3]
    assert list(store.nearest(q, k=15).index) == brute_force(x, q, 15)

    hood = store.neighbourhood(q, k=10, strategy="sma_cross", closed_only=True)
    mask = (strategies == "sma_cross") & np.isin(np.arange(1, len(x) + 1), closed)
    mean, std = x.mean(axis=0), x.std(axis=0)
    d = np.sqrt((((x - q) / std) ** 2).sum(axis=1))
    d[~mask] = np.inf
    assert list(hood.ids) == list(np.argsort(d, kind="stable")[:10] + 1)
    assert np.all(hood.pnl == 1.0)
    assert np.allclose(hood.distance, np.sort(d)[:10])
    assert len(store.nearest(q, k=5, symbol="NOPE")) == 0
    del mean


def test_nearest_sees_new_decisions_from_this_and_other_processes(memory_dir: Path) -> None:
    store = DecisionStore(memory_dir)
    store.record_many([make(i, np.full(6, float(i))) for i in range(50)])
    far = np.full(6, 1000.0)
    assert store.nearest(far, k=1).index[0] == 50
    store.record(make(50, np.full(6, 999.0)))  # this process
    assert store.nearest(far, k=1).index[0] == 51
    script = textwrap.dedent(
        f"""
        import numpy as np
        from pathlib import Path
        from memlab.memory import DecisionStore, Decision
        from memlab.features import FEATURE_NAMES
        s = DecisionStore(Path({str(memory_dir)!r}))
        s.record(Decision("BTCUSDT", "momentum", "BUY", 0.5, "other process",
                          features=dict.fromkeys(FEATURE_NAMES, 1000.0)))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert store.nearest(far, k=1).iloc[0]["reason"] == "other process"


def test_damaged_database_is_a_clear_error_and_is_left_alone(memory_dir: Path) -> None:
    memory_dir.mkdir()
    path = memory_dir / "decisions.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CorruptMemoryError) as err:
        DecisionStore(memory_dir)
    assert str(path) in str(err.value) and "quarantine" in str(err.value)
    assert path.read_bytes() == b"this is not a database" * 100


def test_store_uses_wal_and_durable_commits(memory_dir: Path) -> None:
    store = DecisionStore(memory_dir)
    store.record(make(0, np.zeros(6)))
    conn = sqlite3.connect(memory_dir / "decisions.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_outcome_given_with_the_decision(memory_dir: Path) -> None:
    store = DecisionStore(memory_dir)
    [i] = store.record_many(
        [make(0, np.zeros(6), outcome=Outcome(pnl=-3.0, return_pct=-0.3, closed_at=T0))]
    )
    assert store.get(i).outcome.pnl == -3.0  # type: ignore[union-attr]
    assert store.neighbourhood(np.zeros(6), k=1, closed_only=True).ids.tolist() == [i]


def test_frame_filters_by_agent(memory_dir: Path) -> None:
    store = DecisionStore(memory_dir)
    store.record_many([make(i, np.zeros(6), agent_id="trainer" if i % 2 else "trader_001") for i in range(10)])
    mine = store.frame(agent_id="trader_001", limit=3)
    assert list(mine["id"]) == [5, 7, 9] and set(mine["agent_id"]) == {"trader_001"}


def test_win_rates_by_strategy_and_action(memory_dir: Path) -> None:
    store = DecisionStore(memory_dir)
    ids = store.record_many([make(i, np.zeros(6), action="BUY" if i < 6 else "SELL") for i in range(8)])
    for i, pnl in zip(ids, [5, -1, 3, 2, -4, 1, -2, 7], strict=True):
        store.close_outcome(i, pnl=float(pnl), return_pct=float(pnl) / 10)
    rates = store.win_rates()
    assert rates.loc[("momentum", "BUY"), "n"] == 6 and rates.loc[("momentum", "BUY"), "wins"] == 4
    assert rates.loc[("momentum", "SELL"), "win_rate"] == 0.5
    assert rates.loc[("momentum", "BUY"), "mean_return_pct"] == pytest.approx(0.6 / 6 * 10 / 10)


def test_recall_depends_on_what_the_store_holds_not_on_when_the_index_was_built(tmp_path: Path) -> None:
    # A trader that restarts must decide exactly as one that never stopped: the same rows
    # give the same neighbours and distances whatever queries came before.
    rng = np.random.default_rng(8)
    x = (rng.normal(size=(9000, 6)) * [1, 5, 0.1, 1, 20, 3]).astype(np.float32).astype(np.float64)
    q = rng.normal(size=6) * [1, 5, 0.1, 1, 20, 3]
    grown = DecisionStore(tmp_path / "grown")
    for lo in range(0, len(x), 700):  # queried after every batch, as a live agent would
        grown.record_many([make(i, x[i]) for i in range(lo, min(lo + 700, len(x)))])
        grown.neighbourhood(q, k=20)
    fresh = DecisionStore(tmp_path / "fresh")
    fresh.record_many([make(i, x[i]) for i in range(len(x))], batch_size=5000)
    a, b = grown.neighbourhood(q, k=20), fresh.neighbourhood(q, k=20)
    assert list(a.ids) == list(b.ids)
    assert np.array_equal(a.distance, b.distance)
