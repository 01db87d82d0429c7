"""The agent's part of ``make run``: score signals from memory, trade, adapt, report calibration.

:func:`run_agent_demo` works on whatever memory it is given: decisions recorded by
training are used as they are, and a seeded synthetic history (a market that alternates
calm up-trends, where buying wins, with falling storms, where it loses) is recorded
alongside so the demo always has experience to draw on. It then scores signals on the
unseen stretch of that market, paper-trades them through ``log_decision`` /
``close_position`` so adaptation and lessons happen, and writes the calibration report.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from memlab.agent.agent import MemoryAgent
from memlab.agent.calibration import calibrate

HOLD = 10
STEP = 7


def _market(seed: int = 11, n_bars: int = 20_000):  # type: ignore[no-untyped-def]
    from memlab.data import Regime, synthetic_ohlcv
    from memlab.features import FEATURE_NAMES, market_features

    regimes = (
        Regime("calm_up", drift=0.0006, volatility=0.003, mean_length=300),
        Regime("storm_down", drift=-0.0006, volatility=0.012, mean_length=300),
    )
    bars = synthetic_ohlcv(n_bars, seed=seed, regimes=regimes, with_regimes=True, freq="5min")
    values = market_features(bars)[list(FEATURE_NAMES)].to_numpy()
    close = bars["Close"].to_numpy()
    entries = np.arange(100, len(bars) - HOLD, STEP)
    returns = (close[entries + HOLD] / close[entries] - 1.0) * 100.0
    return bars, values, entries, returns


def run_agent_demo(out_dir: Path, memory_path: Path) -> dict[str, Path]:
    """Score, trade, adapt and report; returns the files it wrote (label -> path)."""
    from memlab.features import FEATURE_NAMES
    from memlab.memory import Decision, Outcome

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bars, values, entries, returns = _market()
    split = int(len(entries) * 0.7)
    agent = MemoryAgent(memory_path, agent_id="demo_agent")
    events: list[dict] = []
    agent.add_listener(lambda kind, payload: events.append({"type": kind, **payload}))
    try:
        def feats(i: int) -> dict[str, float]:
            return dict(zip(FEATURE_NAMES, values[i].tolist(), strict=True))

        agent.stores.decisions.record_many(
            Decision(
                "SYNTH", "momentum", "BUY", 0.5, features=feats(i), agent_id="demo_history",
                decided_at=bars.index[i].to_pydatetime(), reason=f"synthetic history ({bars['regime'].iloc[i]})",
                key=f"agent-demo:{bars.index[i].isoformat()}",
                outcome=Outcome(pnl=float(r * 10), return_pct=float(r), closed_at=bars.index[i + HOLD].to_pydatetime()),
            )
            for i, r in zip(entries[:split], returns[:split], strict=True)
        )
        agent.brain.priors.invalidate()
        print(f"  memory: {agent.stores.decisions.count():,} decisions")
        scored, conf, won = [], [], []
        trade_until = split + 200  # paper-trade the first 200 unseen signals; score them all
        for n, (i, r) in enumerate(zip(entries[split:], returns[split:], strict=True), start=split):
            signal = {"symbol": "SYNTH", "strategy": "momentum", "action": "BUY",
                      "price": float(bars["Close"].iloc[i]), "features": feats(i), "time": bars.index[i].isoformat()}
            analysis = agent.analyze_signal(signal)
            conf.append(analysis["confidence"])
            won.append(r > 0)
            scored.append({"time": bars.index[i].isoformat(), "regime": str(bars["regime"].iloc[i]),
                           "confidence": analysis["confidence"], "reason": analysis["reason"],
                           "position_size": analysis["position_size"], "return_pct": round(float(r), 4)})
            if n >= trade_until:
                continue
            did = agent.log_decision(
                {**signal, "mem_confidence": analysis["confidence"], "mem_reason": analysis["reason"]},
                {"order_id": f"demo-{bars.index[i].isoformat()}", "status": "filled"},
            )
            if did is not None and agent.stores.decisions.get(did).outcome is None:
                agent.close_position(did, pnl=float(r * 10), return_pct=float(r),
                                     closed_at=bars.index[i + HOLD].to_pydatetime())
        for s in scored[:: max(len(scored) // 4, 1)][:4]:
            print(f"  [{s['regime']:>10}] {s['reason']}")
        by_regime = {g: float(np.mean([s["confidence"] for s in scored if s["regime"] == g]))
                     for g in sorted({s["regime"] for s in scored})}
        print(f"  mean confidence by (hidden) regime: { {k: round(v, 3) for k, v in by_regime.items()} }")
        adaptations = [e for e in events if e["type"] == "adaptation"]
        for a in adaptations[:5]:
            print(f"  adapted ({a['trigger']}): {a['from']} -> {a['to']}")
        lessons = [e["text"] for e in events if e["type"] == "lesson"]
        for text in lessons[:3]:
            print(f"  {text}")
        train_rate = float((returns[:split] > 0).mean())
        report = calibrate(np.array(conf), np.array(won), baseline=train_rate)
        print(f"  calibration: {report.summary()}")
        html = report.write_html(out_dir / "agent_calibration.html", title="Agent calibration on unseen data")
        summary = out_dir / "agent_signals.json"
        summary.write_text(json.dumps({"mean_confidence_by_regime": by_regime, "calibration": report.summary(),
                                       "adaptations": adaptations, "lessons": lessons, "signals": scored},
                                      indent=2, default=str) + "\n")
    finally:
        agent.close()
    mp = Path(memory_path)
    return {
        "scored signals": summary,
        "calibration report": html,
        "parameters": mp / "parameter_updates.json",
        "core memory": mp / "core_memory.json",
        "archival memory": mp / "archival.sqlite",
    }
