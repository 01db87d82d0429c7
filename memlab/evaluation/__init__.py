"""Does memory help? Out-of-sample evaluation of the agent's gating against the raw strategy.

>>> from memlab.evaluation import evaluate_memory
>>> report = evaluate_memory(["GOOG", "EURUSD"])          # doctest: +SKIP
>>> print(report.to_text())                              # doctest: +SKIP
>>> report.figure()                                      # doctest: +SKIP
>>> report.save("runs/evaluation")                       # doctest: +SKIP

From the shell: ``memlab evaluate --markets GOOG EURUSD BTCUSD synthetic``.
"""

from memlab.evaluation.memory_edge import (
    DEFAULT_MARKETS,
    TABLE_COLUMNS,
    EvaluationConfig,
    EvaluationReport,
    MarketResult,
    MarketTooShortError,
    brier_skill,
    evaluate_market,
    evaluate_memory,
    load_market,
    market_events,
    sharpe,
    sharpe_difference_draws,
)

__all__ = [
    "DEFAULT_MARKETS",
    "TABLE_COLUMNS",
    "EvaluationConfig",
    "EvaluationReport",
    "MarketResult",
    "MarketTooShortError",
    "brier_skill",
    "evaluate_market",
    "evaluate_memory",
    "load_market",
    "market_events",
    "sharpe",
    "sharpe_difference_draws",
]
