"""Turn backtest trades into decisions with outcomes, so the agent starts with experience.

Each closed trade becomes one :class:`~memlab.memory.Decision`: the features of the
bar whose close produced the signal, the action (BUY for a long, SELL for a short), the
strategy's confidence, a reason a person can read, and the trade's outcome, known at the
exit's fill bar (``closed_at``, market time). Keys make the recording idempotent:
training the same history twice stores it once.

Each experience says how honest it is (``meta.sample``): ``"out-of-sample"`` for a trade
in a walk-forward test window, made with parameters chosen on the train window before it
(``meta.fold``, ``meta.fitted_on``, ``meta.judged_on``); ``"in-sample"`` for a trade made
with parameters chosen on bars that include or follow it. The agent learns only from
out-of-sample experience unless told otherwise (``BrainConfig.use_in_sample``).
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
from memlab.memory.decisions import IN_SAMPLE, OUT_OF_SAMPLE


def params_tag(params: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(dict(params), sort_keys=True, default=str).encode()).hexdigest()[:10]


def trades_to_decisions(
    ohlcv: pd.DataFrame, result: BacktestResult, *, symbol: str, agent_id: str = "trainer",
    fill: str = "next_open", features: pd.DataFrame | None = None, sample: str = IN_SAMPLE,
    meta: Mapping[str, Any] | None = None,
) -> list[Decision]:
    """One decision per closed trade of ``result`` (trades in the warm-up are skipped).

    ``result`` may cover a window of ``ohlcv`` (a walk-forward test window); ``sample``
    says whether its parameters were chosen without its bars, and ``meta`` is stored with
    each decision (fold, windows)."""
    if sample not in (IN_SAMPLE, OUT_OF_SAMPLE):
        raise ValueError(f"sample must be {IN_SAMPLE!r} or {OUT_OF_SAMPLE!r}, not {sample!r}")
    feats = market_features(ohlcv) if features is None else features
    tag = params_tag(result.params)
    confidences = result.signals["confidence"].reindex(ohlcv.index)
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
        conf = confidences.iloc[signal_pos]
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
                key=f"train:{symbol}:{result.strategy}:{tag}:{sample}:{decided_at.isoformat()}",
                meta={**(meta or {}), "params": result.params, "source": "backtest", "sample": sample},
                outcome=Outcome(pnl=float(trade.pnl), return_pct=float(trade.return_pct),
                                closed_at=trade.exit_time.to_pydatetime()),
            )
        )
    return out
