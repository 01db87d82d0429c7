"""The trader loop: ``UnifiedMemGPTTrader`` runs a paper or live session; ``memlab paper`` starts one.

- :class:`TraderConfig` — what to trade and how, from arguments or the seed's
  environment (``TRADING_MODE``, ``SYMBOL``, ``STRATEGY``, ``MEM_MEMORY_PATH``).
- :class:`UnifiedMemGPTTrader` — feed → signal → agent → sizing → broker → memory.
- :func:`read_status` — the running trader's heartbeat, for the monitor.
"""

from memlab.trader.config import TraderConfig
from memlab.trader.loop import UnifiedMemGPTTrader, client_order_id
from memlab.trader.reconcile import reconcile_with_backtest
from memlab.trader.status import read_status

__all__ = ["TraderConfig", "UnifiedMemGPTTrader", "client_order_id", "read_status", "reconcile_with_backtest"]
