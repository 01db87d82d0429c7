"""``memlab demo`` (what ``make run`` runs): the whole flow on offline data, outputs in one folder.

Each step writes into ``runs/demo-<UTC stamp>/`` (or ``--out``) and the folder's
``mem_knowledge/`` memory, then the demo prints where everything is.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

Step = Callable[[Path, Path], dict[str, Path]]


def memory_step(out_dir: Path, memory_path: Path) -> dict[str, Path]:
    """Write the seed's memory examples through every store, search them, verify, back up."""
    import numpy as np

    from memlab.features import FEATURE_NAMES
    from memlab.memory import Decision, MemoryStores, Outcome
    from memlab.memory.backup import backup_memory
    from memlab.memory.verify import verify_memory

    with MemoryStores(memory_path) as mem:
        t0 = datetime(2025, 10, 16, 14, 30, 15, tzinfo=UTC)
        mem.journal.append_many(
            [
                (t0, {"Strategy": "momentum", "Decision": "BUY", "Confidence": 0.85}, ()),
                (
                    t0 + timedelta(minutes=5),
                    {"Entry Price": 65000, "Stop Loss": 64500, "Target": 66000},
                    (),
                ),
                (t0 + timedelta(minutes=10), {"P&L": "+$500"}, ("Closed position successfully",)),
                (
                    t0 + timedelta(minutes=15),
                    {"Learned": "Support at 64500 is strong"},
                    ("record for future",),
                ),
            ]
        )
        mem.parameters.update(
            {"momentum_threshold": 0.04, "position_size": 0.1, "risk_per_trade": 0.02},
            reason="initial parameters",
            at=t0,
        )
        mem.parameters.set(
            "momentum_threshold",
            0.05,
            reason="Increased volatility observed",
            at=t0 + timedelta(hours=1),
        )
        mem.strategies.save(
            "LearnedHighVolatilityStrategy",
            {"rsi_threshold": 35, "volatility_threshold": 2.0},
            base="memlab.features:rsi",
            reason="demo: thresholds from the seed",
        )
        rng = np.random.default_rng(42)
        decisions = []
        for i in range(500):
            feats = dict(
                zip(
                    FEATURE_NAMES,
                    rng.normal(size=len(FEATURE_NAMES)).round(3).tolist(),
                    strict=True,
                )
            )
            won = feats["trend"] > 0
            decisions.append(
                Decision(
                    symbol="BTCUSDT",
                    strategy="momentum",
                    action="BUY",
                    confidence=0.6,
                    reason="breakout above resistance" if won else "buying the dip into support",
                    features=feats,
                    decided_at=t0 + timedelta(minutes=5 * i),
                    agent_id="demo",
                    key=f"demo:{i}",
                    outcome=Outcome(
                        pnl=50.0 if won else -40.0,
                        return_pct=0.8 if won else -0.6,
                        closed_at=t0 + timedelta(minutes=5 * i + 60),
                    ),
                )
            )
        mem.decisions.record_many(decisions)
        similar = mem.decisions.nearest(
            {**{n: 0.0 for n in FEATURE_NAMES}, "trend": 1.5}, k=20, closed_only=True
        )
        found = mem.decisions.search("breakout resistance", limit=5)
        print(f"  journal: {len(mem.journal)} lines; parameters: {mem.parameters.current()}")
        print(
            f"  decisions: {mem.decisions.count()}; 20 most similar to an up-trend: "
            f"{int((similar['pnl'] > 0).sum())} won"
        )
        print(
            f"  search 'breakout resistance': {len(found)} hits, e.g. {found['reason'].iloc[0]!r}"
        )
    report = verify_memory(memory_path)
    print(f"  verify: {'OK' if report.ok else report}")
    archive = backup_memory(memory_path, out_dir / "backups")
    return {
        "journal": memory_path / "core_memory_updates.txt",
        "parameters": memory_path / "parameter_updates.json",
        "strategy modules": memory_path / "strategy_modules.py",
        "decision store": memory_path / "decisions.sqlite",
        "backup": archive,
    }


def steps() -> list[tuple[str, Step]]:
    """The demo's steps, in the order of the data flow."""
    return [("memory stores", memory_step)]


def run_demo(out_dir: Path) -> dict[str, dict[str, Path]]:
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
