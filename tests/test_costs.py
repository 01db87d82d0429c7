"""One cost model: every layer charges memlab.costs.DEFAULT_COSTS unless told otherwise.

Parameters are chosen by backtests, sweeps and training and then traded on paper; if the
layers charged different costs, training would pick parameters under costs paper trading
does not charge.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from memlab import ConnectionManager, backtest
from memlab.connectors import Bar, PaperBroker
from memlab.costs import DEFAULT_COSTS, CostModel
from memlab.data import sample
from memlab.errors import InvalidInputError
from memlab.evaluation.memory_edge import EvaluationConfig
from memlab.trader import TraderConfig
from memlab.training.trainer import TrainingConfig
from memlab.training.walkforward import walk_forward

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = {"fees": DEFAULT_COSTS.fees, "slippage": DEFAULT_COSTS.slippage}
GRID = {"fast": [5, 10], "slow": [20, 40]}


def test_the_default_charges_a_fee() -> None:
    assert CostModel(fees=0.001, slippage=0.0) == DEFAULT_COSTS


def test_a_backtest_without_fees_charges_the_default() -> None:
    bars = sample("GOOG")
    implicit = backtest.run(bars, "sma_cross", {"fast": 10, "slow": 30})
    explicit = backtest.run(bars, "sma_cross", {"fast": 10, "slow": 30}, **DEFAULT)
    free = backtest.run(bars, "sma_cross", {"fast": 10, "slow": 30}, fees=0.0)
    assert implicit.stats == explicit.stats
    assert implicit.stats["total_return"] < free.stats["total_return"]  # the fee is really charged


@pytest.mark.parametrize("engine", ["auto", "vectorbt"])  # auto: the fused sma_cross kernel
def test_a_sweep_without_fees_charges_the_default(engine: str) -> None:
    bars = sample("GOOG")
    implicit = backtest.sweep(bars, "sma_cross", GRID, engine=engine, progress=False, selection=False)
    explicit = backtest.sweep(bars, "sma_cross", GRID, engine=engine, progress=False, selection=False, **DEFAULT)
    free = backtest.sweep(bars, "sma_cross", GRID, engine=engine, progress=False, selection=False, fees=0.0)
    assert implicit["total_return"].tolist() == explicit["total_return"].tolist()
    assert (implicit["total_return"] < free["total_return"]).all()


def test_a_walk_forward_without_fees_charges_the_default() -> None:
    bars = sample("GOOG")
    implicit = walk_forward(bars, "sma_cross", GRID, train_bars=600, test_bars=300)
    explicit = walk_forward(bars, "sma_cross", GRID, train_bars=600, test_bars=300, **DEFAULT)
    assert implicit.folds["oos_total_return"].tolist() == explicit.folds["oos_total_return"].tolist()


def test_training_evaluation_and_paper_trading_default_to_the_same_costs() -> None:
    layers = {
        "training": TrainingConfig(symbols=["GOOG"]),
        "evaluation": EvaluationConfig(),
        "paper trading": TraderConfig(),
    }
    assert {name: (c.fees, c.slippage) for name, c in layers.items()} == {
        name: (DEFAULT_COSTS.fees, DEFAULT_COSTS.slippage) for name in layers
    }


def test_a_paper_fill_without_fees_charges_the_default(tmp_path: Path) -> None:
    broker = PaperBroker(tmp_path, balances={"USDT": 10_000.0})
    broker.add_market("BTC/USDT")
    broker.on_bar("BTC/USDT", Bar(0, 100, 101, 99, 100))
    broker.create_order("BTC/USDT", "market", "buy", 10)
    [fill] = broker.on_bar("BTC/USDT", Bar(60, 102, 103, 101, 102))
    assert fill["price"] == 102 * (1 + DEFAULT_COSTS.slippage)
    assert fill["fee"] == pytest.approx(DEFAULT_COSTS.fees * fill["amount"] * fill["price"])
    broker.close()


def test_the_connection_managers_paper_broker_charges_the_default(tmp_path: Path) -> None:
    async def main() -> float:
        async with ConnectionManager(tmp_path) as manager:
            await manager.add_broker_connection("paper", balances={"USDT": 10_000.0}, markets=["BTC/USDT"])
            manager.broker("paper").on_bar("BTC/USDT", Bar(0, 100, 101, 99, 100))
            await manager.execute_on_broker("paper", "place_order", {"symbol": "BTC/USDT", "qty": 10, "side": "buy"})
            manager.broker("paper").on_bar("BTC/USDT", Bar(60, 102, 103, 101, 102))
            return (await manager.execute_on_broker("paper", "fetch_balance"))["total"]["USDT"]

    paid = 10 * 102 * (1 + DEFAULT_COSTS.slippage)
    assert asyncio.run(main()) == pytest.approx(10_000 - paid * (1 + DEFAULT_COSTS.fees))


@pytest.mark.parametrize("notebook", ["backtest.ipynb", "paper_trading.ipynb"])
def test_notebooks_default_to_the_same_costs(notebook: str) -> None:
    cells = json.loads((ROOT / "notebooks" / notebook).read_text())["cells"]
    [parameters] = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    namespace: dict[str, object] = {}
    exec("".join(parameters["source"]), namespace)
    assert namespace["fees"] == DEFAULT_COSTS.fees


def test_an_explicit_cost_wins_over_the_default() -> None:
    assert TraderConfig(fees=0.0005).fees == 0.0005
    assert TrainingConfig(symbols=["GOOG"], fees=0.0, slippage=0.0002).slippage == 0.0002


@pytest.mark.parametrize(("make", "message"), [
    (lambda: CostModel(fees=1.5, slippage=0.0), "fees is a fraction of traded value in [0, 1), got 1.5"),
    (lambda: CostModel(fees=0.001, slippage=-0.1), "slippage is a fraction of traded value in [0, 1), got -0.1"),
    (lambda: CostModel(fees=float("nan"), slippage=0.0), "fees is a fraction of traded value in [0, 1), got nan"),
    (lambda: CostModel(fees=True, slippage=0.0), "fees is a fraction of traded value in [0, 1), got True"),
    (lambda: backtest.run(sample("GOOG"), "sma_cross", fees=2.0), "fees is a fraction of traded value in [0, 1), got 2.0"),
    (lambda: TraderConfig(slippage=1.0), "slippage is a fraction of traded value in [0, 1), got 1.0"),
])
def test_a_bad_cost_is_refused_in_one_line_naming_it(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInputError) as refused:
        make()
    assert str(refused.value) == message
