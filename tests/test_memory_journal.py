"""The core-memory journal: the seed's line format, durable appends, clear errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from memlab.errors import InvalidInputError
from memlab.memory import CorruptMemoryError, MemoryJournal, MemoryStores

SEED_LINES = [
    "[2025-10-16 14:30:15] Strategy: momentum - Decision: BUY - Confidence: 0.85",
    "[2025-10-16 14:35:20] Entry Price: 65000 - Stop Loss: 64500 - Target: 66000",
    "[2025-10-16 14:40:00] P&L: +$500 - Closed position successfully",
    "[2025-10-16 14:45:00] Learned: Support at 64500 is strong - record for future",
]


def test_writes_the_seed_format_exactly(memory_dir: Path) -> None:
    journal = MemoryJournal(memory_dir)
    journal.append(
        {"Strategy": "momentum", "Decision": "BUY", "Confidence": 0.85}, at="2025-10-16 14:30:15"
    )
    journal.append(
        {"Entry Price": 65000, "Stop Loss": 64500, "Target": 66000}, at="2025-10-16 14:35:20"
    )
    journal.append({"P&L": "+$500"}, note="Closed position successfully", at="2025-10-16 14:40:00")
    journal.append(
        {"Learned": "Support at 64500 is strong"},
        note="record for future",
        at="2025-10-16 14:45:00",
    )
    assert (memory_dir / "core_memory_updates.txt").read_text().splitlines() == SEED_LINES


def test_reads_a_hand_written_seed_journal(memory_dir: Path) -> None:
    memory_dir.mkdir()
    (memory_dir / "core_memory_updates.txt").write_text("\n".join(SEED_LINES) + "\n")
    entries = MemoryJournal(memory_dir).entries()
    assert [e.fields for e in entries[:2]] == [
        {"Strategy": "momentum", "Decision": "BUY", "Confidence": "0.85"},
        {"Entry Price": "65000", "Stop Loss": "64500", "Target": "66000"},
    ]
    assert entries[2].notes == ("Closed position successfully",)
    assert entries[0].time == datetime(2025, 10, 16, 14, 30, 15, tzinfo=UTC)
    assert [str(e) for e in entries] == SEED_LINES


def test_values_with_separators_read_back_unchanged(memory_dir: Path) -> None:
    journal = MemoryJournal(memory_dir)
    tricky = "range 64500 - 65000: tested twice\nthen broke \\ out"
    journal.append({"Note": tricky}, note="a note: with - separators")
    entry = journal.entries()[0]
    assert entry.fields["Note"] == tricky
    assert entry.notes == ("a note: with - separators",)
    assert len((memory_dir / "core_memory_updates.txt").read_text().splitlines()) == 1


def test_search_by_time_range_key_and_value(memory_dir: Path) -> None:
    journal = MemoryJournal(memory_dir)
    journal.append_many(
        [
            ("2025-10-16 10:00:00", {"Strategy": "momentum", "Decision": "BUY"}, ()),
            ("2025-10-16 11:00:00", {"Strategy": "sma_cross", "Decision": "SELL"}, ()),
            ("2025-10-16 12:00:00", {"Learned": "RSI below 30 bounces"}, ()),
            ("2025-10-17 09:00:00", {"Strategy": "momentum", "Decision": "SELL"}, ()),
        ]
    )
    assert len(journal.entries(since="2025-10-16 10:30", until="2025-10-16 23:59")) == 2
    assert [e.fields["Decision"] for e in journal.entries(key="Decision")] == [
        "BUY",
        "SELL",
        "SELL",
    ]
    assert len(journal.entries(where={"Strategy": "momentum", "Decision": "SELL"})) == 1
    assert journal.entries(contains="rsi below")[0].fields["Learned"] == "RSI below 30 bounces"
    frame = journal.frame(key="Strategy")
    assert str(frame.index.tz) == "UTC" and list(frame["Strategy"]) == [
        "momentum",
        "sma_cross",
        "momentum",
    ]


def test_malformed_line_names_file_and_line_and_changes_nothing(memory_dir: Path) -> None:
    journal = MemoryJournal(memory_dir)
    journal.append({"Strategy": "momentum"})
    path = memory_dir / "core_memory_updates.txt"
    with open(path, "a") as handle:
        handle.write("this is not a journal line\n")
    before = path.read_bytes()
    with pytest.raises(CorruptMemoryError) as err:
        journal.entries()
    assert err.value.line == 2 and str(path) in str(err.value)
    assert path.read_bytes() == before


def test_torn_last_line_from_a_crash_is_set_aside_not_lost(memory_dir: Path) -> None:
    journal = MemoryJournal(memory_dir)
    journal.append({"Strategy": "momentum", "Decision": "BUY"})
    path = memory_dir / "core_memory_updates.txt"
    with open(path, "ab") as handle:
        handle.write(b"[2025-10-16 14:3")  # what a kill -9 mid-write can leave
    assert len(journal.entries()) == 1  # reading skips the unacknowledged tail
    journal.append({"Strategy": "sma_cross", "Decision": "SELL"})
    assert [e.fields["Strategy"] for e in journal.entries()] == ["momentum", "sma_cross"]
    torn = list(memory_dir.glob("core_memory_updates.txt.torn-*"))
    assert len(torn) == 1 and torn[0].read_bytes() == b"[2025-10-16 14:3"


@pytest.mark.parametrize(
    "fields", [{"": "x"}, {"Bad: key": "x"}, {"[Key": "x"}, {"Confidence": float("nan")}, {}]
)
def test_bad_entries_are_refused(memory_dir: Path, fields: dict[str, object]) -> None:
    journal = MemoryJournal(memory_dir)
    with pytest.raises(InvalidInputError):
        journal.append(fields)
    assert not (memory_dir / "core_memory_updates.txt").exists()


def test_every_append_is_in_the_audit_trail(memory_dir: Path) -> None:
    mem = MemoryStores(memory_dir)
    mem.journal.append({"A": 1})
    mem.journal.append_many([{"B": 2}, {"C": 3}])
    records = mem.audit.for_file("core_memory_updates.txt")
    assert [(r["start"], r["end"]) for r in records][0][0] == 0
    assert records[-1]["end"] == (memory_dir / "core_memory_updates.txt").stat().st_size
    assert len(records) == 2  # one record per durable write, batches included


def test_audit_chain_holds_across_records_longer_than_a_read_block(memory_dir: Path) -> None:
    """Each record links to the one before it, found by reading the log's tail: a record
    of any length (here 20 kB and 100 kB ones) must not break the chain."""
    mem = MemoryStores(memory_dir)
    for size in (10, 20_000, 10, 100_000, 10):
        mem.audit.record("notes.txt", "append", note="x" * size)
    assert [r["seq"] for r in mem.audit.entries()] == [1, 2, 3, 4, 5]
    assert mem.audit.chain_problems() == []


def test_tail_returns_the_last_entries_with_their_line_numbers(memory_dir: Path) -> None:
    journal = MemoryJournal(memory_dir)
    journal.append_many([{"N": i} for i in range(50)])
    tail = journal.tail(3)
    assert [(e.line, e.fields["N"]) for e in tail] == [(48, "47"), (49, "48"), (50, "49")]
    assert journal.tail(0) == [] and len(journal.tail(500)) == 50


def test_batch_writes_once_at_the_end(memory_dir: Path) -> None:
    mem = MemoryStores(memory_dir)
    path = memory_dir / "core_memory_updates.txt"
    with mem.journal.batch():
        for i in range(100):
            mem.journal.append({"Bar": i, "Decision": "HOLD"})
        assert not path.exists()  # nothing written until the block ends
    assert [int(e.fields["Bar"]) for e in mem.journal.entries()] == list(range(100))
    assert len(mem.audit.for_file("core_memory_updates.txt")) == 1  # one durable write
    with pytest.raises(RuntimeError), mem.journal.batch():
        mem.journal.append({"Bar": 100})
        raise RuntimeError("the loop died")
    assert mem.journal.tail(1)[0].fields["Bar"] == "100"  # appended lines are not lost
