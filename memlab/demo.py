"""``memlab demo`` (what ``make run`` runs): the whole flow on offline data, outputs in one folder.

Each step writes into ``runs/demo-<UTC stamp>/`` (or ``--out``) and the folder's
``mem_knowledge/`` memory, then the demo prints where everything is.
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
    result = backtest.run(bars, "sma_cross", {"fast": 10, "slow": 30}, fees=0.0005)
    s = result.stats
    print(f"  GOOG sma_cross(10, 30): return {s['total_return']:+.1%}, {s['n_trades']} trades, "
          f"win rate {s['win_rate']:.0%}, sharpe {s['sharpe']:.2f}, max drawdown {s['max_drawdown']:.1%}")
    table = backtest.sweep(bars, "sma_cross", {"fast": [5, 10, 15, 20, 25], "slow": [30, 40, 50, 60, 80, 100]},
                           fees=0.0005, progress=False)
    best = table.sort_values("sharpe", ascending=False).iloc[0]
    print(f"  sweep of {len(table)} parameter sets: best sharpe {best['sharpe']:.2f} at fast={int(best['fast'])}, slow={int(best['slow'])}")
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    result.figure().write_html(figures / "backtest_equity.html", include_plotlyjs="directory")
    backtest.sweep_heatmap(table, "fast", "slow", "sharpe").write_html(figures / "sweep_heatmap.html", include_plotlyjs="directory")
    table.to_csv(out_dir / "sweep.csv", index=False)
    return {"equity + drawdown": figures / "backtest_equity.html", "sweep heatmap": figures / "sweep_heatmap.html",
            "sweep table": out_dir / "sweep.csv"}


def nightly_step(out_dir: Path, memory_path: Path) -> dict[str, Path]:
    """The nightly training notebook, run by papermill, trains GOOG and EURUSD into memory."""
    from memlab.training import run_nightly

    run_dir = run_nightly({"symbols": ["GOOG", "EURUSD"], "strategy": "sma_cross", "memory_path": str(memory_path)},
                          out_root=out_dir / "runs", progress=False)
    summary = json.loads((run_dir / "summary.json").read_text())
    for symbol, res in summary["symbols"].items():
        print(f"  {symbol}: chose {res['chosen']}, sharpe in-sample {res['in_sample_sharpe']:.2f} vs "
              f"out-of-sample {res['out_of_sample_sharpe']:.2f}; {res['decisions_recorded']} trades recorded as experience")
    return {"executed notebook": run_dir / "nightly_training.ipynb", "summary": run_dir / "summary.json"}


def memory_step(out_dir: Path, memory_path: Path) -> dict[str, Path]:
    """What training left in memory: search it, recall similar situations, verify, back up."""
    from memlab.memory import MemoryStores
    from memlab.memory.backup import backup_memory
    from memlab.memory.verify import verify_memory

    with MemoryStores(memory_path) as mem:
        mem.journal.append({"Learned": "Support at 64500 is strong"}, note="record for future")
        latest = mem.decisions.recent(1)
        features = latest[[c for c in latest.columns if c in ("ret_5", "ret_20", "volatility", "vol_ratio", "rsi", "trend")]].iloc[0].to_dict()
        similar = mem.decisions.nearest(features, k=10, closed_only=True)
        won = int((similar["pnl"] > 0).sum())
        found = mem.decisions.search("lost", limit=5)
        print(f"  journal: {len(mem.journal)} lines; last: {mem.journal.tail(1)[0]}")
        print(f"  decisions: {mem.decisions.count()}; the 10 most similar to the latest situation: {won} won, "
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
    """A paper session on replayed GOOG bars with the parameters training chose: the agent
    scores each signal, the paper broker fills at the next open; then it is reconciled
    with the backtest of the same bars."""
    from memlab import backtest
    from memlab.agent import MemoryAgent
    from memlab.connectors import Bar, PaperBroker
    from memlab.data import sample
    from memlab.features import FEATURE_NAMES, market_features
    from memlab.memory import MemoryStores
    from memlab.strategies import compute_signals

    with MemoryStores(memory_path) as mem:
        params = {"fast": int(mem.parameters.get("GOOG.sma_cross.fast", 10)),
                  "slow": int(mem.parameters.get("GOOG.sma_cross.slow", 30))}
    bars = sample("GOOG").iloc[-500:]
    signals = compute_signals("sma_cross", bars, params)
    feats = market_features(sample("GOOG")).loc[bars.index]
    broker = PaperBroker(memory_path, balances={"USD": 100_000.0}, fees=0.0005)
    broker.add_market("GOOG", "GOOG", "USD")
    agent = MemoryAgent(memory_path, agent_id="paper_demo")
    scored = []
    try:
        with agent.stores.journal.batch():
            for i, (t, row) in enumerate(bars.iterrows()):
                broker.on_bar("GOOG", Bar(t.timestamp(), row.Open, row.High, row.Low, row.Close))
                held = broker.fetch_balance()["total"].get("GOOG", 0.0)
                action = "BUY" if signals["entry"].iloc[i] and held == 0 else "SELL" if signals["exit"].iloc[i] and held > 0 else None
                if action is None or feats.iloc[i].isna().any():
                    continue
                signal = {"symbol": "GOOG", "strategy": "sma_cross", "action": action, "price": float(row.Close),
                          "features": {k: float(feats.iloc[i][k]) for k in FEATURE_NAMES}, "time": t}
                verdict = agent.analyze_signal(signal)
                params_order = {"clientOrderId": f"demo-{t.isoformat()}"}
                if action == "BUY":
                    order = broker.create_order("GOOG", "market", "buy", None, params={**params_order, "cost": broker.fetch_balance()["free"]["USD"]})
                else:
                    order = broker.create_order("GOOG", "market", "sell", held, params=params_order)
                agent.log_decision({**signal, "mem_confidence": verdict["confidence"], "mem_reason": verdict["reason"]},
                                   {"order_id": order["id"], "status": "open"})
                scored.append({"time": t.isoformat(), "action": action, "confidence": verdict["confidence"], "reason": verdict["reason"]})
    finally:
        agent.close()
    paper_return = broker.equity("USD") / 100_000.0 - 1
    replay = backtest.run(bars, "sma_cross", params, fees=0.0005)
    print(f"  {len(bars)} replayed GOOG bars with {params}: {len(broker.fills())} fills, paper return {paper_return:+.2%}; "
          f"backtest of the same bars {replay.stats['total_return']:+.2%}")
    if scored:
        print(f"  last signal scored: {scored[-1]['action']} confidence {scored[-1]['confidence']:.2f}: {scored[-1]['reason'][:90]}")
    (out_dir / "paper_session.json").write_text(json.dumps({"params": params, "paper_return": paper_return,
                                                           "backtest_return": replay.stats["total_return"],
                                                           "fills": broker.fills(), "signals": scored}, indent=2, default=str))
    broker.close()
    return {"paper session": out_dir / "paper_session.json", "paper broker book": broker.path}


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
