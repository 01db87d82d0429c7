"""Does memory help? A strategy traded raw against the same strategy gated and sized by the agent.

For each market the strategy is walked forward (:func:`memlab.training.walkforward.walk_forward`):
its parameters are chosen on a train window only, then the next, unseen test window is
traded. On the test windows only, two books trade the same signals:

- **raw**: every entry at full size (all the book's equity);
- **gated**: each entry scored by a :class:`~memlab.agent.MemoryAgent` whose memory starts
  empty (a temporary folder) and grows only with outcomes as they close, in market time.
  The trade takes ``position_size / base size`` of the equity (0 = skipped).

Events are processed in market-time order, exits before entries at equal times (an exit
fills at a bar's open, a signal is decided at the same bar's close), so at each scoring
the agent's memory holds only outcomes that closed at or before the signal bar. Every
signal's outcome is known from prices at its exit, so by default the agent also records
the outcomes of the signals it skipped (*shadow outcomes*, ``order.status == "shadow"``):
a gate that learns only from the trades it takes never learns that a situation it
avoids has turned good. ``shadow_outcomes=False`` turns that off.

The report compares total return, Sharpe, max drawdown, trade count and the Brier skill
score of the agent's confidence (against the win rate of the outcomes closed before each
signal), and puts a stationary-bootstrap interval on the Sharpe difference (gated - raw)
from paired per-bar returns. When the interval covers 0 the verdict is "no edge".

>>> report = evaluate_memory(["synthetic:3:1200"], draws=200, progress=False)  # doctest: +SKIP
>>> report.table.loc["overall", "verdict"]  # doctest: +SKIP
'no edge: ...'
"""

from __future__ import annotations

import bisect
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from memlab.costs import DEFAULT_COSTS
from memlab.errors import InvalidInputError, MemlabError

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from memlab.agent import MemoryAgent

#: What ``memlab evaluate`` runs when no market is named.
DEFAULT_MARKETS: tuple[str, ...] = ("GOOG", "EURUSD", "BTCUSD", "synthetic")
#: Hourly bars of the ``synthetic`` market (regime-switching, seeded by ``seed``).
SYNTHETIC_BARS = 20_000
INIT_CASH = 100_000.0

#: Columns of :attr:`EvaluationReport.table`, in order.
TABLE_COLUMNS: tuple[str, ...] = (
    "frequency", "bars", "folds", "fitted_on", "judged_on", "test_start", "test_end", "test_bars",
    "raw_total_return", "gated_total_return", "raw_sharpe", "gated_sharpe",
    "raw_max_drawdown", "gated_max_drawdown", "raw_trades", "gated_trades",
    "raw_brier_skill", "gated_brier_skill", "mean_size",
    "sharpe_diff", "sharpe_diff_low", "sharpe_diff_high", "verdict",
)

AgentFactory = Callable[[Path], "MemoryAgent"]


class MarketTooShortError(InvalidInputError):
    """A market has fewer bars than one train window plus one test window."""

    def __init__(self, market: str, bars: int, train_bars: int, test_bars: int) -> None:
        self.market, self.bars, self.needed = market, bars, train_bars + test_bars
        super().__init__(
            f"{market}: {bars} bars is too short for one fold; it needs at least {self.needed} bars "
            f"(a {train_bars}-bar train window and a {test_bars}-bar test window)"
        )


@dataclass(frozen=True)
class EvaluationConfig:
    """What to evaluate and how; every field has a working default.

    - ``markets``: sample names (``GOOG``, ``EURUSD``, ``BTCUSD``), ``synthetic`` (a
      regime-switching hourly market of ``synthetic_bars`` bars seeded by ``seed``),
      ``synthetic:SEED[:BARS]``, or a ``.csv``/``.parquet`` path.
    - ``grid``: the parameter grid swept on each train window (default: training's grid).
    - ``train_bars`` / ``test_bars``: window sizes; by default a test window is an eighth
      of the market (at least ``min_test_bars``) and a train window three test windows
      (at least ``min_train_bars``, which must cover the features' warm-up).
    - ``draws`` / ``level``: stationary-bootstrap resamples and interval coverage.
    - ``shadow_outcomes``: the agent also records the outcomes of signals it skipped.
    """

    markets: tuple[str, ...] = DEFAULT_MARKETS
    strategy: str = "sma_cross"
    grid: Mapping[str, Sequence[Any]] | None = None
    train_bars: int | None = None
    test_bars: int | None = None
    min_train_bars: int = 200
    min_test_bars: int = 50
    metric: str = "sharpe"
    fees: float = DEFAULT_COSTS.fees
    slippage: float = DEFAULT_COSTS.slippage
    seed: int = 0
    synthetic_bars: int = SYNTHETIC_BARS
    draws: int = 2000
    level: float = 0.95
    shadow_outcomes: bool = True

    def windows(self, n_bars: int) -> tuple[int, int]:
        """``(train_bars, test_bars)`` for a market of ``n_bars`` bars."""
        test = self.test_bars or max(n_bars // 8, self.min_test_bars)
        train = self.train_bars or max(3 * test, self.min_train_bars)
        return train, test

    def check(self) -> None:
        from memlab.features import WARMUP_BARS
        from memlab.strategies import get

        get(self.strategy)
        if not self.markets:
            raise InvalidInputError("no markets to evaluate")
        if (self.train_bars or self.min_train_bars) < WARMUP_BARS:
            raise InvalidInputError(
                f"train windows must be longer than the features' {WARMUP_BARS}-bar warm-up "
                f"(got min_train_bars={self.min_train_bars}, train_bars={self.train_bars})"
            )
        if (self.test_bars or self.min_test_bars) < 2:
            raise InvalidInputError("test windows need at least 2 bars")
        if self.seed < 0:
            raise InvalidInputError(f"seed must be a whole number >= 0, got {self.seed}")
        if self.draws < 100:
            raise InvalidInputError(f"draws must be at least 100 for a {self.level:.0%} interval, got {self.draws}")
        if not 0.5 < self.level < 1:
            raise InvalidInputError(f"level is an interval coverage in (0.5, 1), got {self.level}")


@dataclass
class MarketResult:
    """Everything measured on one market (out of sample only)."""

    market: str
    row: dict[str, Any]
    folds: pd.DataFrame
    signals: pd.DataFrame
    equity: pd.DataFrame
    diff_draws: np.ndarray = field(repr=False)


@dataclass
class EvaluationReport:
    """Per-market and overall results of :func:`evaluate_memory`.

    - ``table``: one row per market and ``overall`` (columns :data:`TABLE_COLUMNS`);
    - ``folds``: one row per fold: windows, chosen parameters, raw and gated results;
    - ``signals``: one row per out-of-sample signal: the agent's confidence, size,
      reason, evidence and the outcome;
    - ``equity``: out-of-sample equity of both books (``market``, ``raw``, ``gated``, UTC index);
    - ``skipped``: markets too short for one fold, with the bars they need.
    """

    config: EvaluationConfig
    table: pd.DataFrame
    folds: pd.DataFrame
    signals: pd.DataFrame
    equity: pd.DataFrame
    skipped: dict[str, str]
    notes: list[str]

    def to_text(self) -> str:
        """The report as a person reads it in a terminal."""
        return format_report(self)

    def figure(self) -> go.Figure:
        """Out-of-sample equity of raw vs gated per market, and the Sharpe-difference intervals."""
        from memlab.evaluation.figures import evaluation_figure

        return evaluation_figure(self)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: method, one entry per market and overall, skipped markets, folds."""
        rows = {m: _json_row(r) for m, r in self.table.to_dict(orient="index").items()}
        return {
            "strategy": self.config.strategy,
            "config": _json_safe({k: v for k, v in asdict(self.config).items() if k != "grid"} | {"grid": self.grid}),
            "method": self.notes,
            "shadow_outcomes": self.config.shadow_outcomes,
            "markets": {m: r for m, r in rows.items() if m != "overall"},
            "overall": rows.get("overall"),
            "skipped": dict(self.skipped),
            "folds": _json_safe(self.folds.assign(params=self.folds["params"].astype(str)).to_dict(orient="records"))
            if len(self.folds) else [],
        }

    @property
    def grid(self) -> dict[str, list[Any]]:
        return {k: list(v) for k, v in _grid(self.config).items()}

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``evaluation.csv``, ``folds.csv``, ``signals.csv``, ``equity.csv``,
        ``evaluation.json`` and ``evaluation.html`` (figure and tables) under ``out_dir``."""
        import json

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {name: out / name for name in ("evaluation.csv", "folds.csv", "signals.csv", "equity.csv",
                                               "evaluation.json", "evaluation.html")}
        self.table.to_csv(paths["evaluation.csv"], index_label="market")
        self.folds.to_csv(paths["folds.csv"], index=False)
        self.signals.to_csv(paths["signals.csv"], index=False)
        self.equity.to_csv(paths["equity.csv"], index_label="time")
        paths["evaluation.json"].write_text(json.dumps(self.summary(), indent=2))
        paths["evaluation.html"].write_text(_html(self), encoding="utf-8")
        return paths


# -- loading --------------------------------------------------------------------------------
def load_market(spec: str, *, seed: int = 0, synthetic_bars: int = SYNTHETIC_BARS) -> pd.DataFrame:
    """Market history for ``spec`` (see :class:`EvaluationConfig`); ``attrs["symbol"]`` names it."""
    from memlab.data import SAMPLES, load_ohlcv, sample, synthetic_ohlcv

    text = str(spec).strip()
    if text.upper() in SAMPLES:
        return sample(text)
    if text.lower() == "synthetic" or text.lower().startswith("synthetic:"):
        parts = text.split(":")
        try:
            market_seed = int(parts[1]) if len(parts) > 1 and parts[1] else seed
            bars = int(parts[2]) if len(parts) > 2 else synthetic_bars
        except ValueError:
            raise InvalidInputError(f"{text!r}: write synthetic, or synthetic:SEED[:BARS] with whole numbers") from None
        if bars < 2:
            raise InvalidInputError(f"{text!r}: a synthetic market needs at least 2 bars")
        frame = synthetic_ohlcv(bars, freq="1h", seed=market_seed)
        frame.attrs["symbol"] = text if len(parts) > 1 else "synthetic"
        return frame
    if Path(text).suffix.lower() in (".csv", ".parquet", ".pq"):
        if not Path(text).exists():
            raise InvalidInputError(f"{text}: no such file")
        frame = load_ohlcv(text)
        frame.attrs.setdefault("symbol", Path(text).stem)
        return frame
    raise InvalidInputError(
        f"unknown market {text!r}: use GOOG, EURUSD, BTCUSD, synthetic, synthetic:SEED[:BARS] or a .csv/.parquet path"
    )


def frequency_label(index: pd.DatetimeIndex) -> str:
    """``daily``, ``hourly``, ``monthly``... from the median bar spacing."""
    if len(index) < 2:
        return "?"
    seconds = float(np.median(np.diff(index.as_unit("ns").asi8))) / 1e9
    for label, low, high in (("minute", 55, 65), ("hourly", 3500, 3700), ("daily", 82800, 90000),
                             ("weekly", 6.9 * 86400, 7.1 * 86400), ("monthly", 27 * 86400, 32 * 86400)):
        if low <= seconds <= high:
            return label
    return f"{seconds:g}-second"


# -- events ---------------------------------------------------------------------------------
def market_events(trades: pd.DataFrame) -> pd.DataFrame:
    """Entries (at their signal bar) and exits (at their fill bar) in market-time order.

    Columns ``time``, ``event`` (``"exit"`` or ``"entry"``), ``trade`` (row of ``trades``).
    At equal times exits come first: an exit fills at a bar's open, a signal is decided
    at that bar's close, so the outcome is known when the signal is scored.

    >>> t = pd.to_datetime(["2024-01-01", "2024-01-03", "2024-01-03", "2024-01-05"], utc=True)
    >>> trades = pd.DataFrame({"signal_time": [t[0], t[2]], "exit_time": [t[1], t[3]]})
    >>> market_events(trades)["event"].tolist()
    ['entry', 'exit', 'entry', 'exit']
    """
    n = len(trades)
    frame = pd.DataFrame({
        "time": pd.concat([trades["exit_time"], trades["signal_time"]], ignore_index=True),
        "event": ["exit"] * n + ["entry"] * n,
        "order": [0] * n + [1] * n,
        "trade": list(range(n)) * 2,
    })
    frame = frame.sort_values(["time", "order", "trade"], kind="stable").drop(columns="order")
    return frame.reset_index(drop=True)


# -- statistics -----------------------------------------------------------------------------
def sharpe(returns: np.ndarray, periods_per_year: float) -> np.ndarray | float:
    """Annualised Sharpe of per-bar returns along the last axis; a flat book (no variance) has 0."""
    r = np.asarray(returns, dtype=np.float64)
    mean = r.mean(axis=-1)
    std = r.std(axis=-1, ddof=1) if r.shape[-1] > 1 else np.zeros_like(mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(std > 1e-15, mean / std * math.sqrt(periods_per_year), 0.0)
    return float(out) if np.ndim(out) == 0 else out


def sharpe_difference_draws(raw: np.ndarray, gated: np.ndarray, *, periods_per_year: float, draws: int,
                            rng: np.random.Generator) -> np.ndarray:
    """Stationary-bootstrap draws of ``sharpe(gated) - sharpe(raw)`` from paired per-bar returns
    (the same resampled bars for both books, so what they share cancels out)."""
    from memlab.backtest.bootstrap import default_block_length, stationary_bootstrap_indices

    n = len(raw)
    if n < 2:
        return np.zeros(draws)
    block = default_block_length(n)
    step = max(1, 2_000_000 // n)  # bound the (draws, n) matrices to ~16 MB each
    out = []
    for lo in range(0, draws, step):
        idx = stationary_bootstrap_indices(n, min(step, draws - lo), block, rng)
        out.append(np.asarray(sharpe(gated[idx], periods_per_year)) - np.asarray(sharpe(raw[idx], periods_per_year)))
    return np.concatenate(out)


def brier_skill(confidence: np.ndarray, won: np.ndarray, base_rate: np.ndarray) -> float:
    """``1 - Brier(confidence) / Brier(base_rate)``: above 0 the agent's confidence forecasts
    wins better than the past win rate; NaN without signals."""
    if len(won) == 0:
        return math.nan
    y = np.asarray(won, dtype=np.float64)
    reference = float(np.mean((np.asarray(base_rate) - y) ** 2))
    score = float(np.mean((np.asarray(confidence) - y) ** 2))
    return math.nan if reference == 0 else 1.0 - score / reference


def _book_stats(returns: np.ndarray, periods_per_year: float) -> dict[str, float]:
    equity = np.cumprod(1.0 + returns)
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    return {
        "total_return": float(equity[-1] - 1.0) if len(equity) else 0.0,
        "sharpe": float(sharpe(returns, periods_per_year)),
        "max_drawdown": max(0.0, float(-(equity / peak - 1.0).min())) if len(equity) else 0.0,
    }


def verdict(diff: float, low: float, high: float, level: float, identical: bool = False, signals: int = 1) -> str:
    """The Sharpe difference in words; "no edge" whenever the interval covers 0."""
    span = f"{level:.0%} interval {low:+.2f} to {high:+.2f}"
    if signals == 0:
        return "no edge: the strategy gave no signal on the test windows"
    if identical:
        return "no edge: the gated book traded exactly like the raw one (every signal at full size)"
    if low <= 0 <= high:
        return f"no edge: gated - raw Sharpe {diff:+.2f}, {span} covers 0"
    if low > 0:
        return f"memory helps: gated - raw Sharpe {diff:+.2f}, {span} is above 0"
    return f"memory hurts: gated - raw Sharpe {diff:+.2f}, {span} is below 0"


# -- one market -----------------------------------------------------------------------------
def _grid(cfg: EvaluationConfig) -> Mapping[str, Sequence[Any]]:
    from memlab.strategies import default_grid

    return cfg.grid or default_grid(cfg.strategy)


def _fold_trades(ohlcv: pd.DataFrame, cfg: EvaluationConfig, params: Mapping[str, Any], t0: int, t1: int,
                 warmup: int) -> pd.DataFrame:
    """The raw strategy's trades on test bars ``[t0, t1)`` (indicators warmed on the train window),
    with the bar positions of their signal, entry and exit inside the test window."""
    from memlab.backtest.engine import simulate, trades_frame
    from memlab.strategies import get

    lo = max(0, t0 - warmup)
    signals = get(cfg.strategy)(ohlcv.iloc[lo:t1], **params).iloc[t0 - lo:]
    test = ohlcv.iloc[t0:t1]
    pf = simulate(test, signals, fees=cfg.fees, slippage=cfg.slippage, direction="longonly")
    trades = trades_frame(pf)
    if trades.empty:
        for col in ("entry_pos", "exit_pos", "signal_pos"):
            trades[col] = pd.Series(dtype=np.int64)
        trades["signal_time"] = pd.Series(dtype="datetime64[ns, UTC]")
        return trades
    trades["entry_pos"] = test.index.get_indexer(trades["entry_time"])
    trades["exit_pos"] = test.index.get_indexer(trades["exit_time"])
    trades["signal_pos"] = trades["entry_pos"] - 1  # decided at the previous bar's close, filled at this open
    if (trades["signal_pos"] < 0).any() or (trades["exit_pos"] < 0).any():
        raise MemlabError(f"{ohlcv.attrs.get('symbol', '?')}: a trade's bars are outside its test window")
    trades["signal_time"] = test.index[trades["signal_pos"].to_numpy()]
    return trades


def _book_returns(test: pd.DataFrame, trades: pd.DataFrame, sizes: np.ndarray, cfg: EvaluationConfig) -> np.ndarray:
    """Per-bar returns of a book that takes trade ``i`` with ``sizes[i]`` of its cash.

    vectorbt's accounting for ``size=inf`` (all cash), scaled: buying at the open costs
    ``units * open * (1 + slippage) * (1 + fees)``, selling at the exit bar's open returns
    ``units * open * (1 - slippage) * (1 - fees)``, the book is valued at each close, and a
    trade still open at the window's end is valued at its last close. Raw (sizes of 1)
    and gated books both go through here, so with every size at 1 they are identical to
    the bit. One step per trade, the bars in between as array slices.
    """
    open_ = test["Open"].to_numpy(np.float64)
    close = test["Close"].to_numpy(np.float64)
    n = len(test)
    value = np.empty(n)
    cash, done = INIT_CASH, 0
    for entry, exit_, status, s in sorted(zip(trades["entry_pos"], trades["exit_pos"], trades["status"], sizes,
                                              strict=True)):
        if s <= 0:
            continue
        value[done:entry] = cash
        buy = open_[entry] * (1.0 + cfg.slippage) * (1.0 + cfg.fees)
        units = s * cash / buy
        cash -= units * buy
        end = int(exit_) if status == "Closed" else n
        value[entry:end] = cash + units * close[entry:end]
        if status == "Closed":
            cash += units * open_[end] * (1.0 - cfg.slippage) * (1.0 - cfg.fees)
        done = end
    value[done:] = cash
    return np.concatenate([[value[0] / INIT_CASH - 1.0], value[1:] / value[:-1] - 1.0])


def _default_agent(path: Path) -> MemoryAgent:
    from memlab.agent import MemoryAgent

    return MemoryAgent(path, agent_id="evaluator")


def evaluate_market(
    ohlcv: pd.DataFrame,
    config: EvaluationConfig | None = None,
    *,
    agent_factory: AgentFactory | None = None,
    rng: np.random.Generator | None = None,
    progress: bool = False,
) -> MarketResult:
    """Walk-forward, then raw vs gated on the test windows of one market (see the module docstring).

    Raises :class:`MarketTooShortError` when ``ohlcv`` cannot hold one fold.
    """
    from tqdm.auto import tqdm

    from memlab.backtest.engine import periods_per_year
    from memlab.features import FEATURE_NAMES, market_features
    from memlab.training.walkforward import walk_forward

    cfg = config or EvaluationConfig()
    cfg.check()
    market = str(ohlcv.attrs.get("symbol", "?"))
    train_bars, test_bars = cfg.windows(len(ohlcv))
    if len(ohlcv) < train_bars + test_bars:
        raise MarketTooShortError(market, len(ohlcv), train_bars, test_bars)
    report = walk_forward(ohlcv, cfg.strategy, _grid(cfg), train_bars=train_bars, test_bars=test_bars,
                          metric=cfg.metric, fees=cfg.fees, slippage=cfg.slippage, direction="longonly")
    features = market_features(ohlcv)
    ppy = periods_per_year(ohlcv.index)
    factory = agent_factory or _default_agent
    times: list[pd.DatetimeIndex] = []
    raw_parts: list[np.ndarray] = []
    gated_parts: list[np.ndarray] = []
    fold_rows: list[dict[str, Any]] = []
    signal_rows: list[dict[str, Any]] = []
    # Outcomes closed so far, as (time, won): the past base rate the Brier skill is judged against
    # counts those strictly before each signal, as the agent's point-in-time memory does.
    closed_times: list[pd.Timestamp] = []
    closed_wins: list[int] = []  # running count of wins
    with tempfile.TemporaryDirectory(prefix="memlab-evaluate-") as tmp:
        agent = factory(Path(tmp) / "memory")
        try:
            base_size = agent.base_size()  # the agent's size before any adaptation: a fraction of 1 here
            folds = tqdm(list(report.folds.itertuples()), desc=market, unit="fold", leave=False, disable=not progress)
            for k, fold in enumerate(folds):
                t0 = int(ohlcv.index.get_loc(fold.test_start))
                t1 = int(ohlcv.index.get_loc(fold.test_end)) + 1
                test = ohlcv.iloc[t0:t1]
                trades = _fold_trades(ohlcv, cfg, fold.params, t0, t1, train_bars)
                sizes = np.zeros(len(trades))
                decision_ids: dict[int, int | None] = {}
                rows: dict[int, dict[str, Any]] = {}
                for event in market_events(trades).itertuples():
                    i = int(event.trade)
                    trade = trades.iloc[i]
                    won = bool(trade["pnl"] > 0)
                    if event.event == "exit":
                        did = decision_ids.get(i)
                        if did is not None:
                            pnl = float(trade["pnl"]) * (sizes[i] if sizes[i] > 0 else 1.0)
                            agent.close_position(did, pnl=pnl, return_pct=float(trade["return_pct"]),
                                                 closed_at=event.time.to_pydatetime(),
                                                 notes="" if sizes[i] > 0 else "shadow: skipped, outcome from prices")
                        closed_times.append(event.time)
                        closed_wins.append((closed_wins[-1] if closed_wins else 0) + int(won))
                        continue
                    pos = t0 + int(trade["signal_pos"])
                    row = features.iloc[pos]
                    if row.isna().any():
                        raise MemlabError(f"{market}: features undefined at {ohlcv.index[pos]} (gaps in the data?)")
                    signal = {"symbol": market, "strategy": cfg.strategy, "action": "BUY",
                              "price": float(ohlcv["Close"].iloc[pos]),
                              "features": {name: float(row[name]) for name in FEATURE_NAMES},
                              "time": ohlcv.index[pos].to_pydatetime()}
                    past = bisect.bisect_left(closed_times, ohlcv.index[pos])
                    analysis = agent.analyze_signal(signal)
                    size = float(min(max(analysis["position_size"] / base_size, 0.0), 1.0)) if base_size > 0 else 0.0
                    sizes[i] = size
                    if size > 0 or cfg.shadow_outcomes:
                        decision_ids[i] = agent.log_decision(
                            {**signal, "mem_confidence": analysis["confidence"], "mem_reason": analysis["reason"]},
                            {"order_id": f"{market}:{trade['entry_time'].isoformat()}",
                             "status": "filled" if size > 0 else "shadow", "price": float(trade["entry_price"]),
                             "size": size},
                        )
                    evidence = analysis.get("evidence", {})
                    rows[i] = {
                        "market": market, "fold": k, "signal_time": ohlcv.index[pos], "entry_time": trade["entry_time"],
                        "exit_time": trade["exit_time"], "status": trade["status"],
                        "confidence": float(analysis["confidence"]), "size": size, "taken": size > 0,
                        "base_rate": closed_wins[past - 1] / past if past else 0.5, "past_outcomes": past,
                        "similar": evidence.get("similar"), "reason": analysis["reason"],
                        "evidence_ids": list(evidence.get("decision_ids") or []),
                        "return_pct": float(trade["return_pct"]), "won": won, "decision_id": decision_ids.get(i),
                    }
                signal_rows.extend(rows[i] for i in sorted(rows))
                raw = _book_returns(test, trades, np.ones(len(trades)), cfg)
                gated = _book_returns(test, trades, sizes, cfg)
                raw_parts.append(raw)
                times.append(test.index)
                gated_parts.append(gated)
                fold_rows.append({
                    "market": market, "fold": k, "train_start": fold.train_start, "train_end": fold.train_end,
                    "test_start": fold.test_start, "test_end": fold.test_end, "params": dict(fold.params),
                    f"train_{cfg.metric}": float(getattr(fold, f"is_{cfg.metric}")),
                    "raw_return": float(np.prod(1 + raw) - 1), "gated_return": float(np.prod(1 + gated) - 1),
                    "raw_trades": len(trades), "gated_trades": int((sizes > 0).sum()),
                    "mean_size": float(sizes.mean()) if len(sizes) else math.nan,
                })
        finally:
            agent.close()
    raw_all, gated_all = np.concatenate(raw_parts), np.concatenate(gated_parts)
    index = times[0].append(times[1:]) if len(times) > 1 else times[0]
    signals = pd.DataFrame(signal_rows, columns=_SIGNAL_COLUMNS)
    folds_frame = pd.DataFrame(fold_rows)
    draws = sharpe_difference_draws(raw_all, gated_all, periods_per_year=ppy, draws=cfg.draws,
                                    rng=rng if rng is not None else np.random.default_rng(cfg.seed))
    row = _market_row(ohlcv, folds_frame, signals, raw_all, gated_all, draws, ppy, cfg, train_bars, test_bars)
    equity = pd.DataFrame({"market": market, "raw": INIT_CASH * np.cumprod(1 + raw_all),
                           "gated": INIT_CASH * np.cumprod(1 + gated_all)}, index=index)
    return MarketResult(market, row, folds_frame, signals, equity, draws)


_SIGNAL_COLUMNS = ["market", "fold", "signal_time", "entry_time", "exit_time", "status", "confidence", "size",
                   "taken", "base_rate", "past_outcomes", "similar", "reason", "evidence_ids", "return_pct", "won",
                   "decision_id"]


def _span(start: pd.Timestamp, end: pd.Timestamp) -> str:
    fmt = "%Y-%m-%d" if (start.hour, start.minute, end.hour, end.minute) == (0, 0, 0, 0) else "%Y-%m-%d %H:%M"
    return f"{start:{fmt}} to {end:{fmt}}"


def _market_row(ohlcv: pd.DataFrame, folds: pd.DataFrame, signals: pd.DataFrame, raw: np.ndarray,
                gated: np.ndarray, draws: np.ndarray, ppy: float, cfg: EvaluationConfig,
                train_bars: int, test_bars: int) -> dict[str, Any]:
    n_folds = len(folds)
    raw_stats, gated_stats = _book_stats(raw, ppy), _book_stats(gated, ppy)
    diff = gated_stats["sharpe"] - raw_stats["sharpe"]
    tail = (1 - cfg.level) / 2
    low, high = (float(x) for x in np.quantile(draws, [tail, 1 - tail]))
    taken = signals[signals["taken"].astype(bool)]
    identical = bool(np.array_equal(raw, gated))
    return {
        "frequency": frequency_label(ohlcv.index),
        "bars": len(ohlcv),
        "folds": n_folds,
        "fitted_on": (f"{n_folds} train windows of {train_bars} bars, "
                      f"{_span(folds['train_start'].iloc[0], folds['train_end'].iloc[-1])}"),
        "judged_on": (f"{n_folds} test windows of {test_bars} bars, "
                      f"{_span(folds['test_start'].iloc[0], folds['test_end'].iloc[-1])}"),
        "test_start": folds["test_start"].iloc[0],
        "test_end": folds["test_end"].iloc[-1],
        "test_bars": len(raw),
        "raw_total_return": raw_stats["total_return"], "gated_total_return": gated_stats["total_return"],
        "raw_sharpe": raw_stats["sharpe"], "gated_sharpe": gated_stats["sharpe"],
        "raw_max_drawdown": raw_stats["max_drawdown"], "gated_max_drawdown": gated_stats["max_drawdown"],
        "raw_trades": len(signals), "gated_trades": len(taken),
        "raw_brier_skill": brier_skill(signals["confidence"].to_numpy(), signals["won"].to_numpy(),
                                       signals["base_rate"].to_numpy()),
        "gated_brier_skill": brier_skill(taken["confidence"].to_numpy(), taken["won"].to_numpy(),
                                         taken["base_rate"].to_numpy()),
        "mean_size": float(signals["size"].mean()) if len(signals) else math.nan,
        "sharpe_diff": diff, "sharpe_diff_low": low, "sharpe_diff_high": high,
        "verdict": verdict(diff, low, high, cfg.level, identical, len(signals)),
        "identical": identical,
    }


def _overall_row(results: list[MarketResult], cfg: EvaluationConfig) -> dict[str, Any]:
    """Equal-weight mean over markets (trades summed, drawdown the worst, Brier pooled over
    every signal); the interval averages each market's bootstrap draws, market by market."""
    rows = pd.DataFrame([r.row for r in results])
    signals = pd.concat([r.signals for r in results], ignore_index=True)
    taken = signals[signals["taken"].astype(bool)]
    draws = np.mean([r.diff_draws for r in results], axis=0)
    tail = (1 - cfg.level) / 2
    low, high = (float(x) for x in np.quantile(draws, [tail, 1 - tail]))
    diff = float(rows["sharpe_diff"].mean())
    identical = all(r.row["identical"] for r in results)
    start = min(r.row["test_start"] for r in results)
    end = max(r.row["test_end"] for r in results)
    names = ", ".join(r.market for r in results)
    return {
        "frequency": "mixed" if rows["frequency"].nunique() > 1 else rows["frequency"].iloc[0],
        "bars": int(rows["bars"].sum()), "folds": int(rows["folds"].sum()),
        "fitted_on": f"the train windows of {names} (rows above)",
        "judged_on": f"the test windows of {names} (rows above), {_span(start, end)}",
        "test_start": start, "test_end": end, "test_bars": int(rows["test_bars"].sum()),
        **{c: float(rows[c].mean()) for c in ("raw_total_return", "gated_total_return", "raw_sharpe", "gated_sharpe")},
        "raw_max_drawdown": float(rows["raw_max_drawdown"].max()),
        "gated_max_drawdown": float(rows["gated_max_drawdown"].max()),
        "raw_trades": int(rows["raw_trades"].sum()), "gated_trades": int(rows["gated_trades"].sum()),
        "raw_brier_skill": brier_skill(signals["confidence"].to_numpy(), signals["won"].to_numpy(),
                                       signals["base_rate"].to_numpy()),
        "gated_brier_skill": brier_skill(taken["confidence"].to_numpy(), taken["won"].to_numpy(),
                                         taken["base_rate"].to_numpy()),
        "mean_size": float(signals["size"].mean()) if len(signals) else math.nan,
        "sharpe_diff": diff, "sharpe_diff_low": low, "sharpe_diff_high": high,
        "verdict": verdict(diff, low, high, cfg.level, identical, len(signals)),
    }


def method_notes(cfg: EvaluationConfig) -> list[str]:
    """What the numbers were fitted on and judged on, and the choices behind them."""
    shadow = ("the agent also records the outcomes of signals it skipped (shadow outcomes, known from prices "
              "at their exit), so what it learns does not depend on what it chose to trade"
              if cfg.shadow_outcomes else
              "the agent records only the trades it took; skipped signals teach it nothing")
    return [
        f"strategy {cfg.strategy}, long only, fees {cfg.fees:g}, slippage {cfg.slippage:g}, fills at the next bar's open",
        f"parameters fitted on each train window only (best {cfg.metric} over the grid {dict(_grid(cfg))}); "
        "every number below is judged on the test windows that follow, never on a train window",
        "raw: every signal at full size; gated: the same signals sized by MemoryAgent "
        "(size = position_size / the agent's starting base size, 0 = skipped), memory empty at the first test bar",
        "events in market-time order, exits before entries at equal times: memory never holds an outcome that "
        "closed after a signal bar, and the agent scores from outcomes closed strictly before it; open trades "
        "at a test window's end are closed at its last bar",
        shadow,
        "Brier skill: the agent's confidence against the win rate of the outcomes closed strictly before each signal "
        "(0.5 before any); raw over every signal, gated over the signals taken",
        f"Sharpe difference gated - raw with a {cfg.level:.0%} stationary-bootstrap interval ({cfg.draws} draws, "
        f"mean block n^(1/3)) from paired per-bar returns; overall = equal-weight mean over markets",
    ]


def evaluate_memory(
    markets: Sequence[str] | None = None,
    *,
    config: EvaluationConfig | None = None,
    agent_factory: AgentFactory | None = None,
    progress: bool = True,
    **options: Any,
) -> EvaluationReport:
    """Does memory help? Raw vs agent-gated, out of sample, on each market (see the module docstring).

    Args:
        markets: market specs (default :data:`DEFAULT_MARKETS`); see :class:`EvaluationConfig`.
        config: every setting at once; ``options`` (any :class:`EvaluationConfig` field,
            e.g. ``strategy="momentum"``, ``seed=1``, ``draws=500``) override it.
        agent_factory: builds the agent from its (temporary, empty) memory folder; default
            ``MemoryAgent(path, agent_id="evaluator")``.
        progress: a tqdm bar over markets and folds.

    Returns:
        An :class:`EvaluationReport`; markets too short for one fold are in ``skipped``.

    Raises:
        InvalidInputError: an unknown market or strategy, or a bad setting.
        MemlabError: no market was long enough for one fold.
    """
    from dataclasses import replace

    from tqdm.auto import tqdm

    cfg = replace(config or EvaluationConfig(), **options)
    if markets is not None:
        cfg = replace(cfg, markets=tuple(dict.fromkeys(markets)))  # each market once, in the order given
    cfg.check()
    frames = [load_market(m, seed=cfg.seed, synthetic_bars=cfg.synthetic_bars) for m in cfg.markets]  # fail fast
    seeds = np.random.SeedSequence(cfg.seed).spawn(len(frames))
    results: list[MarketResult] = []
    skipped: dict[str, str] = {}
    bar = tqdm(frames, desc="evaluate", unit="market", disable=not progress)
    for frame, seed in zip(bar, seeds, strict=True):
        bar.set_postfix_str(str(frame.attrs.get("symbol", "")))
        try:
            results.append(evaluate_market(frame, cfg, agent_factory=agent_factory,
                                           rng=np.random.default_rng(seed), progress=progress))
        except MarketTooShortError as exc:
            skipped[exc.market] = str(exc)
    bar.close()
    if not results:
        raise MemlabError("no market was long enough for one fold: " + "; ".join(skipped.values()))
    table = pd.DataFrame({r.market: r.row for r in results} | {"overall": _overall_row(results, cfg)}).T
    table = table[list(TABLE_COLUMNS)]
    table.index.name = "market"
    for col in TABLE_COLUMNS:
        if col.startswith(("raw_", "gated_", "sharpe_diff", "mean_size")):
            table[col] = pd.to_numeric(table[col])
    table[["bars", "folds", "test_bars", "raw_trades", "gated_trades"]] = table[
        ["bars", "folds", "test_bars", "raw_trades", "gated_trades"]].astype(int)
    return EvaluationReport(
        config=cfg, table=table,
        folds=pd.concat([r.folds for r in results], ignore_index=True),
        signals=pd.concat([r.signals for r in results], ignore_index=True),
        equity=pd.concat([r.equity for r in results]),
        skipped=skipped, notes=method_notes(cfg),
    )


# -- presentation ---------------------------------------------------------------------------
def _pct(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x * 100:+.1f}%"


def _size(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x * 100:.1f}%"


def _num(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:+.2f}"


def format_report(report: EvaluationReport) -> str:
    """Per market: where it was fitted and judged, raw vs gated side by side, the verdict."""
    cfg = report.config
    lines = [f"Does memory help? {cfg.strategy}: raw vs gated by MemoryAgent, out of sample only", ""]
    lines += [f"  - {note}" for note in report.notes]
    for market, r in report.table.iterrows():
        lines += ["", f"{market} ({r['frequency']}, {r['bars']} bars)" if market != "overall" else "overall",
                  f"  fitted on: {r['fitted_on']}", f"  judged on: {r['judged_on']}"]
        lines.append(f"  {'':22}{'raw':>10}{'gated':>10}")
        for label, key, fmt in (("total return", "total_return", _pct), ("Sharpe", "sharpe", _num),
                                ("max drawdown", "max_drawdown", _size), ("trades", "trades", str),
                                ("Brier skill", "brier_skill", _num)):
            raw, gated = r[f"raw_{key}"], r[f"gated_{key}"]
            lines.append(f"  {label:22}{fmt(raw):>10}{fmt(gated):>10}")
        lines.append(f"  mean gated size {_size(r['mean_size'])}; Sharpe gated - raw {_num(r['sharpe_diff'])}, "
                     f"{cfg.level:.0%} interval [{_num(r['sharpe_diff_low'])}, {_num(r['sharpe_diff_high'])}]")
        lines.append(f"  verdict: {r['verdict']}")
    for message in report.skipped.values():
        lines += ["", f"skipped {message}"]
    return "\n".join(lines)


def _html(report: EvaluationReport) -> str:
    import html

    fig = report.figure().to_html(include_plotlyjs=True, full_html=False)
    shown = report.table.copy()
    for col in shown.columns:
        if col.endswith(("total_return", "max_drawdown")):
            shown[col] = shown[col].map(_pct)
        elif col.startswith(("raw_sharpe", "gated_sharpe", "sharpe_diff", "raw_brier", "gated_brier", "mean_size")):
            shown[col] = shown[col].map(lambda x: "n/a" if not np.isfinite(x) else f"{x:.3f}")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    skipped = "".join(f"<p>skipped {html.escape(m)}</p>" for m in report.skipped.values())
    folds = report.folds.assign(params=report.folds["params"].astype(str)).to_html(index=False, float_format=lambda x: f"{x:.4f}")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Does memory help?</title></head><body>"
        f"<h1>Does memory help? {html.escape(report.config.strategy)}: raw vs gated, out of sample</h1>"
        f"<ul>{notes}</ul>{fig}<h2>Results (judged on test windows only)</h2>{shown.to_html()}{skipped}"
        f"<h2>Folds (parameters fitted on the train window, judged on the test window)</h2>{folds}</body></html>"
    )


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return _json_safe(value.item())
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def _json_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): _json_safe(v) for k, v in row.items()}
