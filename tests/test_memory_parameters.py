"""parameter_updates.json: dated values, reasons, history, atomic writes, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memlab.errors import InvalidInputError
from memlab.memory import CorruptMemoryError, ParameterStore

SEED_DOC = {
    "2025-10-16": {
        "momentum_threshold": 0.05,
        "position_size": 0.1,
        "risk_per_trade": 0.02,
        "adjustments": {
            "reason": "Increased volatility observed",
            "from": {"momentum_threshold": 0.04},
            "to": {"momentum_threshold": 0.05},
        },
    }
}


def test_set_records_reason_from_and_to(memory_dir: Path) -> None:
    store = ParameterStore(memory_dir)
    store.update(
        {"position_size": 0.1, "risk_per_trade": 0.02}, reason="initial", at="2025-10-15 09:00"
    )
    assert store.set(
        "position_size", 0.07, reason="win rate 0.40 < 0.45", at="2025-10-16 14:30"
    ) == (0.1, 0.07)
    doc = json.loads((memory_dir / "parameter_updates.json").read_text())
    day = doc["2025-10-16"]
    assert day["position_size"] == 0.07 and day["risk_per_trade"] == 0.02  # full snapshot per day
    assert day["adjustments"][-1]["from"] == {"position_size": 0.1}
    assert day["adjustments"][-1]["to"] == {"position_size": 0.07}
    assert day["adjustments"][-1]["reason"] == "win rate 0.40 < 0.45"
    assert store.get("position_size") == 0.07
    history = store.history("position_size")
    assert list(history["to"]) == [0.1, 0.07] and list(history["from"].fillna(-1)) == [-1, 0.1]
    assert str(history.index.tz) == "UTC"


def test_unchanged_values_write_nothing(memory_dir: Path) -> None:
    store = ParameterStore(memory_dir)
    store.set("position_size", 0.1, reason="initial")
    before = (memory_dir / "parameter_updates.json").read_bytes()
    assert store.set("position_size", 0.1, reason="same again") is None
    assert (memory_dir / "parameter_updates.json").read_bytes() == before


def test_reads_the_seed_shape(memory_dir: Path) -> None:
    memory_dir.mkdir()
    (memory_dir / "parameter_updates.json").write_text(json.dumps(SEED_DOC))
    store = ParameterStore(memory_dir)
    assert store.get("momentum_threshold") == 0.05
    assert store.history("momentum_threshold").iloc[0]["from"] == 0.04
    store.set("momentum_threshold", 0.06, reason="more volatility", at="2025-10-17")
    assert store.history("momentum_threshold")["to"].tolist() == [0.05, 0.06]


def test_corrupt_json_names_the_line_and_is_never_overwritten(memory_dir: Path) -> None:
    memory_dir.mkdir()
    path = memory_dir / "parameter_updates.json"
    path.write_text('{\n  "2025-10-16": {\n    "position_size": 0.1,,\n  }\n}\n')
    store = ParameterStore(memory_dir)
    with pytest.raises(CorruptMemoryError) as err:
        store.get("position_size")
    assert err.value.line == 3 and "parameter_updates.json:3" in str(err.value)
    with pytest.raises(CorruptMemoryError):
        store.set("position_size", 0.2, reason="would clobber the damaged file")
    assert path.read_text().startswith('{\n  "2025-10-16"')


def test_wrong_shapes_are_corrupt_not_silently_ignored(memory_dir: Path) -> None:
    memory_dir.mkdir()
    path = memory_dir / "parameter_updates.json"
    path.write_text(json.dumps({"yesterday": {"position_size": 0.1}}))
    with pytest.raises(CorruptMemoryError, match="not a date"):
        ParameterStore(memory_dir).current()


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"position_size": float("inf")}, "x"),
        ({"position_size": object()}, "x"),
        ({"adjustments": 1}, "x"),
        ({"position_size": 1}, " "),
    ],
)
def test_bad_updates_are_refused(memory_dir: Path, values: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidInputError):
        ParameterStore(memory_dir).update(values, reason=reason)


def test_history_is_append_only(memory_dir: Path) -> None:
    store = ParameterStore(memory_dir)
    store.set("position_size", 0.1, reason="initial", at="2025-10-16")
    with pytest.raises(InvalidInputError, match="append-only"):
        store.set("position_size", 0.2, reason="backdated", at="2025-10-01")


def test_writes_leave_no_temporary_files(memory_dir: Path) -> None:
    store = ParameterStore(memory_dir)
    for i in range(5):
        store.set("position_size", 0.1 + i / 100, reason=f"step {i}")
    assert sorted(p.name for p in memory_dir.iterdir() if not p.name.startswith(".")) == [
        "parameter_updates.json"
    ]
    assert not list(memory_dir.glob("*.tmp"))
