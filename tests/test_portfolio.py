"""Portfolios: one paper session trades several symbols on one cash balance, reconciles
with the portfolio backtest, and keeps its exposure limits."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from memlab.backtest import sweep
from memlab.backtest.portfolio import SWEEP_STATS, run_portfolio, sweep_portfolio
from memlab.connectors import PaperBroker
from memlab.data import synthetic_ohlcv
from memlab.errors import InvalidInputError
from memlab.memory import MemoryStores
from memlab.trader import TraderConfig, UnifiedMemGPTTrader, reconcile_with_backtest
from memlab.trader.equity import read_equity

ROOT = Path(__file__).resolve().parents[1]
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
BARS = {s: synthetic_ohlcv(700, freq="1min", seed=11 + k) for k, s in enumerate(SYMBOLS)}
PARAMS = {"fast": 5, "slow": 20}


def session(root: Path, **kw: object) -> TraderConfig:
    return TraderConfig(symbols=SYMBOLS, strategy="sma_cross", params=PARAMS, memory_path=root, sizing="full",
                        feed={"data": BARS, "warmup": 200}, **kw)  # type: ignore[arg-type]


def run(config: TraderConfig) -> dict[str, object]:
    return asyncio.run(UnifiedMemGPTTrader(config).run())


def fills(root: Path) -> pd.DataFrame:
    broker = PaperBroker(root)
    try:
        frames = [pd.DataFrame(broker.fills(s)).assign(symbol=s) for s in SYMBOLS]
    finally:
        broker.close()
    return pd.concat(frames).sort_values(["bar_time", "id"]).reset_index(drop=True)


@pytest.mark.parametrize("size, exits", [(0.4, {"stop_loss": 0.004, "take_profit": 0.006}),
                                         (1.0, {"trailing_stop": 0.005, "exit_after": 30})])
def test_a_three_symbol_session_on_shared_cash_reconciles_with_its_portfolio_backtest(
        tmp_path: Path, size: float, exits: dict[str, float]) -> None:
    config = session(tmp_path, size=size, **exits)
    report = run(config)
    frame = fills(tmp_path)
    assert set(frame["symbol"]) == set(SYMBOLS)  # every market traded, on one balance
    rec = reconcile_with_backtest(config)
    assert rec["symbols"] == list(SYMBOLS) and rec["paper_fills"] == len(frame)
    assert abs(rec["difference"]) < 1e-9, rec
    if size == 1.0:
        # All the cash goes to the first entry: the others wait, skipped for want of cash.
        assert report["skip_reasons"].get("no cash left to size it with", 0) > 0
    curve = read_equity(tmp_path)
    assert curve is not None and {f"held:{s}" for s in SYMBOLS} <= set(curve.columns)
    assert curve["equity"].iloc[-1] == pytest.approx(config.balance * (1 + rec["paper_return"]), rel=1e-9)


def test_entries_at_one_close_share_the_cash_in_symbol_order(tmp_path: Path) -> None:
    run(session(tmp_path, size=0.5))
    frame = fills(tmp_path)
    buys = frame[frame["side"] == "buy"]
    together = buys.groupby("bar_time").filter(lambda g: len(g) >= 2)
    assert len(together), "the bars should hold two entries filled at one open"
    for _, group in together.groupby("bar_time"):
        spend = (group["amount"] * group["price"] + group["fee"]).to_numpy()
        order = [SYMBOLS.index(s) for s in group["symbol"]]
        assert order == sorted(order)
        # Each took half of what the ones before it left free: the first half the cash, the next a quarter...
        assert spend[1:] == pytest.approx(0.5 * spend[:-1], rel=1e-9)


def test_exposure_limits_cut_and_skip_entries_and_say_which(tmp_path: Path) -> None:
    report = run(session(tmp_path / "pos", max_position=0.2))
    curve = read_equity(tmp_path / "pos")
    assert curve is not None
    frame = fills(tmp_path / "pos")
    for _, buy in frame[frame["side"] == "buy"].iterrows():
        before = curve.loc[curve.index < pd.Timestamp(buy["bar_time"], unit="s", tz="UTC"), "equity"].iloc[-1]
        # Sized at the signal close on 0.2 x equity; the fill at the next open moves it by a bar's drift.
        assert buy["amount"] * buy["price"] <= 0.2 * before * 1.01
    report = run(session(tmp_path / "all", max_exposure=0.5))
    assert report["skip_reasons"].get("max_exposure", 0) > 0
    with MemoryStores(tmp_path / "all") as stores:
        notes = [" ".join(e.notes) for e in stores.journal.tail(100_000) if e.fields.get("Decision") == "SKIP"]
    assert any("max_exposure: positions hold" in n and "(limit 50%)" in n for n in notes)
    with pytest.raises(InvalidInputError, match="max_exposure has no backtest twin"):
        reconcile_with_backtest(session(tmp_path / "all", max_exposure=0.5))


def test_markets_with_different_bar_times_are_refused_naming_the_gap() -> None:
    bars = dict(BARS)
    bars["ETH/USDT"] = BARS["ETH/USDT"].drop(BARS["ETH/USDT"].index[300])
    with pytest.raises(InvalidInputError, match=r"ETH/USDT has no bar at 2024-01-01 05:00:00"):
        run_portfolio(bars, "sma_cross", PARAMS)


GRID = {"fast": [5, 10, 20], "slow": [10, 20, 40]}  # fast >= slow is refused by the strategy: skipped


def test_a_portfolio_sweep_runs_the_portfolio_backtest_for_every_set_and_says_what_choosing_is_worth() -> None:
    options = {"size": 0.4, "stop_loss": 0.004, "warmup": 200, "init_cash": 5_000.0}
    table = sweep_portfolio(BARS, "sma_cross", GRID, progress=False, selection_draws=200, **options)
    assert [(r.fast, r.slow) for r in table.itertuples()] == [(5, 10), (5, 20), (5, 40), (10, 20), (10, 40), (20, 40)]
    for row in table.itertuples():  # each row is that set's portfolio, options and all
        alone = run_portfolio(BARS, "sma_cross", {"fast": row.fast, "slow": row.slow}, **options)
        assert [getattr(row, k) for k in SWEEP_STATS] == pytest.approx([alone.stats[k] for k in SWEEP_STATS],
                                                                       nan_ok=True, rel=1e-12)
    report = table.attrs["selection"]
    best = table.loc[table["sharpe"].idxmax()]
    assert report.n_trials == 6 and report.chosen == {"fast": best["fast"], "slow": best["slow"]}
    traded = BARS[SYMBOLS[0]].index[200:]
    assert report.fitted_on == (traded[0], traded[-1])  # the bars after the warm-up, nothing else
    assert "500 bars x 3 markets" in table.attrs["period"]


def test_a_one_market_portfolio_sweep_gives_the_single_market_sweeps_numbers() -> None:
    """Two engines, one answer: vectorbt's cash sharing with one market against the fused kernel."""
    one = {SYMBOLS[0]: BARS[SYMBOLS[0]]}
    ours = sweep_portfolio(one, "sma_cross", GRID, progress=False, selection=False, init_cash=10_000.0)
    theirs = sweep(BARS[SYMBOLS[0]], "sma_cross", GRID, progress=False, selection=False, init_cash=10_000.0)
    assert len(ours) == len(theirs) == 6
    for key in SWEEP_STATS:
        assert ours[key].to_numpy() == pytest.approx(theirs[key].to_numpy(), rel=1e-9, abs=1e-12, nan_ok=True), key


def test_a_portfolio_sweep_refuses_bad_grids_and_markets_before_running() -> None:
    with pytest.raises(InvalidInputError, match="bogus"):
        sweep_portfolio(BARS, "sma_cross", {"bogus": [1]}, progress=False)
    with pytest.raises(InvalidInputError, match="no valid parameter combination"):
        sweep_portfolio(BARS, "sma_cross", {"fast": [50], "slow": [10]}, progress=False)
    gap = {**BARS, "SOL/USDT": BARS["SOL/USDT"].drop(BARS["SOL/USDT"].index[300])}
    with pytest.raises(InvalidInputError, match="SOL/USDT has no bar at"):
        sweep_portfolio(gap, "sma_cross", GRID, progress=False)


def test_bad_exposure_limits_are_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"max_position is a fraction of equity in \(0, 100\].*got 0"):
        session(tmp_path, max_position=0)
    done = subprocess.run([sys.executable, "-m", "memlab.cli", "paper", "--symbol", "BTC/USDT,ETH/USDT",
                           "--max-exposure", "-1", "--memory-path", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "an exposure limit is a share of equity in (0, 100]" in done.stderr and "'-1'" in done.stderr


def test_kill_9_mid_portfolio_session_ends_as_an_uninterrupted_run(tmp_path: Path) -> None:
    import signal

    from tests.support.paper_session import wait_for_fills

    def paper(root: Path, *extra: str) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "memlab.cli", "paper", "--symbol", ",".join(SYMBOLS), "--strategy", "sma_cross",
                "--param", "fast=5", "--param", "slow=20", "--synthetic", "900", "--seed", "5", "--warmup", "200",
                "--sizing", "full", "--size", "0.5", "--stop-loss", "0.004", "--memory-path", str(root), *extra]
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)

    whole = paper(tmp_path / "whole")
    assert whole.wait(300) == 0, whole.communicate()[1][-2000:]
    root = tmp_path / "killed"
    for at in (9, 40):  # fills in the book when the process is killed
        proc = paper(root, "--speed", "4000")
        wait_for_fills(proc, root, at, timeout=300)  # type: ignore[arg-type]
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    last = paper(root)
    assert last.wait(300) == 0, last.communicate()[1][-2000:]
    cols = ["symbol", "side", "bar_time", "price", "amount", "fee"]
    pd.testing.assert_frame_equal(fills(root)[cols], fills(tmp_path / "whole")[cols])
    equity = []
    for where in (root, tmp_path / "whole"):
        broker = PaperBroker(where)
        try:
            equity.append(broker.equity("USDT"))
        finally:
            broker.close()
    assert equity[0] == pytest.approx(equity[1], rel=1e-12)
