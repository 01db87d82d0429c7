"""Backtests and sweeps on vectorbt: :func:`run` one strategy, :func:`sweep` a grid.

>>> from memlab.data import sample
>>> from memlab import backtest
>>> result = backtest.run(sample("GOOG"), "sma_cross", {"fast": 10, "slow": 30})
>>> result.stats["n_trades"]
32
"""

from memlab.backtest.engine import BacktestResult, periods_per_year, run, simulate
from memlab.backtest.figures import equity_figure, sweep_heatmap
from memlab.backtest.sweep import expand_grid, sweep

__all__ = ["BacktestResult", "equity_figure", "expand_grid", "periods_per_year", "run", "simulate", "sweep", "sweep_heatmap"]
