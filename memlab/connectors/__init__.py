"""Connections to brokers and market data: ``ConnectionManager``, the paper broker, feeds, health.

- :class:`ConnectionManager` — brokers (any ccxt exchange, or ``paper``), data feeds
  (replay, ccxt polling, ccxt websockets), command routing, health, webhooks.
- :class:`PaperBroker` — a persistent simulated exchange with ccxt's verbs and errors.
- :class:`ReplayFeed` / :class:`PollingFeed` / :class:`WatchFeed` — closed bars in time order.
- :class:`RetryPolicy` — backoff with jitter for ccxt's "try again" errors.
"""

from memlab.connectors.brokers import ExchangeConnection, PaperConnection, new_client_order_id
from memlab.connectors.feeds import PollingFeed, ReplayFeed, WatchFeed
from memlab.connectors.health import ConnectionHealth, HealthBoard, read_health
from memlab.connectors.manager import COMMANDS, ConnectionManager
from memlab.connectors.paper_broker import Bar, PaperBroker
from memlab.connectors.retry import RetryPolicy, is_retryable

__all__ = [
    "COMMANDS",
    "Bar",
    "ConnectionHealth",
    "ConnectionManager",
    "ExchangeConnection",
    "HealthBoard",
    "PaperBroker",
    "PaperConnection",
    "PollingFeed",
    "ReplayFeed",
    "RetryPolicy",
    "WatchFeed",
    "is_retryable",
    "new_client_order_id",
    "read_health",
]
