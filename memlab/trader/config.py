"""The trader's settings: from arguments, else the seed's environment, else defaults.

Environment (the seed's): ``TRADING_MODE`` (``paper`` | ``live``), ``SYMBOL`` (one, or
several separated by commas), ``STRATEGY``, ``MEM_MEMORY_PATH``; memlab adds ``BROKER``
(the ccxt exchange for live mode and exchange data), ``TIMEFRAME`` and
``MEMLAB_CONFIRM_LIVE=yes`` (live trading's explicit confirmation).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from memlab.config import memory_path as resolve_memory_path
from memlab.costs import DEFAULT_COSTS, CostModel
from memlab.errors import ConfigurationError, InvalidInputError
from memlab.exits import ExitRules
from memlab.fills import NO_FILL_MODEL, FillModel
from memlab.strategies import REGISTRY
from memlab.trader.protections import ProtectionRules

CONFIRM_LIVE_ENV = "MEMLAB_CONFIRM_LIVE"
MODES = ("paper", "live")
SIZINGS = ("agent", "full")


def is_swap_symbol(symbol: str) -> bool:
    """Whether ``symbol`` is ccxt's symbol of a perpetual swap (``BASE/QUOTE:SETTLE``)."""
    return ":" in symbol


def spot_to_swap(symbol: str) -> str:
    """The linear perpetual of a spot symbol: ``BTC/USDT`` -> ``BTC/USDT:USDT``."""
    head = symbol.partition(":")[0]
    quote = head.partition("/")[2] or "USD"
    return f"{head}:{quote}"


@dataclass(frozen=True)
class TraderConfig:
    """What a trading session trades, where, and how it sizes.

    - ``sizing="agent"``: spend ``position_size`` (the agent's, from confidence and its
      adaptations) x equity, capped so a stop-out loses at most ``risk_per_trade`` x equity
      when ``stop_loss`` is set; a signal the agent sizes at zero is skipped.
    - ``sizing="full"``: spend ``size`` (all, by default) of the free cash on each entry,
      like a backtest, so paper fills reconcile with it; the agent still scores and
      remembers every decision.
    - exits (:class:`memlab.exits.ExitRules`, the backtest's own settings and rules):
      ``stop_loss`` / ``take_profit`` / ``trailing_stop`` as fractions of the signal bar's
      close, attached to each entry; ``exit_after`` bars after the entry's fill bar, a
      market exit at the next open.
    - ``leverage``: set on the broker at start for each perpetual swap symbol
      (``BTC/USDT:USDT``); the broker refuses one above the market's maximum, naming it.
      On a swap the session trades long and short (``short_entry`` / ``short_exit``); a
      spot symbol trades long only (its short signals are counted and said once).
    - ``max_position`` / ``max_exposure`` (fractions of equity, off by default): an entry
      is cut so one symbol's position is at most ``max_position`` x equity at its signal's
      close, and all positions together (entries on their way counted at their cost) at
      most ``max_exposure`` x equity; an entry with no room left is skipped, saying which
      limit. Notional counts, so on a swap at 3x a position of 0.5 x equity uses 1/6 of it
      as margin. A session of several symbols shares one cash balance (a portfolio).
    - ``protections`` (:class:`memlab.trader.protections.ProtectionRules`): a stop-loss
      guard, a drawdown halt and a per-symbol cooldown; each blocks entries for a while.
    - ``sync_interval``: memory and book writes are fsynced together at the end of each
      bar (0) or of this many seconds of bars; either way they are written at once, so a
      killed process loses nothing (see :func:`memlab.memory.durable.group_commit`).
    - ``fill_model`` (:class:`memlab.fills.FillModel`): the paper broker's bar-range spread,
      order latency and maker fee, which :func:`~memlab.trader.reconcile_with_backtest`
      gives the backtest too; off by default. Its volume cap is refused here (the
      session's bars carry no volume).
    - ``feed``: :meth:`~memlab.connectors.ConnectionManager.add_data_feed` settings; in
      paper mode without one, the symbol's shipped sample (or a synthetic market) is replayed.
    """

    symbols: tuple[str, ...] = ("BTC/USDT",)
    strategy: str = "momentum"
    mode: str = "paper"
    confirm_live: bool = False
    memory_path: Path = field(default_factory=resolve_memory_path)
    params: Mapping[str, Any] | None = None
    broker: str = "paper"
    quote: str | None = None
    balance: float = 10_000.0
    fees: float = DEFAULT_COSTS.fees
    slippage: float = DEFAULT_COSTS.slippage
    sizing: str = "agent"
    min_confidence: float = 0.0
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    exit_after: int | None = None
    size: float = 1.0
    leverage: float = 1.0
    max_position: float | None = None
    max_exposure: float | None = None
    protections: ProtectionRules = field(default_factory=ProtectionRules)
    feed: Mapping[str, Any] | None = None
    timeframe: str = "1m"
    agent_id: str = "trader_001"
    warmup: int = 200
    max_bars: int | None = None
    drawdown_alerts: tuple[float, ...] = (0.05, 0.10, 0.20)
    sync_interval: float = 0.0
    fill_model: FillModel = NO_FILL_MODEL

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigurationError(f"TRADING_MODE must be paper or live, got {self.mode!r}")
        if self.strategy not in REGISTRY:
            raise ConfigurationError(f"STRATEGY {self.strategy!r} is unknown; known: {', '.join(sorted(REGISTRY))}")
        if not self.symbols or not all(isinstance(s, str) and s.strip() for s in self.symbols):
            raise ConfigurationError(f"SYMBOL must name at least one market, got {self.symbols!r}")
        if self.sizing not in SIZINGS:
            raise InvalidInputError(f"sizing is agent or full, got {self.sizing!r}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise InvalidInputError(f"min_confidence is in [0, 1], got {self.min_confidence}")
        _ = self.exits  # refuses a stop outside (0, 1), both stop kinds, a bad exit_after or size, naming it
        if self.size < 1 and self.sizing != "full":
            raise InvalidInputError(f"size {self.size} is the share of free cash an entry spends with sizing='full'; "
                                    "with sizing='agent' the agent sizes each entry")
        if isinstance(self.leverage, bool) or not isinstance(self.leverage, (int, float)) or not self.leverage >= 1:
            raise InvalidInputError(f"leverage is a number >= 1 (1 = no leverage), got {self.leverage!r}")
        if self.leverage != 1 and not any(is_swap_symbol(s) for s in self.symbols):
            raise InvalidInputError(f"leverage {self.leverage:g} is for perpetual swaps; {', '.join(self.symbols)} "
                                    f"{'is a spot market' if len(self.symbols) == 1 else 'are spot markets'} "
                                    f"(trade e.g. {spot_to_swap(self.symbols[0])})")
        for name in ("max_position", "max_exposure"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 < value <= 100):
                raise InvalidInputError(f"{name} is a fraction of equity in (0, 100] (0.25 = a quarter; above 1 "
                                        f"only with leverage), got {value!r}")
        if not self.sync_interval >= 0:
            raise InvalidInputError(f"sync_interval is seconds >= 0, got {self.sync_interval}")
        CostModel(fees=self.fees, slippage=self.slippage)  # refuses either outside [0, 1), naming it
        if not isinstance(self.fill_model, FillModel):
            raise InvalidInputError(f"fill_model is a memlab.fills.FillModel, got {self.fill_model!r}")
        if self.fill_model.volume_cap is not None:
            raise InvalidInputError(f"volume_cap={self.fill_model.volume_cap:g} is not simulated in trading sessions (their "
                                    "bars carry no volume yet); it is the paper broker's: PaperBroker(fill_model=...)")
        if self.fill_model.active and self.mode != "paper":
            raise InvalidInputError("fill_model simulates a venue's fills in paper mode; in live mode the venue fills")
        if not self.balance > 0:
            raise InvalidInputError(f"balance must be positive, got {self.balance}")
        if self.mode == "paper" and self.broker != "paper":
            raise ConfigurationError("paper mode trades on the paper broker; for an exchange's testnet use "
                                     "mode='live' with the exchange's sandbox")

    @property
    def exits(self) -> ExitRules:
        """The session's exit and sizing settings (the ones its backtest takes)."""
        return ExitRules(stop_loss=self.stop_loss, take_profit=self.take_profit, trailing_stop=self.trailing_stop,
                         exit_after=self.exit_after, size=self.size)

    def check_live(self) -> None:
        """Refuse live trading unless it was explicitly confirmed."""
        if self.mode == "live" and not self.confirm_live:
            raise ConfigurationError(
                "TRADING_MODE=live places real orders with real money: confirm with --confirm-live "
                f"or {CONFIRM_LIVE_ENV}=yes (use a sandbox/testnet account first)"
            )

    def quote_for(self, symbol: str) -> str:
        """The quote (for a linear perpetual, the settle) currency of ``symbol``."""
        if self.quote:
            return self.quote
        _, _, q = symbol.partition("/")
        return q.partition(":")[0] or "USD"

    def feed_settings(self) -> dict[str, Any]:
        """The :meth:`~memlab.connectors.ConnectionManager.add_data_feed` settings of the session:
        ``feed`` if given; live mode polls the broker; paper mode without data replays the
        symbol's shipped sample, or a synthetic market."""
        cfg: dict[str, Any] = {"symbols": list(self.symbols), "timeframe": self.timeframe, **(self.feed or {})}
        has_data = any(k in cfg for k in ("data", "path", "sample", "synthetic"))
        if self.mode == "live" and "source" not in cfg and not has_data:
            cfg.update(source="poll", broker=self.broker)
        elif not has_data and "source" not in cfg:
            from memlab.data import SAMPLES

            name = self.symbols[0].partition(":")[0].replace("/", "")
            cfg.update({"sample": name} if name in SAMPLES else {"synthetic": {"n": 5000, "seed": 7}})
        if cfg.get("source", "replay") == "replay":
            cfg.setdefault("warmup", self.warmup)
        return cfg

    def with_(self, **changes: Any) -> TraderConfig:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> TraderConfig:
        """Settings from the environment (``os.environ`` by default), then ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if env.get("TRADING_MODE"):
            values["mode"] = env["TRADING_MODE"].strip().lower()
        if env.get("SYMBOL"):
            values["symbols"] = tuple(s.strip() for s in env["SYMBOL"].split(",") if s.strip())
        if env.get("STRATEGY"):
            values["strategy"] = env["STRATEGY"].strip()
        if env.get("MEM_MEMORY_PATH"):
            values["memory_path"] = Path(env["MEM_MEMORY_PATH"]).expanduser()
        if env.get("TIMEFRAME"):
            values["timeframe"] = env["TIMEFRAME"].strip()
        if env.get(CONFIRM_LIVE_ENV, "").strip().lower() in ("yes", "1", "true"):
            values["confirm_live"] = True
        values.update({k: v for k, v in overrides.items() if v is not None})
        mode = values.get("mode", "paper")
        if mode == "live" and "broker" not in values:
            values["broker"] = env.get("BROKER", "").strip().lower() or "binance"
        return cls(**values)
