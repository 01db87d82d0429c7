"""``memlab demo`` (what ``make run`` runs): the whole flow on offline data, outputs in one folder.

Each step writes into ``runs/demo-<UTC stamp>/`` (or ``--out``) and the folder's
``mem_knowledge/`` memory, then the demo prints where everything is. Backtest, training and
paper session all charge memlab's default costs (:data:`memlab.costs.DEFAULT_COSTS`).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

Step = Callable[[Path, Path], dict[str, Path]]


def backtest_step(out_dir: Path, memory_path: Path) -> dict[str, Path]:
    """Backtest SMA crossover on real daily GOOG history and sweep its two windows."""
    from memlab import backtest
    from memlab.data import sample

    bars = sample("GOOG")
    result = backtest.run(bars, "sma_cross", {"fast": 10, "slow": 30})
    s = result.stats
    print(f"  GOOG sma_cross(10, 30): return {s['total_return']:+.1%}, {s['n_trades']} trades, "
          f"win rate {s['win_rate']:.0%}, sharpe {s['sharpe']:.2f}, max drawdown {s['max_drawdown']:.1%}")
    table = backtest.sweep(bars, "sma_cross", {"fast": [5, 10, 15, 20, 25], "slow": [30, 40, 50, 60, 80, 100]},
                           progress=False)
    best = table.sort_values("sharpe", ascending=False).iloc[0]
    sel = table.attrs["selection"]
    print(f"  sweep of {sel.n_trials} parameter sets on GOOG {sel.fitted_on[0]:%Y-%m-%d}..{sel.fitted_on[1]:%Y-%m-%d}: "
          f"best sharpe {best['sharpe']:.2f} at fast={int(best['fast'])}, slow={int(best['slow'])} "
          "(in-sample: chosen and judged on the same bars)")
    print(f"  what choosing it is worth: deflated Sharpe {sel.dsr:.2f}, probability of backtest overfitting "
          f"{sel.pbo:.2f}, SPA p-value {sel.spa_pvalue:.3f} (vs a zero return)")
    (out_dir / "sweep_selection.json").write_text(json.dumps(sel.as_dict(), indent=2) + "\n")
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    result.figure().write_html(figures / "backtest_equity.html", include_plotlyjs="directory")
    backtest.sweep_heatmap(table, "fast", "slow", "sharpe").write_html(figures / "sweep_heatmap.html", include_plotlyjs="directory")
    table.to_csv(out_dir / "sweep.csv", index=False)
    return {"equity + drawdown": figures / "backtest_equity.html", "sweep heatmap": figures / "sweep_heatmap.html",
            "sweep table": out_dir / "sweep.csv", "selection statistics": out_dir / "sweep_selection.json"}


#: Training sees GOOG up to here; the paper session trades only the bars after it.
GOOG_CUTOFF = "2011-06-30"


def nightly_step(out_dir: Path, memory_path: Path) -> dict[str, Path]:
    """The nightly training notebook, run by papermill, trains GOOG (up to the cut-off) and
    EURUSD into memory."""
    from memlab.training import run_nightly

    print(f"  GOOG is trained on bars up to {GOOG_CUTOFF} only; later bars are kept unseen for the paper session")
    run_dir = run_nightly({"symbols": ["GOOG", "EURUSD"], "strategy": "sma_cross", "memory_path": str(memory_path),
                           "end": {"GOOG": GOOG_CUTOFF}},
                          out_root=out_dir / "runs", progress=False)
    summary = json.loads((run_dir / "summary.json").read_text())
    for symbol, res in summary["symbols"].items():
        print(f"  {symbol}: chose {res['chosen']}, sharpe in-sample {res['in_sample_sharpe']:.2f} vs "
              f"out-of-sample {res['out_of_sample_sharpe']:.2f}; {res['decisions_recorded']} trades recorded as experience")
    return {"report (HTML)": run_dir / "nightly_training.html", "executed notebook": run_dir / "nightly_training.ipynb",
            "summary": run_dir / "summary.json"}


def memory_step(out_dir: Path, memory_path: Path) -> dict[str, Path]:
    """What training left in memory: search it, recall similar situations, verify, back up."""
    from memlab.memory import MemoryStores
    from memlab.memory.backup import backup_memory
    from memlab.memory.verify import verify_memory

    with MemoryStores(memory_path) as mem:
        mem.journal.append({"Learned": "Support at 64500 is strong"}, note="record for future")
        latest = mem.decisions.recent(1)
        features = latest[[c for c in latest.columns if c in ("ret_5", "ret_20", "volatility", "vol_ratio", "rsi", "trend")]].iloc[0].to_dict()
        similar = mem.decisions.nearest(features, k=10, closed_only=True, include_in_sample=False)
        won = int((similar["pnl"] > 0).sum())
        found = mem.decisions.search("lost", limit=5)
        print(f"  journal: {len(mem.journal)} lines; last: {mem.journal.tail(1)[0]}")
        print(f"  decisions: {mem.decisions.count()}; the 10 most similar out-of-sample trades to the latest "
              f"situation: {won} won, "
              f"mean {similar['return_pct'].mean():+.2f}%")
        print(f"  full-text search 'lost': {len(found)} hits, e.g. {found['reason'].iloc[0]!r}")
        print(f"  parameters: {mem.parameters.current()}")
    report = verify_memory(memory_path)
    print(f"  memlab memory verify: {'OK' if report.ok else report}")
    archive = backup_memory(memory_path, out_dir / "backups")
    return {
        "journal": memory_path / "core_memory_updates.txt",
        "parameters": memory_path / "parameter_updates.json",
        "strategy modules": memory_path / "strategy_modules.py",
        "decision store": memory_path / "decisions.sqlite",
        "backup": archive,
    }


def paper_step(out_dir: Path, memory_path: Path) -> dict[str, Path]:
    """A paper session of ``UnifiedMemGPTTrader`` on replayed GOOG bars with the parameters
    training chose: the agent scores each signal from memory, orders go through the
    ConnectionManager to the paper broker, outcomes go back into memory; then the session is
    reconciled with the backtest of the same bars."""
    import asyncio

    from memlab.dashboard.metrics import sharpe_ratio
    from memlab.memory import MemoryStores
    from memlab.trader import TraderConfig, UnifiedMemGPTTrader, reconcile_with_backtest
    from memlab.trader.equity import read_equity
    from memlab.trader.holdout import hold_out

    config = TraderConfig(symbols=("GOOG",), strategy="sma_cross", memory_path=memory_path, agent_id="paper_demo",
                          sizing="full", balance=100_000.0, feed={"sample": "GOOG"}, trailing_stop=0.08)
    config = hold_out(config, GOOG_CUTOFF)  # only the bars training never saw
    report = asyncio.run(UnifiedMemGPTTrader(config).run())
    check = reconcile_with_backtest(config)
    print(f"  {report['bars']} replayed GOOG bars with {check['params']}: {report['orders']} orders, "
          f"{report['decisions']} decisions scored and remembered, {report['outcomes']} outcomes learned; "
          f"{report['bars_per_second']:,.0f} bars/s, bar->order p99 {report['bar_to_order_ms_p99']:.2f} ms")
    print("  exits: the strategy's, and a trailing stop 8 % below the highest high since each entry "
          "(the same rule in the backtest)")
    print(f"  paper return {check['paper_return']:+.2%}; backtest of the same unseen bars "
          f"{check['backtest_return']:+.2%} (difference {check['difference']:.1e}); parameters fitted on GOOG up to "
          f"{GOOG_CUTOFF}, judged on {check['bars']} bars after it")
    if report["skipped"]:
        print(f"  {report['skipped']} entries skipped: {report['skip_reasons']}")
    curve = read_equity(memory_path)
    if curve is not None and len(curve) > 2:
        mine, held = sharpe_ratio(curve["equity"]), sharpe_ratio(curve["benchmark"])
        print(f"  equity marked to market at {len(curve)} bars: {curve['equity'].iloc[-1]:,.0f} against "
              f"buy-and-hold {curve['benchmark'].iloc[-1]:,.0f}; {mine.label}: {mine.value:.2f} "
              f"(buy-and-hold {held.value:.2f})")
    with MemoryStores(memory_path) as mem:
        last = mem.decisions.frame(agent_id="paper_demo", limit=1)
    if len(last):
        print(f"  last decision: {last['action'].iloc[-1]} confidence {last['confidence'].iloc[-1]:.2f}: "
              f"{last['reason'].iloc[-1][:90]}")
    out = out_dir / "paper_session.json"
    out.write_text(json.dumps({"report": report, "reconciliation": check}, indent=2, default=str))
    portfolio = portfolio_session(out_dir)
    return {"paper session": out, "portfolio session": portfolio, "paper broker book": memory_path / "paper_broker.sqlite",
            "equity log": memory_path / "equity.sqlite", "trader heartbeat": memory_path / "trader_status.json"}


def portfolio_session(out_dir: Path) -> Path:
    """Three synthetic markets on one cash balance (a memory folder of their own): the
    portfolio swept on the first half of the bars, the best-Sharpe set paper-traded on the
    second half (each entry spending half the cash left free) and reconciled with the
    portfolio backtest of those bars."""
    import asyncio

    from memlab.backtest.portfolio import sweep_portfolio
    from memlab.data import synthetic_ohlcv
    from memlab.trader import TraderConfig, UnifiedMemGPTTrader, reconcile_with_backtest

    symbols = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
    bars = {s: synthetic_ohlcv(2400, freq="1min", seed=21 + k) for k, s in enumerate(symbols)}
    cut, warmup = 1200, 200
    fit = {s: b.iloc[:cut] for s, b in bars.items()}
    table = sweep_portfolio(fit, "sma_cross", {"fast": [3, 5, 10], "slow": [20, 40]}, size=0.5, warmup=warmup,
                            progress=False, selection_draws=200)
    sel = table.attrs["selection"]
    params = {k: int(v) for k, v in sel.chosen.items()}
    print(f"  portfolio sweep: {len(table)} sma_cross sets on shared cash, fitted on {table.attrs['period']}; "
          f"best Sharpe {params} ({sel.chosen_sharpe:.2f} in-sample; deflated Sharpe "
          f"{'n/a' if sel.dsr is None else f'{sel.dsr:.2f}'}, PBO {'n/a' if sel.pbo is None else f'{sel.pbo:.2f}'})")
    judged = {s: b.iloc[cut - warmup:] for s, b in bars.items()}  # the warm-up's bars come before the cut
    config = TraderConfig(symbols=symbols, strategy="sma_cross", params=params,
                          memory_path=out_dir / "portfolio_memory", agent_id="portfolio_demo", sizing="full",
                          size=0.5, feed={"data": judged, "warmup": warmup})
    report = asyncio.run(UnifiedMemGPTTrader(config).run())
    check = reconcile_with_backtest(config)
    first = bars[symbols[0]].index
    print(f"  portfolio paper session: {', '.join(symbols)} on one {config.balance:,.0f} USDT balance, judged on "
          f"{first[cut]} to {first[-1]} ({check['bars']:,} synthetic minute bars per market after the fit, "
          f"generated offline): {report['orders']} orders")
    print(f"  portfolio paper return {check['paper_return']:+.2%}; its backtest on shared cash "
          f"{check['backtest_return']:+.2%} (difference {check['difference']:.1e})")
    out = out_dir / "portfolio_session.json"
    out.write_text(json.dumps({"sweep": {"fitted_on": table.attrs["period"], "selection": sel.as_dict(),
                                         "sets": table.to_dict(orient="records")},
                               "report": report, "reconciliation": check}, indent=2, default=str))
    return out


def monitor_step(out_dir: Path, memory_path: Path) -> dict[str, Path]:
    """The live monitor rendered once as a static page (watch it live with `memlab dashboard`)."""
    from memlab.dashboard.demo import run_monitor_demo

    paths = run_monitor_demo(out_dir / "monitor", memory_path)
    print(f"  to watch it live: .venv/bin/memlab dashboard --memory-path {memory_path} "
          "(then open http://localhost:5001)")
    return paths


def steps() -> list[tuple[str, Step]]:
    """The demo's steps, in the order of the data flow."""
    from memlab.agent.demo import run_agent_demo

    return [
        ("backtest", backtest_step),
        ("nightly training", nightly_step),
        ("memory", memory_step),
        ("agent", run_agent_demo),
        ("paper session", paper_step),
        ("monitor", monitor_step),
    ]


def run_demo(out_dir: Path) -> dict[str, dict[str, Path]]:
    import logging

    logging.getLogger("papermill").setLevel(logging.WARNING)
    out_dir.mkdir(parents=True, exist_ok=True)
    memory_path = out_dir / "mem_knowledge"
    results: dict[str, dict[str, Path]] = {}
    for name, step in steps():
        print(f"== {name}")
        started = time.perf_counter()
        results[name] = step(out_dir, memory_path)
        print(f"   ({time.perf_counter() - started:.1f} s)")
    summary = {step: {k: str(v) for k, v in paths.items()} for step, paths in results.items()}
    (out_dir / "demo_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\nOutputs:")
    for step, paths in results.items():
        for label, path in paths.items():
            print(f"  {step:>14} | {label:<18} {path}")
    reports = [(step, label, path) for step, paths in results.items() for label, path in paths.items()
               if Path(path).suffix == ".html"]
    print("\nReports to open in a browser (they draw offline):")
    for step, label, path in reports:
        print(f"  {step:>14} | {label:<18} {Path(path).resolve()}")
    print(f"\nEverything is under {out_dir.resolve()} (summary: demo_summary.json)")
    return results


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "demo", help="run the whole flow on offline data (what `make run` does)"
    )
    parser.add_argument(
        "--out", default=None, help="output folder (default: runs/demo-<UTC stamp>)"
    )
    parser.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_demo(Path(args.out) if args.out else Path("runs") / f"demo-{stamp}")
    return 0
