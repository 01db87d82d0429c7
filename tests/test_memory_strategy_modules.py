"""strategy_modules.py: learned strategies as importable, versioned Python."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from memlab.errors import InvalidInputError
from memlab.memory import CorruptMemoryError, MemoryStores, StrategyModuleStore, TamperedMemoryError


def test_versions_are_kept_and_the_plain_name_is_the_newest(memory_dir: Path) -> None:
    store = StrategyModuleStore(memory_dir)
    assert (
        store.save(
            "LearnedHighVolatilityStrategy",
            {"rsi_threshold": 35, "volatility_threshold": 2.0},
            base="memlab.features:rsi",
            reason="walk-forward 2024",
        )
        == 1
    )
    assert (
        store.save(
            "LearnedHighVolatilityStrategy",
            {"rsi_threshold": 30, "volatility_threshold": 2.5},
            base="memlab.features:rsi",
            reason="walk-forward 2025",
            metrics={"sharpe": 1.3},
        )
        == 2
    )
    assert store.versions("LearnedHighVolatilityStrategy") == [1, 2]
    assert store.load("LearnedHighVolatilityStrategy", 1)().rsi_threshold == 35
    newest = store.load("LearnedHighVolatilityStrategy")()
    assert (newest.rsi_threshold, newest.version, newest.metrics) == (30, 2, {"sharpe": 1.3})

    # The file is ordinary Python: importable without memlab's loader.
    spec = importlib.util.spec_from_file_location("learned", memory_dir / "strategy_modules.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    assert module.LearnedHighVolatilityStrategy is module.LearnedHighVolatilityStrategy_v2
    assert module.LearnedHighVolatilityStrategy_v1.params["rsi_threshold"] == 35


def test_learned_strategy_runs_its_base_signal_function(memory_dir: Path) -> None:
    import numpy as np
    import pandas as pd

    store = StrategyModuleStore(memory_dir)
    store.save("LearnedRsi", {"period": 5}, base="memlab.features:rsi", reason="test")
    close = pd.Series(np.linspace(100, 90, 30))
    assert store.load("LearnedRsi")().signals(close).iloc[-1] < 10  # steadily falling: RSI near 0


@pytest.mark.parametrize("name", ["not valid", "class", "Name_v2", ""])
def test_bad_names_are_refused(memory_dir: Path, name: str) -> None:
    with pytest.raises(InvalidInputError):
        StrategyModuleStore(memory_dir).save(name, {}, base="m:f", reason="x")


def test_unsaveable_values_are_refused(memory_dir: Path) -> None:
    store = StrategyModuleStore(memory_dir)
    with pytest.raises(InvalidInputError):
        store.save("S", {"fn": print}, base="m:f", reason="x")
    with pytest.raises(InvalidInputError):
        store.save("S", {"x": float("nan")}, base="m:f", reason="x")
    assert not (memory_dir / "strategy_modules.py").exists()


def test_a_file_edited_outside_memlab_is_not_imported(memory_dir: Path) -> None:
    mem = MemoryStores(memory_dir)
    mem.strategies.save("S", {"x": 1}, base="memlab.features:rsi", reason="x")
    path = memory_dir / "strategy_modules.py"
    path.write_text(path.read_text() + "\nimport os  # injected\n")
    with pytest.raises(TamperedMemoryError):
        mem.strategies.load("S")


def test_broken_python_is_a_corrupt_file_error_with_line(memory_dir: Path) -> None:
    memory_dir.mkdir()
    (memory_dir / "strategy_modules.py").write_text("class Broken_v1(:\n    pass\n")
    with pytest.raises(CorruptMemoryError) as err:
        StrategyModuleStore(memory_dir).versions("Broken")
    assert err.value.line == 1
