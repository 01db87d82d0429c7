"""Turn backtest trades into decisions with outcomes, so the agent starts with experience.

Each closed trade becomes one :class:`~memlab.memory.Decision`: the features of the
bar whose close produced the signal, the action (BUY for a long, SELL for a short), the
strategy's confidence, a reason a person can read, and the trade's outcome. Keys make
the recording idempotent: training the same history twice stores it once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from memlab.backtest.engine import BacktestResult
from memlab.features import FEATURE_NAMES, market_features
from memlab.memory import Decision, Outcome


def params_tag(params: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(dict(params), sort_keys=True, default=str).encode()).hexdigest()[:10]


def trades_to_decisions(
    ohlcv: pd.DataFrame, result: BacktestResult, *, symbol: str, agent_id: str = "trainer",
    fill: str = "next_open", features: pd.DataFrame | None = None,
) -> list[Decision]:
    """One decision per closed trade of ``result`` (trades in the warm-up are skipped)."""
    feats = market_features(ohlcv) if features is None else features
    tag = params_tag(result.params)
    out = []
    closed = result.trades[result.trades["status"] == "Closed"]
    positions = ohlcv.index.get_indexer(closed["entry_time"])
    for pos, trade in zip(positions, closed.itertuples(), strict=True):
        signal_pos = pos - 1 if fill == "next_open" else pos
        if signal_pos < 0:
            continue
        row = feats.iloc[signal_pos]
        if row.isna().any():
            continue
        long = trade.direction == "Long"
        conf = result.signals["confidence"].iloc[signal_pos]
        confidence = float(conf) if np.isfinite(conf) else 0.5
        decided_at = ohlcv.index[signal_pos]
        out.append(
            Decision(
                symbol=symbol, strategy=result.strategy, action="BUY" if long else "SELL",
                confidence=min(max(confidence, 0.0), 1.0),
                reason=(f"backtest {result.strategy} {result.params}: {'long' if long else 'short'} entry "
                        f"at {trade.entry_price:.6g}, closed {trade.exit_time:%Y-%m-%d %H:%M} "
                        f"{'won' if trade.pnl > 0 else 'lost'} {trade.return_pct:+.2f}%"),
                features={name: float(row[name]) for name in FEATURE_NAMES},
                agent_id=agent_id, decided_at=decided_at.to_pydatetime(), price=float(trade.entry_price),
                key=f"train:{symbol}:{result.strategy}:{tag}:{decided_at.isoformat()}",
                meta={"params": result.params, "source": "backtest"},
                outcome=Outcome(pnl=float(trade.pnl), return_pct=float(trade.return_pct),
                                closed_at=trade.exit_time.to_pydatetime()),
            )
        )
    return out
