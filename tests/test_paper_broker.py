"""The paper broker: ccxt verbs, fills against bars, persistence, crash safety, reconciliation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import ccxt
import pytest

from memlab import backtest
from memlab.connectors import Bar, PaperBroker
from memlab.data import sample


def broker(tmp_path: Path, **kw: float) -> PaperBroker:
    b = PaperBroker(tmp_path, balances={"USDT": 10_000.0}, **kw)
    b.add_market("BTC/USDT")
    b.on_bar("BTC/USDT", Bar(0, 100, 101, 99, 100))
    return b


def test_market_order_fills_at_next_open_with_fees_and_slippage(tmp_path: Path) -> None:
    b = broker(tmp_path, fees=0.001, slippage=0.002)
    order = b.create_order("BTC/USDT", "market", "buy", 10)
    assert order["status"] == "open" and b.fetch_balance()["used"]["USDT"] > 0
    [fill] = b.on_bar("BTC/USDT", Bar(60, 110, 112, 108, 111))
    assert fill["price"] == pytest.approx(110 * 1.002) and fill["amount"] == pytest.approx(10)
    bal = b.fetch_balance()
    assert bal["total"]["USDT"] == pytest.approx(10_000 - 10 * 110 * 1.002 * 1.001)
    assert bal["total"]["BTC"] == pytest.approx(10) and bal["used"]["USDT"] == 0
    [pos] = b.fetch_positions()
    assert pos["markPrice"] == 111 and pos["unrealizedPnl"] == pytest.approx((111 - 110 * 1.002 * 1.001) * 10)
    assert b.fetch_order(order["id"])["status"] == "closed"


def test_limit_orders_fill_only_when_touched_and_cancel_releases_funds(tmp_path: Path) -> None:
    b = broker(tmp_path, fees=0.0)
    order = b.create_order("BTC/USDT", "limit", "buy", 5, 95)
    assert b.on_bar("BTC/USDT", Bar(60, 100, 101, 96, 99)) == []
    [fill] = b.on_bar("BTC/USDT", Bar(120, 97, 98, 94, 95))
    assert fill["price"] == 95
    other = b.create_order("BTC/USDT", "limit", "buy", 5, 50)
    assert b.fetch_balance()["used"]["USDT"] == pytest.approx(250)
    b.cancel_order(other["id"])
    assert b.fetch_balance()["used"]["USDT"] == 0 and b.fetch_open_orders() == []
    assert b.fetch_order(order["id"])["status"] == "closed"


def test_balance_reads_only_open_orders_however_long_the_history(tmp_path: Path) -> None:
    """fetch_balance runs on every fill; on a long session's book (thousands of closed
    orders) it must look up the open orders by index, not scan the history."""
    from memlab.connectors.paper_broker import RESERVED_SQL

    b = broker(tmp_path, fees=0.0, slippage=0.0)
    for i in range(1, 301):
        b.create_order("BTC/USDT", "market", "buy" if i % 2 else "sell", 1)
        b.on_bar("BTC/USDT", Bar(60 * i, 100, 101, 99, 100))
    b.create_order("BTC/USDT", "limit", "buy", 2, 90)
    plan = " ".join(row[-1] for row in b._db.execute("EXPLAIN QUERY PLAN " + RESERVED_SQL,
                                                         {"a": "USDT", "slip": 0.0, "fee": 0.0}))
    assert "USING INDEX orders_live" in plan and "SCAN o" not in plan
    assert b.fetch_balance()["used"]["USDT"] == pytest.approx(180)


def test_stop_loss_and_take_profit_cancel_each_other(tmp_path: Path) -> None:
    b = broker(tmp_path, fees=0.0)
    b.create_order("BTC/USDT", "market", "buy", 10, params={"stopLoss": 95, "takeProfit": 110})
    b.on_bar("BTC/USDT", Bar(60, 100, 101, 99, 100))
    children = b.fetch_open_orders()
    assert sorted(o["type"] for o in children) == ["stop_loss", "take_profit"]
    [fill] = b.on_bar("BTC/USDT", Bar(120, 99, 100, 93, 94))  # gaps through nothing, trades through the stop
    assert fill["price"] == 95 and fill["pnl"] == pytest.approx(-50)
    assert b.fetch_open_orders() == []  # the take-profit was cancelled
    assert b.fetch_positions() == [] and b.fetch_balance()["total"]["USDT"] == pytest.approx(9_950)


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (("ETH/USDT", "market", "buy", 1), ccxt.BadSymbol, "unknown symbol"),
        (("BTC/USDT", "market", "buy", 0), ccxt.InvalidOrder, "quantity must be positive"),
        (("BTC/USDT", "market", "buy", -3), ccxt.InvalidOrder, "quantity must be positive"),
        (("BTC/USDT", "market", "buy", 1000), ccxt.InsufficientFunds, "needs"),
        (("BTC/USDT", "market", "sell", 1), ccxt.InsufficientFunds, "selling"),
        (("BTC/USDT", "limit", "buy", 1), ccxt.InvalidOrder, "needs a positive price"),
    ],
)
def test_invalid_orders_are_rejected_and_change_nothing(tmp_path: Path, args: tuple, error: type, message: str) -> None:  # type: ignore[type-arg]
    b = broker(tmp_path)
    with pytest.raises(error, match=message):
        b.create_order(*args)
    assert b.fetch_open_orders() == [] and b.fetch_balance()["total"] == {"USDT": 10_000.0}


def test_client_order_ids_make_retries_harmless_and_bars_replay_safely(tmp_path: Path) -> None:
    b = broker(tmp_path)
    first = b.create_order("BTC/USDT", "market", "buy", 1, params={"clientOrderId": "sig-42"})
    again = b.create_order("BTC/USDT", "market", "buy", 1, params={"clientOrderId": "sig-42"})
    assert first["id"] == again["id"] and len(b.fetch_open_orders()) == 1
    bar = Bar(60, 100, 101, 99, 100)
    assert len(b.on_bar("BTC/USDT", bar)) == 1
    assert b.on_bar("BTC/USDT", bar) == []  # the same bar again (a replay after a crash)
    assert len(b.fills()) == 1


def test_state_survives_a_restart(tmp_path: Path) -> None:
    b = broker(tmp_path)
    b.create_order("BTC/USDT", "market", "buy", 2)
    b.on_bar("BTC/USDT", Bar(60, 100, 101, 99, 100))
    b.close()
    again = PaperBroker(tmp_path, balances={"USDT": 1.0})  # initial balances only apply to a new book
    assert again.fetch_balance()["total"]["BTC"] == pytest.approx(2)
    assert again.fetch_positions()[0]["contracts"] == pytest.approx(2)


REPLAY = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from memlab.connectors import Bar, PaperBroker
    from memlab.data import sample
    from memlab.strategies import compute_signals

    root, stop_after = Path(sys.argv[1]), int(sys.argv[2])
    bars = sample("GOOG")
    signals = compute_signals("sma_cross", bars, {"fast": 10, "slow": 30})
    b = PaperBroker(root, balances={"USD": 100_000.0}, fees=0.001, slippage=0.0005)
    b.add_market("GOOG", "GOOG", "USD")
    for i, (t, row) in enumerate(bars.iterrows()):
        b.on_bar("GOOG", Bar(t.timestamp(), row.Open, row.High, row.Low, row.Close))
        held = b.fetch_balance()["total"].get("GOOG", 0.0)
        if signals["entry"].iloc[i] and held == 0:
            b.create_order("GOOG", "market", "buy", None, params={"clientOrderId": f"GOOG-{t.isoformat()}",
                                                                  "cost": b.fetch_balance()["free"]["USD"]})
        elif signals["exit"].iloc[i] and held > 0:
            b.create_order("GOOG", "market", "sell", held, params={"clientOrderId": f"GOOG-{t.isoformat()}"})
        print(i, flush=True)
        if i == stop_after:
            break
    print("equity", b.equity("USD"), "fills", len(b.fills()), flush=True)
    """
)


def replay(root: Path, stop_after: int = 10**9) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", REPLAY, str(root), str(stop_after)], capture_output=True, text=True, timeout=300)


def test_paper_fills_reconcile_with_the_backtest_of_the_same_bars(tmp_path: Path) -> None:
    done = replay(tmp_path)
    assert done.returncode == 0, done.stderr
    _, equity, _, fills = done.stdout.splitlines()[-1].split()
    result = backtest.run(sample("GOOG"), "sma_cross", {"fast": 10, "slow": 30}, fees=0.001, slippage=0.0005)
    assert float(equity) / 100_000 - 1 == pytest.approx(result.stats["total_return"], rel=1e-9)
    assert int(fills) == 2 * result.stats["n_trades"] + int(result.stats["open_trade"])


def test_kill_9_mid_replay_then_restart_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    reference = replay(tmp_path / "reference")
    proc = subprocess.Popen([sys.executable, "-c", REPLAY, str(tmp_path / "crashed"), "1000000"],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip().isdigit() and int(line) >= 900:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    resumed = replay(tmp_path / "crashed")  # starts again from the first bar
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines()[-1] == reference.stdout.splitlines()[-1]


# -- trailing stops ---------------------------------------------------------------------------


def test_a_trailing_stop_starts_at_the_reference_ignores_the_fill_bar_and_ratchets_after_the_check(tmp_path: Path) -> None:
    b = broker(tmp_path, fees=0.0, slippage=0.002)  # the last close, the reference, is 100
    b.create_order("BTC/USDT", "market", "buy", 10, params={"trailingPercent": 10})
    b.on_bar("BTC/USDT", Bar(60, 101, 130, 100, 105))  # fills at 101; its high (130) is not used
    [trail] = b.fetch_open_orders()
    assert trail["type"] == "trailing_stop" and trail["price"] == pytest.approx(90) and trail["side"] == "sell"
    # Checked against 90 (the low 95 does not reach it), then the level ratchets to 110 × 0.9.
    assert b.on_bar("BTC/USDT", Bar(120, 104, 110, 95, 108)) == []
    assert b.fetch_open_orders()[0]["price"] == pytest.approx(99)
    assert b.on_bar("BTC/USDT", Bar(180, 108, 109, 100, 101)) == []  # a lower high leaves it at 99
    [fill] = b.on_bar("BTC/USDT", Bar(240, 100, 100.5, 98, 98.5))
    assert fill["price"] == pytest.approx(99 * (1 - 0.002), rel=1e-12)  # a stop-market: slippage applies
    assert b.fetch_positions() == [] and b.fetch_open_orders() == []


def test_a_trailing_stop_gapped_through_fills_at_the_open_and_a_standalone_one_protects_holdings(tmp_path: Path) -> None:
    b = broker(tmp_path, fees=0.0)
    b.create_order("BTC/USDT", "market", "buy", 10, params={"trailingPercent": 10, "takeProfit": 150})
    b.on_bar("BTC/USDT", Bar(60, 100, 100, 100, 100))
    [fill] = b.on_bar("BTC/USDT", Bar(120, 85, 88, 80, 86))  # opens below 90
    assert fill["price"] == 85 and b.fetch_open_orders() == []  # and the take-profit was cancelled
    b.create_order("BTC/USDT", "market", "buy", 5)
    b.on_bar("BTC/USDT", Bar(180, 86, 86, 86, 86))
    b.create_order("BTC/USDT", "market", "sell", 5, params={"trailingPercent": 5})  # ccxt's standalone form
    assert b.fetch_balance()["used"]["BTC"] == pytest.approx(5)
    b.on_bar("BTC/USDT", Bar(240, 90, 100, 89, 99))
    [fill] = b.on_bar("BTC/USDT", Bar(300, 99, 99, 94, 95))
    assert fill["price"] == pytest.approx(95)  # 100 × 0.95


def test_a_trailing_stop_and_a_stop_loss_are_refused_together(tmp_path: Path) -> None:
    b = broker(tmp_path)
    with pytest.raises(ccxt.InvalidOrder, match="both a stop-loss"):
        b.create_order("BTC/USDT", "market", "buy", 1, params={"trailingPercent": 5, "stopLoss": 90})
    with pytest.raises(ccxt.InvalidOrder, match="percentage in \\(0, 100\\)"):
        b.create_order("BTC/USDT", "market", "buy", 1, params={"trailingPercent": 0})
    assert b.fetch_open_orders() == []


def test_trailing_stop_fills_match_the_backtest_engine_on_the_same_bars(tmp_path: Path) -> None:
    from memlab.strategies import compute_signals

    bars = sample("GOOG")
    signals = compute_signals("sma_cross", bars, {"fast": 10, "slow": 30})
    b = PaperBroker(tmp_path, balances={"USD": 100_000.0}, fees=0.001, slippage=0.0005)
    b.add_market("GOOG", "GOOG", "USD")
    stopped = 0
    for i, (t, row) in enumerate(bars.iterrows()):
        fills = b.on_bar("GOOG", Bar(t.timestamp(), row.Open, row.High, row.Low, row.Close))
        stopped += sum(1 for f in fills if b.fetch_order(f["order_id"])["type"] == "trailing_stop")
        held = b.fetch_balance()["total"].get("GOOG", 0.0)
        if signals["entry"].iloc[i] and held == 0:
            b.create_order("GOOG", "market", "buy", None, params={"cost": b.fetch_balance()["free"]["USD"],
                                                                  "trailingPercent": 5})  # 5 %: trailing_stop=0.05
        elif signals["exit"].iloc[i] and held > 0:
            for order in b.fetch_open_orders("GOOG"):  # the exit cancels the stop (as the pipeline does)
                b.cancel_order(order["id"])
            b.create_order("GOOG", "market", "sell", held)
    result = backtest.run(bars, "sma_cross", {"fast": 10, "slow": 30}, fees=0.001, slippage=0.0005, trailing_stop=0.05)
    assert stopped >= 5  # the trailing stop did the exiting, not only the signals
    assert b.equity("USD") / 100_000 - 1 == pytest.approx(result.stats["total_return"], rel=1e-9)
    sells = [f["price"] for f in b.fills("GOOG") if f["side"] == "sell"]
    closed = result.trades[result.trades["status"] == "Closed"]
    assert sells == pytest.approx(list(closed["exit_price"]), rel=1e-9)
