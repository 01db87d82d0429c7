"""The memory-driven agent: scores signals from similar past situations, learns, adapts.

The signal it scores (built by the trader and the webhook endpoint) is
:class:`~memlab.agent.signal.Signal`::

    {"symbol": "BTCUSDT", "strategy": "momentum", "action": "BUY", "price": 65000.0,
     "features": {name: value for name in memlab.features.FEATURE_NAMES},  # or "bars": OHLCV frame
     "time": "2025-10-16T14:30:15Z"}

- :mod:`~memlab.agent.signal` — the signal schema and its checks.
- core-memory blocks and archival memory live with the other tiers in :mod:`memlab.memory`.
- :mod:`~memlab.agent.brain` — the default brain (similar situations -> confidence).
- :mod:`~memlab.agent.llm_brain`, :mod:`~memlab.agent.tools` — the optional LLM brain.
- :mod:`~memlab.agent.adaptation` — the adaptation triggers.
- :mod:`~memlab.agent.calibration` — Brier score and reliability plot.
- :mod:`~memlab.agent.agent` — :class:`MemoryAgent`, the facade.
"""

from memlab.agent.adaptation import Adaptation, AdaptationConfig, Adapter
from memlab.agent.agent import AgentConfig, MemoryAgent
from memlab.agent.brain import Analysis, BrainConfig, DefaultBrain
from memlab.agent.calibration import CalibrationReport, brier_score, calibrate
from memlab.agent.signal import InvalidSignalError, Signal
from memlab.memory.archival import ArchivalMemory
from memlab.memory.core_memory import Block, CoreMemory, CoreMemoryLimitError

__all__ = [
    "Adaptation",
    "AdaptationConfig",
    "Adapter",
    "AgentConfig",
    "Analysis",
    "ArchivalMemory",
    "Block",
    "BrainConfig",
    "CalibrationReport",
    "CoreMemory",
    "CoreMemoryLimitError",
    "DefaultBrain",
    "InvalidSignalError",
    "MemoryAgent",
    "Signal",
    "brier_score",
    "calibrate",
]
