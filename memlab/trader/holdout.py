"""Hold-out for replayed paper sessions: trade only the bars training never saw.

Training records in ``params/trained.json`` the last bar of history it used for each
market and strategy. A replayed session cut by :func:`hold_out` trades only the bars
after it; the bars just before serve as indicator warm-up, never as trades. So a paper
session, and its reconciliation with the backtest, is judged on unseen data.
"""

from __future__ import annotations

from typing import Any


def hold_out(config: Any, after: str | None = None) -> Any:
    """``config`` with its replay cut so that only bars after ``after`` are traded (the bars
    before it serve as indicator warm-up). Without ``after``: after the last bar training saw
    for the market and strategy, when it was trained. Says what it did."""
    import pandas as pd

    from memlab.connectors.manager import replay_frames
    from memlab.errors import InvalidInputError
    from memlab.strategies.params import trained_until

    feed = config.feed_settings()
    if feed.get("source", "replay") != "replay":
        raise InvalidInputError("--after needs replayed data (--sample, --data or --synthetic)")
    symbol = config.symbols[0]
    seen = trained_until(symbol, config.strategy)
    when = after or seen
    if when is None:
        print(f"memlab paper: {config.strategy} was never trained on {symbol}; replaying all of it")
        return config
    try:
        cut = pd.Timestamp(when)
    except (TypeError, ValueError):
        raise InvalidInputError(f"--after must be a time such as 2012-06-30, got {when!r}") from None
    cut = cut.tz_localize("UTC") if cut.tzinfo is None else cut.tz_convert("UTC")
    frame = replay_frames("paper", [symbol], {k: v for k, v in feed.items() if k in ("data", "path", "sample", "synthetic")})[symbol]
    first = int(frame.index.searchsorted(cut, side="right"))
    if first >= len(frame):
        raise InvalidInputError(f"no bars of {symbol} after {cut:%Y-%m-%d %H:%M} (its data ends {frame.index[-1]:%Y-%m-%d %H:%M})")
    warmup = int(feed.get("warmup", config.warmup))
    start = frame.index[max(0, first - warmup)]
    print(f"memlab paper: paper-trading {symbol} only after {cut:%Y-%m-%d %H:%M} "
          f"({len(frame) - first} bars from {frame.index[first]:%Y-%m-%d %H:%M}; {min(first, warmup)} bars before as warm-up)"
          + (f"; training saw it up to {pd.Timestamp(seen):%Y-%m-%d %H:%M}" if seen else ""))
    if seen is not None and cut < pd.Timestamp(seen):
        print(f"memlab paper: warning: bars up to {pd.Timestamp(seen):%Y-%m-%d %H:%M} were seen by training; "
              "results on them are in-sample")
    kept = {k: v for k, v in feed.items() if k not in ("symbols", "timeframe")}
    return config.with_(feed={**kept, "start": start, "warmup": min(first, warmup)})
