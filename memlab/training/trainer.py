"""Historical training: walk-forward per symbol, experience into memory, parameters chosen.

:func:`train` computes everything first (possibly on Dask workers) and writes only when
every symbol has succeeded, so a failed run leaves the previous parameters and memory
as they were. The writes are ordered so that a run interrupted while writing is
completed by running it again: decisions (one transaction, idempotent by key), the
learned strategy, then ``params/trained.json``, ``parameter_updates.json`` and the journal.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from memlab.backtest.selection import SelectionRefused
from memlab.costs import DEFAULT_COSTS
from memlab.errors import InvalidInputError, MemlabError

log = logging.getLogger(__name__)

class TrainingError(MemlabError):
    """Training failed; nothing was written."""


@dataclass
class TrainingConfig:
    """What to train: ``symbols`` are sample names (GOOG), file paths, or
    ``synthetic:SEED[:BARS]``; the grid defaults to the one the strategy declares
    (:func:`memlab.strategies.default_grid`). ``start`` and
    ``end`` bound the history used (a time, or a mapping of symbol to time for markets
    with different calendars): bars after ``end`` stay unseen, for paper trading.

    Parameters are written only when they hold up: a symbol whose walk-forward
    out-of-sample Sharpe is at or below 0, or whose last selection's deflated Sharpe ratio
    is below ``min_dsr``, is refused (nothing of it is written) unless ``force``."""

    symbols: Sequence[str]
    strategy: str = "sma_cross"
    grid: Mapping[str, Sequence[Any]] | None = None
    start: str | Mapping[str, str] | None = None
    end: str | Mapping[str, str] | None = None
    train_bars: int | None = None
    test_bars: int | None = None
    metric: str = "sharpe"
    fees: float = DEFAULT_COSTS.fees
    slippage: float = DEFAULT_COSTS.slippage
    memory_path: str | Path | None = None
    params_dir: str | Path | None = None
    scheduler: str | None = None
    progress: bool = True
    min_dsr: float = 0.5
    force: bool = False


@dataclass
class SymbolResult:
    """Everything learned for one symbol, not yet written anywhere."""

    symbol: str
    strategy: str
    folds: pd.DataFrame
    chosen: dict[str, Any]
    summary: dict[str, Any]
    full_stats: dict[str, float]
    decisions: list[Any] = field(repr=False)
    selection: Any = None


def load_symbol(spec: str, *, start: str | None = None, end: str | None = None) -> pd.DataFrame:
    """Market history for a symbol spec (see :class:`TrainingConfig`)."""
    from memlab.data import SAMPLES, load_ohlcv, sample, synthetic_ohlcv

    if spec.upper() in SAMPLES:
        frame = sample(spec)
    elif spec.startswith("synthetic:"):
        parts = spec.split(":")
        seed = int(parts[1]) if len(parts) > 1 and parts[1] else 0
        bars = int(parts[2]) if len(parts) > 2 else 5000
        frame = synthetic_ohlcv(bars, freq="1h", seed=seed)
        frame.attrs["symbol"] = f"SYN{seed}"
    elif Path(spec).suffix.lower() in (".csv", ".parquet", ".pq"):
        frame = load_ohlcv(spec)
    else:
        raise InvalidInputError(
            f"cannot find market data for {spec!r}: use a sample (GOOG, EURUSD, BTCUSD), a .csv/.parquet "
            "path, or synthetic:SEED[:BARS] (download online data first with memlab.data.download_ohlcv)"
        )
    symbol = frame.attrs.get("symbol", spec)
    if start or end:
        frame = frame.loc[pd.Timestamp(start, tz="UTC") if start else None : pd.Timestamp(end, tz="UTC") if end else None]
        frame.attrs["symbol"] = symbol
    if len(frame) < 100:
        raise InvalidInputError(f"{spec}: only {len(frame)} bars between {start} and {end}; need at least 100")
    return frame


def train_symbol(task: tuple[str, TrainingConfig]) -> SymbolResult:
    """Walk-forward, choose parameters, and turn the chosen strategy's trades into experience."""
    from memlab import backtest
    from memlab.features import market_features
    from memlab.memory.decisions import IN_SAMPLE, OUT_OF_SAMPLE
    from memlab.strategies import default_grid
    from memlab.training.experience import trades_to_decisions
    from memlab.training.walkforward import walk_forward

    spec, cfg = task
    start = cfg.start.get(spec) if isinstance(cfg.start, Mapping) else cfg.start
    end = cfg.end.get(spec) if isinstance(cfg.end, Mapping) else cfg.end
    ohlcv = load_symbol(spec, start=start, end=end)
    symbol = ohlcv.attrs.get("symbol", spec)
    grid = dict(cfg.grid or default_grid(cfg.strategy))
    test = cfg.test_bars or max(len(ohlcv) // 8, 20)
    train_n = cfg.train_bars or min(3 * test, len(ohlcv) - test)
    report = walk_forward(ohlcv, cfg.strategy, grid, train_bars=train_n, test_bars=test, metric=cfg.metric,
                          fees=cfg.fees, slippage=cfg.slippage)
    chosen = report.chosen
    full = backtest.run(ohlcv, cfg.strategy, chosen, fees=cfg.fees, slippage=cfg.slippage)
    features = market_features(ohlcv)
    decisions = []
    for k, (fold, judged) in enumerate(zip(report.folds.itertuples(), report.out_of_sample, strict=True)):
        windows = {"fold": k, "fitted_on": [fold.train_start.isoformat(), fold.train_end.isoformat()],
                   "judged_on": [fold.test_start.isoformat(), fold.test_end.isoformat()]}
        decisions += trades_to_decisions(ohlcv, judged, symbol=symbol, features=features,
                                         sample=OUT_OF_SAMPLE, meta=windows)
    # The chosen set over the whole history: chosen on its last train window, so every one of
    # these trades is in-sample (made with parameters picked on, or after, its bars).
    decisions += trades_to_decisions(ohlcv, full, symbol=symbol, features=features, sample=IN_SAMPLE,
                                     meta={"fitted_on": [report.folds["train_start"].iloc[-1].isoformat(),
                                                         report.folds["train_end"].iloc[-1].isoformat()]})
    summary = report.summary()
    last = report.selection[-1] if report.selection else None
    if last is not None:
        from dataclasses import replace

        last = replace(last, chosen=dict(chosen))  # the set walk-forward kept (at least min_trades trades)
        summary["selection"] = last.as_dict()
    summary["data"] = {"first_bar": ohlcv.index[0].isoformat(), "last_bar": ohlcv.index[-1].isoformat(),
                       "bars": len(ohlcv)}
    summary["experience"] = {OUT_OF_SAMPLE: sum(d.meta["sample"] == OUT_OF_SAMPLE for d in decisions),
                             IN_SAMPLE: sum(d.meta["sample"] == IN_SAMPLE for d in decisions)}
    return SymbolResult(symbol, cfg.strategy, report.folds, chosen, summary, full.stats, decisions, last)


def guard(res: SymbolResult, cfg: TrainingConfig) -> None:
    """Raise :class:`~memlab.backtest.selection.SelectionRefused` when ``res``'s parameters
    do not hold up out of sample (see :class:`TrainingConfig`)."""
    from memlab.backtest.selection import ONE_SET_NOTE, SelectionReport, guard_parameters

    report = res.selection
    if report is None:  # a sweep without selection statistics: judged out of sample only
        report = SelectionReport(n_trials=1, chosen=dict(res.chosen), chosen_sharpe=None, sharpe_per_period=None,
                                 expected_max_sharpe=None, dsr=None, pbo=None, spa_pvalue=None,
                                 reality_check_pvalue=None, n_obs=0, n_subperiods=0, fitted_on=None,
                                 applicable=False, note=ONE_SET_NOTE)
    guard_parameters(report, float(res.summary.get("out_of_sample_sharpe", float("nan"))),
                     min_dsr=cfg.min_dsr, force=cfg.force)


def train(cfg: TrainingConfig) -> dict[str, Any]:
    """Train every symbol, then write parameters, experience and the learned strategy.

    Returns a JSON-ready summary (also what ``memlab nightly`` stores in summary.json).
    """
    from memlab.memory import MemoryStores
    from memlab.strategies import check_grid, default_grid
    from memlab.strategies.params import save_trained
    from memlab.strategies.plugins import strategy_base
    from memlab.training.distributed import fan_out

    check_grid(cfg.strategy, cfg.grid or default_grid(cfg.strategy))  # fail fast: unknown strategy, no grid, bad grid
    if not cfg.symbols:
        raise InvalidInputError("no symbols to train on")
    try:
        results = fan_out(train_symbol, [(s, cfg) for s in cfg.symbols], scheduler=cfg.scheduler,
                          desc=f"training {cfg.strategy}", progress=cfg.progress)
    except MemlabError:
        raise
    except Exception as exc:
        raise TrainingError(f"training failed before anything was written: {exc.__class__.__name__}: {exc}") from exc
    stamp = datetime.now(UTC)
    summary: dict[str, Any] = {"trained_at": stamp.isoformat(timespec="seconds"), "strategy": cfg.strategy,
                               "symbols": {}, "refused": {}}
    accepted = []
    for res in results:
        try:
            guard(res, cfg)
            accepted.append(res)
        except SelectionRefused as exc:
            summary["refused"][res.symbol] = {"reason": str(exc), **{k: v for k, v in res.summary.items()
                                                                     if k != "chosen"}}
            log.warning("%s: %s", res.symbol, exc)
    if not accepted:
        raise SelectionRefused("; ".join(f"{s}: {r['reason']}" for s, r in summary["refused"].items())
                               + " Nothing was written.")
    from memlab.memory.lock import writer_lock

    base = strategy_base(cfg.strategy)  # where its code lives and its hash, for the learned strategy
    # One writer per memory folder: refused (naming it) while a trader or a restore holds it.
    with writer_lock(cfg.memory_path), MemoryStores(cfg.memory_path) as mem:
        for res in accepted:
            reason = (f"walk-forward {stamp:%Y-%m-%d}: {len(res.folds)} folds, out-of-sample "
                      f"{cfg.metric} {res.summary[f'out_of_sample_{cfg.metric}']:.2f} "
                      f"(in-sample {res.summary[f'in_sample_{cfg.metric}']:.2f})")
            ids = mem.decisions.record_many(res.decisions)
            learned_name = "Learned" + "".join(p.title() for p in cfg.strategy.split("_")) + "".join(
                ch for ch in res.symbol.title() if ch.isalnum())
            version = mem.strategies.save(learned_name, res.chosen, base=base.ref, base_sha256=base.sha256,
                                          reason=reason, metrics={k: v for k, v in res.full_stats.items() if isinstance(v, float)})
            save_trained(res.symbol, cfg.strategy, res.chosen, reason=reason, directory=cfg.params_dir,
                         data_span=(res.summary["data"]["first_bar"], res.summary["data"]["last_bar"]))
            changes = mem.parameters.update({f"{res.symbol}.{cfg.strategy}.{k}": v for k, v in res.chosen.items()},
                                            reason=reason, at=stamp)
            mem.journal.append({"Training": res.symbol, "Strategy": cfg.strategy, "Params": res.chosen,
                                "OOS Sharpe": round(res.summary["out_of_sample_sharpe"], 3) if "out_of_sample_sharpe" in res.summary else "n/a",
                                "Decisions": len(ids)}, at=stamp)
            summary["symbols"][res.symbol] = {
                **res.summary, "full_history": res.full_stats, "decisions_recorded": len(ids),
                "learned_strategy": f"{learned_name}_v{version}", "parameter_changes": {k: list(v) for k, v in changes.items()},
                "folds": res.folds.assign(params=res.folds["params"].astype(str)).to_dict(orient="records"),
            }
    return summary
