"""``memlab check-strategy``: look-ahead and start-dependence checks of strategies from the command line.

Exit 0 when every checked strategy is clean, 1 when one uses future bars or never
settles after a later start, 2 for a usage error::

    memlab check-strategy sma_cross
    memlab check-strategy rsi_reversion --sample EURUSD --param period=21
    memlab check-strategy mypackage.strategies:breakout --data prices.parquet --json
    memlab check-strategy --all --synthetic 5000
    memlab check-strategy bollinger --strategy-file my_strategies.py
"""

from __future__ import annotations

import argparse
import json
from typing import Any

SAMPLE_NAMES = ("GOOG", "EURUSD", "BTCUSD")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("check-strategy", help="check a strategy for look-ahead and start-dependent indicators",
                       description=__doc__.split("\n")[0])
    p.add_argument("name", nargs="?", default=None, metavar="NAME",
                   help="a registered strategy, or module:function")
    p.add_argument("--all", action="store_true", help="check every registered strategy")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--sample", type=str.upper, choices=SAMPLE_NAMES, default=None,
                     help="a shipped market (default GOOG)")
    src.add_argument("--data", default=None, metavar="PATH", help="a CSV/Parquet OHLCV file")
    src.add_argument("--synthetic", type=int, default=None, metavar="BARS", help="a seeded synthetic market")
    p.add_argument("--seed", type=int, default=7, help="seed of --synthetic")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="strategy parameter (repeatable)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_strategy_file_argument(p)
    p.set_defaults(func=_command)


def add_strategy_file_argument(parser: argparse.ArgumentParser) -> None:
    """``--strategy-file PATH`` (repeatable): strategies of the user's, loaded before any name
    is resolved (see :func:`memlab.strategies.use_strategy_files`)."""
    from memlab.cli import existing_file

    parser.add_argument("--strategy-file", action="append", default=[], type=existing_file, metavar="PATH",
                        help="a .py file declaring strategies of your own with @strategy (repeatable; "
                             "also $MEMLAB_STRATEGIES); then use them by name")


def parse_params(name: str, items: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` strings as parameters of strategy ``name``, each value of its default's type."""
    from memlab.errors import InvalidInputError
    from memlab.strategies.lookahead import strategy_params

    current = strategy_params(name)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInputError(f"--param {item!r}: expected NAME=VALUE")
        if key not in current:
            raise InvalidInputError(f"--param {item!r}: {name} has no parameter {key!r}; "
                                    f"it takes {', '.join(current) or 'none'}")
        out[key] = _typed(item, key, text.strip(), current[key])
    return out


def _typed(item: str, key: str, text: str, default: Any) -> Any:
    from memlab.errors import InvalidInputError

    if isinstance(default, bool):
        lowered = text.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise InvalidInputError(f"--param {item!r}: {key} takes true or false")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise InvalidInputError(f"--param {item!r}: {key} takes a whole number (default {default})") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise InvalidInputError(f"--param {item!r}: {key} takes a number (default {default})") from None
    if isinstance(default, str):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _bars(args: argparse.Namespace) -> Any:
    from memlab.data import load_ohlcv, sample, synthetic_ohlcv
    from memlab.errors import InvalidInputError

    if args.data:
        try:
            return load_ohlcv(args.data)
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            raise InvalidInputError(f"--data: {exc}") from None
    if args.synthetic is not None:
        return synthetic_ohlcv(args.synthetic, seed=args.seed)
    return sample(args.sample or "GOOG")


def _command(args: argparse.Namespace) -> int:
    from memlab.errors import InvalidInputError
    from memlab.strategies import REGISTRY, use_strategy_files
    from memlab.strategies.lookahead import check_strategy, resolve_strategy

    use_strategy_files(args.strategy_file)
    if args.all == (args.name is not None):
        raise InvalidInputError("check-strategy takes a strategy NAME or --all (one of them); "
                                f"known: {', '.join(sorted(REGISTRY))}")
    if args.all and args.param:
        raise InvalidInputError("--param needs a single strategy NAME, not --all")
    if args.all:
        names = list(REGISTRY)
        params: dict[str, Any] = {}
    else:
        names = [resolve_strategy(args.name)[0]]
        params = parse_params(names[0], args.param)
    bars = _bars(args)
    reports = [check_strategy(name, bars, params) for name in names]
    if args.json:
        docs = [r.as_dict() for r in reports]
        print(json.dumps(docs if args.all else docs[0], indent=2))
    else:
        print("\n".join(f"{r}\n  ({r.seconds:.2f} s)" for r in reports))
    return 0 if all(r.ok for r in reports) else 1
