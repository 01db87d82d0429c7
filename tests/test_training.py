"""Historical training: walk-forward, experience in memory, all-or-nothing, Dask, nightly runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from memlab.data import synthetic_ohlcv
from memlab.memory import MemoryStores
from memlab.strategies import compute_signals
from memlab.training import TrainingConfig, TrainingError, train, walk_forward

ROOT = Path(__file__).resolve().parents[1]
GRID = {"fast": [5, 10], "slow": [20, 40]}


def test_walk_forward_never_chooses_on_test_bars() -> None:
    bars = synthetic_ohlcv(3000, freq="1h", seed=2)
    report = walk_forward(bars, "sma_cross", GRID, train_bars=1200, test_bars=600, fees=0.0)
    folds = report.folds
    assert len(folds) == 3
    assert (folds["test_start"] > folds["train_end"]).all()
    assert (folds["test_start"].iloc[1:].to_numpy() == folds["test_end"].iloc[:-1].to_numpy() + pd.Timedelta(hours=1)).all()
    for fold in folds.itertuples():
        assert set(fold.params) == {"fast", "slow"} and isinstance(fold.params["fast"], int)
    summary = report.summary()
    assert {"in_sample_sharpe", "out_of_sample_sharpe", "out_of_sample_return"} <= set(summary)
    # The chosen set is the best on its own train window.
    from memlab.backtest import sweep

    last = folds.iloc[-1]
    table = sweep(bars.loc[last.train_start : last.train_end], "sma_cross", GRID, progress=False, fees=0.0)
    best = table[table["n_trades"] >= 3].sort_values("sharpe", ascending=False).iloc[0]
    assert (int(best["fast"]), int(best["slow"])) == (last.params["fast"], last.params["slow"])


def test_training_writes_experience_parameters_and_the_learned_strategy(tmp_path: Path) -> None:
    mem_path, params_dir = tmp_path / "mem", tmp_path / "params"
    cfg = TrainingConfig(symbols=["GOOG", "synthetic:3:2000"], grid=GRID, memory_path=mem_path,
                         params_dir=params_dir, progress=False, force=True)  # a random walk has no edge to keep
    summary = train(cfg)
    with MemoryStores(mem_path) as mem:
        decisions = mem.decisions.frame()
        goog = summary["symbols"]["GOOG"]
        chosen = goog["chosen"]
        assert goog["decisions_recorded"] == (decisions["symbol"] == "GOOG").sum() > 10
        assert decisions["pnl"].notna().all() and decisions[["ret_5", "rsi", "trend"]].notna().all().all()
        assert set(decisions["action"]) == {"BUY"}
        assert mem.parameters.get("GOOG.sma_cross.fast") == chosen["fast"]
        change = mem.parameters.history("GOOG.sma_cross.fast").iloc[-1]
        assert change["from"] is None or pd.isna(change["from"])
        assert "walk-forward" in change["reason"] and "out-of-sample" in change["reason"]
        learned = mem.strategies.load("LearnedSmaCrossGoog")()
        assert (learned.fast, learned.slow) == (chosen["fast"], chosen["slow"])
        from memlab.data import sample

        pd.testing.assert_frame_equal(learned.signals(sample("GOOG")), compute_signals("sma_cross", sample("GOOG"), chosen))
        assert any(e.fields.get("Training") == "GOOG" for e in mem.journal.entries())
        count = mem.decisions.count()
    trained = json.loads((params_dir / "trained.json").read_text())
    assert trained["GOOG"]["sma_cross"]["params"] == chosen
    # Training the same history again adds no duplicate experience.
    train(cfg)
    with MemoryStores(mem_path) as mem:
        assert mem.decisions.count() == count


def test_a_failed_run_leaves_memory_and_parameters_untouched(tmp_path: Path) -> None:
    mem_path, params_dir = tmp_path / "mem", tmp_path / "params"
    train(TrainingConfig(symbols=["GOOG"], grid=GRID, memory_path=mem_path, params_dir=params_dir, progress=False))
    before = {p.name: p.read_bytes() for p in mem_path.iterdir() if p.is_file() and "sqlite" not in p.name}
    trained = (params_dir / "trained.json").read_bytes()
    with MemoryStores(mem_path) as mem:
        count = mem.decisions.count()
    with pytest.raises((TrainingError, ValueError)):
        train(TrainingConfig(symbols=["EURUSD", "no-such-market"], grid=GRID, memory_path=mem_path,
                             params_dir=params_dir, progress=False))
    after = {p.name: p.read_bytes() for p in mem_path.iterdir() if p.is_file() and "sqlite" not in p.name}
    assert after == before and (params_dir / "trained.json").read_bytes() == trained
    with MemoryStores(mem_path) as mem:
        assert mem.decisions.count() == count


def test_dask_local_cluster_gives_the_same_result_as_serial(tmp_path: Path) -> None:
    symbols = ["synthetic:11:1500", "synthetic:12:1500"]
    serial = train(TrainingConfig(symbols=symbols, grid=GRID, memory_path=tmp_path / "a", params_dir=tmp_path / "pa",
                                  progress=False, force=True))
    spread = train(TrainingConfig(symbols=symbols, grid=GRID, memory_path=tmp_path / "b", params_dir=tmp_path / "pb",
                                  scheduler="local", progress=False, force=True))
    for symbol in serial["symbols"]:
        assert spread["symbols"][symbol]["chosen"] == serial["symbols"][symbol]["chosen"]
        assert spread["symbols"][symbol]["decisions_recorded"] == serial["symbols"][symbol]["decisions_recorded"]


def run_memlab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memlab.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_nightly_run_writes_a_dated_folder(tmp_path: Path) -> None:
    done = run_memlab("nightly", "--symbols", "synthetic:5:1200", "--memory-path", str(tmp_path / "mem"),
                      "--notebook", str(ROOT / "notebooks" / "nightly_training.ipynb"), "--out", str(tmp_path / "runs"),
                      cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    [run_dir] = list((tmp_path / "runs").iterdir())
    assert len(run_dir.name) == 10 and run_dir.name[4] == "-"  # YYYY-MM-DD
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "SYN5" in summary["symbols"]
    executed = json.loads((run_dir / "nightly_training.ipynb").read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])
    # One HTML report of the run, named where the command says; its figures draw offline.
    report = run_dir / "nightly_training.html"
    assert f"report: {report}" in done.stdout.replace(str(tmp_path.resolve()), str(tmp_path))
    figures = sum("application/vnd.plotly.v1+json" in out.get("data", {})
                  for cell in executed["cells"] for out in cell.get("outputs", []))
    assert figures >= 1
    page = report.read_text()
    assert page.count('class="plotly-graph-div"') == figures
    assert not re.search(r'<script[^>]*src="https?://', page)  # nothing to fetch: plotly.js is inline
    if Path("/usr/bin/chromium").exists():
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                         args=["--no-sandbox", "--disable-gpu"])
            try:
                tab = browser.new_page()
                tab.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                          else route.abort())  # offline: nothing may come from a CDN
                tab.goto(report.resolve().as_uri())
                tab.wait_for_function("n => document.querySelectorAll('.js-plotly-plot .main-svg').length >= n",
                                      arg=figures, timeout=30_000)
            finally:
                browser.close()


def test_a_failed_cell_fails_the_command_and_keeps_the_notebook(tmp_path: Path) -> None:
    done = run_memlab("nightly", "--symbols", "no-such-market", "--memory-path", str(tmp_path / "mem"),
                      "--notebook", str(ROOT / "notebooks" / "nightly_training.ipynb"), "--out", str(tmp_path / "runs"),
                      cwd=tmp_path)
    assert done.returncode == 1
    assert "FAILED" in done.stdout and "no-such-market" in done.stdout
    [run_dir] = list((tmp_path / "runs").iterdir())
    assert (run_dir / "nightly_training.ipynb").exists() and not (run_dir / "summary.json").exists()
    assert (run_dir / "nightly_training.html").exists()  # the failed run reads in a browser too
    assert str(run_dir / "nightly_training.html").split("runs/")[-1] in done.stdout


def test_backtest_notebook_executes(tmp_path: Path) -> None:
    import papermill as pm

    out = tmp_path / "backtest.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "backtest.ipynb"), str(out), kernel_name="python3", progress_bar=False,
                        parameters={"symbol": "EURUSD", "grid": {"fast": [5, 10], "slow": [30, 50]}}, cwd=str(ROOT))
    executed = json.loads(out.read_text())
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs)


def _snapshot(*folders: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for folder in folders if folder.exists()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_training_refuses_parameters_that_fail_out_of_sample_and_writes_nothing_of_them(tmp_path: Path) -> None:
    from memlab.backtest.selection import SelectionRefused

    mem_path, params_dir = tmp_path / "mem", tmp_path / "params"
    cfg = TrainingConfig(symbols=["GOOG"], grid=GRID, memory_path=mem_path, params_dir=params_dir, progress=False)
    train(cfg)
    before = _snapshot(mem_path, params_dir)
    # EURUSD's sma_cross loses out of sample (-2.26 at the default costs): refused, and nothing
    # at all changes on disk.
    with pytest.raises(SelectionRefused, match=r"out-of-sample Sharpe ratio -2\.\d+ is <= 0") as refused:
        train(TrainingConfig(symbols=["EURUSD"], memory_path=mem_path, params_dir=params_dir, progress=False))
    assert "fitted on 2017-" in str(refused.value) and "Nothing was written" in str(refused.value)
    assert _snapshot(mem_path, params_dir) == before
    # A bar no set can reach refuses a symbol that passes out of sample: the DSR is the reason.
    with pytest.raises(SelectionRefused, match="deflated Sharpe ratio"):
        train(TrainingConfig(symbols=["GOOG"], grid=GRID, memory_path=mem_path, params_dir=params_dir,
                             progress=False, min_dsr=1.0))
    assert _snapshot(mem_path, params_dir) == before
    # Mixed: the good symbol is written, the bad one is reported and left out.
    summary = train(TrainingConfig(symbols=["GOOG", "EURUSD"], memory_path=mem_path, params_dir=params_dir,
                                   progress=False))
    assert list(summary["symbols"]) == ["GOOG"] and list(summary["refused"]) == ["EURUSD"]
    assert "EURUSD" not in json.loads((params_dir / "trained.json").read_text())
    # Forced, it is written, and the summary still carries the selection statistics.
    forced = train(TrainingConfig(symbols=["EURUSD"], memory_path=mem_path, params_dir=params_dir,
                                  progress=False, force=True))
    sel = forced["symbols"]["EURUSD"]["selection"]
    assert sel["n_trials"] == 12 and 0 <= sel["dsr"] <= 1 and 0 <= sel["pbo"] <= 1
    assert "EURUSD" in json.loads((params_dir / "trained.json").read_text())


def test_experience_says_whether_it_is_out_of_sample_and_on_which_fold(tmp_path: Path) -> None:
    mem_path = tmp_path / "mem"
    summary = train(TrainingConfig(symbols=["GOOG"], grid=GRID, memory_path=mem_path, params_dir=tmp_path / "p",
                                   progress=False, force=True))
    folds = pd.DataFrame(summary["symbols"]["GOOG"]["folds"])
    with MemoryStores(mem_path) as mem:
        frame = mem.decisions.frame()
    meta = frame["meta"].map(json.loads).tolist()
    oos = [(when, m) for when, m in zip(frame.index, meta, strict=True) if m["sample"] == "out-of-sample"]
    ins = [m for m in meta if m["sample"] == "in-sample"]
    assert len(oos) > 5 and len(ins) > 5
    assert summary["symbols"]["GOOG"]["experience"] == {"out-of-sample": len(oos), "in-sample": len(ins)}
    for when, m in oos:
        fold = folds.iloc[m["fold"]]
        # Decided inside its fold's test window, with the parameters chosen before that window.
        assert pd.Timestamp(m["judged_on"][0]) <= when <= pd.Timestamp(m["judged_on"][1])
        assert pd.Timestamp(m["fitted_on"][1]) < pd.Timestamp(fold["test_start"])
        assert str(m["params"]) == str(fold["params"])
    # Every outcome is known after its decision, at the exit's market time.
    assert (frame["closed_at"] > frame.index).all()
