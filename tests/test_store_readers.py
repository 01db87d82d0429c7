"""Each store owns its SQL and is read through its own read API.

The guard: a store's table names appear in SQL only in the module that owns the store, so
a schema change cannot silently break the monitor, ``memlab memory verify`` or the agent.
The readers: on real files written by the real stores, a reader sees what the writer
committed, never changes the file, and says which store is missing or damaged.
"""

from __future__ import annotations

import ast
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import memlab
from memlab.agent import DefaultBrain
from memlab.connectors.paper_broker import Bar, PaperBookReader, PaperBroker
from memlab.dashboard.snapshot import read_snapshot
from memlab.memory import Decision, MemoryStores, Outcome
from memlab.memory.archival import ArchivalMemory, ArchivalReader
from memlab.memory.audit import AUDITED_SQLITE_FILES
from memlab.memory.core_memory import CoreMemory, read_core_memory
from memlab.memory.decisions import DecisionReader, DecisionStore
from memlab.memory.errors import CorruptMemoryError
from memlab.trader.equity import EquityLog, read_equity
from memlab.webhooks import WebhookConfig, WebhookServer
from memlab.webhooks.inbound import WebhookLogReader
from tests.support.webhooks import SECRET, Recorder, alert, post, signed

PACKAGE = Path(memlab.__file__).parent
#: Each SQLite store and the one module that owns its tables.
OWNERS = {
    "decisions.sqlite": "memory/decisions.py",
    "paper_broker.sqlite": "connectors/paper_broker.py",
    "archival.sqlite": "memory/archival.py",
    "webhooks.sqlite": "webhooks/inbound.py",
    "equity.sqlite": "trader/equity.py",
}
SQL_TABLE = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?[\"`\[]?([A-Za-z_]\w*)")


# -- writing every store through its real writer -------------------------------------------
def write_paper_book(root: Path) -> PaperBroker:
    broker = PaperBroker(root, balances={"USD": 10_000.0}, fees=0.001)
    broker.add_market("X/USD")
    broker.on_bar("X/USD", Bar(60.0, 100, 101, 99, 100))
    broker.create_order("X/USD", "market", "buy", 10, params={"clientOrderId": "buy-1"})
    broker.on_bar("X/USD", Bar(120.0, 102, 103, 101, 102))
    broker.create_order("X/USD", "market", "sell", 4, params={"clientOrderId": "sell-1"})
    broker.on_bar("X/USD", Bar(180.0, 104, 105, 103, 104))
    broker.create_order("X/USD", "limit", "buy", 1, price=50.0, params={"clientOrderId": "pending"})
    return broker


def write_decisions(root: Path) -> DecisionStore:
    store = DecisionStore(root)
    for i in range(6):
        strategy, action = ("momentum", "BUY") if i % 3 else ("reversal", "SELL")
        outcome = None if i == 5 else Outcome(pnl=10.0 if i % 2 else -5.0, return_pct=1.0, closed_at=_t(100 + i))
        store.record(Decision("BTCUSDT", strategy, action, 0.6, reason=f"decision {i}", decided_at=_t(i),
                              features={"ret_5": float(i)}, meta={"similar": i}, outcome=outcome))
    return store


def write_archival(root: Path) -> ArchivalMemory:
    arch = ArchivalMemory(root)
    arch.insert("Learned: Support at 64500 is strong", tags=["BTCUSDT"])
    arch.insert("Learned: breakouts on volume hold")
    return arch


def write_webhook_log(root: Path) -> WebhookServer:
    config = WebhookConfig(port=0, rate=1000, burst=1000)
    server = WebhookServer(config, SECRET, Recorder(), store_dir=root).start()
    assert post(server.url, *signed(alert("ok-1")))[0] == 200
    assert post(server.url, json.dumps(alert("bad-1")).encode())[0] == 401
    return server


def write_equity(root: Path) -> EquityLog:
    log = EquityLog(root, ["X/USD"])
    log.hold(1_000.0, [0.0])
    log.mark(60.0, [100.0])
    log.hold(0.0, [10.0])
    log.mark(120.0, [110.0])
    log.flush()
    return log


def _t(day: int) -> datetime:
    return datetime.fromtimestamp(1_700_000_000 + day * 86_400, UTC)


#: Store file -> (write it, every read its reader offers).
STORES: dict[str, tuple[Callable[[Path], Any], Callable[[Path], list[Any]]]] = {
    "paper_broker.sqlite": (write_paper_book, lambda root: [
        (r := PaperBookReader(root)).positions(), r.orders(), r.fills(), r.balances(), r.first_fill_time(0, 1e9)]),
    "decisions.sqlite": (write_decisions, lambda root: [
        (r := DecisionReader(root)).recent(), r.chain(), r.win_rate_history().count(None, None)]),
    "archival.sqlite": (write_archival, lambda root: [
        (r := ArchivalReader(root)).search("support"), r.recent(), r.texts()]),
    "webhooks.sqlite": (write_webhook_log, lambda root: [WebhookLogReader(root).requests()]),
    "equity.sqlite": (write_equity, lambda root: [read_equity(root)]),
}


def _close(writer: Any) -> None:
    (writer.stop if isinstance(writer, WebhookServer) else writer.close)()


@pytest.fixture
def written(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path, Any]]:
    name = request.param
    writer = STORES[name][0](tmp_path)
    yield name, tmp_path, writer
    _close(writer)


# -- the guard --------------------------------------------------------------------------------
def store_tables(tmp_path: Path) -> dict[str, str]:
    """Table name -> owner module, from the files the real writers create."""
    owned: dict[str, str] = {}
    for name, (write, _) in STORES.items():
        root = tmp_path / name
        _close(write(root))
        with sqlite3.connect(root / name) as conn:
            for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
                owned[table] = OWNERS[name]
    return owned


def sql_violations(sources: dict[str, str], owned: dict[str, str]) -> list[str]:
    """``module: table`` for every SQL string that names a store's table outside its owner."""
    found = []
    for module, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for table in SQL_TABLE.findall(node.value):
                    if table in owned and owned[table] != module:
                        found.append(f"{module}:{node.lineno}: {table} (owned by {owned[table]})")
    return found


def package_sources() -> dict[str, str]:
    return {p.relative_to(PACKAGE).as_posix(): p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py"))}


def test_only_a_stores_owner_writes_sql_against_its_tables(tmp_path: Path) -> None:
    owned = store_tables(tmp_path)
    assert {"decisions", "outcomes", "orders", "fills", "passages", "requests", "blocks"} <= set(owned)
    assert sql_violations(package_sources(), owned) == []


def test_the_guard_catches_a_module_that_reads_another_stores_tables(tmp_path: Path) -> None:
    owned = store_tables(tmp_path)
    monitor = ('rows = conn.execute("SELECT d.id, o.pnl FROM decisions d LEFT JOIN outcomes o "\n'
               '                    "ON o.decision_id = d.id")\n'
               'conn.execute(f"SELECT p.{col} FROM passages_fts f JOIN passages p ON p.rowid = f.rowid")\n')
    assert sql_violations({"dashboard/snapshot.py": monitor}, owned) == [
        "dashboard/snapshot.py:1: decisions (owned by memory/decisions.py)",
        "dashboard/snapshot.py:1: outcomes (owned by memory/decisions.py)",
        "dashboard/snapshot.py:3: passages_fts (owned by memory/archival.py)",
        "dashboard/snapshot.py:3: passages (owned by memory/archival.py)",
    ]
    assert sql_violations({"memory/decisions.py": monitor.split("\n", 2)[0] + ')'}, owned) == []


def test_the_audit_trails_tables_are_the_stores_own(tmp_path: Path) -> None:
    owned = store_tables(tmp_path)
    for name, tables in AUDITED_SQLITE_FILES.items():
        assert {owned.get(t) for t in tables} == {OWNERS[name]}, (name, tables)


# -- the readers ------------------------------------------------------------------------------
@pytest.mark.parametrize("written", ["paper_broker.sqlite"], indirect=True)
def test_the_paper_book_reader_sees_what_the_broker_committed(written: tuple[str, Path, PaperBroker]) -> None:
    _, root, broker = written
    reader = PaperBookReader(root)
    [pos] = broker.fetch_positions()
    positions = reader.positions()
    assert positions[["symbol", "quantity", "entry_price", "mark_price"]].values.tolist() == [
        [pos["symbol"], pos["contracts"], pos["entryPrice"], pos["markPrice"]]]
    assert positions["unrealized_pnl"].iloc[0] == pytest.approx(pos["unrealizedPnl"])
    fills = reader.fills()
    assert fills["id"].tolist() == [f["id"] for f in broker.fills()]
    assert fills["pnl"].notna().tolist() == [False, True] and str(fills["time"].dt.tz) == "UTC"
    assert reader.fills(after_id=int(fills["id"].iloc[0]))["id"].tolist() == [fills["id"].iloc[1]]
    orders = reader.orders()
    assert orders["id"].astype(str).tolist() == sorted((str(i) for i in orders["id"]), key=int, reverse=True)
    assert set(orders.loc[orders["status"] == "open", "id"].astype(str)) == {o["id"] for o in broker.fetch_open_orders()}
    assert reader.balances() == broker.fetch_balance()["total"]
    assert reader.first_fill_time(0.0, 1e9) == 120.0 and reader.first_fill_time(120.0, 1e9) == 180.0
    assert reader.first_fill_time(180.0, 1e9) is None


@pytest.mark.parametrize("written", ["decisions.sqlite"], indirect=True)
def test_the_decision_reader_sees_what_the_store_committed(written: tuple[str, Path, DecisionStore]) -> None:
    _, root, store = written
    reader = DecisionReader(root)
    recent = reader.recent(4)
    assert recent["reason"].tolist() == store.recent(4)["reason"].tolist()[::-1]
    assert recent["pnl"].isna().tolist() == [True, False, False, False]  # the newest is still open
    assert json.loads(recent["meta"].iloc[0]) == {"similar": 5}
    chain = reader.chain()
    assert (chain.integrity, chain.first_break, sorted(chain.decision_heads)) == ("ok", None, [1, 2, 3, 4, 5, 6])
    store.close_outcome(6, pnl=3.0, closed_at=_t(200))  # committed by the open writer: seen at once
    assert not DecisionReader(root).recent(1)["pnl"].isna().any()


@pytest.mark.parametrize("written", ["decisions.sqlite"], indirect=True)
def test_the_agents_prior_counts_what_the_stores_win_rates_count(written: tuple[str, Path, DecisionStore]) -> None:
    _, root, store = written
    brain = DefaultBrain(store)
    for as_of in (None, _t(102).timestamp(), _t(104).timestamp() + 1):
        rates = store.win_rates(as_of=as_of)
        for (strategy, action), row in rates.iterrows():
            assert brain.priors.rate(strategy, action, 0.5, as_of) == (row["win_rate"], row["n"])
        total = rates["n"].sum()
        assert brain.priors.overall(0.5, as_of) == (rates["wins"].sum() / total if total else 0.5)


@pytest.mark.parametrize("written", ["archival.sqlite"], indirect=True)
def test_the_archival_reader_sees_what_the_agent_wrote(written: tuple[str, Path, ArchivalMemory]) -> None:
    _, root, arch = written
    reader = ArchivalReader(root)
    assert reader.search("breakout", order="recent")["text"].tolist() == ["Learned: breakouts on volume hold"]
    assert reader.recent(5)["text"].tolist() == arch.recent(5)["text"].tolist()
    assert reader.recent(5)["tags"].tolist() == [["BTCUSDT"], []]
    assert reader.texts() == {1: "Learned: Support at 64500 is strong", 2: "Learned: breakouts on volume hold"}


@pytest.mark.parametrize("written", ["webhooks.sqlite"], indirect=True)
def test_the_webhook_log_reader_sees_every_request(written: tuple[str, Path, WebhookServer]) -> None:
    _, root, server = written
    requests = WebhookLogReader(root).requests()
    logged = server.requests()[::-1]
    ids = [a if isinstance(a, str) else None for a in requests["alert_id"]]  # a refused request has none
    assert list(zip(requests["status"], ids, strict=True)) == [(r["status"], r["alert_id"]) for r in logged]
    assert requests["status"].tolist() == [401, 200] and set(requests["webhook"]) == {"alerts"}
    assert WebhookLogReader(root).requests(webhook="other").empty


def test_the_core_memory_reader_reads_the_blocks_the_agent_wrote(memory_dir: Path) -> None:
    with MemoryStores(memory_dir) as mem:
        core = CoreMemory(mem.path, journal=mem.journal, audit=mem.audit)
        core.append("market_notes", "Support at 64500 is strong")
        assert read_core_memory(memory_dir) == core.blocks()
    assert read_core_memory(memory_dir)["market_notes"].value == "Support at 64500 is strong"


@pytest.mark.parametrize("written", list(STORES), indirect=True)
def test_a_reader_never_changes_the_file(written: tuple[str, Path, Any]) -> None:
    name, root, writer = written
    _close(writer)
    path = root / name
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    assert all(result is not None for result in STORES[name][1](root))
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


@pytest.mark.parametrize("name", list(STORES))
def test_a_missing_store_is_named_and_never_created(name: str, tmp_path: Path) -> None:
    if name == "equity.sqlite":
        assert read_equity(tmp_path) is None  # a folder from before the log: said, not invented
    else:
        with pytest.raises(FileNotFoundError, match=re.escape(name)) as caught:
            STORES[name][1](tmp_path)
        assert caught.value.filename == str(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", list(STORES))
def test_a_corrupt_store_is_named(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(b"not a database, whatever the name says " * 200)
    before = path.read_bytes()
    with pytest.raises(CorruptMemoryError, match=re.escape(str(path))) as caught:
        STORES[name][1](tmp_path)
    assert caught.value.path == path and "not a readable SQLite database" in str(caught.value)
    assert path.read_bytes() == before


def test_a_file_of_another_program_is_named_not_misread(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "decisions.sqlite") as conn:
        conn.execute("CREATE TABLE something_else (x)")
    with pytest.raises(CorruptMemoryError, match="no such table: decisions"):
        DecisionReader(tmp_path).recent()


def test_the_monitor_names_a_damaged_store_and_shows_the_others(tmp_path: Path) -> None:
    write_paper_book(tmp_path).close()
    (tmp_path / "decisions.sqlite").write_bytes(b"\x00garbage" * 500)
    snap = read_snapshot(tmp_path)
    assert snap.positions is not None and len(snap.fills) == 2 and snap.balances is not None
    assert snap.decisions is None and snap.webhooks is None and snap.equity is None
    [error] = snap.errors
    assert error.startswith("decisions: CorruptMemoryError: ") and str(tmp_path / "decisions.sqlite") in error
    assert "decision store" in error
