"""memlab: a research and paper-trading workbench around a trading agent with persistent memory.

The public entry points (the seed's API)::

    from memlab import MemGPTConnector, CredentialManager
    from memlab.memory import MemoryStores, Decision

See README.md for the tour.
"""

from memlab.connector import MemGPTConnector
from memlab.credentials import BrokerCredentials, CredentialManager, Secret
from memlab.memory import Decision, MemoryStores, Outcome

__version__ = "0.1.0"

__all__ = [
    "BrokerCredentials",
    "CredentialManager",
    "Decision",
    "MemGPTConnector",
    "MemoryStores",
    "Outcome",
    "Secret",
    "__version__",
]
