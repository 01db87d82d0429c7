"""The trader loop: ``UnifiedMemGPTTrader`` runs a paper or live session; ``memlab paper`` starts one.

- :class:`TraderConfig` — what to trade and how, from arguments or the seed's
  environment (``TRADING_MODE``, ``SYMBOL``, ``STRATEGY``, ``MEM_MEMORY_PATH``).
- :class:`UnifiedMemGPTTrader` — feed → signal → agent → sizing → broker → memory.
- :class:`DecisionPipeline` — the one path from a signal to an order and a memory record,
  shared by the trader, webhook alerts and notebooks.
- :func:`read_status` — the running trader's heartbeat, for the monitor.
"""

from memlab.trader.config import TraderConfig
from memlab.trader.loop import UnifiedMemGPTTrader
from memlab.trader.pipeline import (
    DecisionPipeline,
    Holdings,
    SizingRule,
    alert_client_id,
    bar_client_id,
)
from memlab.trader.reconcile import reconcile_with_backtest
from memlab.trader.status import read_status

__all__ = [
    "DecisionPipeline",
    "Holdings",
    "SizingRule",
    "TraderConfig",
    "UnifiedMemGPTTrader",
    "alert_client_id",
    "bar_client_id",
    "read_status",
    "reconcile_with_backtest",
]
