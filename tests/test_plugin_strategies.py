"""Strategies of your own: in a file, in ``MEMLAB_STRATEGIES`` or in an installed package, they
work by name from every command, declare their grid and bounds, and a learned strategy knows
exactly which code it was trained on.

The commands run as a user runs them: the installed ``memlab`` script in a process of its own,
in a fresh folder, with a strategy file written there (and, for the entry point, a package
with its ``dist-info`` on ``PYTHONPATH``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memlab.data import synthetic_ohlcv
from memlab.errors import InvalidInputError
from memlab.memory.strategy_modules import StaleBaseError, StrategyModuleStore
from memlab.strategies import (
    check_grid,
    compute_signals,
    load_strategy_file,
    register,
    signal_frame,
    strategy,
)
from memlab.strategies.plugins import strategy_base
from tests.support.cli import one_line

SCRIPT = Path(sys.executable).parent / "memlab"
MEMLAB = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "memlab.cli"]
MARKET = "synthetic:3:1200"  # 1,200 hourly bars: five walk-forward folds in seconds

BOLLINGER = '''\
"""Bollinger bands: long when the close falls below the lower band, out above the middle."""
from memlab.strategies import signal_frame, strategy


@strategy("bollinger", grid={"window": [10, 20], "width": [1.5, 2.0]},
          bounds={"window": (2, 500), "width": (0.1, 10.0)})
def bollinger(ohlcv, window: int = 20, width: float = 2.0):
    close = ohlcv["Close"]
    mid = close.rolling(window).mean()
    band = width * close.rolling(window).std()
    below = close < mid - band
    return signal_frame(ohlcv.index, entry=below, exit=close > mid,
                        confidence=((mid - close) / band).clip(0, 1).where(below))
'''

BREAKOUT = '''\
from memlab.strategies import signal_frame, strategy


@strategy("breakout", grid={"window": [10, 20]})
def breakout(ohlcv, window: int = 20):
    high = ohlcv["High"].rolling(window).max().shift(1)
    low = ohlcv["Low"].rolling(window).min().shift(1)
    return signal_frame(ohlcv.index, entry=ohlcv["Close"] > high, exit=ohlcv["Close"] < low)
'''

# A package whose function does not declare itself: the entry point's name is its name.
KELTNER = '''\
from memlab.strategies import signal_frame


def keltner(ohlcv, window: int = 20, width: float = 1.5):
    close = ohlcv["Close"]
    mid = close.ewm(span=window, adjust=False).mean()
    reach = width * (ohlcv["High"] - ohlcv["Low"]).rolling(window).mean()
    return signal_frame(ohlcv.index, entry=close > mid + reach, exit=close < mid)
'''


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def environment(folder: Path, **extra: str) -> dict[str, str]:
    """The host's environment without memlab settings, everything kept inside ``folder``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMLAB_", "MEM_", "STRATEGY", "SYMBOL"))}
    env.update(MEMLAB_PARAMS_DIR=str(folder / "params"), MEM_MEMORY_PATH=str(folder / "mem"), **extra)
    return env


def start(folder: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*MEMLAB, *args], cwd=folder, env=environment(folder, **extra), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def memlab(folder: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return finish(start(folder, *args, **extra))


def in_process(args: list[str], folder: Path, monkeypatch: pytest.MonkeyPatch,
               capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``memlab ARGS`` through :func:`memlab.cli.main` (what the script runs) in ``folder``, for
    mistakes refused before any work: ``(exit code, the one error line)``."""
    from memlab import log_redaction
    from memlab.cli import main

    monkeypatch.chdir(folder)
    monkeypatch.setenv("MEMLAB_PARAMS_DIR", str(folder / "params"))
    monkeypatch.setenv("MEM_MEMORY_PATH", str(folder / "mem"))
    capsys.readouterr()
    try:
        code = main(args)
    finally:
        log_redaction.uninstall()
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if " INFO " not in line and " WARNING " not in line]
    assert len(lines) == 1, err
    return code, lines[0]


@pytest.fixture(autouse=True)
def no_inherited_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a file names it in MEMLAB_STRATEGIES for child processes: never past a test
    (set, so that the variable is removed again afterwards)."""
    monkeypatch.setenv("MEMLAB_STRATEGIES", "")


def paper(folder: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """A short paper session on a synthetic market (300 bars after the warm-up)."""
    return memlab(folder, "paper", "--symbol", "BTC/USDT", "--synthetic", "800", "--max-bars", "300", "--json",
                  *args, **extra)


# -- a strategy in a file, by name from train, evaluate and paper ---------------------------------
@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("plugin")
    write(folder / "my_strategies.py", BOLLINGER)
    return folder


@pytest.fixture(scope="module")
def trained(workdir: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """`memlab train` and `memlab evaluate` of the file's strategy, side by side (each compiles its own kernels)."""
    running = {
        "train": start(workdir, "train", "--symbols", MARKET, "--strategy", "bollinger",
                       "--strategy-file", "my_strategies.py", "--force"),
        "evaluate": start(workdir, "evaluate", "--markets", MARKET, "--strategy", "bollinger",
                          "--strategy-file", "my_strategies.py", "--out", "evaluation", "--draws", "100", "--quiet"),
    }
    return {name: finish(process) for name, process in running.items()}


def test_train_sweeps_the_grid_the_file_declares_and_records_the_file_as_the_base(
        workdir: Path, trained: dict[str, subprocess.CompletedProcess[str]]) -> None:
    done = trained["train"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SYN3: chose {'window': " in done.stdout and "best of 4 sets" in done.stdout  # the declared 2 x 2 grid
    summary = json.loads((workdir / "runs" / "last_training_summary.json").read_text())
    assert summary["strategy"] == "bollinger" and set(summary["symbols"]["SYN3"]["chosen"]) == {"window", "width"}
    trained_json = json.loads((workdir / "params" / "trained.json").read_text())
    assert set(trained_json["SYN3"]["bollinger"]["params"]) == {"window", "width"}

    source = workdir / "my_strategies.py"
    learned = StrategyModuleStore(workdir / "mem").load("LearnedBollingerSyn3")
    assert learned.base == f"{source.resolve()}:bollinger"
    assert learned.base_sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    bars = synthetic_ohlcv(300, freq="1h", seed=3)
    signals = learned().signals(bars)  # the base runs from the file it names
    assert list(signals.columns[:2]) == ["entry", "exit"] and len(signals) == 300


def test_evaluate_takes_the_strategy_by_name(workdir: Path, trained: dict[str, subprocess.CompletedProcess[str]]) -> None:
    done = trained["evaluate"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict:" in done.stdout
    report = json.loads((workdir / "evaluation" / "evaluation.json").read_text())
    assert "bollinger" in json.dumps(report)


def test_paper_trades_the_strategy_from_a_file_by_name(workdir: Path) -> None:
    done = paper(workdir, "--strategy", "bollinger", "--strategy-file", "my_strategies.py", "--param", "window=10",
                 "--memory-path", "paper-mem")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["state"] == "finished" and report["bars"] == 300 and report["orders"] > 0
    assert "Strategy: bollinger" in (workdir / "paper-mem" / "core_memory_updates.txt").read_text()


# -- MEMLAB_STRATEGIES and installed packages --------------------------------------------------
def test_memlab_strategies_names_files_and_modules_for_every_process(tmp_path: Path) -> None:
    write(tmp_path / "strategies" / "bollinger.py", BOLLINGER)
    write(tmp_path / "site" / "breakout_mod.py", BREAKOUT)
    listed = f"{tmp_path / 'strategies' / 'bollinger.py'}{os.pathsep}breakout_mod"
    done = memlab(tmp_path, "check-strategy", "--all", "--synthetic", "400", "--json",
                  MEMLAB_STRATEGIES=listed, PYTHONPATH=str(tmp_path / "site"))
    assert done.returncode in (0, 1), done.stderr  # 1: a shipped strategy that never settles on 400 bars
    checked = {d["strategy"]: d for d in json.loads(done.stdout)}
    assert {"bollinger", "breakout", "sma_cross"} <= set(checked)
    assert checked["bollinger"]["ok"] and checked["breakout"]["ok"]


def test_an_installed_package_brings_its_strategy_through_an_entry_point(tmp_path: Path) -> None:
    site = tmp_path / "site"
    write(site / "keltner_pkg" / "__init__.py", KELTNER)
    write(site / "keltner_pkg-0.1.dist-info" / "METADATA", "Metadata-Version: 2.1\nName: keltner-pkg\nVersion: 0.1\n")
    write(site / "keltner_pkg-0.1.dist-info" / "entry_points.txt", "[memlab.strategies]\nkeltner = keltner_pkg:keltner\n")
    done = paper(tmp_path, "--strategy", "keltner", PYTHONPATH=str(site))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["bars"] == 300
    assert "Strategy: keltner" in (tmp_path / "mem" / "core_memory_updates.txt").read_text()

    # A broken package is named, not silently missing.
    write(site / "keltner_pkg" / "__init__.py", "import no_such_dependency\n")
    line = one_line(paper(tmp_path, "--strategy", "keltner", PYTHONPATH=str(site)))
    assert "entry point keltner = keltner_pkg:keltner" in line and "keltner-pkg 0.1" in line
    assert "No module named 'no_such_dependency'" in line


# -- a learned strategy knows which code it was trained on ---------------------------------------
def test_a_learned_strategy_whose_base_changed_or_is_gone_is_refused_naming_both(tmp_path: Path) -> None:
    source = write(tmp_path / "hashed.py", BOLLINGER.replace('"bollinger"', '"hashed_band"'))
    load_strategy_file(source)
    base = strategy_base("hashed_band")
    assert base.ref == f"{source.resolve()}:bollinger"
    assert base.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    store = StrategyModuleStore(tmp_path / "mem")
    store.save("LearnedHashedBand", {"window": 10, "width": 2.0}, base=base.ref, base_sha256=base.sha256, reason="test")
    assert store.load("LearnedHashedBand")().window == 10

    original = source.read_bytes()
    source.write_bytes(original.replace(b"2.0):", b"2.5):"))  # a default changed: other signals
    with pytest.raises(StaleBaseError) as changed:
        store.load("LearnedHashedBand")
    message = str(changed.value)
    assert f"its base {base.ref} changed" in message and base.sha256[:12] in message
    assert hashlib.sha256(source.read_bytes()).hexdigest()[:12] in message
    assert store.load("LearnedHashedBand", check_base=False).params == {"window": 10, "width": 2.0}

    source.write_bytes(original)
    assert store.load("LearnedHashedBand")().width == 2.0
    source.unlink()
    with pytest.raises(StaleBaseError, match=f"its base {base.ref} is gone: {source.resolve()} no longer exists"):
        store.load("LearnedHashedBand")


def test_a_learned_strategy_on_a_missing_or_changed_module_function_is_refused(tmp_path: Path) -> None:
    store = StrategyModuleStore(tmp_path / "mem")
    # What training wrote before strategies recorded where they live: a function that is not there.
    store.save("LearnedBollingerGoog", {"window": 20}, base="memlab.strategies.library:bollinger", reason="old")
    with pytest.raises(StaleBaseError, match="memlab.strategies.library:bollinger is gone: "
                                             "memlab.strategies.library has no function bollinger"):
        store.load("LearnedBollingerGoog")
    real = strategy_base("sma_cross")
    assert real.ref == "memlab.strategies.library:sma_cross"
    store.save("LearnedSmaCross", {"fast": 5, "slow": 30}, base=real.ref, base_sha256=real.sha256, reason="now")
    assert store.load("LearnedSmaCross")().fast == 5
    store.save("LearnedSmaCross", {"fast": 5, "slow": 30}, base=real.ref, base_sha256="0" * 64, reason="then")
    with pytest.raises(StaleBaseError, match="the source of sma_cross in memlab.strategies.library is not what "
                                             "training used"):
        store.load("LearnedSmaCross")


# -- mistakes, each named in one line ------------------------------------------------------------
@pytest.mark.parametrize("command", [
    ["train", "--symbols", MARKET, "--strategy", "broken_band"],
    ["nightly", "--symbols", MARKET, "--strategy", "broken_band"],
    ["paper", "--symbol", "BTC/USDT", "--synthetic", "800", "--strategy", "broken_band"],
    ["evaluate", "--markets", MARKET, "--strategy", "broken_band", "--quiet"],
    ["check-strategy", "broken_band"],
])
def test_a_strategy_file_that_fails_to_import_is_named_with_its_line_and_error(
        tmp_path: Path, command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "broken.py", BOLLINGER.replace('"bollinger"', '"broken_band"') + "\nwidth = undefined_helper(2)\n")
    code, line = in_process([*command, "--strategy-file", "broken.py"], tmp_path, monkeypatch, capsys)
    assert code == 2
    assert line.endswith("strategy file broken.py, line 15: NameError: name 'undefined_helper' is not defined"), line


def test_a_broken_file_in_memlab_strategies_is_named_with_the_variable(tmp_path: Path) -> None:
    write(tmp_path / "broken.py", "def bollinger(ohlcv:\n")
    done = paper(tmp_path, "--strategy", "sma_cross", MEMLAB_STRATEGIES="broken.py")
    assert done.returncode == 2
    assert one_line(done).startswith("memlab: error: MEMLAB_STRATEGIES: strategy file broken.py, line 1: SyntaxError")


def test_a_file_that_declares_nothing_says_how_to_declare(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"declares no strategy: decorate a function with @strategy"):
        load_strategy_file(write(tmp_path / "plain.py", "def bollinger(ohlcv):\n    return ohlcv\n"))


def test_two_strategies_with_one_name_are_refused_naming_both_sources(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    first = write(tmp_path / "a" / "twin.py", BOLLINGER.replace('"bollinger"', '"twin"'))
    second = write(tmp_path / "b" / "twin.py", BOLLINGER.replace('"bollinger"', '"twin"'))
    code, line = in_process(["check-strategy", "twin", "--strategy-file", str(first), "--strategy-file", str(second)],
                            tmp_path, monkeypatch, capsys)
    assert code == 2
    assert line == (f"memlab: error: strategy file {second}, line 5: two strategies are called 'twin': "
                    f"{first}:bollinger and {second}:bollinger; rename one of them")

    # The same function from the same source may be declared again (a file loaded twice, a cell re-run).
    load_strategy_file(first)
    load_strategy_file(first)
    register("twin", load_strategy_file(first).bollinger)
    with pytest.raises(InvalidInputError, match="two strategies are called 'twin'"):
        load_strategy_file(second)
    with pytest.raises(InvalidInputError, match=r"two strategies are called 'sma_cross': memlab.strategies.library:"
                                                r"sma_cross and [\w.]*test_plugin_strategies:\S*<lambda>; rename one"):
        register("sma_cross", lambda ohlcv: ohlcv)


def missing_exit(ohlcv: pd.DataFrame, window: int = 5) -> pd.DataFrame:
    return signal_frame(ohlcv.index, ohlcv["Close"] > 0, ohlcv["Close"] < 0).drop(columns="exit")


def one_row_short(ohlcv: pd.DataFrame, window: int = 5) -> pd.DataFrame:
    return signal_frame(ohlcv.index, ohlcv["Close"] > 0, ohlcv["Close"] < 0).iloc[1:]


def float_flags(ohlcv: pd.DataFrame, window: int = 5) -> pd.DataFrame:
    return signal_frame(ohlcv.index, ohlcv["Close"] > 0, ohlcv["Close"] < 0).astype({"short_entry": float})


@pytest.mark.parametrize(("fn", "named"), [
    (missing_exit, "strategy 'plugin_missing_exit' returned no 'exit' column"),
    (one_row_short, r"strategy 'plugin_one_row_short' returned (99|63) rows for (100|64) bars: column 'entry'"),
    (float_flags, "strategy 'plugin_float_flags': column 'short_entry' is float64, not bool"),
])
def test_a_strategy_that_returns_the_wrong_frame_is_named_by_column(fn, named: str) -> None:  # type: ignore[no-untyped-def]
    name = f"plugin_{fn.__name__}"
    register(name, fn, grid={"window": [5, 10]})
    bars = synthetic_ohlcv(100, seed=1)
    with pytest.raises(InvalidInputError, match=named):
        compute_signals(name, bars)
    from memlab import backtest

    with pytest.raises(InvalidInputError, match=named):  # not "no valid parameter combination"
        backtest.sweep(bars, name, {"window": [5, 10]}, progress=False)
    with pytest.raises(InvalidInputError, match=named):
        backtest.run(bars, name)


def test_the_cli_names_the_missing_column_before_training_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "no_exit.py", BOLLINGER.replace('"bollinger"', '"no_exit_band"').replace(
        ".where(below))", '.where(below)).drop(columns="exit")'))
    code, line = in_process(["train", "--symbols", MARKET, "--strategy", "no_exit_band", "--strategy-file", "no_exit.py"],
                            tmp_path, monkeypatch, capsys)
    assert code == 2
    assert line == ("memlab: error: strategy 'no_exit_band' returned no 'exit' column; a signal frame has entry, "
                    "exit, short_entry, short_exit, confidence (build it with memlab.strategies.signal_frame)")
    assert not (tmp_path / "mem").exists()


def test_a_grid_that_names_a_parameter_the_strategy_lacks_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="the grid names 'slwo', which sma_cross does not take; it takes fast, slow"):
        check_grid("sma_cross", {"fast": [5, 10], "slwo": [30]})
    with pytest.raises(InvalidInputError, match="names 'fsat'"):
        check_grid("sma_cross", [{"fast": 5, "slow": 30}, {"fsat": 5, "slow": 30}])
    with pytest.raises(InvalidInputError, match=r"the grid: fast=0 is outside sma_cross's bounds \[1, inf\]"):
        check_grid("sma_cross", {"fast": [0, 5], "slow": [30]})
    from memlab import backtest
    from memlab.data import sample
    from memlab.training import TrainingConfig, train

    with pytest.raises(InvalidInputError, match="the grid names 'slwo'"):  # it used to be "no valid combination"
        backtest.sweep(sample("GOOG"), "sma_cross", {"fast": [5], "slwo": [30]}, progress=False)
    with pytest.raises(InvalidInputError, match="the grid names 'windw'"):
        train(TrainingConfig(symbols=["GOOG"], strategy="sma_cross", grid={"fast": [5], "windw": [3]},
                             memory_path=tmp_path / "mem", params_dir=tmp_path / "params", progress=False))
    assert not (tmp_path / "mem").exists() and not (tmp_path / "params").exists()


def test_a_declaration_that_names_what_the_strategy_lacks_is_refused_naming_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "typo.py", BOLLINGER.replace('grid={"window"', 'grid={"windw"'))
    code, line = in_process(["paper", "--strategy", "bollinger", "--strategy-file", "typo.py"], tmp_path,
                            monkeypatch, capsys)
    assert code == 2
    assert line == ("memlab: error: strategy file typo.py, line 5: bollinger's declared grid names 'windw', "
                    "which bollinger does not take; it takes window, width")

    with pytest.raises(InvalidInputError, match=r"bounds\['window'\] has low 5 above high 1"):
        register("plugin_bad_bounds", missing_exit, bounds={"window": (5, 1)})
    with pytest.raises(InvalidInputError, match="bounds name 'width', which it does not take; it takes window"):
        register("plugin_bad_bounds", missing_exit, bounds={"width": (1, 5)})


def test_declared_bounds_refuse_a_parameter_outside_them(tmp_path: Path) -> None:
    @strategy("plugin_bounded", grid={"window": [5, 10]}, bounds={"window": (2, 50)})
    def bounded(ohlcv: pd.DataFrame, window: int = 5) -> pd.DataFrame:
        up = ohlcv["Close"] > ohlcv["Close"].rolling(window).mean()
        return signal_frame(ohlcv.index, up, ~up)

    bars = synthetic_ohlcv(100, seed=1)
    assert compute_signals("plugin_bounded", bars, {"window": 50})["entry"].dtype == np.bool_
    with pytest.raises(InvalidInputError, match=r"plugin_bounded: window=51 is outside its bounds \[2, 50\]"):
        compute_signals("plugin_bounded", bars, {"window": 51})


def test_training_without_a_grid_needs_one_declared(tmp_path: Path) -> None:
    from memlab.training import TrainingConfig, train

    register("plugin_no_grid", missing_exit)
    with pytest.raises(InvalidInputError, match="plugin_no_grid declares no default grid; pass grid=, or declare one"):
        train(TrainingConfig(symbols=["GOOG"], strategy="plugin_no_grid", memory_path=tmp_path / "mem",
                             params_dir=tmp_path / "params", progress=False))
