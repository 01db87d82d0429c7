"""``memlab evaluate``: does memory help? Raw vs agent-gated strategy, out of sample.

Exit codes: 0 done, 2 a usage mistake (unknown market or strategy, a strategy file that
does not load, bad option, --out that is a file), 1 a failure (no market long enough for
one fold, outputs not writable).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from memlab.cli import non_negative_int, positive_int

DESCRIPTION = (
    "Does memory help? Walk-forward each market (parameters chosen on train windows only), then on the "
    "test windows compare the raw strategy with the same signals gated and sized by a MemoryAgent whose "
    "memory holds only outcomes closed before each signal. Prints the table and writes CSV, JSON and HTML."
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from memlab.strategies.cli import add_strategy_file_argument

    p = sub.add_parser("evaluate", help="does memory help? raw vs agent-gated strategy, out of sample",
                       description=DESCRIPTION)
    p.add_argument("--markets", nargs="+", default=None, metavar="MARKET",
                   help="GOOG, EURUSD, BTCUSD, synthetic, synthetic:SEED[:BARS] or a .csv/.parquet path "
                        "(default: GOOG EURUSD BTCUSD synthetic)")
    p.add_argument("--strategy", default="sma_cross",
                   help="momentum, sma_cross, rsi_reversion, high_volatility, or one of --strategy-file's")
    add_strategy_file_argument(p)
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: runs/evaluate-<UTC time>/)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the synthetic market and of the bootstrap")
    p.add_argument("--draws", type=positive_int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--no-shadow", action="store_true",
                   help="the agent learns only from trades it took, not from the signals it skipped")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from memlab.errors import InvalidInputError, MemlabError
    from memlab.evaluation.memory_edge import DEFAULT_MARKETS, evaluate_memory
    from memlab.strategies import use_strategy_files

    out = Path(args.out) if args.out else Path("runs") / f"evaluate-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    if out.exists() and not out.is_dir():
        print(f"memlab evaluate: error: --out {out} is a file, not a folder", file=sys.stderr)
        return 2
    try:
        use_strategy_files(args.strategy_file)
        report = evaluate_memory(args.markets or DEFAULT_MARKETS, strategy=args.strategy, seed=args.seed,
                                 draws=args.draws, shadow_outcomes=not args.no_shadow, progress=not args.quiet)
    except InvalidInputError as exc:
        print(f"memlab evaluate: error: {exc}", file=sys.stderr)
        return 2
    except MemlabError as exc:
        print(f"memlab evaluate: FAILED: {exc}", file=sys.stderr)
        return 1
    print(report.to_text())
    try:
        paths = report.save(out)
    except OSError as exc:
        print(f"memlab evaluate: FAILED: cannot write the results to {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"\nwrote {', '.join(p.name for p in paths.values())} to {out}/")
    return 0
