"""memlab: a research and paper-trading workbench around a trading agent with persistent memory.

The public entry points. They keep the API of "the seed", the design document memlab grew
from; docstrings that say "the seed's" mean that API or its examples as written (they run
in ``tests/test_seed_examples.py``)::

    from memlab import ConnectionManager, MemGPTConnector, CredentialManager
    from memlab import UnifiedMemGPTTrader, TraderConfig
    from memlab.memory import MemoryStores, Decision

See README.md for the tour.
"""

from typing import Any

from memlab.agent.gateway import MemGPTConnector
from memlab.credentials import BrokerCredentials, CredentialManager, Secret
from memlab.memory import Decision, MemoryStores, Outcome

__version__ = "0.1.0"

# Imported on first use: ccxt and the trader stack are heavy, and most scripts need neither.
_LAZY = {
    "ConnectionManager": "memlab.connectors",
    "PaperBroker": "memlab.connectors",
    "UnifiedMemGPTTrader": "memlab.trader",
    "TraderConfig": "memlab.trader",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'memlab' has no attribute {name!r}")


__all__ = [
    "BrokerCredentials",
    "ConnectionManager",
    "CredentialManager",
    "Decision",
    "MemGPTConnector",
    "MemoryStores",
    "Outcome",
    "PaperBroker",
    "Secret",
    "TraderConfig",
    "UnifiedMemGPTTrader",
    "__version__",
]
